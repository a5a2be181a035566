//! The terminal report: a summary table per process (leaks first, biggest first), then each
//! group's stack with the program's own frames highlighted and library frames folded.
use std::{fmt::Write as _, path::Path};

use tabled::{Table, Tabled, settings::Style};

use super::{Frame, Group, ProcessReport, Report, Verdict};

/// How the report is styled.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Use ANSI colors (stderr is a terminal).
    pub color: bool,
}

/// Groups shown with full stacks per process.
const MAX_DETAILED: usize = 10;

/// Peer processes listed per group.
const MAX_PEER_LINES: usize = 5;

#[derive(Tabled)]
struct Row {
    verdict: String,
    kind: String,
    open: u64,
    #[tabled(rename = "acq")]
    acquired: u64,
    #[tabled(rename = "rel")]
    released: u64,
    syscall: String,
    oldest: String,
    #[tabled(rename = "where (innermost frame of the program's own code)")]
    site: String,
}

/// Renders the whole report.
pub fn render(report: &Report, opts: Options) -> String {
    let mut out = String::new();
    let paint = |code: &str, s: &str| {
        if opts.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let cmd = report.command.join(" ");
    let _ = match report.exit_code {
        Some(code) => writeln!(
            out,
            "tracer: `{cmd}` exited with code {code} after {}",
            age(report.duration_ms)
        ),
        None => writeln!(
            out,
            "tracer: `{cmd}`: exit code unknown (the record ends {} in)",
            age(report.duration_ms)
        ),
    };
    if let Some(missing) = &report.incomplete {
        let _ = writeln!(
            out,
            "{}",
            paint("33", &format!("record incomplete: {missing}"))
        );
    }
    let e = &report.events;
    let _ = writeln!(
        out,
        "events: {} acquired, {} released, {} lost",
        e.acquired, e.released, e.lost
    );
    let d = &e.drops;
    let no_stack = d.stacks_unreadable + d.stacks_missing + d.stacks_unmapped;
    if no_stack > 0 {
        let _ = writeln!(
            out,
            "  {no_stack} acquisitions without a stack: {} unreadable, {} unmapped, {} other; mapping records lost: {}",
            d.stacks_unreadable, d.stacks_unmapped, d.stacks_missing, d.mappings_lost
        );
    }
    if e.lost > 0 {
        let d = &e.drops;
        let _ = writeln!(
            out,
            "  lost: ring full {}, descriptor map full {}, in-flight map full {}, process map full {}, unseen acquisitions {}, unseen releases {}",
            d.ring_full,
            d.fd_map_full,
            d.inflight_full,
            d.proc_map_full,
            d.unseen_acquisitions,
            d.unseen_releases
        );
    }
    for c in &report.coverage_lost {
        let _ = writeln!(out, "  not covered on this kernel: {c}");
    }
    let checked: Vec<_> = report
        .processes
        .iter()
        .filter_map(|p| p.verify.as_ref())
        .collect();
    if !checked.is_empty() {
        let (open, exact) = checked
            .iter()
            .fold((0, 0), |(o, e), v| (o + v.open, e + v.exact));
        let bad = checked.iter().filter(|v| v.status == "mismatch").count();
        let unchecked = checked.iter().filter(|v| v.status == "unverified").count();
        let line = if unchecked > 0 && bad == 0 {
            paint(
                "1;31",
                &format!(
                    "accounting: UNVERIFIED in {unchecked} of {} processes (see below)",
                    checked.len()
                ),
            )
        } else if bad == 0 {
            paint(
                "32",
                &format!(
                    "accounting: exact ({exact}/{open} descriptors, {} process{})",
                    checked.len(),
                    if checked.len() == 1 { "" } else { "es" }
                ),
            )
        } else {
            paint(
                "1;31",
                &format!(
                    "accounting: MISMATCH in {bad} of {} processes",
                    checked.len()
                ),
            )
        };
        let _ = writeln!(out, "{line}");
    }
    let unverified = report.processes.iter().filter(|p| p.exit_unseen).count();
    if unverified > 0 {
        let _ = writeln!(
            out,
            "accounting: {unverified} process{} not verified (exit record lost)",
            if unverified == 1 { "" } else { "es" }
        );
    }
    let findings = findings(report);
    let _ = writeln!(
        out,
        "{}",
        if findings.is_empty() {
            paint("32", "no leaks")
        } else if findings.len() == 1 && findings[0].contains(" known (") {
            paint("32", &format!("no new leaks; {}", findings[0]))
        } else {
            paint("1;31", &findings.join(", "))
        }
    );
    for p in &report.processes {
        let pre = p.pre_existing.as_ref().is_some_and(|v| !v.is_empty());
        let mismatch = p.verify.as_ref().is_some_and(|v| v.status != "exact");
        if p.leaks.is_empty()
            && p.tasks.is_empty()
            && p.limit_hits.is_empty()
            && p.bad_closes.is_empty()
            && !pre
            && !mismatch
        {
            continue;
        }
        out.push('\n');
        render_process(&mut out, p, report.min_count, &paint);
    }
    if !report.unused_suppressions.is_empty() {
        let _ = writeln!(
            out,
            "\nunused suppressions (they matched nothing: remove them?):"
        );
        for s in &report.unused_suppressions {
            let _ = writeln!(out, "  {s}");
        }
    }
    out
}

/// The verdict summary: "2 leaking call sites, 1 suspect call site, 1 known (suppressed or in
/// the baseline)" (empty: no leaks). Known call sites are not counted under their verdict.
pub fn findings(report: &Report) -> Vec<String> {
    let groups = || report.processes.iter().flat_map(|p| p.leaks.iter());
    let new = |g: &&Group| g.suppressed.is_none() && !g.in_baseline;
    let mut findings = Vec::new();
    for (v, one, many) in [
        (Verdict::Leak, "leaking call site", "leaking call sites"),
        (
            Verdict::Inherited,
            "call site leaking into exec'd programs",
            "call sites leaking into exec'd programs",
        ),
        (Verdict::Suspect, "suspect call site", "suspect call sites"),
    ] {
        let n = groups().filter(new).filter(|g| g.verdict == v).count();
        if n > 0 {
            findings.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    }
    let tasks = report
        .processes
        .iter()
        .flat_map(|p| &p.tasks)
        .filter(|t| t.verdict.is_failure())
        .count();
    if tasks > 0 {
        findings.push(format!(
            "{tasks} {} leaking threads or goroutines",
            if tasks == 1 { "site" } else { "sites" }
        ));
    }
    let known = groups()
        .filter(|g| g.verdict.is_failure() && !g.fails())
        .count();
    if known > 0 {
        findings.push(format!("{known} known (suppressed or in the baseline)"));
    }
    findings
}

/// A group's verdict as the tables show it: failures and suspects in capitals, known ones
/// (suppressed or in the baseline) in lower case with the reason.
pub fn verdict_label(g: &Group) -> String {
    let v = match g.verdict {
        Verdict::Leak => "LEAK",
        Verdict::Inherited => "INHERITED",
        Verdict::Suspect => "SUSPECT",
        Verdict::Unclosed => "unclosed",
    };
    match (&g.suppressed, g.in_baseline) {
        (Some(_), _) => format!("{} (suppressed)", v.to_lowercase()),
        (None, true) => format!("{} (baseline)", v.to_lowercase()),
        _ => v.to_string(),
    }
}

fn render_process(
    out: &mut String,
    p: &ProcessReport,
    min_count: u64,
    paint: &dyn Fn(&str, &str) -> String,
) {
    let status = p.status();
    let _ = writeln!(
        out,
        "{} {} ({}), {}: {} descriptor{} still open",
        paint("1", &format!("pid {}", p.pid)),
        p.comm,
        p.exe,
        status,
        p.open_at_end,
        if p.open_at_end == 1 { "" } else { "s" }
    );
    if let Some(v) = &p.verify {
        let line = if v.status == "exact" {
            format!("  accounting: exact ({}/{})", v.exact, v.open)
        } else if let Some(why) = &v.reason {
            paint("1;31", &format!("  accounting: unverified ({why})"))
        } else {
            let mut parts = Vec::new();
            for (n, fds, what) in [
                (
                    v.missing,
                    &v.missing_fds,
                    "missing (open, never seen acquired)",
                ),
                (v.phantom, &v.phantom_fds, "phantom (accounted, not open)"),
                (v.wrong_kind, &v.wrong_kind_fds, "wrong kind"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}: fds {}", fd_ranges(fds)));
                }
            }
            paint(
                "1;31",
                &format!(
                    "  accounting: {} of {} exact; {}",
                    v.exact,
                    v.open,
                    parts.join("; ")
                ),
            )
        };
        let _ = writeln!(out, "{line}");
    }
    for b in &p.bad_closes {
        let at = b
            .stack
            .iter()
            .find(|f| f.own_code)
            .or(b.stack.first())
            .map_or_else(|| "(no stack)".to_string(), frame_short);
        let double = if b.double_closes > 0 {
            format!(", {} of them double closes", b.double_closes)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} at {at} (close of a descriptor that was not open{double})",
            paint("1;33", &format!("EBADF ×{}", b.count)),
        );
    }
    for h in &p.limit_hits {
        let at = h
            .stack
            .iter()
            .find(|f| f.own_code)
            .or(h.stack.first())
            .map_or_else(|| "(no stack)".to_string(), frame_short);
        let _ = writeln!(
            out,
            "  {} at {at} ({}: descriptor limit reached)",
            paint("1;31", &format!("{} ×{}", h.errno, h.count)),
            h.syscall
        );
    }
    if let Some(pre) = p.pre_existing.as_ref().filter(|v| !v.is_empty()) {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for d in pre {
            match kinds.iter_mut().find(|(k, _)| *k == d.kind.as_str()) {
                Some((_, n)) => *n += 1,
                None => kinds.push((d.kind.to_string(), 1)),
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            out,
            "  {} descriptors were open before tracer attached ({}; origin unknown: no stack, age unknown)",
            pre.len(),
            kinds.join(", ")
        );
        let close_wait: Vec<&str> = pre
            .iter()
            .filter(|d| d.close_wait)
            .map(|d| d.resource.as_str())
            .collect();
        if !close_wait.is_empty() {
            let _ = writeln!(
                out,
                "  {}: the peer closed them, this process never did (e.g. {})",
                paint(
                    "1;31",
                    &format!("{} of them are sockets in CLOSE_WAIT", close_wait.len())
                ),
                close_wait[0]
            );
        }
    }
    render_tasks(out, p, paint);
    if p.leaks.is_empty() {
        return;
    }
    let rows: Vec<Row> = p
        .leaks
        .iter()
        .map(|g| Row {
            verdict: verdict_label(g),
            kind: match g.close_wait_oldest_ms {
                Some(ms) if g.close_wait > 0 => {
                    format!("{} ({} CLOSE_WAIT, {})", g.kind, g.close_wait, age(ms))
                }
                _ => g.kind.to_string(),
            },
            open: g.count,
            acquired: g.acquired + g.inherited,
            released: g.released,
            syscall: g.syscall.clone(),
            oldest: age(g.oldest_age_ms),
            site: g
                .own_frame()
                .or(g.stack.first())
                .map_or("(no stack)".into(), frame_short),
        })
        .collect();
    let mut table = Table::new(rows);
    table.with(Style::rounded());
    let _ = writeln!(out, "{table}");
    let detailed: Vec<&Group> = p
        .leaks
        .iter()
        .filter(|g| g.verdict != Verdict::Unclosed || g.close_wait > 0)
        .collect();
    for (i, g) in detailed.iter().take(MAX_DETAILED).enumerate() {
        render_group(out, i + 1, g, paint);
    }
    if detailed.len() > MAX_DETAILED {
        let _ = writeln!(
            out,
            "\n  ... {} more call sites like these: every stack is in the JSON report (--json)",
            detailed.len() - MAX_DETAILED
        );
    }
    let forked = p
        .leaks
        .iter()
        .filter(|g| g.verdict == Verdict::Unclosed && g.acquired == 0 && g.inherited > 0)
        .count();
    if forked > 0 {
        let _ = writeln!(
            out,
            "  ({forked} {} of descriptors inherited at fork: the parent's, reported there)",
            if forked == 1 { "site" } else { "sites" }
        );
    }
    let unclosed = p
        .leaks
        .iter()
        .filter(|g| g.verdict == Verdict::Unclosed && !(g.acquired == 0 && g.inherited > 0))
        .count();
    let sites = if unclosed == 1 { "site" } else { "sites" };
    if unclosed > 0 && p.running {
        let _ = writeln!(
            out,
            "  ({unclosed} {sites} with descriptors open while the process runs, not (yet) growing for 3 intervals: not suspects)"
        );
    } else if unclosed > 0 {
        let _ = writeln!(
            out,
            "  ({unclosed} {sites} with fewer than {min_count} descriptors open: not leaks; --min-count 1 details them)"
        );
    }
}

fn render_group(out: &mut String, n: usize, g: &Group, paint: &dyn Fn(&str, &str) -> String) {
    let inherited = if g.inherited > 0 {
        format!(" ({} inherited from the parent)", g.inherited)
    } else {
        String::new()
    };
    let label = match g.verdict {
        Verdict::Suspect => "suspect",
        Verdict::Leak => "leak",
        Verdict::Inherited => "inherited across exec",
        Verdict::Unclosed => "close_wait",
    };
    let growth = g
        .growth_per_min
        .filter(|v| *v != 0.0)
        .map_or(String::new(), |v| format!(", {v:+.1}/min"));
    let close_wait = match g.close_wait_oldest_ms {
        Some(ms) if g.close_wait > 0 => format!(
            "; {} in CLOSE_WAIT (the peer closed, this process never did) for up to {}",
            g.close_wait,
            age(ms)
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "\n  {} {} {} descriptor{} from {}{}, still open ({} acquired, {} released here{growth}; held p50 {}, max {}){close_wait}",
        paint("1;31", &format!("{label} #{n}:")),
        g.count,
        g.kind,
        if g.count == 1 { "" } else { "s" },
        g.syscall,
        inherited,
        g.acquired,
        g.released,
        age(g.age_ms.p50),
        age(g.age_ms.max)
    );
    let sample: Vec<&str> = g.resources.iter().take(3).map(String::as_str).collect();
    let more = g.resources.len().saturating_sub(sample.len());
    let _ = writeln!(
        out,
        "    fds {}; {}{}",
        fd_ranges(&g.fds),
        sample.join(", "),
        if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        }
    );
    for p in g.peers.iter().take(MAX_PEER_LINES) {
        let fds = if p.fds.len() == 1 { "fd" } else { "fds" };
        let _ = writeln!(out, "    {fds} {} ↔ peer {}", fd_ranges(&p.fds), p.peer);
    }
    if g.peers.len() > MAX_PEER_LINES {
        let _ = writeln!(
            out,
            "    ... {} more peer processes (every one in the JSON report)",
            g.peers.len() - MAX_PEER_LINES
        );
    }
    for from in &g.passed_from {
        let at = match (&from.function, &from.file, from.line) {
            (Some(func), Some(file), Some(line)) => {
                format!(" at {func} ({}:{line})", short_path(file))
            }
            (Some(func), _, _) => format!(" at {func}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "    passed from pid {}{at}", from.pid);
    }
    render_stack(out, &g.stack, &g.created_by, paint);
}

/// Threads and goroutines alive by starting site: one line each, with the stack of those that
/// leak.
fn render_tasks(out: &mut String, p: &ProcessReport, paint: &dyn Fn(&str, &str) -> String) {
    for t in &p.tasks {
        let at = t
            .own_frame()
            .or(t.stack.first())
            .map_or_else(|| "(no stack)".to_string(), frame_short);
        let growth = t
            .growth_per_min
            .filter(|v| *v != 0.0)
            .map_or(String::new(), |v| format!(", {v:+.1}/min"));
        let summary = t.summary();
        // Where the go statement is, when it is not the program's.
        let by = match t.stack.first() {
            Some(f) if !f.own_code => f
                .function
                .as_deref()
                .map_or(String::new(), |f| format!(" by {f}")),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} started{by} at {at} ({} started, {} ended{growth}, oldest {})",
            if t.verdict.is_failure() || t.verdict == Verdict::Suspect {
                paint("1;31", &summary)
            } else {
                summary
            },
            t.started,
            t.ended,
            age(t.oldest_age_ms)
        );
        if t.verdict.is_failure() {
            render_stack(out, &t.stack, &t.created_by, paint);
        }
    }
}

/// A stack with the program's own frames highlighted and library frames folded, then the
/// stacks that created its goroutine.
fn render_stack(
    out: &mut String,
    stack: &[Frame],
    created_by: &[Vec<Frame>],
    paint: &dyn Fn(&str, &str) -> String,
) {
    render_frames(out, stack, paint);
    if stack.is_empty() {
        let _ = writeln!(
            out,
            "    (no stack: stacks disabled or the stack was not captured)"
        );
    }
    for creator in created_by {
        let _ = writeln!(out, "    {}", paint("2", "created by the goroutine at:"));
        render_frames(out, creator, paint);
    }
}

fn render_frames(out: &mut String, stack: &[Frame], paint: &dyn Fn(&str, &str) -> String) {
    let mut folded: Vec<&Frame> = Vec::new();
    let flush = |out: &mut String, folded: &mut Vec<&Frame>| {
        if folded.is_empty() {
            return;
        }
        let mut libs: Vec<String> = Vec::new();
        for label in folded.iter().map(|f| library_label(f)) {
            if !libs.contains(&label) {
                libs.push(label);
            }
        }
        let _ = writeln!(
            out,
            "        {}",
            paint(
                "2",
                &format!(
                    "... {} library frame{} ({})",
                    folded.len(),
                    if folded.len() == 1 { "" } else { "s" },
                    libs.join(", ")
                )
            )
        );
        folded.clear();
    };
    for f in stack {
        if f.own_code {
            flush(out, &mut folded);
            let _ = writeln!(
                out,
                "    {} {}",
                paint("1;33", ">>"),
                paint("1", &frame_long(f))
            );
        } else {
            folded.push(f);
        }
    }
    flush(out, &mut folded);
}

/// "function (file:line)" with the file shortened.
pub fn frame_short(f: &Frame) -> String {
    let func = f
        .function
        .clone()
        .unwrap_or_else(|| format!("{} in {}", f.address, module_name(&f.module)));
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{func} ({}:{line})", short_path(file)),
        (Some(file), None) => format!("{func} ({})", short_path(file)),
        _ => func,
    }
}

fn frame_long(f: &Frame) -> String {
    let inl = if f.inlined { " [inlined]" } else { "" };
    format!("{}{inl}", frame_short(f))
}

/// A short name for a library frame: its crate or package from the source path, else the
/// module file.
fn library_label(f: &Frame) -> String {
    if let Some(file) = &f.file {
        let parts: Vec<&str> = file.split('/').collect();
        // /rustc/<hash>/library/<crate>/src/...
        if let Some(i) = parts.iter().position(|p| *p == "library")
            && file.starts_with("/rustc/")
            && let Some(krate) = parts.get(i + 1)
        {
            return krate.to_string();
        }
        // ~/.cargo/registry/src/<index>/<crate>-<version>/src/...
        if let Some(i) = parts.iter().position(|p| *p == "registry" || *p == "git")
            && let Some(dir) = parts.get(i + 3)
        {
            return dir
                .rsplit_once('-')
                .map_or(*dir, |(name, _)| name)
                .to_string();
        }
    }
    // Go: the package of the function ("net/http.(*Transport).dialConn" -> "net/http").
    if let Some(func) = &f.function
        && !func.contains("::")
        && let Some(dot) = func[func.rfind('/').map_or(0, |i| i + 1)..].find('.')
    {
        let start = func.rfind('/').map_or(0, |i| i + 1);
        return func[..start + dot].to_string();
    }
    module_name(&f.module)
}

fn module_name(module: &str) -> String {
    Path::new(module)
        .file_name()
        .map_or_else(|| module.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Paths under the current directory are shown relative to it.
fn short_path(file: &str) -> String {
    super::relative_to_cwd(file).unwrap_or_else(|| file.to_string())
}

/// "3-7, 9, 12-13".
pub fn fd_ranges(fds: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < fds.len() {
        let start = fds[i];
        let mut end = start;
        while i + 1 < fds.len() && fds[i + 1] == end + 1 {
            i += 1;
            end = fds[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// Human duration from milliseconds.
pub fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_held_ages_in_the_details() {
        let text = render(&super::super::sample_report(), Options { color: false });
        assert!(
            text.contains(
                "    fds 3-4 ↔ peer postgres[4321] \"postgres: app db 127.0.0.1(5555) idle in transaction\""
            ),
            "{text}"
        );
        assert!(text.contains("held p50 1.2 s, max 1.5 s"), "{text}");
    }

    #[test]
    fn ranges_and_ages() {
        assert_eq!(fd_ranges(&[3, 4, 5, 7, 9, 10]), "3-5, 7, 9-10");
        assert_eq!(fd_ranges(&[]), "");
        assert_eq!(age(999), "999 ms");
        assert_eq!(age(2500), "2.5 s");
        assert_eq!(age(125_000), "2m05s");
    }
}
