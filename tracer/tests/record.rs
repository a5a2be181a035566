//! Record now, report later: the record of a real run gives the live run's report on its own
//! (no root, no traced binaries); cut-short, corrupt and newer records give one clear line.
mod common;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use common::{demo, require_root, run_with_timeout, tracer};

const LIMIT: Duration = Duration::from_secs(90);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `tracer report ARGS` as an unprivileged user (nobody), when setpriv exists.
fn report_unprivileged(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = common::tracer_as_nobody().unwrap_or_else(|| Command::new(tracer()));
    c.arg("report");
    for a in args {
        c.arg(a);
    }
    run_with_timeout(&mut c, LIMIT)
}

/// `tracer report REC --format json` as nobody (REC made readable first): its output and the
/// report.
fn report_json(dir: &Path, rec: &Path) -> (Output, serde_json::Value) {
    std::fs::set_permissions(rec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let json = dir.join("r.json");
    let r = report_unprivileged(&[&rec, &"--format", &"json", &"-o", &json]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let report = common::report_json(&std::fs::read(&json).unwrap());
    (r, report)
}

/// The process with this pid in a JSON report.
fn process(report: &serde_json::Value, pid: u32) -> &serde_json::Value {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} in {report:#}"))
}

/// A directory anyone can read and write (the unprivileged report writes there).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// Runs a copy of a demo under `tracer run --record`, then deletes the copy.
fn record_run(dir: &Path, name: &str, args: &[&str]) -> Output {
    require_root();
    let copy = dir.join(name);
    std::fs::copy(demo(name), &copy).expect("copy the demo");
    let out = run_with_timeout(
        Command::new(tracer())
            .args(["run", "--record"])
            .arg(dir.join("run.rec"))
            .arg("--json")
            .arg(dir.join("live.json"))
            .arg("-q")
            .arg("--")
            .arg(&copy)
            .args(args),
        LIMIT,
    );
    std::fs::remove_file(&copy).expect("remove the demo copy");
    std::fs::set_permissions(dir.join("run.rec"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    out
}

#[test]
fn report_from_a_record_is_the_live_report_without_root_or_binaries() {
    let dir = open_dir();
    let run = record_run(dir.path(), "http-leak", &["--count", "6", "--rate", "0"]);
    assert!(
        stderr(&run).contains("tracer: recorded "),
        "{}",
        stderr(&run)
    );
    let off = dir.path().join("offline.json");
    let rec = dir.path().join("run.rec");
    let o = report_unprivileged(&[&rec, &"--format", &"json", &"-o", &off]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no warning for a complete record");
    let live: serde_json::Value =
        common::report_json(&std::fs::read(dir.path().join("live.json")).unwrap());
    let offline: serde_json::Value = common::report_json(&std::fs::read(&off).unwrap());
    assert!(!live["processes"].as_array().unwrap().is_empty());
    assert_eq!(
        live, offline,
        "the record's report differs from the live one"
    );
    // The frames carry their module offsets and the modules' build ids are in the record.
    let data = std::fs::read(&rec).unwrap();
    assert!(data.starts_with(b"TRACEREC"));

    // --pid keeps one process; text goes to standard output.
    let pid = live["processes"][0]["pid"].as_u64().unwrap().to_string();
    let o = report_unprivileged(&[&rec, &"--pid", &pid]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("pid {pid} ")), "{text}");
}

#[test]
fn cut_short_corrupt_and_newer_records_say_what_and_where() {
    let dir = open_dir();
    record_run(dir.path(), "file-leak", &["--count", "4", "--rate", "0"]);
    let data = std::fs::read(dir.path().join("run.rec")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    // Cut anywhere after the first chunk: the prefix is reported, with one warning line.
    let first_chunk = 10 + 8 + u32::from_le_bytes(data[10..14].try_into().unwrap()) as usize;
    for cut in (first_chunk + 1..data.len()).step_by((data.len() / 9).max(1)) {
        let p = write("cut.rec", &data[..cut]);
        let o = report_unprivileged(&[&p]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "cut at {cut}: {e}");
        assert_eq!(e.lines().count(), 1, "cut at {cut}: {e}");
        assert!(
            e.contains("warning") && (e.contains("cut short at byte") || e.contains("no end")),
            "{e}"
        );
    }
    // One line and a failure exit for everything else, never a panic.
    let mut flipped = data.clone();
    let mid = first_chunk + (data.len() - first_chunk) / 2;
    flipped[mid] ^= 0x5a;
    let mut newer = data.clone();
    newer[8] = 0xff;
    newer[9] = 0xff;
    for (name, bytes, expect) in [
        ("flipped.rec", flipped, "corrupt chunk at byte"),
        ("newer.rec", newer, "version 65535 is newer"),
        (
            "text.rec",
            b"hello, this is not a record\n".to_vec(),
            "not a tracer record",
        ),
        ("empty.rec", Vec::new(), "not a tracer record"),
        ("header.rec", data[..12].to_vec(), "nothing was recorded"),
    ] {
        let p = write(name, &bytes);
        let o = report_unprivileged(&[&p]);
        let e = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{name}: {e}");
        assert_eq!(e.lines().count(), 1, "{name}: {e}");
        assert!(
            e.starts_with("tracer: ") && e.contains(expect),
            "{name}: {e}"
        );
        assert!(e.contains(name), "{name}: the line names the file: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    let o = report_unprivileged(&[&dir.path().join("missing.rec")]);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_ne!(o.status.code(), Some(0));

    // An older format version, a pid the record does not hold, a report over its own record.
    let mut older = data.clone();
    older[8] = 1;
    older[9] = 0;
    let older = write("older.rec", &older);
    let whole = write("whole.rec", &data);
    let r = whole.to_str().unwrap();
    for (args, expect) in [
        (vec![older.to_str().unwrap()], "version 1 is older"),
        (vec![r, "--pid", "1"], "pid 1 is not in"),
        (
            vec![r, "--format", "json", "-o", r],
            "would overwrite the record",
        ),
    ] {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let o = report_unprivileged(&args);
        let e = stderr(&o);
        assert_eq!((o.status.code(), e.lines().count()), (Some(125), 1), "{e}");
        assert!(e.contains(expect), "{e}");
    }
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        data,
        "the record is untouched"
    );
}

#[test]
fn record_command_with_a_size_limit_says_where_it_stopped() {
    require_root();
    let dir = open_dir();
    let rec = dir.path().join("big.rec");
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["record", "--max-size", "1", "-o"])
            .arg(&rec)
            .arg("--")
            .arg(demo("stress"))
            .args(["--threads", "4", "--iterations", "25000", "--leak", "7"]),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("reached --max-size"), "{e}");
    assert!(e.contains("later changes left out"), "{e}");
    let size = std::fs::metadata(&rec).unwrap().len();
    assert!(size <= 1 << 20, "{size} bytes");
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = report_unprivileged(&[&rec, &"--format", &"json", &"--fail-on-leak"]);
    // Releases after the stop are not in the record: no descriptor open at that point is
    // called a leak, and the report says what is missing.
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("recording stopped at --max-size"),
        "{}",
        stderr(&r)
    );
    let report: serde_json::Value = common::report_json(&r.stdout);
    assert!(
        report["incomplete"]
            .as_str()
            .is_some_and(|s| s.contains("--max-size")),
        "{}",
        report["incomplete"]
    );
    let verdicts: Vec<&serde_json::Value> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["leaks"].as_array().unwrap())
        .map(|g| &g["verdict"])
        .collect();
    assert!(
        !verdicts.is_empty(),
        "the record holds the demo's descriptors"
    );
    assert!(verdicts.iter().all(|v| *v == "unclosed"), "{verdicts:?}");
}

#[test]
fn record_attaches_to_a_running_process() {
    require_root();
    let dir = open_dir();
    let rec = dir.path().join("pid.rec");
    let mut target = Command::new(demo("file-leak"))
        .args(["--count", "6", "--rate", "4"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let pid = target.id();
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["record", "-o"])
            .arg(&rec)
            .args(["--pid", &pid.to_string(), "--duration", "30"]),
        LIMIT,
    );
    let _ = target.wait();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, report) = report_json(dir.path(), &rec);
    let p = process(&report, pid);
    assert!(p["pre_existing"].is_array(), "{p:#}");
    assert_eq!(p["verify"]["status"], "exact", "{p:#}");
}

#[test]
fn a_recorder_killed_with_sigkill_leaves_a_readable_record() {
    require_root();
    let dir = open_dir();
    let rec = dir.path().join("killed.rec");
    let mut target = Command::new(demo("file-leak"))
        .args(["--count", "40", "--rate", "10"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let pid = target.id();
    let mut recorder = Command::new(tracer())
        .args(["record", "-o"])
        .arg(&rec)
        .args(["--pid", &pid.to_string(), "--duration", "60"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tracer record");
    // Once it records (the adopted descriptors are written when it has attached), let it
    // record a second of leaks, then kill it mid-write.
    let attached = std::time::Instant::now();
    while std::fs::metadata(&rec).map_or(0, |m| m.len()) < 1024 {
        assert!(
            attached.elapsed() < Duration::from_secs(30),
            "tracer record did not start recording"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    recorder.kill().expect("SIGKILL tracer");
    let _ = recorder.wait();
    let _ = target.kill();
    let _ = target.wait();

    let (r, report) = report_json(dir.path(), &rec);
    let e = stderr(&r);
    assert!(
        e.contains("has no end (the recording was interrupted)"),
        "{e}"
    );
    let p = process(&report, pid);
    // What was recorded before the kill is there, with its symbolized stack.
    let g = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| common::frame(g, "follow").is_some())
        .unwrap_or_else(|| panic!("the leak in follow: {p:#}"));
    assert!(g["count"].as_u64().unwrap() >= 1, "{g:#}");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// A `size`-byte tmpfs, or None (see `common::skip`).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            common::skip("cannot mount a tmpfs");
            return None;
        }
        Some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_stops_the_record_not_the_run() {
    require_root();
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let rec = disk.0.path().join("full.rec");
    let dir = open_dir();
    let json = dir.path().join("live.json");
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["run", "-q", "--record"])
            .arg(&rec)
            .arg("--json")
            .arg(&json)
            .arg("--")
            .arg(demo("stress"))
            .args(["--threads", "4", "--iterations", "20000", "--leak", "7"]),
        LIMIT,
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    // Where ENOSPC strikes (a chunk's write or its flush) varies; the reason is always given.
    assert!(
        e.contains("stopped:") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(e.contains("is incomplete"), "{e}");
    // The run's own report is whole.
    let live: serde_json::Value = common::report_json(&std::fs::read(&json).unwrap());
    let leaked: u64 = live["processes"][0]["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(leaked, 7, "{live:#}");

    // The record holds what came before the disk filled.
    let out = dir.path().join("cut.json");
    let r = run_with_timeout(
        Command::new(tracer())
            .arg("report")
            .arg(&rec)
            .args(["--format", "json", "-o"])
            .arg(&out),
        LIMIT,
    );
    let e = stderr(&r);
    assert_eq!(r.status.code(), Some(0), "{e}");
    assert!(e.contains("is cut short at byte"), "{e}");
    let cut: serde_json::Value = common::report_json(&std::fs::read(&out).unwrap());
    assert!(
        cut["exit_code"].is_null(),
        "exit code unknown: {}",
        cut["exit_code"]
    );
    assert!(cut["events"]["acquired"].as_u64().unwrap() > 0);
    assert!(cut["duration_ms"].as_u64().unwrap() > 0);
}

#[test]
fn record_duration_ends_the_command_and_records_its_exit() {
    require_root();
    let dir = open_dir();
    let rec = dir.path().join("d.rec");
    let start = std::time::Instant::now();
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["record", "--duration", "1", "-o"])
            .arg(&rec)
            .args(["--", "sleep", "60"]),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr(&o).contains("--duration reached"), "{}", stderr(&o));
    let r = run_with_timeout(
        Command::new(tracer())
            .arg("report")
            .arg(&rec)
            .args(["--format", "json"]),
        LIMIT,
    );
    let report: serde_json::Value = common::report_json(&r.stdout);
    assert_eq!(report["exit_code"], 128 + 15, "ended by SIGTERM");
    let p = &report["processes"][0];
    assert_eq!(
        (&p["comm"], &p["signal"]),
        (&"sleep".into(), &15.into()),
        "{p:#}"
    );
}
