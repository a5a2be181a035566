//! A tracing session: the one pipeline every tracing mode runs. Preflight, probes and the
//! collector; the targets (a command started under tracing, running processes, or the system);
//! an optional record; owned snapshots while it runs (built and symbolized without holding the
//! collector); the final drain, alignment and verification at its end.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::{
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
};

use crate::{
    collector::{Collecting, Collector},
    exit::{self, ExitError},
    health::Health,
    output,
    probes::{Filter, ProbeOptions, monotonic_ns},
    procfs,
    record::{Begin, End, Summary},
    report::{RunFacts, Snapshot, Stacks},
};

/// What a session traces.
pub enum Target<'a> {
    /// A command started with every probe attached, registered before its first instruction.
    Command(&'a [String]),
    /// Running processes (and their future children), and, with a filter, the system.
    Watch { pids: &'a [u32], filter: Filter },
}

/// Where to record, and how much at most.
pub struct RecordTo<'a> {
    pub path: &'a Path,
    pub max_bytes: Option<u64>,
}

/// How a session is set up.
pub struct Options<'a> {
    pub probes: ProbeOptions,
    /// Check processes still running at the end against /proc.
    pub verify: bool,
    pub record: Option<RecordTo<'a>>,
}

/// A running session.
pub struct Session {
    collecting: Collecting,
    started: Instant,
    /// The report's `command`.
    command: Vec<String>,
    attached: bool,
    live: bool,
    /// Watching the system (the end is not when the targets exit).
    system_wide: bool,
    child: Option<Child>,
    verify: bool,
    recording: bool,
}

/// How a command ended.
#[derive(Clone, Copy, Debug)]
pub struct CommandEnd {
    /// Its exit code (128+N when killed by signal N).
    pub exit_code: i32,
    /// `--duration` ended it.
    pub timed_out: bool,
}

/// A session at its end: the final snapshot and what the record holds.
pub struct Finished {
    pub snapshot: Snapshot,
    pub recorded: Option<Summary>,
}

impl Session {
    /// Loads and attaches everything, then starts (or attaches to) the targets.
    pub fn start(target: Target<'_>, opts: Options<'_>) -> Result<Self> {
        let (command, attached, live, system_wide, program) = match &target {
            Target::Command(cmd) => {
                let program = resolve(&cmd[0])?;
                if let Some(r) = &opts.record
                    && output::same_file(r.path, &program)
                {
                    bail!(
                        "the record {} would overwrite the command",
                        r.path.display()
                    );
                }
                (cmd.to_vec(), false, false, false, Some(program))
            }
            Target::Watch { pids, filter } => {
                for &pid in *pids {
                    procfs::check_pid(pid)?;
                }
                (
                    watch_command_line(pids, filter),
                    !pids.is_empty(),
                    true,
                    filter.system_wide,
                    None,
                )
            }
        };
        let mut probes = opts.probes.clone();
        if let Target::Watch { filter, .. } = &target {
            probes.filter = filter.clone();
        }
        let mut collector = Collector::new(&probes)?;
        if let Some(r) = &opts.record {
            let begin = begin(&command, attached, live);
            collector.record_to(r.path, r.max_bytes, begin)?;
        }
        let started = Instant::now();
        let mut child = None;
        match (&target, program) {
            (Target::Command(cmd), Some(program)) => {
                // Our own children get registered by the kernel at fork, before they exec.
                collector.prepare(&program);
                let me = std::process::id();
                collector.state.probes.trace(me, false)?;
                let spawned = Command::new(&program).arg0(&cmd[0]).args(&cmd[1..]).spawn();
                collector.state.probes.untrace(me)?;
                child = Some(spawned.map_err(|e| ExitError {
                    code: exit::CANNOT_EXECUTE,
                    message: format!("cannot execute {}: {e}", program.display()),
                })?);
            }
            (Target::Watch { pids, .. }, _) => {
                for &pid in *pids {
                    let held = collector
                        .attach(pid)
                        .with_context(|| format!("attaching to pid {pid}"))?;
                    eprintln!("tracer: attached to pid {pid}, {held} descriptors open");
                }
            }
            _ => {}
        }
        Ok(Self {
            collecting: collector.spawn()?,
            started,
            command,
            attached,
            live,
            system_wide,
            child,
            verify: opts.verify,
            recording: opts.record.is_some(),
        })
    }

    /// Seconds since the targets started (or were attached).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the session watches the whole system (narrowed by filters).
    pub fn system_wide(&self) -> bool {
        self.system_wide
    }

