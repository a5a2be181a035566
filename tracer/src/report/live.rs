//! The live view of `tracer --pid` and system-wide mode: per process the descriptor count against
//! its limit, its growth and the projected time to the limit; per call site what is outstanding,
//! how it changes, and whether it is a suspect. Built from successive [`Report`]s; rendered as
//! text (refreshed in place on a terminal).
use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
};

use tabled::{Table, Tabled, settings::Style};

use super::{
    Group, ProcessReport, Report, table,
    verdict::{self, Policy},
};

/// Facts read from `/proc` for a live process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcFacts {
    pub open_fds: u64,
    pub limit: Option<u64>,
}

/// Live-mode settings.
#[derive(Clone, Copy, Debug)]
pub struct LiveOptions {
    /// Seconds a descriptor may live while its site keeps acquiring before the site is suspect.
    pub min_age_s: f64,
    /// Sites shown per process.
    pub top: usize,
}

/// One frame of the live view.
#[derive(Clone, Debug, Default)]
pub struct LiveFrame {
    pub elapsed_s: f64,
    pub system_wide: bool,
    pub events_per_s: f64,
    pub lost: u64,
    pub procs: Vec<LiveProc>,
}

/// A process in the live view.
#[derive(Clone, Debug, Default)]
pub struct LiveProc {
    pub pid: u32,
    pub comm: String,
    /// How the process ended, when it has.
    pub ended: Option<String>,
    pub open_fds: Option<u64>,
    pub limit: Option<u64>,
    pub growth_per_min: Option<f64>,
    /// Seconds until the limit at the current growth.
    pub eta_s: Option<f64>,
    pub events_per_s: f64,
    pub pre_existing: usize,
    /// Of those, sockets in CLOSE_WAIT.
    pub pre_close_wait: usize,
    /// "EMFILE ×12 at f (file:line)".
    pub limit_hits: Vec<String>,
    /// Threads and goroutines by starting site: (growing, "12 goroutines alive started at f
    /// (file:line), +30.0/min").
    pub tasks: Vec<(bool, String)>,
    pub sites: Vec<LiveSite>,
}

/// A call site in the live view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveSite {
    pub suspect: bool,
    pub count: u64,
    pub delta: i64,
    pub acquired_per_s: f64,
    pub released_per_s: f64,
    /// Median and maximum age of what the site holds.
    pub held_p50_ms: u64,
    pub oldest_ms: u64,
    pub kind: String,
    pub resource: String,
    pub close_wait: u64,
    pub site: String,
    /// Sockets with a peer on this machine, and the first peer processes.
    pub peer_sockets: usize,
    pub peers: Vec<String>,
    /// Peer processes in all.
    pub peer_count: usize,
}

/// Peer processes named per site in the live view.
const PEERS_SHOWN: usize = 2;

#[derive(Default)]
struct SiteHistory {
    counts: VecDeque<u64>,
    acquired: u64,
    released: u64,
    first: Option<(f64, u64)>,
    /// Whether the site was a suspect at the last update.
    suspect: bool,
}

#[derive(Default)]
struct ProcHistory {
    first: Option<(f64, u64)>,
    events: u64,
}

/// What the live view remembers between frames.
pub struct LiveState {
    opts: LiveOptions,
    sites: HashMap<(u32, String), SiteHistory>,
    procs: HashMap<u32, ProcHistory>,
    last_elapsed: f64,
    last_events: u64,
}

/// Intervals of growth that make a site suspect.
const GROWING_INTERVALS: usize = 3;

impl LiveState {
    pub fn new(opts: LiveOptions) -> Self {
        Self {
            opts,
            sites: HashMap::new(),
            procs: HashMap::new(),
            last_elapsed: 0.0,
            last_events: 0,
        }
    }

    /// Marks `report` (the final one) with what the last update concluded: suspects and growth.
    pub fn conclude(&self, report: &mut Report, elapsed_s: f64, policy: &Policy) {
        for p in &mut report.processes {
            for g in &mut p.leaks {
                let Some(h) = self.sites.get(&(p.pid, g.site.clone())) else {
                    continue;
                };
                if let Some((t0, c0)) = h.first
                    && elapsed_s - t0 > 0.5
                {
                    g.growth_per_min = Some((g.count as f64 - c0 as f64) / (elapsed_s - t0) * 60.0);
                }
                g.facts.suspect = h.suspect;
            }
        }
        verdict::assign(report, policy);
    }

