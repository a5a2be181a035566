//! file-leak: a log aggregator that loses the handle on an error path. A file whose first record
//! is corrupt stays in the tailer table, never read again and never closed: `--count` leaked
//! descriptors when the process exits.
use std::{fs::File, io, io::BufReader, path::Path};

use clap::Parser;
use demos::{DemoArgs, logs};

/// Follows a log file until its end.
fn follow(path: &Path) -> io::Result<usize> {
    let file = File::open(path)?; // tracer-demo: leak site
    let mut tailers = logs::tailers();
    tailers.push((path.to_path_buf(), BufReader::new(file)));
    let Some((_, reader)) = tailers.last_mut() else {
        return Ok(0);
    };
    // BUG: on a corrupt record `?` returns with the tailer still registered.
    let records = logs::read_records(reader)?;
    tailers.pop();
    Ok(records)
}

fn main() -> io::Result<()> {
    logs::run(&DemoArgs::parse(), follow)
}
