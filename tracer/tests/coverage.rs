//! Every way a descriptor is born or dies, with real eBPF: io_uring requests, descriptors
//! passed over unix sockets, the less common acquiring syscalls, misuse (EBADF closes), and
//! numbers handed between threads. Every run is also verified against the kernel's table
//! (`common::trace` fails on any mismatch).
mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{assert_frame, demo, frame, leak_line, program, trace};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn io_uring_requests_are_accounted_at_their_submitting_site() {
    let t = trace(
        &[],
        &[&demo("uring-leak"), &"--count", &"20", &"--rate", &"0"],
        LIMIT,
    );
    let src = "demos/src/uring.rs";
    // (function, marker label, kind, syscall, descriptors, calls)
    let expected = [
        ("open_segment", "segment", "file", "io_uring openat", 10, 10),
        (
            "accept_clients",
            "accept",
            "socket",
            "io_uring accept",
            4,
            4,
        ),
        ("make_channel", "pipe", "pipe", "io_uring pipe", 4, 2),
        (
            "install_fixed",
            "install",
            "file",
            "io_uring fixed_fd_install",
            2,
            2,
        ),
    ];
    assert_eq!(t.leaks().len(), expected.len(), "{}", t.summary());
    for (function, label, kind, syscall, count, calls) in expected {
        let g = t.group_at(function);
        assert_eq!(
            (
                &g["kind"],
                &g["syscall"],
                &g["count"],
                &g["calls"],
                &g["verdict"]
            ),
            (
                &kind.into(),
                &syscall.into(),
                &count.into(),
                &calls.into(),
                &"leak".into()
            ),
            "{function}: {}",
            t.summary()
        );
        assert_frame(g, function, src, leak_line(src, label));
        assert!(frame(g, "uring_leak::main").is_some(), "{:#}", g["stack"]);
    }
    // The segments opened through the ring carry their paths; half were closed through it.
    let seg = t.group_at("open_segment");
    assert_eq!(
        (&seg["acquired"], &seg["released"]),
        (&20.into(), &10.into())
    );
    assert!(
        seg["resources"][0]
            .as_str()
            .unwrap()
            .contains("/tracer-demo-uring-"),
        "{}",
        seg["resources"]
    );
    assert_eq!(t.report["events"]["lost"], 0);
}

#[test]
fn io_uring_fixed_twin_has_no_leak() {
    let t = trace(
        &[],
        &[&demo("uring-fixed"), &"--count", &"20", &"--rate", &"0"],
        LIMIT,
    );
    assert!(t.groups().is_empty(), "{}", t.summary());
    assert_eq!(t.report["events"]["lost"], 0);
}

/// What the C program says it did: kind -> (descriptors, function), from its `ok` lines.
type Done = BTreeMap<String, (u64, String)>;

/// Runs the C program of every kind under tracer.
fn kinds_run() -> Option<(common::Traced, Done)> {
    let bin = program("c-kinds")?;
    let t = trace(&[], &[&bin], LIMIT);
    let stdout = String::from_utf8_lossy(&t.output.stdout).into_owned();
    let mut ok = BTreeMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ok", kind, n, function] => {
                ok.insert(kind.to_string(), (n.parse().unwrap(), function.to_string()));
            }
            ["skip", kind, why] => eprintln!("c-kinds: {kind} refused by this kernel ({why})"),
            _ => panic!("unexpected output line {line:?}"),
        }
    }
    Some((t, ok))
}

#[test]
fn every_descriptor_kind_is_attributed_to_its_function() {
    let Some((t, ok)) = kinds_run() else { return };
    let src = "demos/c/kinds.c";
    // kind printed by the program -> (kind in the report, syscall in the report)
    let expected: &[(&str, &str, &str)] = &[
        ("pidfd_getfd", "file", "pidfd_getfd"),
        ("fanotify", "fanotify", "fanotify_init"),
        ("perf_event", "perf_event", "perf_event_open"),
        ("bpf", "bpf", "bpf"),
        ("userfaultfd", "userfaultfd", "userfaultfd"),
        ("open_by_handle_at", "file", "open_by_handle_at"),
        ("open_tree", "mount", "open_tree"),
        ("fsopen", "mount", "fsopen"),
        ("fsmount", "mount", "fsmount"),
        ("fspick", "mount", "fspick"),
        ("mq_open", "mqueue", "mq_open"),
        ("memfd_secret", "secretmem", "memfd_secret"),
        ("landlock", "landlock", "landlock_create_ruleset"),
        ("clone3_pidfd", "pidfd", "clone3"),
        ("io_uring", "io_uring", "io_uring_setup"),
        ("scm_rights", "file", "recvmsg"),
        ("scm_rights_mmsg", "file", "recvmmsg"),
    ];
    // The kinds this kernel could not refuse us: those that need no optional feature.
    for always in [
        "pidfd_getfd",
        "perf_event",
        "io_uring",
        "scm_rights",
        "clone3_pidfd",
    ] {
        assert!(ok.contains_key(always), "{always} did not run: {ok:?}");
    }
    let main_groups: Vec<&serde_json::Value> = t.processes()[0]["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for (label, kind, syscall) in expected {
        let Some((count, function)) = ok.get(*label) else {
            continue;
        };
        let found: Vec<_> = main_groups
            .iter()
            .filter(|g| frame(g, function).is_some() && g["syscall"] == *syscall)
            .collect();
        assert_eq!(found.len(), 1, "{label}: {}", t.summary());
        let g = found[0];
        assert_eq!(
            (&g["kind"], &g["count"]),
            (&(*kind).into(), &(*count).into()),
            "{label}: {}",
            t.summary()
        );
        assert_frame(g, function, src, leak_line(src, label));
    }
    // Both dup variants of fcntl, one descriptor each.
    let dupfd: Vec<_> = main_groups
        .iter()
        .filter(|g| g["syscall"] == "fcntl(F_DUPFD)")
        .collect();
    assert_eq!(dupfd.len(), 2, "{}", t.summary());
    // Nothing else leaked in the main process.
    let total: u64 = ok
        .iter()
        .filter(|(k, _)| !k.ends_with("_close"))
        .map(|(_, (n, _))| n)
        .sum();
    assert_eq!(t.processes()[0]["open_at_end"], total, "{}", t.summary());
    // The groups checked are the program's own: the first process is c-kinds itself.
    assert_eq!(t.processes()[0]["comm"], "c-kinds", "{}", t.summary());
    assert_eq!(t.report["events"]["lost"], 0);
}

