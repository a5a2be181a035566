//! stress: `--threads` threads each open and close a file `--iterations` times while `--leak`
//! descriptors in total are opened and never closed, spread over the threads. Numbers reused
//! across threads within microseconds make this a test of exact accounting. With `--handoff`
//! each thread hands what it opens to the next thread, which closes it: every descriptor is
//! released by another thread than the one that acquired it (often on another CPU).
use std::{
    fs::File,
    io,
    os::fd::{FromRawFd, IntoRawFd, RawFd},
    path::Path,
    sync::mpsc,
};

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value_t = 10_000)]
    iterations: usize,
    #[arg(long, default_value_t = 101)]
    leak: usize,
    /// Close each descriptor in the next thread rather than in the one that opened it.
    #[arg(long)]
    handoff: bool,
}

/// Opens a file and forgets its descriptor.
#[inline(never)]
fn leak_one(path: &Path) -> io::Result<()> {
    let _lost = File::open(path)?.into_raw_fd(); // tracer-demo: leak site
    Ok(())
}

/// Opens and closes a file.
#[inline(never)]
fn open_close(path: &Path) -> io::Result<()> {
    File::open(path).map(drop)
}

fn worker(quota: usize, iterations: usize) -> io::Result<()> {
    let path = Path::new("/dev/null");
    let every = (iterations / quota.max(1)).max(1);
    let mut leaked = 0;
    for i in 0..iterations {
        if leaked < quota && i % every == 0 {
            leaked += 1;
            leak_one(path)?;
        } else {
            open_close(path)?;
        }
    }
    Ok(())
}

/// Opens a file for the next thread to close.
#[inline(never)]
fn open_for_next(path: &Path) -> io::Result<RawFd> {
    Ok(File::open(path)?.into_raw_fd())
}

/// Descriptors in flight to a thread at most: a thread the scheduler leaves behind holds up
/// its predecessor rather than letting it run into the descriptor limit.
const HANDOFF_BOUND: usize = 256;

/// Closes what the previous thread handed over so far.
fn close_handed(from_previous: &mpsc::Receiver<RawFd>) {
    while let Ok(fd) = from_previous.try_recv() {
        // SAFETY: the previous thread gave up this descriptor.
        drop(unsafe { File::from_raw_fd(fd) });
    }
}

/// Opens `iterations` files, hands them to the next thread (keeping `quota`), and closes what
/// the previous thread hands over. While the next thread's queue is full it keeps closing its
/// own, so that a ring of full queues still moves.
fn handoff_worker(
    quota: usize,
    iterations: usize,
    next: mpsc::SyncSender<RawFd>,
    from_previous: mpsc::Receiver<RawFd>,
) -> io::Result<()> {
    let path = Path::new("/dev/null");
    let every = (iterations / quota.max(1)).max(1);
    let mut leaked = 0;
    for i in 0..iterations {
        if leaked < quota && i % every == 0 {
            leaked += 1;
            leak_one(path)?;
        } else {
            let mut fd = open_for_next(path)?;
            loop {
                match next.try_send(fd) {
                    Ok(()) => break,
                    Err(mpsc::TrySendError::Full(back)) => {
                        fd = back;
                        close_handed(&from_previous);
                        std::thread::yield_now();
                    }
                    Err(mpsc::TrySendError::Disconnected(back)) => {
                        // SAFETY: nobody else holds it.
                        drop(unsafe { File::from_raw_fd(back) });
                        break;
                    }
                }
            }
        }
        close_handed(&from_previous);
    }
    drop(next);
    for fd in from_previous {
        // SAFETY: as above.
        drop(unsafe { File::from_raw_fd(fd) });
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..args.threads)
        .map(|_| mpsc::sync_channel::<RawFd>(HANDOFF_BOUND))
        .unzip();
    // Thread t sends to thread t + 1: it receives from thread t - 1.
    receivers.rotate_right(1);
    let threads: Vec<_> = senders
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(t, (next, from_previous))| {
            // Spread the leaks: the first `leak % threads` threads leak one more.
            let quota = args.leak / args.threads + usize::from(t < args.leak % args.threads);
            let iterations = args.iterations;
            let handoff = args.handoff;
            std::thread::spawn(move || {
                if handoff {
                    handoff_worker(quota, iterations, next, from_previous)
                } else {
                    worker(quota, iterations)
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("worker panicked"))??;
    }
    println!(
        "{} threads x {} opens, {} leaked; open fds: {}",
        args.threads,
        args.iterations,
        args.leak,
        demos::open_fds()?
    );
    Ok(())
}