    /// Folds a new report into the history; marks suspects in `report` (verdict, growth) and
    /// returns the frame to show.
    pub fn update(
        &mut self,
        report: &mut Report,
        facts: &HashMap<u32, ProcFacts>,
        elapsed_s: f64,
        system_wide: bool,
        policy: &Policy,
    ) -> LiveFrame {
        let dt = (elapsed_s - self.last_elapsed).max(1e-3);
        let events = report.events.acquired + report.events.released;
        let mut frame = LiveFrame {
            elapsed_s,
            system_wide,
            events_per_s: events.saturating_sub(self.last_events) as f64 / dt,
            lost: report.events.lost,
            procs: Vec::new(),
        };
        for p in &mut report.processes {
            frame
                .procs
                .push(self.update_proc(p, facts.get(&p.pid), elapsed_s, dt));
        }
        // The suspects just marked change the verdicts (the sites' order in the view already
        // puts suspects first).
        verdict::assign(report, policy);
        self.last_elapsed = elapsed_s;
        self.last_events = events;
        frame
    }

    fn update_proc(
        &mut self,
        p: &mut ProcessReport,
        facts: Option<&ProcFacts>,
        elapsed_s: f64,
        dt: f64,
    ) -> LiveProc {
        let hist = self.procs.entry(p.pid).or_default();
        let proc_events: u64 = p.leaks.iter().map(|g| g.acquired + g.released).sum();
        let events_per_s = proc_events.saturating_sub(hist.events) as f64 / dt;
        hist.events = proc_events;
        let open = facts.map(|f| f.open_fds);
        if let (None, Some(o)) = (hist.first, open) {
            hist.first = Some((elapsed_s, o));
        }
        let growth_per_min = match (hist.first, open) {
            (Some((t0, o0)), Some(o)) if elapsed_s - t0 > 0.5 => {
                Some((o as f64 - o0 as f64) / (elapsed_s - t0) * 60.0)
            }
            _ => None,
        };
        let limit = facts.and_then(|f| f.limit);
        let eta_s = match (growth_per_min, open, limit) {
            (Some(g), Some(o), Some(l)) if g > 0.0 && l > o => Some((l - o) as f64 / (g / 60.0)),
            _ => None,
        };
        let mut sites = Vec::new();
        for g in &mut p.leaks {
            sites.push(self.update_site(p.pid, g, elapsed_s, dt));
        }
        sites.sort_by_key(|s| std::cmp::Reverse((s.suspect, s.count)));
        sites.truncate(self.opts.top);
        LiveProc {
            pid: p.pid,
            comm: p.comm.clone(),
            ended: (!p.running).then(|| p.status()),
            open_fds: open,
            limit,
            growth_per_min,
            eta_s,
            events_per_s,
            pre_existing: p.pre_existing.as_ref().map_or(0, Vec::len),
            pre_close_wait: p
                .pre_existing
                .iter()
                .flatten()
                .filter(|d| d.close_wait)
                .count(),
            limit_hits: p
                .limit_hits
                .iter()
                .map(|h| {
                    let at = h
                        .stack
                        .iter()
                        .find(|f| f.own_code)
                        .or(h.stack.first())
                        .map_or_else(|| format!("{} (no stack)", h.syscall), table::frame_short);
                    format!("{} ×{} at {at}", h.errno, h.count)
                })
                .collect(),
            tasks: p
                .tasks
                .iter()
                .map(|t| {
                    let at = t
                        .own_frame()
                        .or(t.stack.first())
                        .map_or_else(|| "(no stack)".to_string(), table::frame_short);
                    let growth = t
                        .growth_per_min
                        .map_or(String::new(), |g| format!(", {g:+.1}/min"));
                    let noun = match t.kind {
                        crate::accounting::TaskKind::Thread => "thread",
                        crate::accounting::TaskKind::Goroutine => "goroutine",
                    };
                    let s = if t.alive == 1 { "" } else { "s" };
                    (
                        t.facts.suspect,
                        format!("{} {noun}{s} alive started at {at}{growth}", t.alive),
                    )
                })
                .collect(),
            sites,
        }
    }

