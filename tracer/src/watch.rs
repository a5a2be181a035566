//! `tracer --pid N` and system-wide `tracer`: watch live processes without restarting them, show
//! a live view every interval, and a final report (the same schema as `tracer run`) on Ctrl-C,
//! SIGTERM, `--duration`, or when the attached processes have all exited.
use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::WatchArgs,
    collector::{Collecting, Collector},
    probes::{Filter, ProbeOptions, monotonic_ns},
    procfs,
    report::{
        self, Report,
        live::{LiveOptions, LiveState, ProcFacts},
    },
    run::RecordTo,
    symbolize::Symbolizer,
};

/// Call sites shown per process in the live view.
const TOP_SITES: usize = 8;

/// How often a limit hit is looked for (for `--on-emfile`).
const EMFILE_CHECK: Duration = Duration::from_millis(100);

/// Why watching stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Interrupted,
    Duration,
    TargetsExited,
}

/// Runs live mode; returns tracer's exit code.
pub async fn watch(args: WatchArgs) -> Result<i32> {
    watch_with(args, None).await
}

/// Live mode; with `record`, writes a record instead of showing the live view and the report.
pub async fn watch_with(args: WatchArgs, record: Option<RecordTo<'_>>) -> Result<i32> {
    for &pid in &args.pids {
        procfs::check_pid(pid)?;
    }
    for path in [&args.json, &args.on_emfile].into_iter().flatten() {
        report::check_output(path)?;
    }
    let system_wide = args.pids.is_empty() || args.comm.is_some() || args.cgroup.is_some();
    let mut opts = ProbeOptions::from(&args.capture);
    opts.filter = Filter {
        system_wide,
        comm: args.comm.clone(),
        cgroup: args.cgroup.clone(),
    };
    let mut collector = Collector::new(&opts)?;
    if let Some(r) = &record {
        let begin = crate::run::begin(&command_line(&args), !args.pids.is_empty(), true);
        collector.record_to(r.path, r.max_bytes, begin)?;
    }
    let started = Instant::now();
    for &pid in &args.pids {
        collector
            .attach(pid)
            .with_context(|| format!("attaching to pid {pid}"))?;
    }
    let collecting = collector.spawn()?;

    let mut live = LiveState::new(LiveOptions {
        min_age_s: args.min_age,
        top: TOP_SITES,
    });
    let mut symbolizer = Symbolizer::default();
    // `--json -` keeps standard output for the JSON: the view and the report go to stderr.
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let view = || -> Box<dyn Write> {
        if json_to_stdout {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        }
    };
    let tty = if json_to_stdout {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
    tick.tick().await;
    let mut emfile_check = tokio::time::interval(EMFILE_CHECK);
    let deadline = args
        .duration
        .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut emfile_written = args.on_emfile.is_none();
    let end = loop {
        tokio::select! {
            _ = sigint.recv() => break End::Interrupted,
            _ = sigterm.recv() => break End::Interrupted,
            _ = sleep_until(deadline) => break End::Duration,
            _ = tick.tick() => {
                if record.is_some() {
                    let (procs, running) = collecting.with(|c| {
                        let all = c.state.acct.processes();
                        (all.len(), all.iter().filter(|p| !p.exited()).count())
                    });
                    eprintln!(
                        "tracer: recording: {procs} processes ({running} running), {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                    if !system_wide && running == 0 {
                        break End::TargetsExited;
                    }
                    continue;
                }
                let (mut report, facts) = snapshot(&collecting, &args, &mut symbolizer, started);
                let frame = live.update(&mut report, &facts, started.elapsed().as_secs_f64(), system_wide);
                let mut out = view();
                let _ = out.write_all(report::live::render(&frame, tty, tty).as_bytes());
                let _ = out.flush();
                if !system_wide && report.processes.iter().all(|p| !p.running) {
                    break End::TargetsExited;
                }
            }
            _ = emfile_check.tick(), if !emfile_written => {
                if collecting.with(|c| c.state.stats.limit_hits) > 0
                    && let Some(path) = &args.on_emfile
                {
                    let (report, _) = snapshot(&collecting, &args, &mut symbolizer, started);
                    report::json::write(&report, path)?;
                    eprintln!("tracer: a watched process hit its descriptor limit; report written to {}", path.display());
                    emfile_written = true;
                }
            }
        }
    };
    let mut collector = collecting.stop()?;
    let counters = collector.finish(args.capture.verify())?;
    let duration_ms = started.elapsed().as_millis() as u64;
    let now_ns = monotonic_ns();
    if let Some(r) = &record {
        let end = crate::record::End {
            exit_code: 0,
            duration_ms,
            now_ns,
            coverage_lost: collector.state.probes.lost_coverage().to_vec(),
        };
        if let Some(summary) = collector.end_record(counters, end)? {
            crate::run::print_recorded(r.path, &summary);
            if summary.failed.is_some() {
                return Ok(crate::EXIT_ERROR);
            }
        }
        return Ok(0);
    }
    let mut report = Report::build(report::Inputs {
        command: command_line(&args),
        exit_code: Some(0),
        duration_ms,
        min_count: args.min_count,
        now_ns,
        counters,
        stats: collector.state.stats,
        acct: &collector.state.acct,
        stacks: report::Stacks::Live {
            sites: &collector.state.sites,
            symbolizer: &mut symbolizer,
        },
        attached: !args.pids.is_empty(),
        live: true,
        coverage_lost: collector.state.probes.lost_coverage(),
    });
    live.conclude(&mut report, started.elapsed().as_secs_f64());
    let why = match end {
        End::Interrupted => "interrupted",
        End::Duration => "--duration reached",
        End::TargetsExited => "the watched processes exited",
    };
    let mut out = view();
    let _ = writeln!(out, "\ntracer: stopped ({why}); final report:");
    let _ = out.write_all(
        report::table::render(&report, report::table::Options { color: tty }).as_bytes(),
    );
    let _ = out.flush();
    if let Some(path) = &args.json {
        report::json::write(&report, path)?;
    }
    Ok(0)
}

/// A report of the current state, and `/proc` facts of the live processes in it.
fn snapshot(
    collecting: &Collecting,
    args: &WatchArgs,
    symbolizer: &mut Symbolizer,
    started: Instant,
) -> (Report, HashMap<u32, ProcFacts>) {
    let report = collecting.with(|c| {
        let counters = c.state.probes.counters().unwrap_or_default();
        Report::build(report::Inputs {
            command: command_line(args),
            exit_code: Some(0),
            duration_ms: started.elapsed().as_millis() as u64,
            min_count: args.min_count,
            now_ns: monotonic_ns(),
            counters,
            stats: c.state.stats,
            acct: &c.state.acct,
            stacks: report::Stacks::Live {
                sites: &c.state.sites,
                symbolizer,
            },
            attached: !args.pids.is_empty(),
            live: true,
            coverage_lost: c.state.probes.lost_coverage(),
        })
    });
    let facts = proc_facts(&report);
    (report, facts)
}

fn proc_facts(report: &Report) -> HashMap<u32, ProcFacts> {
    report
        .processes
        .iter()
        .filter(|p| p.running)
        .filter_map(|p| {
            Some((
                p.pid,
                ProcFacts {
                    open_fds: procfs::count_fds(p.pid)?,
                    limit: procfs::nofile_limit(p.pid),
                },
            ))
        })
        .collect()
}

/// The report's `command`: how tracer was invoked.
fn command_line(args: &WatchArgs) -> Vec<String> {
    let mut v = vec!["tracer".to_string()];
    for pid in &args.pids {
        v.extend(["--pid".to_string(), pid.to_string()]);
    }
    if let Some(c) = &args.comm {
        v.extend(["--comm".to_string(), c.clone()]);
    }
    if let Some(c) = &args.cgroup {
        v.extend(["--cgroup".to_string(), c.display().to_string()]);
    }
    v
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
