//! Helpers for tests that run tracer for real: as root, with real eBPF, on real programs.
#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The tracer binary under test.
pub fn tracer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracer"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the Rust demos are built (`cargo xtask test` sets it).
pub fn demo(name: &str) -> PathBuf {
    let dir = std::env::var_os("TRACER_TEST_DEMOS")
        .map_or_else(|| workspace().join("target/release"), PathBuf::from);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} missing: build the demos first (cargo xtask test does)",
        path.display()
    );
    path
}

/// Whether the suite runs under CI (`CI=true`), where a test that cannot run fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Says that the running test cannot run here and why. Under CI that fails the test (a tool
/// the suite needs is missing); otherwise the test is skipped, printed, and noted for the
/// summary `cargo xtask test` prints at the end.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    assert!(!under_ci(), "{test} cannot run under CI: {why}");
    eprintln!("SKIPPED: {why}");
    if let Some(log) = std::env::var_os("TRACER_SKIPPED_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// A C, C++ or Go program built by `cargo xtask build`, or None when its compiler could not
/// be installed (see [`skip`]).
pub fn program(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TRACER_TEST_PROGRAMS")
        .map_or_else(|| workspace().join("target/programs"), PathBuf::from);
    let path = dir.join(name);
    if path.is_file() {
        Some(path)
    } else {
        skip(&format!(
            "{} was not built (its compiler, gcc, g++ or golang-go, is missing)",
            path.display()
        ));
        None
    }
}

/// Fails the test early unless we can load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load real eBPF programs: run them as root (cargo xtask test)"
    );
}

/// Runs a command, killing it after `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    run_watching_stderr(cmd, limit, |_| {})
}

/// Runs a command, killing it after `limit`; `on_line` sees each line of its stderr as it comes.
pub fn run_watching_stderr(
    cmd: &mut Command,
    limit: Duration,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let reader_err = thread::spawn(move || {
        let mut v = Vec::new();
        let mut lines = BufReader::new(&mut err);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            on_line(&String::from_utf8_lossy(&line));
            v.append(&mut line);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: reader_out.join().expect("stdout reader"),
        stderr: reader_err.join().expect("stderr reader"),
    }
}

/// The result of one `tracer run`.
pub struct Traced {
    pub report: Value,
    pub output: Output,
}

impl Traced {
    /// Every group of every process.
    pub fn groups(&self) -> Vec<&Value> {
        self.report["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .flat_map(|p| p["leaks"].as_array().expect("leaks"))
            .collect()
    }

    /// Groups with a verdict that fails `--fail-on-leak` (`leak`, `inherited`).
    pub fn leaks(&self) -> Vec<&Value> {
        self.groups()
            .into_iter()
            .filter(|g| g["verdict"] == "leak" || g["verdict"] == "inherited")
            .collect()
    }

    /// Asserts that the accounting of every process matched its descriptor table exactly
    /// (checked by the kernel at exit, or from /proc for processes still running); only a
    /// process whose exit record was lost, and reported so, goes unchecked.
    pub fn assert_verified(&self) {
        for p in self.processes() {
            let v = &p["verify"];
            assert!(
                v.is_object() || p["running"] == true || p["exit_unseen"] == true,
                "pid {} exited without a verification:\n{}",
                p["pid"],
                self.summary()
            );
            if v.is_object() {
                assert_eq!(
                    v["status"],
                    "exact",
                    "pid {} {}: accounting does not match the kernel: {v}\n{}",
                    p["pid"],
                    p["comm"],
                    self.summary()
                );
                assert_eq!(v["open"], v["exact"], "{v}");
            }
        }
    }

    /// The one group whose stack has a frame in `function` (fails if none or several).
    pub fn group_at(&self, function: &str) -> &Value {
        let found: Vec<&Value> = self
            .groups()
            .into_iter()
            .filter(|g| frame(g, function).is_some())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one group with {function} in its stack, got {}:\n{}",
            found.len(),
            self.summary()
        );
        found[0]
    }

    /// The process with this pid's `comm` prefix... by predicate.
    pub fn processes(&self) -> &Vec<Value> {
        self.report["processes"].as_array().expect("processes")
    }

    /// A short text of the groups, for failure messages.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for p in self.processes() {
            s += &format!("pid {} {}\n", p["pid"], p["comm"]);
            for g in p["leaks"].as_array().expect("leaks") {
                let own: Vec<String> = g["stack"]
                    .as_array()
                    .expect("stack")
                    .iter()
                    .filter(|f| f["own_code"] == true)
                    .map(|f| format!("{}:{}", f["function"], f["line"]))
                    .collect();
                let top: Vec<String> = g["stack"]
                    .as_array()
                    .expect("stack")
                    .iter()
                    .take(4)
                    .map(|f| format!("{}@{}", f["function"], f["module"]))
                    .collect();
                s += &format!(
                    "  {} {} count={} calls={} syscall={} own={own:?} top={top:?} depth={}\n",
                    g["verdict"],
                    g["kind"],
                    g["count"],
                    g["calls"],
                    g["syscall"],
                    g["stack"].as_array().map_or(0, Vec::len)
                );
            }
        }
        s += &format!("events: {}\n", self.report["events"]);
        s += &String::from_utf8_lossy(&self.output.stderr);
        s
    }
}

