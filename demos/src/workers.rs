//! The worker-log scenario: a shared log file whose descriptor is duplicated for each worker;
//! odd workers are cancelled before they start.
use std::{fs::File, io, os::fd::AsRawFd};

use crate::{DemoArgs, Progress};

/// Writes a line through a worker's descriptor.
pub fn log_line(fd: i32, id: usize) -> io::Result<()> {
    let line = format!("worker {id} started\n");
    // SAFETY: plain write on a descriptor the caller owns.
    let n = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether worker `id` is cancelled before it runs.
pub fn cancelled(id: usize) -> bool {
    id % 2 == 1
}

/// Starts `2 * count` workers through `start_worker`, each handed the log's descriptor.
pub fn run(args: &DemoArgs, start_worker: fn(i32, usize) -> io::Result<()>) -> io::Result<()> {
    let path = std::env::temp_dir().join(format!("tracer-demo-workers-{}.log", std::process::id()));
    let log = File::create(&path)?;
    let mut progress = Progress::start("workers started");
    let mut cancelled = 0;
    for id in 0..2 * args.count {
        if start_worker(log.as_raw_fd(), id).is_err() {
            cancelled += 1;
        }
        progress.tick(id + 1);
        args.pace();
    }
    progress.finish(2 * args.count);
    println!("{cancelled} workers cancelled");
    drop(log);
    std::fs::remove_file(&path)
}
