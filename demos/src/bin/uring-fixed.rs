//! uring-fixed: the twin of uring-leak that closes everything through the ring.
use std::io;

use clap::Parser;
use demos::DemoArgs;

fn main() -> io::Result<()> {
    demos::uring::run(&DemoArgs::parse(), false)
}
