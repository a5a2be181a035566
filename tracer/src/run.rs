//! `tracer run`: start a command with every probe attached and its pid registered before it runs
//! its first instruction, follow its descendants, and report when it exits.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::{
    process::Command,
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::{CaptureArgs, RecordArgs, RunArgs, WatchArgs},
    collector::Collector,
    probes::{Counters, ProbeOptions, monotonic_ns},
    record::{Begin, End, Summary},
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

/// Where to record, and how much at most.
pub struct RecordTo<'a> {
    pub path: &'a Path,
    pub max_bytes: Option<u64>,
}

/// A command that ran under tracing, and everything its report needs.
pub struct Finished {
    pub collector: Collector,
    pub counters: Counters,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub now_ns: u64,
    /// What the record holds, when recording.
    pub recorded: Option<Summary>,
    /// `--duration` ended the command.
    pub timed_out: bool,
}

/// Starts `command` with every probe attached and its pid registered before it runs, follows
/// it until it exits, and closes the record if any.
pub async fn execute(
    command: &[String],
    capture: &CaptureArgs,
    record: Option<RecordTo<'_>>,
    duration: Option<Duration>,
) -> Result<Finished> {
    let program = resolve(&command[0])?;
    if let Some(r) = &record
        && report::same_file(r.path, &program)
    {
        bail!(
            "the record {} would overwrite the command",
            r.path.display()
        );
    }
    let mut collector = Collector::new(&ProbeOptions::from(capture))?;
    if let Some(r) = &record {
        collector.record_to(r.path, r.max_bytes, begin(command, false, false))?;
    }

    // Our own children get registered by the kernel at fork, before they exec anything.
    let me = std::process::id();
    collector.state.probes.trace(me, false)?;
    let started = Instant::now();
    let spawned = Command::new(&program)
        .arg0(&command[0])
        .args(&command[1..])
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
    // `--duration`: the command is ended as `timeout` would (SIGTERM), and recorded to its exit.
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            () = &mut deadline, if duration.is_some() && !timed_out => {
                timed_out = true;
                eprintln!("tracer: --duration reached: ending the command (SIGTERM)");
                // SAFETY: plain kill(2) of our child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            // The terminal sent Ctrl-C to the command too; report once it has exited.
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {
                // SAFETY: plain kill(2) of our child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
    };
    let mut collector = collecting.stop()?;
    let duration_ms = started.elapsed().as_millis() as u64;
    let counters = collector.finish(capture.verify())?;

    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    let now_ns = monotonic_ns();
    let end = End {
        exit_code,
        duration_ms,
        now_ns,
        coverage_lost: collector.state.probes.lost_coverage().to_vec(),
    };
    let recorded = collector.end_record(counters, end)?;
    Ok(Finished {
        collector,
        counters,
        exit_code,
        duration_ms,
        now_ns,
        recorded,
        timed_out,
    })
}

/// The first entry of a record.
pub fn begin(command: &[String], attached: bool, live: bool) -> Begin {
    let uname = host_and_kernel();
    Begin {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: command.to_vec(),
        started_ns: monotonic_ns(),
        hostname: uname.0,
        kernel: uname.1,
        attached,
        live,
    }
}

/// Host name and kernel release.
fn host_and_kernel() -> (String, String) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    (
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/osrelease"),
    )
}

/// Says what a finished record holds.
pub fn print_recorded(path: &Path, s: &Summary) {
    // The command to paste, quoted for the shell.
    let shown = path.to_string_lossy();
    let quoted = shlex::try_quote(&shown).unwrap_or(shown.clone());
    if let Some(why) = &s.failed {
        eprintln!(
            "tracer: the record {} is incomplete ({why}): `tracer report {quoted}` shows what \
             was written before",
            path.display(),
        );
        return;
    }
    let dropped = if s.dropped > 0 {
        format!(
            " ({} later changes left out: --max-size reached)",
            s.dropped
        )
    } else {
        String::new()
    };
    eprintln!(
        "tracer: recorded {} entries ({} bytes) to {}{dropped}; `tracer report {quoted}` shows \
         them",
        s.entries,
        s.bytes,
        path.display(),
    );
}

/// Runs `tracer record`: a command, running processes or the system, into a record file.
pub async fn record(args: RecordArgs) -> Result<i32> {
    let to = RecordTo {
        path: &args.output,
        max_bytes: args.max_size.map(|mb| mb << 20),
    };
    if args.command.is_empty() {
        let watch = WatchArgs {
            pids: args.pids,
            comm: args.comm,
            cgroup: args.cgroup,
            interval: 5.0,
            duration: args.duration,
            min_age: 60.0,
            json: None,
            on_emfile: None,
            min_count: 2,
            capture: args.capture,
        };
        return crate::watch::watch_with(watch, Some(to)).await;
    }
    let duration = args.duration.map(Duration::from_secs_f64);
    let f = execute(&args.command, &args.capture, Some(to), duration).await?;
    if let Some(s) = &f.recorded {
        print_recorded(&args.output, s);
        if s.failed.is_some() {
            return Ok(crate::EXIT_ERROR);
        }
    }
    // Ended by `--duration` as asked: not the command's failure.
    Ok(if f.timed_out { 0 } else { f.exit_code })
}

/// Runs `tracer run`; returns tracer's exit code.
pub async fn run(args: RunArgs) -> Result<i32> {
    report::check_outputs(&args.out, None)?;
    let record = args.record.as_deref().map(|path| RecordTo {
        path,
        max_bytes: None,
    });
    let f = execute(&args.command, &args.capture, record, None).await?;
    if let (Some(path), Some(s)) = (&args.record, &f.recorded) {
        print_recorded(path, s);
    }
    let mut report = Report::build(report::Inputs {
        command: args.command.clone(),
        exit_code: Some(f.exit_code),
        duration_ms: f.duration_ms,
        min_count: args.out.min_count,
        now_ns: f.now_ns,
        counters: f.counters,
        stats: f.collector.state.stats,
        acct: &f.collector.state.acct,
        stacks: report::Stacks::Live {
            sites: &f.collector.state.sites,
            symbolizer: &mut Symbolizer::default(),
        },
        attached: false,
        live: false,
        coverage_lost: f.collector.state.probes.lost_coverage(),
    });
    report::gate::apply(&mut report, &args.out)?;
    let text_to = if args.quiet {
        report::TextTo::Nowhere
    } else {
        report::TextTo::Stderr
    };
    report::emit(&report, &args.out, text_to)?;
    Ok(if args.out.fail_on_leak && report.has_leak() {
        LEAK_EXIT_CODE
    } else {
        f.exit_code
    })
}

/// Finds the program like a shell would; a clear error when it does not exist.
fn resolve(cmd: &str) -> Result<PathBuf> {
    which::which(cmd).map_err(|_| {
        // A path that exists but cannot be run is 126, as in the shell; anything else 127.
        let path = Path::new(cmd);
        let (code, message) = if cmd.contains('/') && path.is_dir() {
            (
                EXIT_CANNOT_EXECUTE,
                format!("cannot execute {cmd}: it is a directory"),
            )
        } else if cmd.contains('/') && path.exists() {
            (
                EXIT_CANNOT_EXECUTE,
                format!("cannot execute {cmd}: permission denied"),
            )
        } else {
            (EXIT_NOT_FOUND, format!("command not found: {cmd}"))
        };
        ExitError { code, message }.into()
    })
}
