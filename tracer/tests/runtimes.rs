//! Language runtimes, for real: a Go program's descriptors are named by the goroutine that
//! created the acquiring goroutine (net/http dials on goroutines of its own), goroutines and
//! threads are counted as resources per starting site, and a Python script's descriptors are
//! grouped by its own functions and lines.
mod common;

use std::time::Duration;

use common::{assert_frame, leak_line, program, trace};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// Every task group (threads, goroutines) of every process.
fn tasks(t: &common::Traced) -> Vec<&Value> {
    t.processes()
        .iter()
        .flat_map(|p| p["tasks"].as_array().expect("tasks"))
        .collect()
}

/// The frames of a group's stack and then of the stacks that created it.
fn frames_with_creators(g: &Value) -> Vec<&Value> {
    let mut frames: Vec<&Value> = g["stack"].as_array().expect("stack").iter().collect();
    for creator in g["created_by"].as_array().into_iter().flatten() {
        frames.extend(creator.as_array().expect("a stack"));
    }
    frames
}

/// The innermost frame of the program's own code in a group's stack or its creators'.
fn own_frame(g: &Value) -> Option<&Value> {
    frames_with_creators(g)
        .into_iter()
        .find(|f| f["own_code"] == true)
}

fn assert_own(g: &Value, function: &str, source: &str, line: u64) {
    let f = own_frame(g).unwrap_or_else(|| panic!("no frame of the program: {g:#}"));
    assert_eq!(f["function"], function, "{g:#}");
    assert!(
        f["file"].as_str().is_some_and(|f| f.ends_with(source)),
        "{f:#}"
    );
    assert_eq!(f["line"], line, "{f:#}");
}

#[test]
fn go_default_client_body_leak_names_the_calling_line() {
    let Some(bin) = program("go-status-leak") else {
        return;
    };
    let t = trace(&[], &[&bin, &"--count", &"20"], LIMIT);
    let dials: Vec<&Value> = t
        .leaks()
        .into_iter()
        .filter(|g| g["syscall"] == "socket")
        .collect();
    assert_eq!(dials.len(), 1, "{}", t.summary());
    let g = dials[0];
    assert_eq!(g["count"], 20, "{}", t.summary());
    // The dial's own stack is net/http's goroutine: no frame of the program...
    assert!(
        g["stack"]
            .as_array()
            .expect("stack")
            .iter()
            .all(|f| f["own_code"] == false),
        "{g:#}"
    );
    // ...the goroutine that created it is the caller's.
    let src = "demos/go/status-leak/main.go";
    assert_own(g, "main.fetchStatus", src, leak_line(src, ""));
    // The transport's goroutines serving each leaked connection are counted too.
    let readers: Vec<&Value> = tasks(&t)
        .into_iter()
        .filter(|t| {
            t["kind"] == "goroutine"
                && own_frame(t).is_some_and(|f| f["function"] == "main.fetchStatus")
        })
        .collect();
    assert!(!readers.is_empty(), "{:#}", t.report["processes"]);
    assert!(readers.iter().all(|r| r["alive"] == 20), "{readers:#?}");
}

#[test]
fn go_default_client_fixed_has_no_leak() {
    let Some(bin) = program("go-status-fixed") else {
        return;
    };
    let t = trace(&[], &[&bin, &"--count", &"20"], LIMIT);
    assert!(t.leaks().is_empty(), "{}", t.summary());
    let leaking: Vec<&Value> = tasks(&t)
        .into_iter()
        .filter(|t| t["verdict"] == "leak")
        .collect();
    assert!(leaking.is_empty(), "{leaking:#?}");
}

#[test]
fn goroutine_explosion_is_counted_at_its_go_statement() {
    let Some(bin) = program("go-goroutine-leak") else {
        return;
    };
    let t = trace(&[], &[&bin, &"--count", &"30"], LIMIT);
    let src = "demos/go/goroutine-leak/main.go";
    let leaking: Vec<&Value> = tasks(&t)
        .into_iter()
        .filter(|t| t["verdict"] == "leak")
        .collect();
    assert_eq!(leaking.len(), 1, "{leaking:#?}");
    let g = leaking[0];
    assert_eq!(
        (&g["kind"], &g["alive"], &g["started"], &g["ended"]),
        (&"goroutine".into(), &30.into(), &30.into(), &0.into()),
        "{g:#}"
    );
    assert_frame(g, "handle", src, leak_line(src, ""));
    // A leak fails the run like a descriptor leak does.
    let failing = trace(&["--fail-on-leak"], &[&bin, &"--count", &"30"], LIMIT);
    assert_eq!(failing.output.status.code(), Some(99));
}

#[test]
fn worker_pool_stopped_before_exit_leaks_nothing() {
    let Some(bin) = program("go-goroutine-pool") else {
        return;
    };
    let t = trace(&[], &[&bin, &"--count", &"30"], LIMIT);
    let alive: Vec<&Value> = tasks(&t)
        .into_iter()
        .filter(|t| t["verdict"] == "leak")
        .collect();
    assert!(alive.is_empty(), "{alive:#?}");
    assert!(t.leaks().is_empty(), "{}", t.summary());
}

#[test]
fn detached_threads_alive_at_exit_are_counted_at_their_start() {
    let Some(bin) = program("c-threads") else {
        return;
    };
    let t = trace(&[], &[&bin, &"8"], LIMIT);
    let threads: Vec<&Value> = tasks(&t)
        .into_iter()
        .filter(|t| t["kind"] == "thread")
        .collect();
    assert_eq!(threads.len(), 1, "{threads:#?}");
    let g = threads[0];
    assert_eq!(
        (&g["alive"], &g["started"], &g["verdict"]),
        (&8.into(), &8.into(), &"leak".into()),
        "{g:#}"
    );
    let src = "demos/c/threads.c";
    assert_frame(g, "start_workers", src, leak_line(src, ""));

    let joined = trace(&[], &[&bin, &"--join", &"8"], LIMIT);
    assert!(
        tasks(&joined).is_empty(),
        "{:#}",
        joined.report["processes"]
    );
}

/// Debian 12's CPython (3.11), which setup installs.
const PYTHON: &str = "/usr/bin/python3";

fn script() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../demos/python/leaky.py")
        .canonicalize()
        .expect("demos/python/leaky.py")
        .display()
        .to_string()
}

#[test]
fn python_leaks_are_grouped_by_the_scripts_lines() {
    if !std::path::Path::new(PYTHON).is_file() {
        common::skip("python3 is not installed");
        return;
    }
    let script = script();
    let t = trace(
        &[],
        &[&PYTHON, &script, &"--files", &"20", &"--sockets", &"7"],
        LIMIT,
    );
    let leaks = t.leaks();
    assert_eq!(leaks.len(), 2, "{}", t.summary());
    let src = "demos/python/leaky.py";
    let files = t.group_at("open_all");
    assert_eq!(
        (&files["kind"], &files["count"]),
        (&"file".into(), &20.into())
    );
    assert_frame(files, "open_all", src, leak_line(src, "files"));
    let sockets = t.group_at("connect_all");
    assert_eq!(
        (&sockets["kind"], &sockets["count"]),
        (&"socket".into(), &7.into())
    );
    assert_frame(sockets, "connect_all", src, leak_line(src, "sockets"));
    // The interpreter's own C frames are replaced by the script's.
    assert!(
        common::frame(files, "_PyEval_EvalFrameDefault").is_none(),
        "{files:#}"
    );

    let fixed = trace(&[], &[&PYTHON, &script, &"--fixed"], LIMIT);
    assert!(fixed.leaks().is_empty(), "{}", fixed.summary());
}
