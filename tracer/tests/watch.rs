//! Live forensics for real: attaching to running demos, suspects, CLOSE_WAIT, EMFILE, ends.
mod common;

use std::{
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{demo, frame, leak_line, require_root, run_watching_stderr, run_with_timeout, tracer};
use serde_json::Value;

/// A demo process, killed when the test ends.
struct Demo(Child);

impl Demo {
    /// What lets a `--wait` demo start once tracer has attached.
    fn go_signal(&mut self) -> impl FnMut(&str) + Send + 'static {
        let mut stdin = self.0.stdin.take();
        move |line| {
            if line.starts_with("tracer: attached to pid")
                && let Some(mut s) = stdin.take()
            {
                s.write_all(b"go\n").expect("demo stdin");
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a demo; if `ready` is given, waits (bounded) for a stdout line starting with it.
fn start(name: &str, args: &[&str], ready: Option<&str>) -> Demo {
    let mut child = Command::new(demo(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let want = ready.map(str::to_string);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if want.as_deref().is_some_and(|w| line.starts_with(w)) {
                let _ = tx.send(());
            }
        }
    });
    if ready.is_some() {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("demo did not get ready");
    }
    Demo(child)
}

/// Runs `tracer ARGS --json FILE`; returns the report, tracer's stdout, and how long it took.
fn watch(args: &[String]) -> (Value, String, Duration) {
    watch_then(args, |_| {})
}

/// [`watch`], with `on_stderr` seeing tracer's stderr lines as they come.
fn watch_then(
    args: &[String],
    on_stderr: impl FnMut(&str) + Send + 'static,
) -> (Value, String, Duration) {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let started = Instant::now();
    let out = run_watching_stderr(
        Command::new(tracer()).args(args).arg("--json").arg(&json),
        Duration::from_secs(60),
        on_stderr,
    );
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = common::report_json(&std::fs::read(&json).expect("json"));
    (
        report,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        took,
    )
}

fn process(report: &Value, pid: u32) -> &Value {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in report: {report:#}"))
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn attach_sees_pre_existing_then_a_growing_suspect() {
    // 30 requests leak 30 descriptors, then the load pauses while tracer attaches.
    let d = start(
        "leaky-server",
        &[
            "--rate",
            "50",
            "--pause-after",
            "30",
            "--pause",
            "3",
            "--duration",
            "30",
        ],
        Some("[PAUSE]"),
    );
    let pid = d.0.id();
    let (report, stdout, took) = watch(&strs(&[
        "--pid",
        &pid.to_string(),
        "--interval",
        "1",
        "--duration",
        "8",
        "--min-age",
        "600",
    ]));
    assert!(took < Duration::from_secs(12), "--duration 8 took {took:?}");
    let p = process(&report, pid);
    assert_eq!(p["running"], true);
    let pre = p["pre_existing"].as_array().unwrap();
    let audit: Vec<_> = pre
        .iter()
        .filter(|d| {
            d["resource"]
                .as_str()
                .unwrap()
                .contains("tracer-demo-audit-")
        })
        .collect();
    assert_eq!(audit.len(), 30, "pre-existing: {pre:#?}");
    assert!(audit.iter().all(|d| d["kind"] == "file"));
    let leaks = p["leaks"].as_array().unwrap();
    let g = leaks
        .iter()
        .find(|g| frame(g, "audit").is_some())
        .unwrap_or_else(|| panic!("no group at handle: {leaks:#?}"));
    assert_eq!(g["verdict"], "suspect");
    assert!(g["count"].as_u64().unwrap() >= 50, "{g:#}");
    assert_eq!(g["count"], g["acquired"]);
    assert!(g["growth_per_min"].as_f64().unwrap() > 100.0, "{g:#}");
    let f = frame(g, "audit").unwrap();
    assert_eq!(f["line"], leak_line("demos/src/bin/leaky-server.rs", ""));
    assert!(
        f["file"]
            .as_str()
            .unwrap()
            .ends_with("demos/src/bin/leaky-server.rs")
    );
    // The live view showed it while it ran.
    assert!(stdout.contains("SUSPECT"), "{stdout}");
    assert!(
        stdout.contains(&format!("pid {pid} leaky-server:")),
        "{stdout}"
    );
    assert!(stdout.contains("open before attach"), "{stdout}");
}

#[test]
fn close_wait_sockets_are_counted_per_site() {
    let mut d = start(
        "close-wait",
        &["--count", "7", "--wait", "--hold", "10"],
        None,
    );
    let pid = d.0.id();
    let (report, _, _) = watch_then(
        &strs(&["-p", &pid.to_string(), "--interval", "1", "--duration", "5"]),
        d.go_signal(),
    );
    let p = process(&report, pid);
    let g = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| frame(g, "fetch").is_some())
        .expect("group at fetch");
    assert_eq!(g["count"], 7);
    assert_eq!(g["close_wait"], 7);
    assert!(g["close_wait_oldest_ms"].as_u64().unwrap() >= 1000, "{g:#}");
    for r in g["resources"].as_array().unwrap() {
        assert!(r.as_str().unwrap().ends_with(" CLOSE_WAIT"), "{r}");
    }
    let f = frame(g, "fetch").unwrap();
    assert_eq!(f["line"], leak_line("demos/src/bin/close-wait.rs", ""));
}

#[test]
fn emfile_is_reported_with_its_call_site_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("emfile.json");
    let mut d = start(
        "emfile",
        &["--retries", "12", "--wait", "--hold", "10"],
        None,
    );
    let pid = d.0.id();
    let (report, _, _) = watch_then(
        &[
            "--pid".into(),
            pid.to_string(),
            "--interval".into(),
            "1".into(),
            "--duration".into(),
            "4".into(),
            "--on-emfile".into(),
            snapshot.display().to_string(),
        ],
        d.go_signal(),
    );
    for r in [
        &report,
        &common::report_json(&std::fs::read(&snapshot).expect("--on-emfile file")),
    ] {
        let hits = process(r, pid)["limit_hits"].as_array().unwrap().clone();
        let h = hits
            .iter()
            .find(|h| frame(h, "cache_open").is_some())
            .unwrap_or_else(|| panic!("{hits:#?}"));
        assert_eq!(h["errno"], "EMFILE");
        assert_eq!(h["count"], 12);
        assert_eq!(
            frame(h, "cache_open").unwrap()["line"],
            leak_line("demos/src/bin/emfile.rs", "")
        );
    }
}

#[test]
fn ends_when_the_target_exits_with_its_report() {
    let mut d = start(
        "close-wait",
        &["--count", "3", "--wait", "--hold", "1"],
        None,
    );
    let pid = d.0.id();
    let (report, _, took) = watch_then(
        &strs(&[
            "--pid",
            &pid.to_string(),
            "--interval",
            "1",
            "--duration",
            "30",
        ]),
        d.go_signal(),
    );
    assert!(
        took < Duration::from_secs(15),
        "did not stop when the target exited: {took:?}"
    );
    let p = process(&report, pid);
    assert_eq!(p["running"], false);
    assert_eq!(p["exit_code"], 0);
}

#[test]
fn bad_pid_is_one_clear_line() {
    require_root();
    let out = run_with_timeout(
        Command::new(tracer()).args(["--pid", "999999999"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tracer: no process with pid 999999999\n"
    );
}

#[test]
fn system_wide_by_name_finds_the_leaking_process() {
    let d = start(
        "leaky-server",
        &["--rate", "40", "--duration", "30"],
        Some("[START]"),
    );
    let pid = d.0.id();
    let (report, stdout, _) = watch(&strs(&[
        "--comm",
        "leaky-server",
        "--interval",
        "1",
        "--duration",
        "5",
    ]));
    let p = process(&report, pid);
    assert_eq!(p["comm"], "leaky-server");
    assert!(p.get("pre_existing").is_none());
    // Running before tracer: what it held then is adopted at first sight, so its accounting
    // matches its descriptor table.
    assert_eq!(p["verify"]["status"], "exact", "{p:#}");
    let g = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| frame(g, "audit").is_some())
        .expect("group at handle");
    assert_eq!(g["verdict"], "suspect");
    // Only the named process: tracer itself and others are not in the report.
    let comms: Vec<&serde_json::Value> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["comm"])
        .collect();
    assert!(
        !comms.is_empty() && comms.iter().all(|c| *c == "leaky-server"),
        "{comms:?}"
    );
    assert!(
        stdout.contains("top processes by descriptor growth"),
        "{stdout}"
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn system_wide_sees_a_short_lived_process_whole() {
    require_root();
    let Some(bin) = common::program("c-leaky") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let mut tracer = Command::new(tracer())
        .args([
            "--comm",
            "c-leaky",
            "--interval",
            "1",
            "--duration",
            "5",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tracer");
    // The first live frame means every probe is attached.
    let stdout = tracer.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(());
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("tracer printed its live view");
    // Started by this (untraced) test and gone within milliseconds.
    let leaky = run_with_timeout(Command::new(&bin).arg("2"), Duration::from_secs(30));
    assert!(leaky.status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while tracer.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "tracer did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report: Value = common::report_json(&std::fs::read(&json).expect("report"));
    let p = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"] == "c-leaky")
        .unwrap_or_else(|| panic!("c-leaky in {report:#}"));
    assert_eq!(p["exit_code"], 0, "{p:#}");
    // Its inherited descriptors (stdin, ...) are the untraced parent's: accounted as such.
    assert_eq!(p["verify"]["status"], "exact", "{p:#}");
    let g = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| frame(g, "leak_file").is_some())
        .unwrap_or_else(|| panic!("a stack through leak_file: {p:#}"));
    assert_eq!(g["count"], 2);
    assert!(frame(g, "main").is_some(), "{g:#}");
    assert_eq!(report["events"]["drops"]["stacks_unmapped"], 0);
}
