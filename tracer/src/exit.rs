//! tracer's exit codes, stated once: the traced command's own code, or one of these.

/// tracer itself failed (not root, kernel without BTF, a bad record, ...): one line on stderr,
/// nothing left attached.
pub const ERROR: i32 = 125;
/// The command exists but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// `--fail-on-leak` and a call site with a failing verdict.
pub const LEAK: i32 = 99;

/// A failure that maps to a specific exit code (else [`ERROR`]).
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// The exit code for a failure.
pub fn of_error(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<ExitError>().map_or(ERROR, |x| x.code)
}
