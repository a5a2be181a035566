//! `tracer report FILE`: the report of a record, on any machine, without root and without the
//! traced binaries: the record's journal is replayed through the same accounting and report
//! code as the live run.
use anyhow::Result;

use crate::{
    cli::ReportArgs,
    record,
    report::{self, LEAK_EXIT_CODE, Report},
};

/// Runs `tracer report`; returns the exit code.
pub fn report(args: ReportArgs) -> Result<i32> {
    let rec = record::read(&args.record)?;
    let path = args.record.display();
    if let Some(at) = rec.truncated_at {
        eprintln!(
            "tracer: warning: {path} is cut short at byte {at} (the recording was interrupted): \
             reporting the {} entries before it",
            rec.entries
        );
    } else if rec.end.is_none() {
        eprintln!(
            "tracer: warning: {path} has no end (the recording was interrupted): processes still \
             running then are reported as running"
        );
    }
    if let Some((bytes, _)) = rec.stopped {
        eprintln!(
            "tracer: warning: {path} stopped recording at --max-size ({bytes} bytes): descriptors \
             released later are reported as open"
        );
    }
    // Without its end, the record reports up to the last loss counters it holds.
    let end = rec.end.clone().unwrap_or_else(|| record::End {
        exit_code: 0,
        duration_ms: rec.last_ts_ns.saturating_sub(rec.begin.started_ns) / 1_000_000,
        now_ns: rec.last_ts_ns,
        coverage_lost: vec![],
    });
    let (mut counters, stats) = rec.totals;
    if rec.end.is_none() {
        counters.acquired = counters.acquired.max(rec.replayed.0);
        counters.released = counters.released.max(rec.replayed.1);
    }
    let mut report = Report::build(report::Inputs {
        command: rec.begin.command.clone(),
        exit_code: rec.end.as_ref().map(|e| e.exit_code),
        duration_ms: end.duration_ms,
        min_count: args.out.min_count,
        now_ns: end.now_ns,
        counters,
        stats,
        acct: &rec.acct,
        stacks: report::Stacks::Recorded(&rec.frames),
        attached: rec.begin.attached,
        live: rec.begin.live,
        coverage_lost: &end.coverage_lost,
    });
    if !args.pids.is_empty() {
        report.processes.retain(|p| args.pids.contains(&p.pid));
        report.timeline.retain(|t| args.pids.contains(&t.pid));
    }
    report::gate::apply(&mut report, &args.out)?;
    report::emit(&report, &args.out, report::TextTo::Stdout)?;
    Ok(if args.out.fail_on_leak && report.has_leak() {
        LEAK_EXIT_CODE
    } else {
        0
    })
}
