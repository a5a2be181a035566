//! `tracer record`: a command, running processes or the system, into a record file for
//! `tracer report` later, anywhere.
use std::time::Duration;

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::RecordArgs,
    exit,
    probes::Filter,
    session::{Options, RecordTo, Session, Target},
};

/// How often progress is said while recording live processes.
const PROGRESS: Duration = Duration::from_secs(5);

/// Runs `tracer record`; returns tracer's exit code.
pub async fn record(args: RecordArgs) -> Result<i32> {
    let opts = Options {
        probes: args.capture.probe_options(),
        verify: args.capture.verify(),
        record: Some(RecordTo {
            path: &args.output,
            max_bytes: args.max_size.map(|mb| mb << 20),
        }),
    };
    let duration = args.duration.map(Duration::from_secs_f64);
    let (finished, timed_out) = if args.command.is_empty() {
        let filter = Filter {
            system_wide: args.pids.is_empty() || args.comm.is_some() || args.cgroup.is_some(),
            comm: args.comm.clone(),
            cgroup: args.cgroup.clone(),
        };
        let session = Session::start(
            Target::Watch {
                pids: &args.pids,
                filter,
            },
            opts,
        )?;
        let session = record_live(session, duration).await?;
        (session.finish(0)?, false)
    } else {
        let mut session = Session::start(Target::Command(&args.command), opts)?;
        let end = session.wait_command(duration).await?;
        (session.finish(end.exit_code)?, end.timed_out)
    };
    if let Some(s) = &finished.recorded {
        super::print_recorded(&args.output, s);
        if s.failed.is_some() {
            return Ok(exit::ERROR);
        }
    }
    // Ended by `--duration` as asked: not the command's failure.
    let code = finished.snapshot.run.exit_code.unwrap_or(0);
    Ok(if timed_out { 0 } else { code })
}

/// Records live processes until Ctrl-C, SIGTERM, `duration`, or the exit of every attached
/// process, saying how it goes.
async fn record_live(session: Session, duration: Option<Duration>) -> Result<Session> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(PROGRESS);
    tick.tick().await;
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = &mut deadline, if duration.is_some() => break,
            _ = tick.tick() => {
                let (procs, running) = session.process_counts();
                eprintln!(
                    "tracer: recording: {procs} processes ({running} running), {:.0} s",
                    session.elapsed().as_secs_f64()
                );
                if !session.system_wide() && running == 0 {
                    break;
                }
            }
        }
    }
    Ok(session)
}
