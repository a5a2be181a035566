//! Command-line interface.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    exit,
    output::{DEFAULT_MIN_COUNT, OutputArgs},
    probes::ProbeOptions,
};

/// Finds the file descriptors a Linux program never releases, and the code that created them.
///
/// Without a subcommand tracer watches live processes: `tracer --pid N` attaches to a running
/// process, `tracer` alone watches the whole system.
#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = watch_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// Live mode: attach to processes, or watch the system.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Attach to this running process (repeat for several); its children are followed.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Watch processes with this name (the kernel's `comm`, 15 characters at most).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Watch processes in this cgroup (v2) and below, e.g. a container's.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Seconds between live updates.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive_secs)]
    pub interval: f64,
    /// Stop after this many seconds (default: Ctrl-C, SIGTERM, or when the targets exit).
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// A site whose descriptors are older than this while more keep coming is a suspect.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_secs)]
    pub min_age: f64,
    /// Write the final JSON report to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JSON report to FILE the first time a watched process hits its descriptor limit.
    #[arg(long, value_name = "FILE")]
    pub on_emfile: Option<PathBuf>,
    /// Descriptors from one call site still open at exit for a `leak` verdict.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_COUNT, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_count: u64,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

fn watch_help() -> &'static str {
    "Examples:\n  sudo tracer --pid $(pidof svc)        attach to a live service\n  \
     sudo tracer --comm nginx --interval 2  every process named nginx\n  \
     sudo tracer                            the whole system\n  \
     sudo tracer run -- ./tests             run a command and report its leaks"
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command (and everything it starts) under tracer; report what it never released.
    #[command(after_help = exit_codes_help())]
    Run(RunArgs),
    /// Record now, report later (anywhere): a command (`-- CMD`), running processes (`--pid`) or
    /// the whole system, into a self-contained file for `tracer report`.
    Record(RecordArgs),
    /// Report from a record made by `tracer record` or `tracer run --record`, on any machine,
    /// without root and without the traced binaries.
    Report(ReportArgs),
    /// Check what this kernel and these privileges allow: each program type tracer could use
    /// (loaded for real), BTF, tracefs, io_uring tracepoints, and a real trace end to end.
    /// Exits 0 only if tracing can work.
    Doctor,
}

/// Options of the kernel-side capture shared by every mode.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Bytes of user stack copied per acquisition for unwinding, at most 65536 (0 disables
    /// stacks). Deep async stacks (tokio, hyper) need the default or more.
    #[arg(long, value_name = "BYTES", default_value_t = 32768, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub stack_size: u32,
    /// Capacity of the kernel's table of outstanding descriptors (at most 4194304: about 80
    /// bytes of kernel memory each).
    #[arg(long, value_name = "N", default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub max_fds: u32,
    /// Kernel-to-collector ring buffer size in MiB (at most 1024).
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ring_mib: u32,
    /// Check the accounting of processes still running at the end against /proc/PID/fd
    /// (default; processes that exit are always checked by the kernel at their exit).
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,
    /// Skip the /proc check of processes still running at the end.
    #[arg(long, overrides_with = "verify")]
    pub no_verify: bool,
}

impl CaptureArgs {
    /// Whether to verify processes still running at the end.
    pub fn verify(&self) -> bool {
        !self.no_verify
    }

    /// The kernel side's tunables these options ask for.
    pub fn probe_options(&self) -> ProbeOptions {
        ProbeOptions {
            stack_max: self.stack_size,
            max_fds: self.max_fds,
            ring_bytes: self.ring_mib.max(1).saturating_mul(1 << 20),
            filter: Default::default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    /// Also record everything to FILE, for `tracer report` later, anywhere.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
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

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The record file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Record this running process (repeat for several); its children are followed.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Record processes with this name (system-wide).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Record processes in this cgroup (v2) and below.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Stop after this many seconds (default: Ctrl-C, SIGTERM, or when the targets exit); a
    /// command (`-- CMD`) is then ended with SIGTERM and recorded to its exit (tracer exits 0).
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Stop recording events once the file reaches this size (the report says so).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_size: Option<u64>,
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// The command to run and record, with its arguments (else --pid, else the system).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD",
        conflicts_with_all = ["pids", "comm", "cgroup"]
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The record to report on.
    #[arg(value_name = "FILE")]
    pub record: PathBuf,
    /// Only these processes (repeat for several).
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    #[command(flatten)]
    pub out: OutputArgs,
}

fn exit_codes_help() -> String {
    format!(
        "Exit status: the command's own (128+N if killed by signal N); {} with --fail-on-leak \
         when a leak was found; {} when tracer itself fails; {} when CMD cannot be executed; {} \
         when CMD is not found.",
        exit::LEAK,
        exit::ERROR,
        exit::CANNOT_EXECUTE,
        exit::NOT_FOUND
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
    fn watch_mode_is_the_default() {
        let cli =
            Cli::try_parse_from(["tracer", "-p", "1", "--pid", "2", "--interval", "1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.watch.pids, [1, 2]);
        assert!(Cli::try_parse_from(["tracer", "--interval", "0"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "--pid", "x"]).is_err());
    }

    #[test]
    fn run_takes_command_with_hyphens() {
        let cli =
            Cli::try_parse_from(["tracer", "run", "--min-count", "3", "--", "ls", "-l"]).unwrap();
        let Some(Command::Run(r)) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(r.command, ["ls", "-l"]);
        assert_eq!(r.out.min_count, 3);
        assert!(Cli::try_parse_from(["tracer", "run", "--min-count", "0", "ls"]).is_err());
    }
}
