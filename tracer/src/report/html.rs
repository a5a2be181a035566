//! The HTML report: one self-contained page (no network access: a Content-Security-Policy
//! forbids loading anything) with a header, a flame graph of the descriptors left open
//! (inferno, inline SVG with its zoom and search script), each process's descriptors over time
//! (plotters, inline SVG), and the table and stacks of the text report.
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use html_escape::encode_text;
use plotters::prelude::*;

use super::{
    Frame, ProcessReport, Report, Timeline, Verdict,
    table::{age, fd_ranges, findings, frame_short, verdict_label},
};

/// Processes without findings whose descriptor chart is still drawn (a fork-heavy command
/// can have thousands).
const MAX_QUIET_CHARTS: usize = 20;

/// Groups shown with their stack per process.
const MAX_DETAILED: usize = 10;

/// Page style. Inferno's own stylesheet (`text`, `#frames`, `.hide`, ...) applies to the whole
/// page, so the charts set their text style with a more specific rule and no id or class here
/// is one of inferno's.
const CSS: &str = "
body { font: 14px sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f2f2f2; }
td.n { text-align: right; }
.fail { color: #b00; font-weight: bold; }
.ok { color: #070; font-weight: bold; }
.note { color: #666; }
tr.own td { background: #fff3c4; font-weight: bold; }
tr.lib td { color: #777; }
code { font-family: monospace; }
.flame svg { width: 100%; }
.chart svg text { font: 12px sans-serif; }
";

/// Renders the whole page.
pub fn render(report: &Report) -> Result<String> {
    let mut out = String::new();
    let cmd = report.command.join(" ");
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>tracer: {}</title>\n<style>{CSS}</style></head>\n<body>\n",
        encode_text(&cmd)
    );
    header(&mut out, report);
    out.push_str("<h2>Descriptors left open, by stack</h2>\n");
    match flame_graph(report)? {
        Some(svg) => {
            let _ = writeln!(out, "<div class=\"flame\">{svg}</div>");
        }
        None => out.push_str("<p class=\"ok\">No descriptors left open.</p>\n"),
    }
    let mut quiet_charts = 0;
    for p in &report.processes {
        let quiet = p.leaks.is_empty()
            && p.tasks.is_empty()
            && p.limit_hits.is_empty()
            && p.bad_closes.is_empty();
        let timeline = report.timeline.iter().find(|t| t.pid == p.pid);
        let chart = match timeline {
            Some(t) if !quiet || quiet_charts < MAX_QUIET_CHARTS => {
                quiet_charts += usize::from(quiet);
                Some(t)
            }
            _ => None,
        };
        process(&mut out, p, chart, report.duration_ms)?;
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// Command, exit code, duration, event totals and the verdict summary.
fn header(out: &mut String, r: &Report) {
    let e = &r.events;
    let _ = write!(
        out,
        "<h1>tracer report</h1>\n<table>\
         <tr><th>command</th><td><code>{}</code></td></tr>\
         <tr><th>exit code</th><td>{}</td></tr>\
         <tr><th>duration</th><td>{}</td></tr>\
         <tr><th>events</th><td>{} acquired, {} released, {} lost</td></tr>",
        encode_text(&r.command.join(" ")),
        r.exit_code.map_or_else(
            || "unknown (the record has no end)".into(),
            |c| c.to_string()
        ),
        age(r.duration_ms),
        e.acquired,
        e.released,
        e.lost
    );
    let found = findings(r);
    let _ = writeln!(
        out,
        "<tr><th>verdict</th><td class=\"{}\">{}</td></tr></table>",
        if found.is_empty() { "ok" } else { "fail" },
        if found.is_empty() {
            "no leaks".to_string()
        } else {
            encode_text(&found.join(", ")).into_owned()
        }
    );
    for c in &r.coverage_lost {
        let _ = writeln!(
            out,
            "<p class=\"note\">Not covered on this kernel: {}</p>",
            encode_text(c)
        );
    }
    if let Some(missing) = &r.incomplete {
        let _ = writeln!(
            out,
            "<p class=\"fail\">Record incomplete: {}</p>",
            encode_text(missing)
        );
    }
}

/// The flame graph of every group (None when no descriptor is left open).
fn flame_graph(r: &Report) -> Result<Option<String>> {
    let lines = super::folded::lines(r);
    if lines.is_empty() {
        return Ok(None);
    }
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = "Descriptors left open".into();
    opt.count_name = "descriptors".into();
    opt.hash = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut svg)
        .context("drawing the flame graph")?;
    let svg = String::from_utf8(svg).context("flame graph SVG")?;
    Ok(Some(inline_svg(&svg)))
}

/// A standalone SVG document made fit to sit inside the page: without the XML declaration,
/// doctype and comments (which name web addresses), and with the addresses in its script's
/// comments and messages written `:/\/` (the same string to JavaScript), so that the page
/// names no address other than XML namespaces.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let mut out = String::with_capacity(svg.len());
    let mut rest = &svg[start..];
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("-->").map_or("", |j| &rest[i + j + 3..]);
    }
    out.push_str(rest);
    match (out.find("<script"), out.find("</script>")) {
        (Some(a), Some(b)) if a < b => {
            let script = out[a..b].replace("://", ":/\\/");
            out.replace_range(a..b, &script);
            out
        }
        _ => out,
    }
}

/// One process: its chart, summary table and the stacks of its leaking groups.
fn process(
    out: &mut String,
    p: &ProcessReport,
    chart: Option<&Timeline>,
    end_ms: u64,
) -> Result<()> {
    let status = p.status();
    let _ = writeln!(
        out,
        "<h2>pid {} {} <span class=\"note\">({}), {}: {} descriptor{} still open</span></h2>",
        p.pid,
        encode_text(&p.comm),
        encode_text(&p.exe),
        status,
        p.open_at_end,
        if p.open_at_end == 1 { "" } else { "s" }
    );
    if let Some(t) = chart {
        out.push_str("<div class=\"chart\">");
        if t.points.is_empty() {
            out.push_str("<p class=\"note\">No descriptor samples.</p>");
        } else {
            out.push_str(&timeline_chart(t, end_ms)?);
        }
        out.push_str("</div>\n");
    }
    notes(out, p);
    for t in &p.tasks {
        let _ = writeln!(
            out,
            "<details><summary class=\"{}\">{} ({} started, {} ended)</summary>",
            if t.verdict.is_failure() { "fail" } else { "" },
            encode_text(&t.headline(p)),
            t.started,
            t.ended
        );
        stack_table(out, &t.stack);
        for c in &t.created_by {
            out.push_str("<p class=\"note\">created by the goroutine at:</p>\n");
            stack_table(out, c);
        }
        out.push_str("</details>\n");
    }
    if p.leaks.is_empty() {
        return Ok(());
    }
    out.push_str(
        "<table><tr><th>verdict</th><th>kind</th><th>open</th><th>acquired</th>\
         <th>released</th><th>syscall</th><th>oldest</th>\
         <th>where (innermost frame of the program's own code)</th></tr>\n",
    );
    for g in &p.leaks {
        let site = g
            .own_frame()
            .or(g.stack.first())
            .map_or("(no stack)".into(), frame_short);
        let _ = writeln!(
            out,
            "<tr><td class=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            if g.fails() { "fail" } else { "" },
            verdict_label(g),
            g.kind,
            g.count,
            g.acquired + g.inherited,
            g.released,
            encode_text(&g.syscall),
            age(g.oldest_age_ms),
            encode_text(&site)
        );
    }
    out.push_str("</table>\n");
    let detailed = p
        .leaks
        .iter()
        .filter(|g| g.verdict != Verdict::Unclosed || g.close_wait > 0);
    for (i, g) in detailed.take(MAX_DETAILED).enumerate() {
        let sample: Vec<&str> = g.resources.iter().take(3).map(String::as_str).collect();
        let _ = writeln!(
            out,
            "<details open><summary><b>{} #{}</b>: {} {} descriptor{} from {}; fds {}; {}</summary>",
            verdict_label(g),
            i + 1,
            g.count,
            g.kind,
            if g.count == 1 { "" } else { "s" },
            encode_text(&g.syscall),
            fd_ranges(&g.fds),
            encode_text(&sample.join(", "))
        );
        stack_table(out, &g.stack);
        for c in &g.created_by {
            out.push_str("<p class=\"note\">created by the goroutine at:</p>\n");
            stack_table(out, c);
        }
        out.push_str("</details>\n");
    }
    Ok(())
}

/// Failed acquisitions, bad closes, pre-existing descriptors and the accounting check.
fn notes(out: &mut String, p: &ProcessReport) {
    let mut items = Vec::new();
    let at = |stack: &[Frame]| {
        stack
            .iter()
            .find(|f| f.own_code)
            .or(stack.first())
            .map_or_else(|| "(no stack)".to_string(), frame_short)
    };
    for b in &p.bad_closes {
        items.push(format!(
            "EBADF ×{} at {} (close of a descriptor that was not open; {} double closes)",
            b.count,
            at(&b.stack),
            b.double_closes
        ));
    }
    for h in &p.limit_hits {
        items.push(format!(
            "{} ×{} at {} ({}: descriptor limit reached)",
            h.errno,
            h.count,
            at(&h.stack),
            h.syscall
        ));
    }
    if let Some(pre) = p.pre_existing.as_ref().filter(|v| !v.is_empty()) {
        items.push(format!(
            "{} descriptors were open before tracer attached (origin unknown)",
            pre.len()
        ));
    }
    if let Some(v) = &p.verify
        && let Some(why) = &v.reason
    {
        items.push(format!("accounting: unverified ({why})"));
    } else if let Some(v) = &p.verify {
        items.push(format!(
            "accounting: {} ({} of {} descriptors exact; {} missing, {} phantom, {} wrong kind)",
            v.status, v.exact, v.open, v.missing, v.phantom, v.wrong_kind
        ));
    }
    if !items.is_empty() {
        out.push_str("<ul>");
        for i in items {
            let _ = write!(out, "<li>{}</li>", encode_text(&i));
        }
        out.push_str("</ul>\n");
    }
}

/// A group's stack, innermost frame first, the program's own frames highlighted.
fn stack_table(out: &mut String, stack: &[Frame]) {
    if stack.is_empty() {
        out.push_str("<p class=\"note\">No stack (stacks disabled or not captured).</p>\n");
        return;
    }
    out.push_str("<table><tr><th>function</th><th>source</th><th>module</th></tr>\n");
    for f in stack {
        let source = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("{file}:{line}"),
            (Some(file), None) => file.clone(),
            _ => String::new(),
        };
        let function = f.function.as_deref().unwrap_or(&f.offset);
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td><code>{}{}</code></td><td>{}</td><td>{}</td></tr>",
            if f.own_code { "own" } else { "lib" },
            encode_text(function),
            if f.inlined { " [inlined]" } else { "" },
            encode_text(&source),
            encode_text(&f.module)
        );
    }
    out.push_str("</table>\n");
}

/// The process's open descriptors over time, as a step line to the end of tracing.
fn timeline_chart(t: &Timeline, end_ms: u64) -> Result<String> {
    let last_ms = t.points.iter().map(|p| p[0]).max().unwrap_or(0);
    let end_ms = end_ms.max(last_ms).max(1);
    let (unit, scale) = if end_ms < 10_000 {
        ("ms", 1.0)
    } else {
        ("s", 1000.0)
    };
    let x = |ms: u64| ms as f64 / scale;
    let mut steps = Vec::with_capacity(t.points.len() * 2 + 1);
    for w in t.points.windows(2) {
        steps.push((x(w[0][0]), w[0][1]));
        steps.push((x(w[1][0]), w[0][1]));
    }
    if let Some(&[ms, n]) = t.points.last() {
        steps.push((x(ms), n));
        steps.push((x(end_ms), n));
    }
    let y_max = t.points.iter().map(|p| p[1]).max().unwrap_or(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 220)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x(end_ms), 0..y_max + 1 + y_max / 10)?;
        chart
            .configure_mesh()
            .x_desc(format!("{unit} since tracing began"))
            .y_desc("descriptors open")
            .draw()?;
        chart.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{enrich::Kind, report::Group};

    fn frame(function: &str, own: bool) -> Frame {
        Frame {
            address: "0x10".into(),
            offset: "0x10".into(),
            function: Some(function.into()),
            file: Some("/src/app/main.rs".into()),
            line: Some(42),
            module: "/src/app/target/app".into(),
            inlined: false,
            own_code: own,
        }
    }

    fn group(count: u64, stack: Vec<Frame>) -> Group {
        Group {
            kind: Kind::File,
            count,
            calls: count,
            acquired: count * 2,
            released: count,
            inherited: 0,
            fds: (3..3 + count as u32).collect(),
            resources: vec!["/tmp/a&b<c>.log".into()],
            syscall: "openat".into(),
            oldest_age_ms: 1500,
            age_ms: Default::default(),
            verdict: Verdict::Leak,
            close_wait: 0,
            close_wait_oldest_ms: None,
            growth_per_min: None,
            passed_from: vec![],
            peers: vec![],
            suppressed: None,
            in_baseline: false,
            stack,
            created_by: vec![],
            site: String::new(),
            facts: Default::default(),
        }
    }

    fn process(pid: u32, comm: &str, leaks: Vec<Group>) -> ProcessReport {
        ProcessReport {
            pid,
            ppid: 1,
            comm: comm.into(),
            exe: format!("/usr/bin/{comm}"),
            exit_code: Some(0),
            signal: None,
            running: false,
            exit_unseen: false,
            open_at_end: leaks.iter().map(|g| g.count).sum(),
            leaks,
            pre_existing: None,
            limit_hits: vec![],
            bad_closes: vec![],
            tasks: vec![],
            verify: None,
        }
    }

    /// Two processes: one leaking through a generic function whose name needs escaping, one
    /// clean with a single timeline point.
    fn sample_report() -> Report {
        let stack = vec![
            frame("std::fs::File::open", false),
            frame("app::open_all<Vec<u8>>::{{closure}} & more", true),
            frame("app::main", true),
        ];
        Report {
            tool: "tracer",
            version: "0",
            command: vec!["app".into(), "--x=<y>".into()],
            exit_code: Some(0),
            duration_ms: 1200,
            min_count: 2,
            events: Default::default(),
            coverage_lost: vec![],
            processes: vec![
                process(10, "app", vec![group(5, stack)]),
                process(11, "helper", vec![]),
            ],
            timeline: vec![
                Timeline {
                    pid: 10,
                    comm: "app".into(),
                    points: vec![[0, 3], [100, 5], [900, 8]],
                },
                Timeline {
                    pid: 11,
                    comm: "helper".into(),
                    points: vec![[50, 3]],
                },
            ],
            unused_suppressions: vec![],
            incomplete: None,
            live: false,
        }
    }

    #[test]
    fn page_is_self_contained() {
        let page = render(&sample_report()).expect("render");
        let namespaces = [
            "xmlns=\"http://www.w3.org/2000/svg\"",
            "xmlns:xlink=\"http://www.w3.org/1999/xlink\"",
            "xmlns:fg=\"http://github.com/jonhoo/inferno\"",
        ];
        let mut rest = page.clone();
        for ns in namespaces {
            rest = rest.replace(ns, "");
        }
        for scheme in ["http://", "https://"] {
            assert!(
                !rest.contains(scheme),
                "web address in the page: {}",
                &rest[rest.find(scheme).unwrap_or(0).saturating_sub(80)..][..160]
            );
        }
        assert!(!page.contains("<!DOCTYPE svg") && !page.contains("<?xml"));
    }

    #[test]
    fn flame_graph_and_one_chart_per_process() {
        let page = render(&sample_report()).expect("render");
        assert!(page.contains("<svg") && page.contains("id=\"frames\""));
        // The flame graph comes first: its script takes the page's first <svg>.
        assert!(page.find("id=\"frames\"") < page.find("<div class=\"chart\">"));
        assert_eq!(page.matches("<div class=\"chart\"><svg").count(), 2);
        assert!(page.contains("LEAK"));
    }

    #[test]
    fn escapes_names() {
        let page = render(&sample_report()).expect("render");
        assert!(page.contains("app::open_all&lt;Vec&lt;u8&gt;&gt;::{{closure}} &amp; more"));
        assert!(!page.contains("open_all<Vec"));
        assert!(page.contains("/tmp/a&amp;b&lt;c&gt;.log"));
        assert!(page.contains("--x=&lt;y&gt;"));
    }

    #[test]
    fn no_groups_no_flame_graph() {
        let mut r = sample_report();
        r.processes[0].leaks.clear();
        r.timeline[1].points.clear();
        let page = render(&r).expect("render");
        assert!(page.contains("No descriptors left open."));
        assert!(!page.contains("id=\"frames\""));
        assert_eq!(page.matches("<div class=\"chart\"><svg").count(), 1);
        assert!(page.contains("No descriptor samples."));
    }

    #[test]
    fn svg_made_inline() {
        let svg = "<?xml version=\"1.0\"?><!DOCTYPE svg x><svg><!-- see https://a -->\
                   <script><![CDATA[f(\"https://b\")]]></script></svg>";
        assert_eq!(
            inline_svg(svg),
            "<svg><script><![CDATA[f(\"https:/\\/b\")]]></script></svg>"
        );
    }
}
