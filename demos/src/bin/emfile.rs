//! emfile: a cache of open files that never evicts, in a process whose descriptor limit is low
//! (it lowers its own RLIMIT_NOFILE to `--limit`): opening fails with EMFILE ("too many open
//! files"), and the cache retries `--retries` times before giving up.
use std::{fs::File, io, path::Path};

use clap::Parser;
use demos::Progress;

#[derive(Parser)]
struct Args {
    /// Soft RLIMIT_NOFILE to run with.
    #[arg(long, default_value_t = 64)]
    limit: u64,
    /// Failed opens (EMFILE) before giving up.
    #[arg(long, default_value_t = 12)]
    retries: usize,
    /// Wait for a line on stdin before starting (to attach a tracer first).
    #[arg(long)]
    wait: bool,
    /// Seconds to stay alive afterwards.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
}

/// Opens a file into the cache.
fn cache_open(path: &Path, cache: &mut Vec<File>) -> io::Result<()> {
    let file = File::open(path)?; // tracer-demo: leak site
    cache.push(file);
    Ok(())
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    if args.wait {
        demos::wait_for_line()?;
    }
    let lim = libc::rlimit {
        rlim_cur: args.limit,
        rlim_max: args.limit,
    };
    // SAFETY: setrlimit reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut progress = Progress::start("files cached");
    let mut cache = Vec::new();
    let mut failures = 0;
    while failures < args.retries {
        match cache_open(Path::new("/etc/hostname"), &mut cache) {
            Ok(()) => progress.tick(cache.len()),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => failures += 1,
            Err(e) => return Err(e),
        }
    }
    progress.finish(cache.len());
    println!(
        "EMFILE after {} files; gave up after {failures} failures",
        cache.len()
    );
    std::thread::sleep(std::time::Duration::from_secs_f64(args.hold));
    Ok(())
}
