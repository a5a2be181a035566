//! `tracer report FILE`: the report of a record, on any machine, without root and without the
//! traced binaries: the record's journal is replayed through the same accounting and report
//! code as the live run.
use anyhow::{Result, bail};

use crate::{
    cli::ReportArgs,
    output, record,
    report::{self, Report, gate, table, verdict::Policy},
    symbolize::Symbolizer,
};

/// Runs `tracer report`; returns the exit code.
pub fn report(args: ReportArgs) -> Result<i32> {
    output::check_outputs(&args.out, Some(&args.record))?;
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
    let snapshot = rec.snapshot((!missing.is_empty()).then(|| missing.join("; ")));
    let policy = Policy::new(args.out.min_count, args.out.min_age);
    // Recorded stacks are symbolized already: the symbolizer is not used.
    let mut report = Report::build(&snapshot, &policy, &mut Symbolizer::default());
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
    gate::apply(&mut report, &args.out)?;
    report::emit(&report, &args.out, report::TextTo::Stdout)?;
    Ok(gate::exit_code(&report, &args.out, 0))
}
