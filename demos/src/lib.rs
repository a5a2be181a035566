//! What the demo programs share: their command line and the live progress line, read from
//! `/proc/self/fd` like an operator watching the service would.
use std::{
    io,
    time::{Duration, Instant},
};

use clap::Parser;

/// Command line common to every demo.
#[derive(Debug, Parser)]
pub struct DemoArgs {
    /// How many resources the leaky version leaks (the fixed twin does the same work).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Operations per second (0: as fast as possible).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
}

impl DemoArgs {
    /// Sleeps between operations to keep the configured rate.
    pub fn pace(&self) {
        if self.rate > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(1.0 / self.rate));
        }
    }

    /// The pause between operations (async demos sleep with their runtime's timer).
    pub fn interval(&self) -> Option<Duration> {
        (self.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / self.rate))
    }
}

/// Blocks until a line (or end of file) arrives on stdin: the go signal of `--wait`.
pub fn wait_for_line() -> io::Result<()> {
    io::stdin().read_line(&mut String::new()).map(drop)
}

/// Descriptors this process has open now.
pub fn open_fds() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Prints "[AFTER 2s] open fds: 108 | files opened: 100" once a second.
pub struct Progress {
    start: Instant,
    last: Instant,
    what: &'static str,
}

impl Progress {
    /// Prints the starting descriptor count; `what` names the counter ("files opened").
    pub fn start(what: &'static str) -> Self {
        println!("[START] open fds: {}", open_fds().unwrap_or(0));
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            what,
        }
    }

    /// Reports `done` operations if a second has passed since the last line.
    pub fn tick(&mut self, done: usize) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            self.line(done);
        }
    }

    /// The final line.
    pub fn finish(&mut self, done: usize) {
        self.line(done);
    }

    fn line(&self, done: usize) {
        println!(
            "[AFTER {}s] open fds: {} | {}: {done}",
            self.start.elapsed().as_secs(),
            open_fds().unwrap_or(0),
            self.what
        );
    }
}

pub mod collector;
pub mod gateway;
pub mod jobs;
pub mod logs;
pub mod secrets;
pub mod uring;
pub mod workers;
