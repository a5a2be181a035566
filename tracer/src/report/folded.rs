//! Folded stacks (the input of flamegraph.pl, inferno and speedscope): one line per stack of
//! descriptors still open, outermost frame first under the process's name, weighted by the
//! number of descriptors. Identical stacks (the same site in forked children) are summed.
use std::collections::BTreeMap;

use super::{Frame, Report};

/// The folded lines, sorted.
pub fn lines(report: &Report) -> Vec<String> {
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    for p in &report.processes {
        let root = if p.comm.is_empty() {
            format!("[pid {}]", p.pid)
        } else {
            name(&p.comm)
        };
        for g in p.leaks.iter().filter(|g| g.count > 0) {
            let mut frames = vec![root.clone()];
            frames.extend(g.stack.iter().rev().map(|f| name(&label(f))));
            if g.stack.is_empty() {
                frames.push("[no stack]".into());
            }
            *weights.entry(frames.join(";")).or_default() += g.count;
        }
    }
    weights
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect()
}

/// Renders the report: [`lines`], one per line.
pub fn render(report: &Report) -> String {
    lines(report).into_iter().map(|l| l + "\n").collect()
}

/// A frame as a flame graph names it: its function (with the line for the program's own code),
/// or its offset in its module.
fn label(f: &Frame) -> String {
    match (&f.function, f.line) {
        (Some(func), Some(line)) if f.own_code => format!("{func}:{line}"),
        (Some(func), _) => func.clone(),
        _ => format!("{} in {}", f.offset, f.module),
    }
}

/// A name fit for a folded line: `;` separates frames and a line holds one stack.
fn name(s: &str) -> String {
    s.replace(';', ",").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn one_line_per_stack_outermost_first() {
        let lines = lines(&sample_report());
        assert_eq!(
            lines,
            [
                "svc;0x29d90 in /usr/lib/x86_64-linux-gnu/libc.so.6;svc::main:3;serve::run:12;\
                 serve::accept_conn:40;std::net::tcp::TcpListener::accept;accept4 37",
                "svc;svc::main:4;log::open_log:9;open64 5",
                "svc;svc::main:5;config::load:7;pipe2 2",
                // The inherited file leak and the eventfd leak share their stack.
                "worker;0x29d90 in /usr/lib/x86_64-linux-gnu/libc.so.6;openat64 4",
                "worker;worker::connect:30;net::dial:21;socket 4",
            ]
        );
    }

    #[test]
    fn inferno_reads_it() {
        let mut report = sample_report();
        report.processes[0].leaks[0].stack[1].function = Some("f<[u8; 4]>\nnext".into());
        let text = render(&report);
        assert!(text.contains("f<[u8, 4]> next"));
        let mut opt = inferno::flamegraph::Options::default();
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut opt, text.lines(), &mut svg).expect("inferno");
        let svg = String::from_utf8(svg).expect("UTF-8");
        // 52 descriptors in all, every function drawn.
        assert!(svg.contains("all (52 samples, 100%)"), "{svg}");
        for f in ["serve::accept_conn:40", "config::load:7", "net::dial:21"] {
            assert!(svg.contains(f), "{f}");
        }
    }
}
