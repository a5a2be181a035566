//! file-fixed: file-leak's twin; the tailer is unregistered (and the file closed) on every path.
use std::{fs::File, io, io::BufReader, path::Path};

use clap::Parser;
use demos::{DemoArgs, logs};

/// Follows a log file until its end.
fn follow(path: &Path) -> io::Result<usize> {
    let file = File::open(path)?;
    let mut tailers = logs::tailers();
    tailers.push((path.to_path_buf(), BufReader::new(file)));
    let Some((_, reader)) = tailers.last_mut() else {
        return Ok(0);
    };
    let records = logs::read_records(reader);
    tailers.pop();
    records
}

fn main() -> io::Result<()> {
    logs::run(&DemoArgs::parse(), follow)
}
