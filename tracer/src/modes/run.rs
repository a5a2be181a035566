//! `tracer run`: start a command with every probe attached and its pid registered before it
//! runs its first instruction, follow its descendants, and report when it exits.
use anyhow::Result;

use crate::{
    cli::RunArgs,
    output,
    report::{self, Report, gate, verdict::Policy},
    session::{Options, RecordTo, Session, Target},
    symbolize::Symbolizer,
};

/// Runs `tracer run`; returns tracer's exit code.
pub async fn run(args: RunArgs) -> Result<i32> {
    output::check_outputs(&args.out, None)?;
    let record = args.record.as_deref().map(|path| RecordTo {
        path,
        max_bytes: None,
    });
    let mut session = Session::start(
        Target::Command(&args.command),
        Options {
            probes: args.capture.probe_options(),
            verify: args.capture.verify(),
            record,
        },
    )?;
    let end = session.wait_command(None).await?;
    let finished = session.finish(end.exit_code)?;
    if let (Some(path), Some(s)) = (&args.record, &finished.recorded) {
        super::print_recorded(path, s);
    }
    let policy = Policy::new(args.out.min_count, args.out.min_age);
    let mut report = Report::build(&finished.snapshot, &policy, &mut Symbolizer::default());
    gate::apply(&mut report, &args.out)?;
    let text_to = if args.quiet {
        report::TextTo::Nowhere
    } else {
        report::TextTo::Stderr
    };
    report::emit(&report, &args.out, text_to)?;
    Ok(gate::exit_code(&report, &args.out, end.exit_code))
}
