//! dup-fixed: dup-leak's twin; the duplicate is owned and closed on every path.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use clap::Parser;
use demos::{DemoArgs, workers};

/// Gives a worker its own descriptor for the log and starts it.
fn start_worker(log: i32, id: usize) -> io::Result<()> {
    // SAFETY: the caller keeps `log` open during this call.
    let fd = unsafe { BorrowedFd::borrow_raw(log) }.try_clone_to_owned()?;
    if workers::cancelled(id) {
        return Err(io::Error::other("cancelled"));
    }
    workers::log_line(fd.as_raw_fd(), id)
}

fn main() -> io::Result<()> {
    workers::run(&DemoArgs::parse(), start_worker)
}
