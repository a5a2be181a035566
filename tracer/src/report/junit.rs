//! JUnit XML for CI test views: one test suite for the traced command, one test case per traced
//! process, failing when the process has call sites that fail the run (the message lists them,
//! the body gives each one's stack); other findings go to the case's system-out.
use std::{fmt::Write as _, time::Duration};

use anyhow::{Context as _, Result};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::{Group, ProcessReport, Report, table};

/// Renders the report as a JUnit XML document.
pub fn render(report: &Report) -> Result<String> {
    let mut suite = TestSuite::new(format!("tracer: {}", report.command.join(" ")));
    suite.set_time(Duration::from_millis(report.duration_ms));
    if let Some(code) = report.exit_code {
        suite.add_property(("exit-code", code.to_string().as_str()));
    }
    suite.add_property(("events-lost", report.events.lost.to_string().as_str()));
    if let Some(missing) = &report.incomplete {
        suite.add_property(("incomplete", missing.as_str()));
    }
    suite.add_test_cases(report.processes.iter().map(test_case));
    let mut junit = quick_junit::Report::new("tracer");
    junit.set_time(Duration::from_millis(report.duration_ms));
    junit.add_test_suite(suite);
    junit.to_string().context("encoding the JUnit report")
}

/// The test case of one process.
fn test_case(p: &ProcessReport) -> TestCase {
    let (failing, other): (Vec<&Group>, Vec<&Group>) = p.leaks.iter().partition(|g| g.fails());
    let tasks: Vec<String> = p
        .tasks
        .iter()
        .filter(|t| t.verdict.is_failure())
        .map(|t| t.headline(p))
        .collect();
    let status = if failing.is_empty() && tasks.is_empty() {
        TestCaseStatus::success()
    } else if failing.is_empty() {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_type("task-leak").set_message(tasks.join("; "));
        status
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        let mut sites: Vec<String> = failing.iter().map(|g| g.headline(p)).collect();
        sites.extend(tasks);
        let s = if failing.len() == 1 { "" } else { "s" };
        status
            .set_type("fd-leak")
            .set_message(format!(
                "{} call site{s} leaking: {}",
                failing.len(),
                sites.join("; ")
            ))
            .set_description(details(p, &failing));
        status
    };
    let mut case = TestCase::new(format!("{} (pid {})", p.comm, p.pid), status);
    case.set_classname(if p.exe.is_empty() { &p.comm } else { &p.exe });
    if !other.is_empty() {
        case.set_system_out(details(p, &other));
    }
    case
}

/// Each group's headline and stack.
fn details(p: &ProcessReport, groups: &[&Group]) -> String {
    let mut out = String::new();
    for g in groups {
        let _ = writeln!(out, "{}", g.headline(p));
        if let Some(s) = &g.suppressed {
            let _ = writeln!(out, "  suppressed by {s}");
        } else if g.in_baseline {
            let _ = writeln!(out, "  in the baseline");
        }
        for f in &g.stack {
            let _ = writeln!(out, "    at {}", table::frame_short(f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn well_formed_one_case_per_process() {
        let xml = render(&sample_report()).expect("render");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("2"));
        assert_eq!(root.attribute("failures"), Some("2"));
        let suite = root
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .expect("suite");
        assert_eq!(suite.attribute("name"), Some("tracer: ./svc --port 8080"));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let names: Vec<_> = cases.iter().map(|c| c.attribute("name")).collect();
        assert_eq!(names, [Some("svc (pid 1234)"), Some("worker (pid 1240)")]);
        assert_eq!(cases[0].attribute("classname"), Some("/srv/svc"));
        let failure = cases[0]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .expect("svc fails");
        // The suppressed file leak and the unclosed pipe do not fail it.
        assert_eq!(
            failure.attribute("message"),
            Some(
                "1 call site leaking: 37 socket descriptors leaked (accept4, still open at \
                 exit) at serve::accept_conn (src/serve.rs:40) in pid 1234 (svc)"
            )
        );
        assert_eq!(failure.attribute("type"), Some("fd-leak"));
        let body = failure.text().expect("stacks");
        assert!(
            body.contains("    at serve::run (src/serve.rs:12)\n"),
            "{body}"
        );
        let out = cases[0]
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .expect("other findings");
        assert!(out.contains("2 pipe descriptors left open"), "{out}");
        assert!(out.contains("  suppressed by tracer.supp:3\n"), "{out}");
        // The inherited leak fails the worker; the suspect and the baseline leak do not.
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .expect("worker fails");
        assert!(failure.attribute("message").is_some_and(|m| {
            m.starts_with("1 call site leaking: 3 file descriptors leaked across exec")
        }));
    }

    #[test]
    fn clean_process_passes_and_odd_names_are_escaped() {
        let mut report = sample_report();
        report.processes[0].leaks.clear();
        report.processes[0].comm = "a<b>&\"c\u{1}".into();
        let xml = render(&report).expect("render");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let case = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase"))
            .expect("case");
        assert!(
            case.attribute("name")
                .is_some_and(|n| n.starts_with("a<b>&\"c"))
        );
        assert!(!case.children().any(|n| n.has_tag_name("failure")));
        assert_eq!(doc.root_element().attribute("failures"), Some("1"));
    }
}
