//! tracer: finds the file descriptors a Linux program never releases, with the stack that
//! created them, using eBPF.
//!
//! The modes ([`modes`]): `run` a command, `record` for later, `report` a record, `doctor`,
//! and without a subcommand, watch live processes (`--pid`) or the whole system. Each tracing
//! mode runs one [`session`]: [`probes`] in the kernel, the [`collector`] feeding the
//! [`accounting`], stacks [`unwind`]ed and [`symbolize`]d, descriptors described by
//! [`enrich`]; then a [`report`] (or a [`record`]).
mod accounting;
mod cli;
mod collector;
mod enrich;
mod events;
mod exit;
mod frames;
mod health;
mod memo;
mod modes;
mod output;
mod peers;
mod probes;
mod procfs;
mod procmaps;
mod record;
mod releases;
mod report;
mod runtimes;
mod session;
mod symbolize;
mod unwind;

use clap::Parser as _;

fn main() {
    let cli = cli::Cli::parse();
    let code = try_main(cli).unwrap_or_else(|e| {
        eprintln!("tracer: {e:#}");
        exit::of_error(&e)
    });
    std::process::exit(code);
}

fn try_main(cli: cli::Cli) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Some(cli::Command::Run(args)) => runtime.block_on(modes::run::run(args)),
        Some(cli::Command::Record(args)) => runtime.block_on(modes::record::record(args)),
        Some(cli::Command::Report(args)) => modes::report::report(args),
        Some(cli::Command::Doctor) => modes::doctor::doctor(),
        None => runtime.block_on(modes::watch::watch(cli.watch)),
    }
}
