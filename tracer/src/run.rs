//! `tracer run`: start a command with every probe attached and its pid registered before it runs
//! its first instruction, follow its descendants, and report when it exits.
use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, anyhow};
use tokio::{
    process::Command,
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::{CaptureArgs, RunArgs},
    collector::Collector,
    probes::{ProbeOptions, monotonic_ns},
    report::{self, LEAK_EXIT_CODE, Report},
    symbolize::Symbolizer,
};

/// Exit code when the command cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// A failure that maps to a specific exit code.
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

impl From<&CaptureArgs> for ProbeOptions {
    fn from(a: &CaptureArgs) -> Self {
        ProbeOptions {
            stack_max: a.stack_size,
            max_fds: a.max_fds,
            ring_bytes: a.ring_mib.max(1).saturating_mul(1 << 20),
            filter: Default::default(),
        }
    }
}

/// Runs `tracer run`; returns tracer's exit code.
pub async fn run(args: RunArgs) -> Result<i32> {
    let program = resolve(&args.command[0])?;
    let mut collector = Collector::new(&ProbeOptions::from(&args.capture))?;

    // Our own children get registered by the kernel at fork, before they exec anything.
    let me = std::process::id();
    collector.state.probes.trace(me, false)?;
    let started = Instant::now();
    let spawned = Command::new(&program)
        .arg0(&args.command[0])
        .args(&args.command[1..])
        .spawn();
    collector.state.probes.untrace(me)?;
    let mut child = spawned.map_err(|e| ExitError {
        code: EXIT_CANNOT_EXECUTE,
        message: format!("cannot execute {}: {e}", program.display()),
    })?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the command exited before it was seen"))?;

    let collecting = collector.spawn()?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            // The terminal sent Ctrl-C to the command too; report once it has exited.
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {
                // SAFETY: plain kill(2) of our child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    };
    let mut collector = collecting.stop()?;
    let duration = started.elapsed();
    let counters = collector.finish(args.capture.verify())?;

    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    let report = Report::build(report::Inputs {
        command: args.command.clone(),
        exit_code,
        duration_ms: duration.as_millis() as u64,
        min_count: args.out.min_count,
        now_ns: monotonic_ns(),
        counters,
        stats: collector.state.stats,
        acct: &collector.state.acct,
        sites: &collector.state.sites,
        symbolizer: &mut Symbolizer::default(),
        attached: false,
        live: false,
        coverage_lost: collector.state.probes.lost_coverage(),
    });
    report::emit(&report, &args.out, args.quiet)?;
    Ok(if args.out.fail_on_leak && report.has_leak() {
        LEAK_EXIT_CODE
    } else {
        exit_code
    })
}

/// Finds the program like a shell would; a clear error when it does not exist.
fn resolve(cmd: &str) -> Result<PathBuf> {
    which::which(cmd).map_err(|_| {
        ExitError {
            code: EXIT_NOT_FOUND,
            message: format!("command not found: {cmd}"),
        }
        .into()
    })
}