#[test]
fn passed_descriptors_name_their_sender() {
    let Some((t, _)) = kinds_run() else { return };
    let src = "demos/c/kinds.c";
    let main = &t.processes()[0];
    for (function, syscall, sender_fn, marker, count) in [
        (
            "leak_received",
            "recvmsg",
            "send_files",
            "tracer-demo: sent",
            3,
        ),
        (
            "leak_received_mmsg",
            "recvmmsg",
            "send_files_mmsg",
            "tracer-demo: sent (mmsg)",
            2,
        ),
    ] {
        let g = main["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| frame(g, function).is_some() && g["syscall"] == syscall)
            .unwrap_or_else(|| panic!("no {function} group: {}", t.summary()));
        assert_eq!(g["count"], count);
        assert_eq!(g["resources"], serde_json::json!(["/etc/hostname"]));
        let from = g["passed_from"].as_array().expect("passed_from");
        assert_eq!(from.len(), 1, "{g:#}");
        // The sender is a child of the main process, at the line that opened what it sent.
        let sender = from[0]["pid"].as_u64().unwrap();
        let child = t
            .processes()
            .iter()
            .find(|p| p["pid"] == sender)
            .expect("sender traced");
        assert_eq!(child["ppid"], main["pid"]);
        assert_eq!(from[0]["function"], sender_fn);
        let text =
            std::fs::read_to_string(format!("{}/../{src}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let line = text
            .lines()
            .position(|l| l.trim_end().ends_with(marker))
            .expect("sent marker") as u64
            + 1;
        assert_eq!(from[0]["line"], line, "{g:#}");
    }
}

#[test]
fn close_of_a_descriptor_not_open_is_misuse_per_site() {
    let Some((t, _)) = kinds_run() else { return };
    let main = &t.processes()[0];
    let all = &main["bad_closes"];
    let bad = all.as_array().expect("bad_closes");
    assert_eq!(bad.len(), 2, "{all:#}");
    let at = |function: &str| {
        bad.iter()
            .find(|b| {
                b["stack"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["function"] == function)
            })
            .unwrap_or_else(|| panic!("no EBADF at {function}: {all:#}"))
    };
    let twice = at("close_twice");
    assert_eq!(
        (&twice["count"], &twice["double_closes"]),
        (&1.into(), &1.into())
    );
    let stray = at("close_stray");
    assert_eq!(
        (&stray["count"], &stray["double_closes"]),
        (&1.into(), &0.into())
    );
    // Forked children hold copies of the parent's descriptors: never their leaks.
    assert!(t.processes().len() > 1, "c-kinds forks: {}", t.summary());
    for child in &t.processes()[1..] {
        for g in child["leaks"].as_array().unwrap() {
            if g["syscall"] != "recvmsg" && g["syscall"] != "recvmmsg" {
                assert_eq!(g["verdict"], "unclosed", "{}", t.summary());
            }
        }
    }
}

/// One stress run: `threads` threads, `iterations` opens each, descriptors closed by the next
/// thread; `leak` never closed.
fn handoff_run(threads: u32, iterations: u32, leak: u32) {
    let t = trace(
        // 300,000 events a second from 8 threads on this 2-core machine, while another test
        // runs: a ring sized for that burst, so that "lost: 0" checks tracer, not the CPU share
        // its collector gets (with the default 16 MiB: 0 of 15 runs alone lose records, 1 of
        // 16 with a second such run beside it; the loss is then counted, the accounting stays
        // exact, the lost acquisitions' stacks are missing).
        &["--ring-mib", "64"],
        &[
            &demo("stress"),
            &"--handoff",
            &"--threads",
            &threads.to_string(),
            &"--iterations",
            &iterations.to_string(),
            &"--leak",
            &leak.to_string(),
        ],
        LIMIT,
    );
    assert_eq!(t.groups().len(), 1, "{}", t.summary());
    let g = t.group_at("leak_one");
    assert_eq!(
        (&g["count"], &g["acquired"], &g["released"]),
        (&leak.into(), &leak.into(), &0.into()),
        "{}",
        t.summary()
    );
    let events = &t.report["events"];
    let ops = u64::from(threads * iterations);
    // Every open accounted, every open but the leaked released: exact, nothing lost.
    assert!(events["acquired"].as_u64().unwrap() >= ops, "{events}");
    assert_eq!(
        events["acquired"].as_u64().unwrap() - events["released"].as_u64().unwrap(),
        u64::from(leak),
        "only the leaked remain: {events}"
    );
    assert_eq!(events["lost"], 0, "{}", t.summary());
}

#[test]
fn descriptors_closed_by_another_thread_are_exact_over_repeated_runs() {
    for (threads, leak) in [(4, 57), (6, 101), (8, 3)] {
        handoff_run(threads, 25_000, leak);
    }
}
