//! Moments after tracer exits, none of its eBPF programs remain in the kernel (the syscall
//! tracepoints are detached by a short-lived child, off tracer's exit path). Its own test
//! binary: cargo runs test binaries one at a time, so no other tracer is running meanwhile.
mod common;

use std::{process::Command, thread, time::Duration};

use common::{require_root, run_with_timeout, tracer};

/// Every program tracer attaches (kernel names are cut to 15 bytes).
const OURS: [&str; 10] = [
    "sock_state",
    "sys_enter",
    "sys_exit",
    "proc_fork",
    "proc_exec",
    "proc_exit",
    "io_submit",
    "io_complete",
    "go_spawn",
    "go_exit",
];

fn loaded() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| OURS.contains(&n.as_str()))
        .collect()
}

/// Programs are freed after an RCU grace period once their last reference goes: give the kernel
/// a bounded moment.
fn gone() -> bool {
    for _ in 0..100 {
        if loaded().is_empty() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn nothing_stays_attached() {
    require_root();
    assert!(gone(), "programs left by something else: {:?}", loaded());
    let mut child = Command::new(tracer())
        .args(["run", "-q", "--", "sleep", "3"])
        .spawn()
        .expect("spawn tracer");
    // While it runs, its programs are there (so the check below can fail).
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = loaded();
        if seen.len() == OURS.len() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen.len(), OURS.len(), "{seen:?}");
    assert!(child.wait().expect("wait").success());
    assert!(gone(), "left attached: {:?}", loaded());
    // Also when tracer is killed outright (links are owned by its descriptors).
    let mut child = Command::new(tracer())
        .args(["run", "-q", "--", "sleep", "30"])
        .spawn()
        .expect("spawn tracer");
    for _ in 0..100 {
        if loaded().len() == OURS.len() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9 tracer");
    child.wait().expect("wait");
    assert!(gone(), "left attached after SIGKILL: {:?}", loaded());
    // Also after watching a live process until --duration.
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let o = run_with_timeout(
        Command::new(tracer()).args([
            "--pid",
            &sleeper.id().to_string(),
            "--duration",
            "1",
            "--interval",
            "0.5",
        ]),
        Duration::from_secs(30),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(gone(), "left attached after watching: {:?}", loaded());
    // Also after a failed run (command not found).
    let o = run_with_timeout(
        Command::new(tracer()).args(["run", "--", "/nonexistent/cmd"]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(127));
    assert!(gone(), "left attached: {:?}", loaded());
}
