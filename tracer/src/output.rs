//! How a report is written (its format, where it goes) and what fails a run: the options every
//! reporting mode shares, and the checks made on output paths before any work.
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

/// Descriptors from one call site still open at exit for a `leak` verdict, by default.
pub const DEFAULT_MIN_COUNT: u64 = 2;

/// An output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The terminal report.
    Text,
    /// The JSON report (schema in the README and tracer/schema/report.schema.json).
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// JUnit XML: one test case per traced process.
    Junit,
    /// GitHub Actions workflow commands (`::error file=...`).
    Github,
    /// Folded stacks (flamegraph.pl, inferno, speedscope), weighted by descriptors.
    Folded,
    /// One self-contained HTML page: flame graph, descriptors over time, table.
    Html,
}

/// What the final report looks like and where it goes, and what fails the run.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Format of the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report to FILE (default: the text report to standard error, other formats to
    /// standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the JSON report to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit with code 99 when a call site has a `leak` or `inherited` verdict (not suppressed,
    /// not in the baseline).
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Descriptors from one call site still open at exit for a `leak` verdict (fewer: `unclosed`).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_COUNT, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_count: u64,
    /// Only descriptors open for at least SECS at exit make a `leak` (younger: `unclosed`).
    #[arg(long, value_name = "SECS", value_parser = non_negative_secs)]
    pub min_age: Option<f64>,
    /// Known leaks not to fail on (format in the README: match by kind, function, module, file,
    /// resource globs).
    #[arg(long, value_name = "FILE")]
    pub suppressions: Option<PathBuf>,
    /// A previous JSON report: only call sites absent from it fail the run.
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
}

fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("expected a number of seconds, got {s:?}")),
    }
}

/// Checks, before any work, that the report files `out` names can be written: their
/// directory exists, they are not directories, and none of them is `reading` (the record a
/// report is made from).
pub fn check_outputs(out: &OutputArgs, reading: Option<&Path>) -> Result<()> {
    for path in [&out.output, &out.json].into_iter().flatten() {
        check_output(path)?;
        if reading.is_some_and(|r| same_file(r, path)) {
            bail!("the report {} would overwrite the record", path.display());
        }
    }
    Ok(())
}

/// Checks that a report file can be created: its directory exists and it is not a directory
/// (`-`, standard output, always can).
pub fn check_output(path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    if path.is_dir() {
        bail!(
            "cannot write the report to {}: it is a directory",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write the report to {}: no directory {}",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
