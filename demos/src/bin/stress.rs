//! stress: `--threads` threads each open and close a file `--iterations` times while `--leak`
//! descriptors in total are opened and never closed, spread over the threads. Numbers reused
//! across threads within microseconds make this a test of exact accounting.
use std::{fs::File, io, os::fd::IntoRawFd, path::Path};

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value_t = 10_000)]
    iterations: usize,
    #[arg(long, default_value_t = 101)]
    leak: usize,
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

fn main() -> io::Result<()> {
    let args = Args::parse();
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            // Spread the leaks: the first `leak % threads` threads leak one more.
            let quota = args.leak / args.threads + usize::from(t < args.leak % args.threads);
            let iterations = args.iterations;
            std::thread::spawn(move || worker(quota, iterations))
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
