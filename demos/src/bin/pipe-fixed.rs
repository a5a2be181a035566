//! pipe-fixed: pipe-leak's twin; the pipe and the eventfd are closed whether the job fails or not.
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
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: plain syscall.
    let done = match check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }) {
        Ok(fd) => fd,
        Err(e) => {
            jobs::close_all(&pipe);
            return Err(e);
        }
    };
    let result = jobs::work(id, pipe, done);
    jobs::close_all(&[pipe[0], pipe[1], done]);
    result
}

fn main() -> io::Result<()> {
    jobs::run(&DemoArgs::parse(), run_job)
}
