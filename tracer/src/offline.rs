//! `tracer report FILE`: the report of a record, on any machine, without root and without the
//! traced binaries: the record's journal is replayed through the same accounting and report
//! code as the live run.
use anyhow::{Result, bail};

use crate::{
    cli::ReportArgs,
    record,
    report::{self, LEAK_EXIT_CODE, Report, table},
};

/// Runs `tracer report`; returns the exit code.
pub fn report(args: ReportArgs) -> Result<i32> {
    report::check_outputs(&args.out, Some(&args.record))?;
    let rec = record::read(&args.record)?;
    let path = args.record.display();
    let mut missing = Vec::new();
    if let Some((bytes, ts_ns)) = rec.stopped {
        missing.push(format!(
            "recording stopped at --max-size ({bytes} bytes, {} into the run): later \
             acquisitions, releases and exits are not in it",
            table::age(ts_ns.saturating_sub(rec.begin.started_ns) / 1_000_000)
        ));
    }
    if let Some(at) = rec.truncated_at {
        missing.push(format!(
            "it is cut short at byte {at} (the recording was interrupted): reporting the {} \
             entries before it",
            rec.entries
        ));
    } else if rec.end.is_none() {
        missing.push("it has no end (the recording was interrupted)".to_string());
    }
    for m in &missing {
        eprintln!("tracer: warning: {path}: {m}");
    }
    // Without its end, the record reports up to its latest entry.
    let end = rec.end.clone().unwrap_or_else(|| record::End {
        exit_code: 0,
        duration_ms: rec.last_ts_ns.saturating_sub(rec.begin.started_ns) / 1_000_000,
        now_ns: rec.last_ts_ns,
        coverage_lost: vec![],
    });
    let (mut counters, stats) = rec.totals;
    if rec.end.is_none() {
        // The kernel's counters ran ahead of what the record kept: count what it holds.
        (counters.acquired, counters.released) = rec.replayed;
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
        // What happened after the record ends is unknown: a process running then may still
        // have released its descriptors.
        live: rec.begin.live || !missing.is_empty(),
        coverage_lost: &end.coverage_lost,
    });
    report.incomplete = (!missing.is_empty()).then(|| missing.join("; "));
    if let Some(pid) = args
        .pids
        .iter()
        .find(|&&pid| !report.processes.iter().any(|p| p.pid == pid))
    {
        let held: Vec<String> = report.processes.iter().map(|p| p.pid.to_string()).collect();
        let more = if held.len() > 10 { ", ..." } else { "" };
        bail!(
            "pid {pid} is not in {path} (it holds pids {}{more})",
            held[..held.len().min(10)].join(", ")
        );
    }
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
