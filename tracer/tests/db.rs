//! Connection pools against a real PostgreSQL (a throwaway cluster per test, always stopped):
//! the db-leak demo's connections attributed to its queryUser with the exact count, each
//! socket's peer a postgres backend, held far longer than any query; the fixed twin gives
//! every connection back; peers come back from a record and show in the live view.
mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{leak_line, program, require_root, run_with_timeout, skip, trace, tracer};
use pgcluster::Cluster;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);

const LEAK_SOURCE: &str = "demos/go/db/db-leak/main.go";

/// A throwaway cluster for one test, or None without PostgreSQL (a failure under CI).
fn postgres() -> Option<Cluster> {
    require_root();
    if pgcluster::bin_dir().is_none() {
        skip("PostgreSQL is not installed (Debian package postgresql)");
        return None;
    }
    Some(Cluster::start().expect("starting a throwaway PostgreSQL cluster"))
}

/// Stops the cluster and checks that nothing of it is left running: the postmaster and the
/// backends that were peers.
fn stop(mut cluster: Cluster, backends: &BTreeSet<u64>) {
    let postmaster = cluster.postmaster_pid();
    cluster.stop().expect("stopping the cluster");
    assert!(
        !pgcluster::alive(postmaster),
        "postmaster {postmaster} still running"
    );
    for &pid in backends {
        assert!(!pgcluster::alive(pid as u32), "backend {pid} still running");
    }
}

/// Runs a db demo (`go-db-leak`, `go-db-fixed`) under `tracer run` with `args`.
fn run_demo(name: &str, dsn: &str, tracer_args: &[&str], args: &[&str]) -> Option<common::Traced> {
    let program = program(name)?;
    let mut cmd: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&program, &"--dsn", &dsn];
    for a in args {
        cmd.push(a);
    }
    let t = trace(tracer_args, &cmd, LIMIT);
    assert_eq!(t.output.status.code(), Some(0), "{}", t.summary());
    assert_eq!(t.report["events"]["lost"], 0);
    Some(t)
}

/// The demo's summary line ("10 lookups: ...").
fn lookups_line(t: &common::Traced) -> String {
    String::from_utf8_lossy(&t.output.stdout)
        .lines()
        .find(|l| l.contains(" lookups: "))
        .unwrap_or_else(|| panic!("no summary line: {}", t.summary()))
        .to_string()
}

