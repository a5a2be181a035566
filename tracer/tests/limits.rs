//! tracer at its limits, with real eBPF: a million descriptors held at once (more than the
//! kernel table holds by default) keep tracer's memory bounded, and everything it could not
//! account is counted and said, never lost silently.
mod common;

use std::{
    io::Read as _,
    os::unix::process::ExitStatusExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{demo, require_root, tracer};

/// Peak memory allowed to tracer while a million descriptors are held (the default kernel
/// table holds 262,144; the ring is 16 MiB, mapped twice).
const MAX_RSS_KIB: i64 = 400 << 10;

#[test]
fn a_million_descriptors_keep_tracer_bounded_and_drops_counted() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(tracer())
        .args(["run", "--json"])
        .arg(&json)
        .arg("--")
        .arg(demo("fd-bomb"))
        .args(["--total", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    // Bounded: wait4 with a deadline, then its peak memory.
    let started = Instant::now();
    let pid = child.id() as i32;
    let (status, rss_kib) = loop {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter; waits for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (std::process::ExitStatus::from_raw(status), usage.ru_maxrss);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("tracer with the fd bomb did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert_eq!(status.code(), Some(0), "{err}");
    let held: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the bomb's count: {out}"));
    assert!(held >= 900_000, "the bomb held {held} descriptors");
    let r = common::report_json(&std::fs::read(&json).unwrap());
    let e = &r["events"];
    let fd_map_full = e["drops"]["fd_map_full"].as_u64().unwrap();
    let accounted = e["acquired"].as_u64().unwrap();
    // Every descriptor held is accounted or counted as not accountable (the table is full).
    assert!(fd_map_full > 0, "{e}");
    assert!(accounted + fd_map_full >= held, "{e}, held {held}");
    assert!(
        accounted <= 262_144 + 1024,
        "the table's capacity bounds what is accounted: {e}"
    );
    assert!(e["lost"].as_u64().unwrap() >= fd_map_full, "{e}");
    // The report says so, and verification names what is missing in the bomb's children.
    assert!(err.contains("descriptor map full"), "{err}");
    let missing: u64 = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verify"]["missing"].as_u64().unwrap_or(0))
        .sum();
    // Less what the bomb opened (or inherited) and closed again while the table was full: the
    // ends of each child's socket pair that parent and child drop after the fork (a few per
    // child), counted, no longer open.
    assert!(
        missing <= fd_map_full && fd_map_full - missing <= 1000,
        "missing {missing}, fd_map_full {fd_map_full}"
    );
    assert!(
        rss_kib < MAX_RSS_KIB,
        "tracer peaked at {} MiB",
        rss_kib / 1024
    );
}
