//! Command-line interface.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::LEAK_EXIT_CODE;

/// Finds the file descriptors a Linux program never releases, and the code that created them.
#[derive(Debug, Parser)]
#[command(name = "tracer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (and everything it starts) under tracer; report what it never released.
    #[command(after_help = exit_codes_help())]
    Run(RunArgs),
}

/// Options of the kernel-side capture shared by every mode.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Bytes of user stack copied per acquisition for unwinding, at most 65536 (0 disables
    /// stacks). Deep async stacks (tokio, hyper) need the default or more.
    #[arg(long, value_name = "BYTES", default_value_t = 32768, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub stack_size: u32,
    /// Capacity of the kernel's table of outstanding descriptors.
    #[arg(long, value_name = "N", default_value_t = 262_144)]
    pub max_fds: u32,
    /// Kernel-to-collector ring buffer size in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub ring_mib: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write the JSON report to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit with code 99 when a call site has a `leak` verdict.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Descriptors from one call site still open at exit for a `leak` verdict (fewer: `unclosed`).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_count: u64,
    /// Do not print the terminal report.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// The command to run, with its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

fn exit_codes_help() -> String {
    format!(
        "Exit status: the command's own (128+N if killed by signal N); {LEAK_EXIT_CODE} with \
         --fail-on-leak when a leak was found; 125 when tracer itself fails; 126 when CMD cannot be \
         executed; 127 when CMD is not found."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_command_with_hyphens() {
        let cli =
            Cli::try_parse_from(["tracer", "run", "--min-count", "3", "--", "ls", "-l"]).unwrap();
        let Command::Run(r) = cli.command;
        assert_eq!(r.command, ["ls", "-l"]);
        assert_eq!(r.min_count, 3);
        assert!(Cli::try_parse_from(["tracer", "run", "--min-count", "0", "ls"]).is_err());
    }
}