/// Asserts that `g` is the leak at db-leak's queryUser: `count` sockets, the site's own frame
/// at the marked line.
fn assert_leak_at_query_user(g: &Value, count: u64) {
    assert_eq!(g["verdict"], "leak", "{g:#}");
    assert_eq!(g["kind"], "socket");
    assert_eq!(g["syscall"], "socket");
    assert_eq!(g["count"], count);
    assert_eq!(g["calls"], count);
    assert_eq!(g["acquired"], count);
    assert_eq!(g["released"], 0);
    let own = g["stack"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["own_code"] == true)
        .expect("a frame of the program's own code");
    assert_eq!(own["function"], "main.queryUser", "{:#}", g["stack"]);
    assert!(own["file"].as_str().unwrap().ends_with(LEAK_SOURCE));
    assert_eq!(own["line"], leak_line(LEAK_SOURCE, ""));
    // database/sql and lib/pq (Debian's sources) are library frames between the two.
    for f in ["database/sql.(*DB).conn", "github.com/lib/pq.dial"] {
        assert!(
            g["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|fr| fr["function"] == f && fr["own_code"] == false),
            "{f} as a library frame: {:#}",
            g["stack"]
        );
    }
}

/// The peers of a group: every socket has one, each a different postgres backend whose
/// command line says who it serves (`client` in `postgres: tracer postgres CLIENT idle`).
/// Returns the backends' pids.
fn assert_backend_peers(
    g: &Value,
    postmaster: u32,
    client: &dyn Fn(&str) -> bool,
) -> BTreeSet<u64> {
    let peers = g["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers: {g:#}"));
    let mut fds: Vec<u64> = peers
        .iter()
        .flat_map(|p| p["fds"].as_array().unwrap())
        .map(|fd| fd.as_u64().unwrap())
        .collect();
    fds.sort_unstable();
    let all: Vec<u64> = g["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_u64().unwrap())
        .collect();
    assert_eq!(fds, all, "every socket has its peer: {peers:#?}");
    let mut pids = BTreeSet::new();
    for p in peers {
        assert_eq!(
            p["fds"].as_array().unwrap().len(),
            1,
            "one backend per connection: {p}"
        );
        let peer = &p["peer"];
        assert_eq!(peer["comm"], "postgres", "{p}");
        let cmdline = peer["cmdline"].as_str().unwrap();
        let who = cmdline
            .strip_prefix("postgres: tracer postgres ")
            .and_then(|rest| rest.strip_suffix(" idle"))
            .unwrap_or_else(|| panic!("not a backend's title: {cmdline:?}"));
        assert!(client(who), "client {who:?} in {cmdline:?}");
        let pid = peer["pid"].as_u64().unwrap();
        assert_ne!(pid, u64::from(postmaster), "a backend, not the postmaster");
        pids.insert(pid);
    }
    assert_eq!(pids.len(), peers.len(), "distinct backends");
    pids
}

#[test]
fn unbounded_pool_leaks_one_connection_per_lookup_each_to_its_backend() {
    let Some(pg) = postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("db.rec");
    let rec_arg = rec.display().to_string();
    let Some(t) = run_demo(
        "go-db-leak",
        &pg.tcp_dsn(),
        &["--record", &rec_arg],
        &["--count", "10", "--hold", "3s"],
    ) else {
        return;
    };
    assert_eq!(
        lookups_line(&t),
        "10 lookups: 10 found, 0 still waiting for a connection after 2s, 0 failed"
    );
    let leaks = t.leaks();
    assert_eq!(leaks.len(), 1, "{}", t.summary());
    let g = t.group_at("queryUser");
    assert_leak_at_query_user(g, 10);
    // Each socket's local port is the client the backend at its other end names.
    let server = format!("127.0.0.1:{}", pg.port());
    let mut clients = BTreeSet::new();
    for r in g["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        let local = r
            .strip_prefix("tcp 127.0.0.1:")
            .and_then(|rest| rest.strip_suffix(&format!(" -> {server} ESTABLISHED")))
            .unwrap_or_else(|| panic!("{r}"));
        clients.insert(format!("127.0.0.1({local})"));
    }
    assert_eq!(clients.len(), 10);
    let backends = assert_backend_peers(g, pg.postmaster_pid(), &|who| clients.contains(who));
    // Held for the demo's 3 s after the lookups: far longer than any query.
    let (p50, max) = (
        g["age_ms"]["p50"].as_u64().unwrap(),
        g["age_ms"]["max"].as_u64().unwrap(),
    );
    assert!(p50 >= 2500 && p50 <= max, "{}", g["age_ms"]);
    assert_eq!(g["age_ms"]["max"], g["oldest_age_ms"]);
    let text = String::from_utf8_lossy(&t.output.stderr);
    assert!(
        text.contains("↔ peer postgres[") && text.contains("held p50 "),
        "{text}"
    );
    // The record replays the peers: its report is the live one.
    let offline = dir.path().join("offline.json");
    let o = run_with_timeout(
        Command::new(tracer())
            .arg("report")
            .arg(&rec)
            .args(["--format", "json", "-o"])
            .arg(&offline),
        LIMIT,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let replayed = common::report_json(&std::fs::read(&offline).unwrap());
    assert_eq!(
        replayed, t.report,
        "the record's report differs from the live one"
    );
    stop(pg, &backends);
}

#[test]
fn fixed_twin_gives_every_connection_back() {
    let Some(pg) = postgres() else { return };
    let Some(t) = run_demo(
        "go-db-fixed",
        &pg.tcp_dsn(),
        &[],
        &["--count", "10", "--hold", "1s"],
    ) else {
        return;
    };
    assert_eq!(
        lookups_line(&t),
        "10 lookups: 10 found, 0 still waiting for a connection after 2s, 0 failed"
    );
    assert!(t.leaks().is_empty(), "fixed twin leaks:\n{}", t.summary());
    let at_query = t
        .groups()
        .into_iter()
        .filter(|g| common::frame(g, "queryUser").is_some())
        .count();
    assert_eq!(at_query, 0, "a connection left open:\n{}", t.summary());
    stop(pg, &BTreeSet::new());
}

#[test]
fn bounded_pool_holds_exactly_max_open_connections_while_callers_wait() {
    let Some(pg) = postgres() else { return };
    let Some(t) = run_demo(
        "go-db-leak",
        &pg.tcp_dsn(),
        &[],
        &[
            "--count",
            "8",
            "--max-open",
            "3",
            "--timeout",
            "1s",
            "--hold",
            "2s",
        ],
    ) else {
        return;
    };
    assert_eq!(
        lookups_line(&t),
        "8 lookups: 3 found, 5 still waiting for a connection after 1s, 0 failed"
    );
    let g = t.group_at("queryUser");
    assert_leak_at_query_user(g, 3);
    let backends =
        assert_backend_peers(g, pg.postmaster_pid(), &|who| who.starts_with("127.0.0.1("));
    // Held through the callers' wait and after it: 3 s, each.
    assert!(
        g["age_ms"]["p50"].as_u64().unwrap() >= 2500,
        "{}",
        g["age_ms"]
    );
    stop(pg, &backends);
}

#[test]
fn unix_socket_connections_name_their_backends() {
    let Some(pg) = postgres() else { return };
    let Some(t) = run_demo(
        "go-db-leak",
        &pg.unix_dsn(),
        &[],
        &["--count", "4", "--hold", "3s"],
    ) else {
        return;
    };
    let g = t.group_at("queryUser");
    assert_leak_at_query_user(g, 4);
    let socket = format!(
        "unix stream -> {}/.s.PGSQL.{}",
        pg.socket_dir().display(),
        pg.port()
    );
    assert_eq!(g["resources"], serde_json::json!([socket]));
    let backends = assert_backend_peers(g, pg.postmaster_pid(), &|who| who == "[local]");
    stop(pg, &backends);
}

/// A process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's standard output as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line containing `what`; returns the lines read meanwhile.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {what:?} ({e}) after:\n{}", seen.join("\n")));
        let found = line.contains(what);
        seen.push(line);
        if found {
            return;
        }
    }
}

