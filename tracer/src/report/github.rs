//! GitHub Actions workflow commands: an `::error` annotation per call site that fails the run,
//! a `::warning` per suspect and per unused suppression, a `::notice` per known leak
//! (suppressed or in the baseline), and a final `::notice` with the verdict. Annotations point
//! at the innermost frame of the program's own code; the message carries the whole stack.
use std::fmt::Write as _;

use super::{Frame, Group, ProcessReport, Report, Verdict, relative_to_cwd, table};

/// Frames of the stack shown in an annotation's message.
const MAX_FRAMES: usize = 16;

/// Renders the report as workflow commands, one per line.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for p in &report.processes {
        for g in &p.leaks {
            let level = match (g.verdict, g.suppressed.is_some() || g.in_baseline) {
                (Verdict::Unclosed, _) => continue,
                (_, true) => "notice",
                (Verdict::Leak | Verdict::Inherited, false) => "error",
                (Verdict::Suspect, false) => "warning",
            };
            annotation(&mut out, level, p, g);
        }
        for t in p.tasks.iter().filter(|t| t.verdict.is_failure()) {
            let title = format!("task-leak: {}", t.summary());
            located(&mut out, "error", t.source_frame(), &title, &t.headline(p));
        }
    }
    for s in &report.unused_suppressions {
        let (file, line, text) = split_location(s);
        let mut props = vec![("file", file), ("title", "unused suppression")];
        let line = line.map(|l| l.to_string());
        if let Some(l) = &line {
            props.insert(1, ("line", l));
        }
        command(
            &mut out,
            "warning",
            &props,
            &format!("this suppression matched nothing: {text}"),
        );
    }
    if let Some(missing) = &report.incomplete {
        command(
            &mut out,
            "warning",
            &[("title", "tracer: record incomplete")],
            missing,
        );
    }
    let findings = table::findings(report);
    let verdict = if findings.is_empty() {
        "no leaks".to_string()
    } else {
        findings.join(", ")
    };
    command(
        &mut out,
        "notice",
        &[("title", "tracer")],
        &format!(
            "{verdict} in {} process{}; {} descriptors acquired, {} released, {} events lost",
            report.processes.len(),
            if report.processes.len() == 1 {
                ""
            } else {
                "es"
            },
            report.events.acquired,
            report.events.released,
            report.events.lost
        ),
    );
    out
}

/// The annotation of one call site: located at its source frame, its stack in the message.
fn annotation(out: &mut String, level: &str, p: &ProcessReport, g: &Group) {
    let title = format!("fd-leak/{}: {}", g.kind, g.summary());
    let mut message = g.headline(p);
    if let Some(s) = &g.suppressed {
        let _ = write!(message, "; suppressed by {s}");
    } else if g.in_baseline {
        message.push_str("; in the baseline");
    }
    for f in g.stack.iter().take(MAX_FRAMES) {
        let _ = write!(message, "\n  at {}", table::frame_short(f));
    }
    if g.stack.len() > MAX_FRAMES {
        let _ = write!(message, "\n  ... {} more", g.stack.len() - MAX_FRAMES);
    }
    located(out, level, g.source_frame(), &title, &message);
}

/// A command pointing at `at`'s file and line (relative to the current directory when under it).
fn located(out: &mut String, level: &str, at: Option<&Frame>, title: &str, message: &str) {
    let file = at
        .and_then(|f| f.file.as_deref())
        .map(|f| relative_to_cwd(f).unwrap_or_else(|| f.to_string()));
    let line = at.and_then(|f| f.line).map(|l| l.to_string());
    let mut props = Vec::new();
    if let Some(f) = &file {
        props.push(("file", f.as_str()));
    }
    if let Some(l) = &line {
        props.push(("line", l.as_str()));
    }
    props.push(("title", title));
    command(out, level, &props, message);
}

/// One workflow command line: `::LEVEL k=v,k=v::message`, escaped as GitHub requires.
fn command(out: &mut String, level: &str, props: &[(&str, &str)], message: &str) {
    let props: Vec<String> = props
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    let sep = if props.is_empty() { "" } else { " " };
    let _ = writeln!(
        out,
        "::{level}{sep}{}::{}",
        props.join(","),
        escape_data(message)
    );
}

/// A message: `%`, CR and LF escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value: as a message, and `:` and `,` too.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// "FILE:LINE: text" (an unused suppression) split into its parts.
fn split_location(s: &str) -> (&str, Option<u32>, &str) {
    for (i, _) in s.match_indices(": ") {
        if let Some((file, line)) = s[..i].rsplit_once(':')
            && let Ok(line) = line.parse()
        {
            return (file, Some(line), &s[i + 2..]);
        }
    }
    (s, None, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn exact_lines() {
        let mut report = sample_report();
        report.unused_suppressions = vec!["ci/tracer.supp:7: kind=pipe resource=pipe:*".into()];
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "::error file=src/serve.rs,line=40,title=fd-leak/socket%3A 37 socket descriptors \
                 leaked::37 socket descriptors leaked (accept4, still open at exit) at \
                 serve::accept_conn (src/serve.rs:40) in pid 1234 (svc)\
                 %0A  at accept4\
                 %0A  at std::net::tcp::TcpListener::accept (/rustc/abc/library/std/src/net/tcp.rs:100)\
                 %0A  at serve::accept_conn (src/serve.rs:40)\
                 %0A  at serve::run (src/serve.rs:12)\
                 %0A  at svc::main (src/main.rs:3)\
                 %0A  at 0x7f0000001000 in libc.so.6",
                "::notice file=src/log.rs,line=9,title=fd-leak/file%3A 5 file descriptors \
                 leaked::5 file descriptors leaked (openat, still open at exit) at \
                 log::open_log (src/log.rs:9) in pid 1234 (svc); suppressed by tracer.supp:3\
                 %0A  at open64\
                 %0A  at log::open_log (src/log.rs:9)\
                 %0A  at svc::main (src/main.rs:4)",
                "::error title=fd-leak/file%3A 3 file descriptors leaked across exec::3 file \
                 descriptors leaked across exec (openat, still open when tracing ended) at \
                 openat64 in pid 1240 (worker)\
                 %0A  at openat64\
                 %0A  at 0x7f0000001000 in libc.so.6",
                "::warning file=src/net.rs,line=21,title=fd-leak/socket%3A 4 socket descriptors \
                 possibly leaking::4 socket descriptors possibly leaking (socket, still open \
                 when tracing ended) at net::dial (src/net.rs:21) in pid 1240 (worker)\
                 %0A  at socket\
                 %0A  at net::dial (src/net.rs:21)\
                 %0A  at worker::connect (src/worker.rs:30)",
                "::notice title=fd-leak/eventfd%3A 1 eventfd descriptor leaked::1 eventfd \
                 descriptor leaked (eventfd2, still open when tracing ended) at openat64 in \
                 pid 1240 (worker); in the baseline\
                 %0A  at openat64\
                 %0A  at 0x7f0000001000 in libc.so.6",
                "::warning file=ci/tracer.supp,line=7,title=unused suppression::this \
                 suppression matched nothing: kind=pipe resource=pipe:*",
                "::notice title=tracer::1 leaking call site, 1 call site leaking into exec'd \
                 programs, 1 suspect call site, 2 known (suppressed or in the baseline) in 2 \
                 processes; 100 descriptors acquired, 48 released, 2 events lost",
            ]
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_data("50% a\r\nb"), "50%25 a%0D%0Ab");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
        assert_eq!(
            split_location("/x:y/t.supp:12: kind=file"),
            ("/x:y/t.supp", Some(12), "kind=file")
        );
    }
}
