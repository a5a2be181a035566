//! The JSON report (schema in the README): the serde form of [`Report`].
use std::{fs::File, io::Write, path::Path};

use anyhow::{Context as _, Result};

use super::Report;

/// Writes the report to `path` ("-" is standard output).
pub fn write(report: &Report, path: &Path) -> Result<()> {
    let mut out: Box<dyn Write> = if path == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
    };
    serde_json::to_writer_pretty(&mut out, report).context("writing the JSON report")?;
    writeln!(out).context("writing the JSON report")?;
    Ok(())
}

/// The report as pretty-printed JSON.
pub fn to_string(report: &Report) -> Result<String> {
    let mut s = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    s.push('\n');
    Ok(s)
}
