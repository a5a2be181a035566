//! The CI gate: `--fail-on-leak` with suppressions, a baseline and `--min-age`, and `tracer run
//! -- cargo test` following every test binary cargo starts.
mod common;

use std::{process::Command, time::Duration};

use common::{demo, require_root, run_with_timeout, tracer};

const LIMIT: Duration = Duration::from_secs(120);

/// `tracer run --fail-on-leak --json J GATE... -- DEMO --count 3 --rate 0`: exit code, report
/// and stderr.
fn gated(gate: &[&str], name: &str) -> (Option<i32>, serde_json::Value, String) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["run", "--fail-on-leak", "--json"])
            .arg(&json)
            .args(gate)
            .arg("--")
            .arg(demo(name))
            .args(["--count", "3", "--rate", "0"]),
        LIMIT,
    );
    let report = common::report_json(&std::fs::read(&json).unwrap());
    (
        o.status.code(),
        report,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn groups(r: &serde_json::Value) -> Vec<&serde_json::Value> {
    r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["leaks"].as_array().unwrap())
        .collect()
}

#[test]
fn a_suppressed_leak_passes_and_stale_suppressions_are_listed() {
    let (code, _, _) = gated(&[], "file-leak");
    assert_eq!(
        code,
        Some(99),
        "the leak fails the run without suppressions"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tracer.supp");
    std::fs::write(
        &file,
        "# the tailer keeps its files on purpose\n\
         kind=file function=*::follow file=*/file-leak.rs   # matches\n\
         \n\
         kind=pipe resource=pipe:*   # matches nothing\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, report, err) = gated(&["--suppressions", f], "file-leak");
    assert_eq!(code, Some(0), "{err}");
    let g = groups(&report);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["verdict"], "leak");
    assert_eq!(g[0]["suppressed"], format!("{f}:2"));
    assert_eq!(
        report["unused_suppressions"],
        serde_json::json!([format!("{f}:4: kind=pipe resource=pipe:*")])
    );
    assert!(err.contains("unused suppressions"), "{err}");
    assert!(err.contains("no new leaks; 1 known"), "{err}");

    // A suppression for another function does not hide this leak.
    std::fs::write(&file, "kind=file function=*::not_follow\n").unwrap();
    let (code, _, _) = gated(&["--suppressions", f], "file-leak");
    assert_eq!(code, Some(99));

    // A field given twice is an error, not "the last one wins".
    std::fs::write(&file, "kind=file kind=socket\n").unwrap();
    let o = run_with_timeout(
        Command::new(tracer()).args(["run", "--suppressions", f, "--", "true"]),
        LIMIT,
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{e}");
    assert!(
        e.contains(&format!("{f}:1: field \"kind\" given twice")),
        "{e}"
    );

    // A malformed file is one clear line.
    std::fs::write(&file, "kind=file colour=blue\n").unwrap();
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["run", "--suppressions", f, "--", "true"])
            .env("TRACER_NO_COLOR", "1"),
        LIMIT,
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{e}");
    assert!(
        e.contains(&format!("{f}:1: unknown field \"colour\"")),
        "{e}"
    );
}

#[test]
fn only_call_sites_absent_from_the_baseline_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, old, _) = gated(&[], "file-leak");
    let baseline = dir.path().join("old.json");
    std::fs::write(&baseline, serde_json::to_string(&old).unwrap()).unwrap();
    let b = baseline.to_str().unwrap();

    // Same leak again (new pids, new addresses would not matter): known, passes.
    let (code, report, err) = gated(&["--baseline", b], "file-leak");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(groups(&report)[0]["in_baseline"], true);

    // A leak from another call site fails.
    let (code, report, _) = gated(&["--baseline", b], "dup-leak");
    assert_eq!(code, Some(99));
    assert!(
        groups(&report)
            .iter()
            .any(|g| g["verdict"] == "leak" && g.get("in_baseline").is_none())
    );

    std::fs::write(&baseline, "{\"not\": \"a report\"}").unwrap();
    let o = run_with_timeout(
        Command::new(tracer()).args(["run", "--baseline", b, "--", "true"]),
        LIMIT,
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!((o.status.code(), e.lines().count()), (Some(125), 1), "{e}");
}

#[test]
fn min_age_spares_young_descriptors() {
    let (code, report, _) = gated(&["--min-age", "3600"], "file-leak");
    assert_eq!(code, Some(0));
    assert_eq!(groups(&report)[0]["verdict"], "unclosed");
    let (code, _, _) = gated(&["--min-age", "0"], "file-leak");
    assert_eq!(code, Some(99));
}

#[test]
fn cargo_test_is_followed_into_every_test_binary() {
    require_root();
    let Ok(cargo) = std::env::var("CARGO") else {
        common::skip("not run by cargo (CARGO is unset)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("leaky-tests");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"leaky-tests\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [profile.dev]\ndebug = true\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        "/// Opens a file and forgets it.\n\
         pub fn keep_open() {\n    \
             std::mem::forget(std::fs::File::open(\"/etc/hostname\").unwrap()); // leak\n\
         }\n\n\
         #[cfg(test)]\n\
         mod tests {\n    \
             #[test]\n    \
             fn opens_three() {\n        \
                 for _ in 0..3 {\n            \
                     super::keep_open();\n        \
                 }\n    \
             }\n\
         }\n",
    )
    .unwrap();
    let json = dir.path().join("r.json");
    let o = run_with_timeout(
        Command::new(tracer())
            .args(["run", "--fail-on-leak", "--format", "github", "--json"])
            .arg(&json)
            .arg("--")
            .arg(cargo)
            .args(["test", "--offline", "-q"])
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", dir.path().join("target")),
        LIMIT,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(99),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value = common::report_json(&std::fs::read(&json).unwrap());
    // cargo, rustc and the test binary were all followed; the leak is the test binary's.
    let procs = report["processes"].as_array().unwrap();
    assert!(procs.iter().any(|p| p["comm"] == "rustc"), "rustc followed");
    let test_bin = procs
        .iter()
        .find(|p| {
            p["exe"]
                .as_str()
                .unwrap_or("")
                .contains("/deps/leaky_tests-")
        })
        .expect("the test binary was followed");
    let g = test_bin["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| common::frame(g, "keep_open").is_some())
        .expect("the leak in keep_open");
    assert_eq!((&g["count"], &g["verdict"]), (&3.into(), &"leak".into()));
    assert!(
        out.lines()
            .any(|l| l.starts_with("::error file=src/lib.rs,line=3,")),
        "{out}"
    );
}
