//! The job-runner scenario: every job gets an output pipe and a completion eventfd; odd jobs fail.
use std::io;

use crate::{DemoArgs, Progress};

/// Result of `libc` calls that return -1 on error.
pub fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Performs job `id`'s work on its pipe and eventfd; odd jobs fail.
pub fn work(id: usize, pipe: [i32; 2], done: i32) -> io::Result<()> {
    if id % 2 == 1 {
        return Err(io::Error::other(format!("job {id} failed")));
    }
    let msg = b"done";
    // SAFETY: plain writes and reads on descriptors the caller owns.
    unsafe {
        check(libc::write(pipe[1], msg.as_ptr().cast(), msg.len()) as i32)?;
        let mut buf = [0u8; 4];
        check(libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) as i32)?;
        let one: u64 = 1;
        check(libc::write(done, (&one as *const u64).cast(), 8) as i32)?;
    }
    Ok(())
}

/// Closes raw descriptors.
pub fn close_all(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: the caller owns these descriptors and closes them once.
        unsafe { libc::close(fd) };
    }
}

/// Runs `2 * count` jobs through `run_job` (odd ones fail).
pub fn run(args: &DemoArgs, run_job: fn(usize) -> io::Result<()>) -> io::Result<()> {
    let mut progress = Progress::start("jobs run");
    let mut failed = 0;
    for id in 0..2 * args.count {
        if run_job(id).is_err() {
            failed += 1;
        }
        progress.tick(id + 1);
        args.pace();
    }
    progress.finish(2 * args.count);
    println!("{failed} jobs failed");
    Ok(())
}