#[test]
fn live_view_shows_how_long_each_connection_is_held_and_by_whom() {
    let Some(pg) = postgres() else { return };
    let Some(leak) = program("go-db-leak") else {
        return;
    };
    let mut demo = Killed(
        Command::new(leak)
            .arg("--dsn")
            .arg(pg.tcp_dsn())
            .args(["--count", "6", "--rate", "4", "--hold", "60s", "--wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the demo"),
    );
    let pid = demo.0.id();
    // Kept to the end: the demo's output is read as long as it runs.
    let demo_out = lines(&mut demo.0);
    wait_for(&demo_out, "[READY]", &mut Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("live.json");
    let mut watching = Killed(
        Command::new(tracer())
            .args(["--pid", &pid.to_string(), "--interval", "1"])
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tracer"),
    );
    let view = lines(&mut watching.0);
    let mut seen = Vec::new();
    // Attached once the first frame is drawn: then the lookups start, four a second.
    wait_for(&view, "tracer: watching for", &mut seen);
    writeln!(demo.0.stdin.as_ref().expect("demo stdin")).expect("start the lookups");
    wait_for(&view, "6 sockets to 6 processes on this machine", &mut seen);
    let mut demo_seen = Vec::new();
    wait_for(&demo_out, "6 lookups: 6 found", &mut demo_seen);
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(watching.0.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = watching.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tracer did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let report = common::report_json(&std::fs::read(&json).unwrap());
    let p = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .expect("the demo in the report");
    let g = p["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| common::frame(g, "queryUser").is_some())
        .unwrap_or_else(|| panic!("no site at queryUser: {p:#}"));
    assert_eq!(g["count"], 6, "{g:#}");
    let backends =
        assert_backend_peers(g, pg.postmaster_pid(), &|who| who.starts_with("127.0.0.1("));
    let age = &g["age_ms"];
    assert!(age["p50"].as_u64().unwrap() >= 250, "{age}");
    assert!(
        age["max"].as_u64().unwrap() >= age["p50"].as_u64().unwrap() + 500,
        "{age}"
    );
    let view = seen.join("\n");
    assert!(view.contains("held p50 / max"), "{view}");
    let last = seen
        .iter()
        .rfind(|l| l.starts_with("  ↳ main.queryUser ("))
        .unwrap_or_else(|| panic!("no peers line: {view}"));
    assert!(
        last.contains(&format!(
            "{LEAK_SOURCE}:{}): 6 sockets to 6 processes on this machine: postgres[",
            leak_line(LEAK_SOURCE, "")
        )),
        "{last}"
    );
    drop(demo);
    stop(pg, &backends);
}
