//! tracer's command line as users meet it: exit codes, error messages, the JSON schema, the
//! terminal report, following a command's children.
mod common;

use std::{process::Command, time::Duration};

use common::{program, require_root, run_with_timeout, trace, tracer, tracer_as_nobody};

const LIMIT: Duration = Duration::from_secs(60);

fn tracer_run(args: &[&str]) -> std::process::Output {
    require_root();
    run_with_timeout(Command::new(tracer()).arg("run").args(args), LIMIT)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn command_not_found_is_one_line_and_127() {
    let o = tracer_run(&["--", "no-such-command-xyz"]);
    assert_eq!(o.status.code(), Some(127));
    assert_eq!(
        stderr(&o),
        "tracer: command not found: no-such-command-xyz\n"
    );
}

#[test]
fn what_cannot_run_or_be_written_fails_before_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    // A file that is not executable, and a directory: 126, as in the shell.
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let s = script.to_str().unwrap();
    let d = dir.path().to_str().unwrap();
    for (cmd, why) in [(s, "permission denied"), (d, "it is a directory")] {
        let o = tracer_run(&["--", cmd]);
        assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("tracer: cannot execute {cmd}: {why}\n"));
    }
    // Report files that cannot be written are refused before the command runs (it would
    // have created `ran`).
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let nodir = dir.path().join("no/such/dir/r.json");
    for args in [
        vec!["--json", nodir.to_str().unwrap()],
        vec!["-o", nodir.to_str().unwrap()],
        vec!["--format", "html", "-o", d],
    ] {
        let mut all = args.clone();
        all.extend(["--", "sh", "-c", &touch]);
        let o = tracer_run(&all);
        let e = stderr(&o);
        assert_eq!(
            (o.status.code(), e.lines().count()),
            (Some(125), 1),
            "{args:?}: {e}"
        );
        assert!(e.starts_with("tracer: cannot write the report to "), "{e}");
        assert!(!ran.exists(), "{args:?}: the command ran");
    }
}

#[test]
fn files_unlinked_while_held_say_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!("exec 3>{d}/gone; rm {d}/gone; exec 4>{d}/kept; exit 0");
    let t = trace(&[], &[&"sh", &"-c", &script], LIMIT);
    let resources: Vec<String> = t
        .groups()
        .iter()
        .flat_map(|g| g["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert!(
        resources.contains(&format!("{d}/gone (deleted)")),
        "{resources:?}"
    );
    assert!(resources.contains(&format!("{d}/kept")), "{resources:?}");
}

#[test]
fn not_root_is_one_clear_line() {
    require_root();
    let Some(mut nobody) = tracer_as_nobody() else {
        return;
    };
    let o = run_with_timeout(nobody.args(["run", "--", "true"]), LIMIT);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("tracer: ") && e.contains("root") && e.contains("sudo"),
        "{e}"
    );
}

