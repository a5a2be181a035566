//! `tracer --pid N` and system-wide `tracer`: watch live processes without restarting them, show
//! a live view every interval, and a final report (the same schema as `tracer run`) on Ctrl-C,
//! SIGTERM, `--duration`, or when the attached processes have all exited.
use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    path::Path,
    time::Duration,
};

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::WatchArgs,
    output,
    probes::Filter,
    procfs,
    report::{
        self, Report,
        live::{LiveOptions, LiveState, ProcFacts},
        verdict::Policy,
    },
    session::{Options, Session, Target},
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
    for path in [&args.json, &args.on_emfile].into_iter().flatten() {
        output::check_output(path)?;
    }
    let filter = Filter {
        system_wide: args.pids.is_empty() || args.comm.is_some() || args.cgroup.is_some(),
        comm: args.comm.clone(),
        cgroup: args.cgroup.clone(),
    };
    let system_wide = filter.system_wide;
    let session = Session::start(
        Target::Watch {
            pids: &args.pids,
            filter,
        },
        Options {
            probes: args.capture.probe_options(),
            verify: args.capture.verify(),
            record: None,
        },
    )?;
    let policy = Policy::new(args.min_count, None);
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
    let deadline = tokio::time::sleep(args.duration.map_or(Duration::MAX, Duration::from_secs_f64));
    tokio::pin!(deadline);
    let mut emfile_written = args.on_emfile.is_none();
    let end = loop {
        tokio::select! {
            _ = sigint.recv() => break End::Interrupted,
            _ = sigterm.recv() => break End::Interrupted,
            () = &mut deadline, if args.duration.is_some() => break End::Duration,
            _ = tick.tick() => {
                let mut report = Report::build(&session.snapshot(), &policy, &mut symbolizer);
                let facts = proc_facts(&report);
                let elapsed = session.elapsed().as_secs_f64();
                let frame = live.update(&mut report, &facts, elapsed, system_wide, &policy);
                let mut out = view();
                let _ = out.write_all(report::live::render(&frame, tty, tty).as_bytes());
                let _ = out.flush();
                if !system_wide && report.processes.iter().all(|p| !p.running) {
                    break End::TargetsExited;
                }
            }
            _ = emfile_check.tick(), if !emfile_written => {
                if session.with(|c| c.state.stats.limit_hits) > 0
                    && let Some(path) = &args.on_emfile
                {
                    let report = Report::build(&session.snapshot(), &policy, &mut symbolizer);
                    report::json::write(&report, path)?;
                    eprintln!("tracer: a watched process hit its descriptor limit; report written to {}", path.display());
                    emfile_written = true;
                }
            }
        }
    };
    let elapsed = session.elapsed().as_secs_f64();
    let finished = session.finish(0)?;
    let mut report = Report::build(&finished.snapshot, &policy, &mut symbolizer);
    live.conclude(&mut report, elapsed, &policy);
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

/// `/proc` facts of the live processes of a report.
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
