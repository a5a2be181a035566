//! tracer: finds the file descriptors a Linux program never releases, with the stack that
//! created them, using eBPF.
//!
//! Modes: `run` (start a command under tracing) and, without a subcommand, live watching of
//! running processes (`--pid`) or of the whole system.
mod accounting;
mod cli;
mod collector;
mod doctor;
mod enrich;
mod events;
mod memo;
mod offline;
mod probes;
mod procfs;
mod procmaps;
mod record;
mod report;
mod run;
mod symbolize;
mod unwind;
mod watch;

use clap::Parser as _;

/// Exit code when tracer itself fails.
pub const EXIT_ERROR: i32 = 125;

fn main() {
    let cli = cli::Cli::parse();
    let code = match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            e.downcast_ref::<run::ExitError>()
                .map_or(EXIT_ERROR, |x| x.code)
        }
    };
    std::process::exit(code);
}

fn try_main(cli: cli::Cli) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Some(cli::Command::Run(args)) => runtime.block_on(run::run(args)),
        Some(cli::Command::Record(args)) => runtime.block_on(run::record(args)),
        Some(cli::Command::Report(args)) => offline::report(args),
        Some(cli::Command::Doctor) => doctor::doctor(),
        None => runtime.block_on(watch::watch(cli.watch)),
    }
}