    fn update_site(&mut self, pid: u32, g: &mut Group, elapsed_s: f64, dt: f64) -> LiveSite {
        let h = self.sites.entry((pid, g.site.clone())).or_default();
        if h.counts.is_empty() {
            // Everything a site holds was opened under observation: it held none one interval
            // ago (at attach, for the first frame).
            h.counts.push_back(0);
            h.first = Some(((elapsed_s - dt).max(0.0), 0));
        }
        let previous = h.counts.back().copied();
        h.counts.push_back(g.count);
        while h.counts.len() > GROWING_INTERVALS + 1 {
            h.counts.pop_front();
        }
        let acquired_total = g.acquired + g.inherited;
        let acquired_per_s = acquired_total.saturating_sub(h.acquired) as f64 / dt;
        let released_per_s = g.released.saturating_sub(h.released) as f64 / dt;
        let acquiring = acquired_total > h.acquired;
        h.acquired = acquired_total;
        h.released = g.released;
        let first = *h.first.get_or_insert((elapsed_s, g.count));
        if elapsed_s - first.0 > 0.5 {
            g.growth_per_min =
                Some((g.count as f64 - first.1 as f64) / (elapsed_s - first.0) * 60.0);
        }
        let growing = h.counts.len() == GROWING_INTERVALS + 1
            && h.counts
                .iter()
                .zip(h.counts.iter().skip(1))
                .all(|(a, b)| b > a);
        let old_while_acquiring =
            acquiring && g.oldest_age_ms as f64 >= self.opts.min_age_s * 1000.0;
        let suspect = growing || old_while_acquiring;
        h.suspect = suspect;
        g.facts.suspect = suspect;
        LiveSite {
            suspect,
            count: g.count,
            delta: previous.map_or(0, |p| g.count as i64 - p as i64),
            acquired_per_s,
            released_per_s,
            held_p50_ms: g.age_ms.p50,
            oldest_ms: g.oldest_age_ms,
            kind: g.kind.to_string(),
            resource: g.resources.first().cloned().unwrap_or_default(),
            close_wait: g.close_wait,
            site: g
                .own_frame()
                .or(g.stack.first())
                .map_or_else(|| format!("{} (no stack)", g.syscall), table::frame_short),
            peer_sockets: g.peers.iter().map(|p| p.fds.len()).sum(),
            peers: g
                .peers
                .iter()
                .take(PEERS_SHOWN)
                .map(|p| p.peer.to_string())
                .collect(),
            peer_count: g.peers.len(),
        }
    }
}

#[derive(Tabled)]
struct SiteRow {
    #[tabled(rename = "")]
    status: String,
    open: u64,
    #[tabled(rename = "Δ")]
    delta: String,
    #[tabled(rename = "acq/s")]
    acquired: String,
    #[tabled(rename = "rel/s")]
    released: String,
    #[tabled(rename = "held p50 / max")]
    held: String,
    kind: String,
    resource: String,
    #[tabled(rename = "where (innermost frame of the program's own code)")]
    site: String,
}

#[derive(Tabled)]
struct ProcRow {
    pid: u32,
    comm: String,
    fds: String,
    #[tabled(rename = "of limit")]
    percent: String,
    #[tabled(rename = "growth/min")]
    growth: String,
    #[tabled(rename = "limit in")]
    eta: String,
    #[tabled(rename = "top suspect site")]
    site: String,
}

