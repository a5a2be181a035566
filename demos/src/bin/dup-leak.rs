//! dup-leak: each worker gets its own duplicate of the log descriptor, and a cancelled worker's
//! duplicate is never closed: `--count` leaked duplicates of one file.
use std::io;

use clap::Parser;
use demos::{DemoArgs, workers};

/// Gives a worker its own descriptor for the log and starts it.
fn start_worker(log: i32, id: usize) -> io::Result<()> {
    // SAFETY: dup of a descriptor the caller keeps open.
    let fd = unsafe { libc::dup(log) }; // tracer-demo: leak site
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    if workers::cancelled(id) {
        // BUG: the worker's descriptor is forgotten, not closed.
        return Err(io::Error::other("cancelled"));
    }
    let result = workers::log_line(fd, id);
    // SAFETY: closed exactly once.
    unsafe { libc::close(fd) };
    result
}

fn main() -> io::Result<()> {
    workers::run(&DemoArgs::parse(), start_worker)
}
