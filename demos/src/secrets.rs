//! The secrets scenario: a service opens its secret files, then runs a helper program (itself,
//! with `--child`), which reports how many descriptors it was born with.
use std::{ffi::CString, fs, io, os::unix::ffi::OsStrExt, path::Path, process::Command};

use clap::Parser;

use crate::{DemoArgs, Progress, open_fds};

/// Entry of the helper process.
pub fn child() -> io::Result<()> {
    println!("[helper] open fds at start: {}", open_fds()?);
    std::thread::sleep(std::time::Duration::from_millis(100));
    Ok(())
}

/// A path as a C string.
pub fn c_path(path: &Path) -> io::Result<CString> {
    Ok(CString::new(path.as_os_str().as_bytes())?)
}

/// Writes `count` secrets, loads them with `load`, runs the helper, then closes the secrets.
pub fn run(load: fn(&Path) -> io::Result<i32>) -> io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--child") {
        return child();
    }
    let args = &DemoArgs::parse();
    let dir = std::env::temp_dir().join(format!("tracer-demo-secrets-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let mut progress = Progress::start("secrets loaded");
    let mut fds = Vec::new();
    for i in 0..args.count {
        let path = dir.join(format!("key-{i:03}.pem"));
        fs::write(&path, "-----BEGIN PRIVATE KEY-----\n")?;
        fds.push(load(&path)?);
        progress.tick(i + 1);
        args.pace();
    }
    progress.finish(args.count);
    let status = Command::new(std::env::current_exe()?)
        .arg("--child")
        .status()?;
    println!("helper exited with {status}");
    for fd in fds {
        // SAFETY: our own descriptors, closed once.
        unsafe { libc::close(fd) };
    }
    fs::remove_dir_all(&dir)
}
