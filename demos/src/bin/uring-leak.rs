//! uring-leak: a segment store on io_uring that loses every other segment, keeps the
//! connections it accepted and the pipes and descriptors it made, all without an open, accept
//! or close syscall (see `demos::uring`).
use std::io;

use clap::Parser;
use demos::DemoArgs;

fn main() -> io::Result<()> {
    demos::uring::run(&DemoArgs::parse(), true)
}
