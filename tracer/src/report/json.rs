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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn sample_report_matches_the_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schema/report.schema.json")).expect("JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        let report: serde_json::Value =
            serde_json::from_str(&to_string(&sample_report()).expect("encode")).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let mut bad = report.clone();
        bad["processes"][0]["leaks"][0]["kind"] = "toaster".into();
        assert!(!validator.is_valid(&bad));
    }
}
