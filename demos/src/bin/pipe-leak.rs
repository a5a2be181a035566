//! pipe-leak: a job runner that creates an output pipe and a completion eventfd per job and
//! returns early when a job fails, leaving both open: `--count` pipes (two descriptors each) and
//! `--count` eventfds.
use std::io;

use clap::Parser;
use demos::{
    DemoArgs,
    jobs::{self, check},
};

/// Runs one job with its own pipe and eventfd.
fn run_job(id: usize) -> io::Result<()> {
    let mut pipe = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `pipe`.
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) })?; // tracer-demo: leak site (pipe)
    // SAFETY: plain syscall.
    let done = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?; // tracer-demo: leak site (eventfd)
    // BUG: a failed job returns here without closing its pipe and eventfd.
    jobs::work(id, pipe, done)?;
    jobs::close_all(&[pipe[0], pipe[1], done]);
    Ok(())
}

fn main() -> io::Result<()> {
    jobs::run(&DemoArgs::parse(), run_job)
}
