//! The log-aggregator scenario: a directory of log files, half of them with a corrupt first
//! record, ingested by a `follow` function that each binary supplies.
use std::{
    fs::{self, File},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use crate::{DemoArgs, Progress};

/// Files being followed; an entry is removed once its file has been read to the end.
pub static TAILERS: Mutex<Vec<(PathBuf, BufReader<File>)>> = Mutex::new(Vec::new());

/// The tailer table.
pub fn tailers() -> MutexGuard<'static, Vec<(PathBuf, BufReader<File>)>> {
    TAILERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads every record of the newest tailer; fails on the first corrupt record.
pub fn read_records(reader: &mut BufReader<File>) -> io::Result<usize> {
    let mut records = 0;
    for line in reader.lines() {
        let line = line?;
        if !line.starts_with("2026-") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt record"));
        }
        records += 1;
    }
    Ok(records)
}

/// Writes `2 * count` log files (every other one corrupt) and feeds each to `follow`.
pub fn run(args: &DemoArgs, follow: fn(&Path) -> io::Result<usize>) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("tracer-demo-logs-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let mut paths = Vec::new();
    for i in 0..2 * args.count {
        let path = dir.join(format!("app-{i:04}.log"));
        let mut f = File::create(&path)?;
        if i % 2 == 1 {
            writeln!(f, "\u{0}\u{0}garbage")?;
        }
        writeln!(f, "2026-11-25T10:00:00Z INFO request served")?;
        paths.push(path);
    }
    let mut progress = Progress::start("files opened");
    let (mut records, mut errors) = (0, 0);
    for (i, path) in paths.iter().enumerate() {
        match follow(path) {
            Ok(n) => records += n,
            Err(_) => errors += 1,
        }
        progress.tick(i + 1);
        args.pace();
    }
    progress.finish(paths.len());
    println!("ingested {records} records, {errors} files rejected");
    fs::remove_dir_all(&dir)
}
