//! sarif output (being written).
use super::Report;

/// Renders the report.
pub fn render(_report: &Report) -> anyhow::Result<String> {
    anyhow::bail!("SARIF output is not implemented yet")
}