/// The first frame of `group`'s stack whose function ends with `function`.
pub fn frame<'a>(group: &'a Value, function: &str) -> Option<&'a Value> {
    group["stack"].as_array()?.iter().find(|f| {
        f["function"].as_str().is_some_and(|n| {
            n == function
                || n.ends_with(&format!("::{function}"))
                || n.ends_with(&format!(".{function}"))
        })
    })
}

/// `tracer` run as user nobody without capabilities (setpriv), or None without setpriv (see
/// [`skip`]).
pub fn tracer_as_nobody() -> Option<Command> {
    if Command::new("setpriv").arg("--help").output().is_err() {
        skip("setpriv (util-linux) is not installed");
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(tracer());
    Some(c)
}

/// Runs `tracer run --json` on a command and parses the report.
pub fn trace(tracer_args: &[&str], cmd: &[&dyn AsRef<std::ffi::OsStr>], limit: Duration) -> Traced {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let mut c = Command::new(tracer());
    c.arg("run")
        .arg("--json")
        .arg(&json)
        .args(tracer_args)
        .arg("--");
    for a in cmd {
        c.arg(a);
    }
    let output = run_with_timeout(&mut c, limit);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); tracer exited {:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report = report_json(text.as_bytes());
    let traced = Traced { report, output };
    traced.assert_verified();
    traced
}

/// The JSON report's schema (tracer/schema/report.schema.json, documented in the README).
fn report_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/report.schema.json"
        )))
        .expect("the report schema is JSON");
        jsonschema::validator_for(&schema).expect("the report schema is a valid JSON Schema")
    })
}

/// Parses a JSON report, failing the test unless it matches the report's schema.
pub fn report_json(bytes: &[u8]) -> Value {
    let report: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "the report is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    let errors: Vec<String> = report_schema()
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match schema/report.schema.json: {errors:#?}"
    );
    report
}

/// Line of the `tracer-demo: leak site` marker (with an optional label) in a source file.
pub fn leak_line(source: &str, label: &str) -> u64 {
    let path = workspace().join(source);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let marker = if label.is_empty() {
        "tracer-demo: leak site".to_string()
    } else {
        format!("tracer-demo: leak site ({label})")
    };
    let hits: Vec<u64> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.contains(&marker) && (!label.is_empty() || !l.contains("tracer-demo: leak site ("))
        })
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(hits.len(), 1, "one marker {marker:?} in {source}");
    hits[0]
}

/// Asserts that `group`'s stack has `function` at `source:line` marked as the program's code.
pub fn assert_frame(group: &Value, function: &str, source: &str, line: u64) {
    let f = frame(group, function)
        .unwrap_or_else(|| panic!("no {function} in stack: {:#}", group["stack"]));
    let file = f["file"].as_str().unwrap_or("");
    assert!(
        file.ends_with(source),
        "{function} in {file}, expected {source}"
    );
    assert_eq!(f["line"], line, "line of {function}");
    assert_eq!(f["own_code"], true, "{function} is the program's own code");
}

/// Sum of a numeric field over groups.
pub fn sum(groups: &[&Value], field: &str) -> u64 {
    groups.iter().map(|g| g[field].as_u64().unwrap_or(0)).sum()
}