/// Renders one frame. `clear` redraws a terminal in place.
pub fn render(frame: &LiveFrame, color: bool, clear: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[H\x1b[2J");
    }
    let _ = writeln!(
        out,
        "tracer: {} for {} — {:.1} events/s, {} lost",
        if frame.system_wide {
            "watching the system"
        } else {
            "watching"
        },
        table::age((frame.elapsed_s * 1000.0) as u64),
        frame.events_per_s,
        frame.lost
    );
    if frame.system_wide {
        render_system(&mut out, frame, &paint);
        return out;
    }
    for p in &frame.procs {
        out.push('\n');
        let _ = writeln!(out, "{}", proc_header(p, &paint));
        for h in &p.limit_hits {
            let _ = writeln!(out, "  {}", paint("1;31", h));
        }
        for (growing, t) in &p.tasks {
            let _ = writeln!(
                out,
                "  {}",
                if *growing {
                    paint("1;31", &format!("SUSPECT {t}"))
                } else {
                    t.clone()
                }
            );
        }
        if p.sites.is_empty() {
            let _ = writeln!(out, "  no descriptors opened under observation still open");
            continue;
        }
        let rows: Vec<SiteRow> = p
            .sites
            .iter()
            .map(|s| SiteRow {
                status: if s.suspect {
                    paint("1;31", "SUSPECT")
                } else {
                    String::new()
                },
                open: s.count,
                delta: format!("{:+}", s.delta),
                acquired: format!("{:.1}", s.acquired_per_s),
                released: format!("{:.1}", s.released_per_s),
                held: format!(
                    "{} / {}",
                    table::age(s.held_p50_ms),
                    table::age(s.oldest_ms)
                ),
                kind: s.kind.clone(),
                resource: resource_cell(s),
                site: s.site.clone(),
            })
            .collect();
        let mut t = Table::new(rows);
        t.with(Style::rounded());
        let _ = writeln!(out, "{t}");
        for s in p.sites.iter().filter(|s| s.peer_count > 0) {
            let _ = writeln!(out, "  {}", peers_line(s));
        }
    }
    out
}

/// `main.queryUser (main.go:15): 10 sockets to 10 processes: postgres[41] "postgres: …", …`.
fn peers_line(s: &LiveSite) -> String {
    let more = s.peer_count.saturating_sub(s.peers.len());
    let more = if more > 0 {
        format!(", … (+{more} more)")
    } else {
        String::new()
    };
    let sockets = if s.peer_sockets == 1 {
        "1 socket".to_string()
    } else {
        format!("{} sockets", s.peer_sockets)
    };
    let to = if s.peer_count == 1 {
        "1 process".to_string()
    } else {
        format!("{} processes", s.peer_count)
    };
    format!(
        "↳ {}: {sockets} to {to} on this machine: {}{more}",
        s.site,
        s.peers.join(", ")
    )
}

fn resource_cell(s: &LiveSite) -> String {
    let mut r = s.resource.clone();
    if r.len() > 48 {
        r = format!("…{}", &r[r.len() - 47..]);
    }
    if s.close_wait > 0 {
        r = format!("{r} ({} in CLOSE_WAIT)", s.close_wait);
    }
    r
}

fn proc_header(p: &LiveProc, paint: &dyn Fn(&str, &str) -> String) -> String {
    let fds = match (p.open_fds, p.limit) {
        (Some(o), Some(l)) => format!("{o} fds / limit {l} ({:.0}%)", o as f64 * 100.0 / l as f64),
        (Some(o), None) => format!("{o} fds"),
        _ => "fds unknown".into(),
    };
    let growth = p
        .growth_per_min
        .map_or(String::new(), |g| format!(", {g:+.1}/min"));
    let eta = p.eta_s.map_or(String::new(), |s| {
        format!(", limit in {}", table::age((s * 1000.0) as u64))
    });
    let ended = p
        .ended
        .as_ref()
        .map_or(String::new(), |e| format!(" — {}", paint("1;33", e)));
    let pre = match (p.pre_existing, p.pre_close_wait) {
        (0, _) => String::new(),
        (n, 0) => format!("; {n} open before attach"),
        (n, cw) => format!(
            "; {n} open before attach, {}",
            paint("1;31", &format!("{cw} of them sockets in CLOSE_WAIT"))
        ),
    };
    format!(
        "{} {}: {fds}{growth}{eta}; {:.1} events/s{pre}{ended}",
        paint("1", &format!("pid {}", p.pid)),
        p.comm,
        p.events_per_s
    )
}

/// System-wide: the top processes by growth and by share of their limit.
fn render_system(out: &mut String, frame: &LiveFrame, paint: &dyn Fn(&str, &str) -> String) {
    let row = |p: &LiveProc| ProcRow {
        pid: p.pid,
        comm: p.comm.clone(),
        fds: p.open_fds.map_or("-".into(), |o| o.to_string()),
        percent: match (p.open_fds, p.limit) {
            (Some(o), Some(l)) => format!("{:.0}%", o as f64 * 100.0 / l as f64),
            _ => "-".into(),
        },
        growth: p.growth_per_min.map_or("-".into(), |g| format!("{g:+.1}")),
        eta: p
            .eta_s
            .map_or("-".into(), |s| table::age((s * 1000.0) as u64)),
        site: p
            .sites
            .iter()
            .find(|s| s.suspect)
            .map_or(String::new(), |s| {
                paint("1;31", &format!("{} {} at {}", s.count, s.kind, s.site))
            }),
    };
    let live: Vec<&LiveProc> = frame.procs.iter().filter(|p| p.ended.is_none()).collect();
    let mut by_growth = live.clone();
    by_growth.sort_by(|a, b| {
        b.growth_per_min
            .unwrap_or(0.0)
            .total_cmp(&a.growth_per_min.unwrap_or(0.0))
    });
    let mut by_limit = live;
    let share = |p: &LiveProc| match (p.open_fds, p.limit) {
        (Some(o), Some(l)) if l > 0 => o as f64 / l as f64,
        _ => 0.0,
    };
    by_limit.sort_by(|a, b| share(b).total_cmp(&share(a)));
    for (title, list) in [
        ("by descriptor growth", by_growth),
        ("by share of the limit", by_limit),
    ] {
        let _ = writeln!(out, "\ntop processes {title}:");
        let rows: Vec<ProcRow> = list.into_iter().take(10).map(row).collect();
        let mut t = Table::new(rows);
        t.with(Style::rounded());
        let _ = writeln!(out, "{t}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        enrich::Kind,
        report::{Frame, Verdict, verdict::Facts},
    };

    const POLICY: Policy = Policy {
        min_count: 2,
        min_age_ms: None,
    };

    /// A site of a running process, or (`exited`) of one that has exited since.
    fn group(count: u64, acquired: u64, oldest_ms: u64, exited: bool) -> Group {
        Group {
            kind: Kind::File,
            count,
            calls: count,
            acquired,
            released: 0,
            inherited: 0,
            fds: (3..3 + count as u32).collect(),
            resources: vec!["/var/log/audit-1.log".into()],
            syscall: "openat".into(),
            oldest_age_ms: oldest_ms,
            age_ms: crate::report::HeldAges {
                p50: oldest_ms / 2,
                max: oldest_ms,
            },
            verdict: Verdict::Leak,
            close_wait: 0,
            close_wait_oldest_ms: None,
            growth_per_min: None,
            passed_from: vec![],
            peers: vec![],
            suppressed: None,
            in_baseline: false,
            stack: vec![Frame {
                address: "0x1".into(),
                offset: "0x1".into(),
                function: Some("server::handle".into()),
                file: Some("/src/server.rs".into()),
                line: Some(42),
                module: "/srv/server".into(),
                inlined: false,
                own_code: true,
            }],
            created_by: vec![],
            site: "s1".into(),
            facts: Facts {
                calls: count,
                oldest_age_ms: oldest_ms,
                exited,
                ..Default::default()
            },
        }
    }

    fn report_of(count: u64, acquired: u64, exited: bool) -> Report {
        Report {
            tool: "tracer",
            version: "0",
            command: vec![],
            exit_code: Some(0),
            duration_ms: 0,
            min_count: 2,
            events: Default::default(),
            coverage_lost: vec![],
            timeline: vec![],
            unused_suppressions: vec![],
            incomplete: None,
            live: true,
            processes: vec![ProcessReport {
                pid: 7,
                ppid: 1,
                comm: "server".into(),
                exe: "/srv/server".into(),
                exit_code: None,
                signal: None,
                running: true,
                exit_unseen: false,
                open_at_end: count,
                leaks: vec![group(count, acquired, 500, exited)],
                pre_existing: Some(vec![]),
                limit_hits: vec![],
                bad_closes: vec![],
                tasks: vec![],
                verify: None,
            }],
        }
    }

    fn report(count: u64, acquired: u64) -> Report {
        report_of(count, acquired, false)
    }

    #[test]
    fn growing_site_becomes_suspect_after_three_intervals() {
        let mut live = LiveState::new(LiveOptions {
            min_age_s: 3600.0,
            top: 10,
        });
        let facts = |o| {
            HashMap::from([(
                7,
                ProcFacts {
                    open_fds: o,
                    limit: Some(1024),
                },
            )])
        };
        let mut suspects = Vec::new();
        for (i, n) in [10u64, 20, 30, 40].into_iter().enumerate() {
            // The process exits before the last frame: its leak stays a leak.
            let mut r = report_of(n, n, i == 3);
            let f = live.update(&mut r, &facts(n + 5), (i + 1) as f64, false, &POLICY);
            suspects.push(f.procs[0].sites[0].suspect);
            if i == 3 {
                assert_eq!(
                    r.processes[0].leaks[0].verdict,
                    Verdict::Leak,
                    "leak stays leak"
                );
                let p = &f.procs[0];
                assert_eq!(p.growth_per_min.map(|g| g.round()), Some(600.0));
                // (1024 - 45) / 10 per second.
                assert_eq!(p.eta_s.map(|s| s.round()), Some(98.0));
                assert_eq!(p.sites[0].delta, 10);
                assert_eq!(p.sites[0].acquired_per_s, 10.0);
            }
        }
        // Growing since attach (0, 10, 20, 30): suspect at the third frame.
        assert_eq!(suspects, [false, false, true, true]);
    }

    #[test]
    fn old_descriptors_while_acquiring_are_suspect() {
        let mut live = LiveState::new(LiveOptions {
            min_age_s: 0.2,
            top: 10,
        });
        let facts = HashMap::new();
        let mut r = report(5, 5);
        live.update(&mut r, &facts, 1.0, false, &POLICY);
        // Old, but nothing acquired since: not a suspect.
        let mut r = report(5, 5);
        assert!(!live.update(&mut r, &facts, 2.0, false, &POLICY).procs[0].sites[0].suspect);
        assert_eq!(r.processes[0].leaks[0].verdict, Verdict::Unclosed);
        let mut r = report(5, 6);
        let f = live.update(&mut r, &facts, 3.0, false, &POLICY);
        assert!(f.procs[0].sites[0].suspect);
        assert_eq!(r.processes[0].leaks[0].verdict, Verdict::Suspect);
    }

    #[test]
    fn names_the_peers_of_a_site() {
        let mut live = LiveState::new(LiveOptions {
            min_age_s: 60.0,
            top: 10,
        });
        let mut r = report(10, 10);
        let g = &mut r.processes[0].leaks[0];
        g.kind = Kind::Socket;
        g.peers = (0..10)
            .map(|i| crate::report::PeerSockets {
                peer: crate::enrich::Peer {
                    pid: 100 + i,
                    comm: "postgres".into(),
                    cmdline: format!("postgres: app db 127.0.0.1({}) idle", 5000 + i),
                },
                fds: vec![3 + i],
            })
            .collect();
        let f = live.update(&mut r, &HashMap::new(), 1.0, false, &POLICY);
        let text = render(&f, false, false);
        assert!(
            text.contains(
                "↳ server::handle (/src/server.rs:42): 10 sockets to 10 processes on this machine: \
                 postgres[100] \"postgres: app db 127.0.0.1(5000) idle\", postgres[101] \
                 \"postgres: app db 127.0.0.1(5001) idle\", … (+8 more)"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_a_frame() {
        let mut live = LiveState::new(LiveOptions {
            min_age_s: 0.1,
            top: 10,
        });
        let facts = HashMap::from([(
            7,
            ProcFacts {
                open_fds: 512,
                limit: Some(1024),
            },
        )]);
        let mut r = report(500, 500);
        live.update(&mut r, &facts, 1.0, false, &POLICY);
        let mut r = report(510, 510);
        let stack = r.processes[0].leaks[0].stack.clone();
        r.processes[0].limit_hits.push(crate::report::LimitHit {
            errno: "EMFILE",
            count: 12,
            syscall: "openat".into(),
            span_ms: 0,
            stack,
        });
        let f = live.update(&mut r, &facts, 2.0, false, &POLICY);
        let text = render(&f, false, false);
        assert!(
            text.contains("pid 7 server: 512 fds / limit 1024 (50%)"),
            "{text}"
        );
        assert!(
            text.contains("EMFILE ×12 at server::handle (/src/server.rs:42)"),
            "{text}"
        );
        assert!(text.contains("SUSPECT"), "{text}");
        assert!(text.contains("+10"), "{text}");
        assert!(text.contains("/var/log/audit-1.log"), "{text}");
        assert!(text.contains("held p50 / max"), "{text}");
        assert!(text.contains("250 ms / 500 ms"), "{text}");
        assert!(!text.contains("↳"), "no peers: {text}");
        assert!(render(&f, false, true).starts_with("\x1b[H\x1b[2J"));
        let sys = render(
            &LiveFrame {
                system_wide: true,
                ..f
            },
            false,
            false,
        );
        assert!(sys.contains("top processes by descriptor growth"), "{sys}");
    }
}