#[test]
fn exit_code_is_the_commands() {
    assert_eq!(
        tracer_run(&["-q", "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        tracer_run(&["-q", "--", "sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );
}

#[test]
fn fail_on_leak_has_its_own_exit_code() {
    let Some(bin) = program("c-leaky") else {
        return;
    };
    let bin = bin.to_str().unwrap();
    assert_eq!(tracer_run(&["-q", "--", bin, "2"]).status.code(), Some(0));
    assert_eq!(
        tracer_run(&["-q", "--fail-on-leak", "--", bin, "2"])
            .status
            .code(),
        Some(99)
    );
    // One leaked descriptor per site is below the default --min-count of 2...
    assert_eq!(
        tracer_run(&["-q", "--fail-on-leak", "--", bin, "1"])
            .status
            .code(),
        Some(0)
    );
    // ...and a leak with --min-count 1.
    assert_eq!(
        tracer_run(&["-q", "--fail-on-leak", "--min-count", "1", "--", bin, "1"])
            .status
            .code(),
        Some(99)
    );
}

#[test]
fn json_report_has_the_documented_schema() {
    let Some(bin) = program("c-leaky") else {
        return;
    };
    // `trace` checks the report against schema/report.schema.json (every traced test does).
    let t = trace(&[], &[&bin, &"2"], LIMIT);
    let r = &t.report;
    assert_eq!(r["command"][0], bin.to_str().unwrap());
    assert_eq!(r["exit_code"], 0);
    let p = &r["processes"][0];
    assert_eq!(p["comm"], "c-leaky");
    assert_eq!(p["exe"], bin.to_str().unwrap());
    assert_eq!(p["exit_code"], 0);
    // The schema holds the report to its field names and types: one it does not know, or a
    // wrong type, fails.
    for (path, bad) in [
        ("/processes/0/leaks/0/count", serde_json::json!("7")),
        ("/processes/0/leaks/0/verdict", serde_json::json!("maybe")),
        ("/events/unknown_field", serde_json::json!(1)),
    ] {
        let mut broken = r.clone();
        let (parent, field) = path.rsplit_once('/').unwrap();
        broken.pointer_mut(parent).unwrap()[field] = bad;
        let text = serde_json::to_vec(&broken).unwrap();
        let refused = std::panic::catch_unwind(|| common::report_json(&text)).is_err();
        assert!(
            refused,
            "the schema accepted {path} = {:?}",
            broken.pointer(path)
        );
    }
}

#[test]
fn follows_children_through_fork_and_exec() {
    let Some(bin) = program("c-leaky") else {
        return;
    };
    let script = format!("{} 2; {} 3", bin.display(), bin.display());
    let t = trace(&[], &[&"sh", &"-c", &script], LIMIT);
    let leakers: Vec<_> = t
        .processes()
        .iter()
        .filter(|p| {
            p["leaks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["verdict"] == "leak")
        })
        .collect();
    assert_eq!(leakers.len(), 2, "{}", t.summary());
    let counts: Vec<u64> = leakers
        .iter()
        .map(|p| {
            p["leaks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["count"].as_u64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(counts, vec![12, 18], "{}", t.summary());
    assert!(leakers.iter().all(|p| p["comm"] == "c-leaky"));
}

#[test]
fn terminal_report_names_the_leaking_function() {
    let Some(bin) = program("c-leaky") else {
        return;
    };
    let o = tracer_run(&["--", bin.to_str().unwrap(), "2"]);
    let e = stderr(&o);
    assert!(e.contains("events: ") && e.contains(" lost"), "{e}");
    assert!(e.contains("LEAK"), "{e}");
    assert!(
        e.contains(">> leak_socket (") && e.contains("leaky.c:"),
        "{e}"
    );
}

#[test]
fn doctor_loads_each_program_type_and_traces_end_to_end() {
    require_root();
    let o = run_with_timeout(Command::new(tracer()).arg("doctor"), LIMIT);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let row = |check: &str| -> String {
        out.lines()
            .find(|l| l.trim_start_matches('│').trim_start().starts_with(check))
            .unwrap_or_else(|| panic!("no {check} row:\n{out}"))
            .split('│')
            .nth(2)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // The must-haves work here; every other type either loads and attaches or says at which
    // step the kernel refused it.
    for must in ["privileges", "kernel BTF", "tp_btf", "raw_tp", "maps"] {
        assert!(row(must).starts_with("ok"), "{must}: {}", row(must));
    }
    for optional in [
        "tracepoint",
        "fentry",
        "kprobe",
        "uprobe",
        "lsm",
        "BPF iterator",
        "io_uring",
    ] {
        let r = row(optional);
        assert!(
            r.starts_with("ok") || r.starts_with("no: load:") || r.starts_with("no: attach:"),
            "{optional}: {r}"
        );
    }
    let e2e = row("end to end");
    assert!(
        e2e.starts_with("ok") && e2e.contains("accounting exact"),
        "{e2e}"
    );
    assert!(
        out.trim_end().ends_with("tracer can trace on this machine"),
        "{out}"
    );
}

#[test]
fn doctor_without_privileges_names_the_missing_must_have() {
    require_root();
    let Some(mut nobody) = tracer_as_nobody() else {
        return;
    };
    let o = run_with_timeout(nobody.arg("doctor"), LIMIT);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let last = out.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tracer cannot trace here: privileges:") && last.contains("sudo"),
        "{out}"
    );
}