    /// Runs `f` on the collector between two drains (keep it short: ingestion waits).
    pub fn with<R>(&self, f: impl FnOnce(&mut Collector) -> R) -> R {
        self.collecting.with(f)
    }

    /// Processes seen, and of them still running.
    pub fn process_counts(&self) -> (usize, usize) {
        self.with(|c| {
            let all = c.state.acct.processes();
            (all.len(), all.iter().filter(|p| !p.exited()).count())
        })
    }

    /// The state now, owned: the caller builds its report without holding the collector.
    pub fn snapshot(&self) -> Snapshot {
        let elapsed = self.elapsed();
        self.with(|c| Snapshot {
            acct: c.state.acct.clone(),
            stacks: Stacks::Live(c.state.sites.stacks.clone()),
            health: Health {
                counters: c.state.probes.counters().unwrap_or_default(),
                stats: c.state.stats,
            },
            run: RunFacts {
                command: self.command.clone(),
                exit_code: Some(0),
                duration_ms: elapsed.as_millis() as u64,
                now_ns: monotonic_ns(),
                attached: self.attached,
                live: self.live,
                coverage_lost: c.state.coverage_lost(),
                incomplete: None,
            },
        })
    }

    /// Waits for the command to exit, forwarding SIGTERM to it; with `duration`, ends it with
    /// SIGTERM then (as `timeout` would) and waits for its exit.
    pub async fn wait_command(&mut self, duration: Option<Duration>) -> Result<CommandEnd> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("the session runs no command"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the command exited before it was seen"))?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
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
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        Ok(CommandEnd {
            exit_code,
            timed_out,
        })
    }

    /// Stops collecting: final drain, alignment with the kernel's map, verification of the
    /// processes still running, the record's end. `exit_code`: the command's (0 when watching).
    pub fn finish(self, exit_code: i32) -> Result<Finished> {
        let mut collector = self.collecting.stop()?;
        let duration_ms = self.started.elapsed().as_millis() as u64;
        let counters = collector.finish(self.verify)?;
        let now_ns = monotonic_ns();
        let coverage_lost = collector.state.coverage_lost();
        let recorded = if self.recording {
            let end = End {
                exit_code,
                duration_ms,
                now_ns,
                coverage_lost: coverage_lost.clone(),
            };
            collector.end_record(counters, end)?
        } else {
            None
        };
        let state = collector.into_state();
        Ok(Finished {
            snapshot: Snapshot {
                acct: state.acct,
                stacks: Stacks::Live(state.sites.stacks),
                health: Health {
                    counters,
                    stats: state.stats,
                },
                run: RunFacts {
                    command: self.command,
                    exit_code: Some(exit_code),
                    duration_ms,
                    now_ns,
                    attached: self.attached,
                    live: self.live,
                    coverage_lost,
                    incomplete: None,
                },
            },
            recorded,
        })
    }
}

/// The first entry of a record.
fn begin(command: &[String], attached: bool, live: bool) -> Begin {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    Begin {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: command.to_vec(),
        started_ns: monotonic_ns(),
        hostname: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        attached,
        live,
    }
}

/// The report's `command` of a live session: how tracer was invoked.
fn watch_command_line(pids: &[u32], filter: &Filter) -> Vec<String> {
    let mut v = vec!["tracer".to_string()];
    for pid in pids {
        v.extend(["--pid".to_string(), pid.to_string()]);
    }
    if let Some(c) = &filter.comm {
        v.extend(["--comm".to_string(), c.clone()]);
    }
    if let Some(c) = &filter.cgroup {
        v.extend(["--cgroup".to_string(), c.display().to_string()]);
    }
    v
}

/// Finds the program like a shell would; a clear error when it does not exist.
fn resolve(cmd: &str) -> Result<std::path::PathBuf> {
    which::which(cmd).map_err(|_| {
        // A path that exists but cannot be run is 126, as in the shell; anything else 127.
        let path = Path::new(cmd);
        let (code, message) = if cmd.contains('/') && path.is_dir() {
            (
                exit::CANNOT_EXECUTE,
                format!("cannot execute {cmd}: it is a directory"),
            )
        } else if cmd.contains('/') && path.exists() {
            (
                exit::CANNOT_EXECUTE,
                format!("cannot execute {cmd}: permission denied"),
            )
        } else {
            (exit::NOT_FOUND, format!("command not found: {cmd}"))
        };
        ExitError { code, message }.into()
    })
}
