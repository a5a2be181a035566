//! Building the report model from a [`Snapshot`]: outstanding descriptors grouped by call site
//! (merged by source location), their resources, ages, senders and counts, the failures, the
//! verification, the timeline; verdicts from [`verdict`].
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use tracer_common::{syscall as sys, tcp_state::CLOSE_WAIT};

use super::{
    BadClose, Drops, EventTotals, Group, HeldAges, LimitHit, PassedFrom, PeerSockets, PreExisting,
    ProcessReport, Report, TaskGroup, Timeline, Verdict, VerifyReport,
    verdict::{self, Facts, Origin, Policy},
};
use crate::{
    accounting::{Accounting, ChainId, Counts, GroupKey, Process, SiteId, TaskKind},
    enrich::{Kind, Peer, Resource},
    frames::{Frame, source_location, symbolize_stack},
    health::Health,
    probes::syscalls,
    symbolize::Symbolizer,
    unwind::RawFrame,
};

/// Most distinct resources listed per group.
const MAX_RESOURCES: usize = 1000;

/// Most distinct senders listed per group.
const MAX_SENDERS: usize = 16;

/// Most distinct peer processes listed per group.
const MAX_PEERS: usize = 1000;

/// What a run says about itself besides its accounting.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    pub command: Vec<String>,
    /// The command's exit code (None: unknown, from a record without its end).
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// CLOCK_MONOTONIC now, for the age of descriptors of processes still running.
    pub now_ns: u64,
    /// Attached to running processes: list what was open before.
    pub attached: bool,
    /// A live mode (or a record that misses its later part): a process still running has no
    /// `leak` verdict, nothing is "open at exit" yet.
    pub live: bool,
    /// Acquisition paths the kernel does not let tracer follow.
    pub coverage_lost: Vec<String>,
    /// From a record that misses its later part: what is missing.
    pub incomplete: Option<String>,
}

/// What a report is built from: the accounting at one moment, its call sites, the health
/// figures and the run's facts. Owned, so that a live view builds (and symbolizes) it without
/// holding the collector.
pub struct Snapshot {
    pub acct: Accounting,
    pub stacks: Stacks,
    pub health: Health,
    pub run: RunFacts,
}

impl Report {
    /// Builds the report of `snap`, symbolizing the stacks of every outstanding group, with
    /// the verdicts `policy` gives.
    pub fn build(snap: &Snapshot, policy: &Policy, symbolizer: &mut Symbolizer) -> Report {
        let mut b = Building {
            snap,
            policy,
            symbolizer,
            frames: HashMap::new(),
        };
        let processes = snap
            .acct
            .processes()
            .into_iter()
            .map(|p| process_report(p, &mut b))
            .collect();
        let (c, s) = (snap.health.counters, snap.health.stats);
        let drops = Drops {
            ring_full: c.events_lost,
            fd_map_full: c.fd_map_full,
            inflight_full: c.inflight_lost,
            proc_map_full: c.proc_map_full,
            stacks_unreadable: c.stack_unreadable,
            stacks_missing: s.stacks_missing.saturating_sub(c.stack_unreadable),
            stacks_unmapped: s.stacks_unmapped,
            mappings_lost: s.mappings_lost,
            unseen_acquisitions: s.reconciled.unseen_acquisitions,
            unseen_releases: s.reconciled.unseen_releases,
        };
        Report {
            tool: "tracer",
            version: env!("CARGO_PKG_VERSION"),
            command: snap.run.command.clone(),
            exit_code: snap.run.exit_code,
            duration_ms: snap.run.duration_ms,
            min_count: policy.min_count,
            events: EventTotals {
                acquired: c.acquired,
                released: c.released,
                lost: snap.health.lost(),
                drops,
                stack_memo_hits: s.memo_hits,
                collector_cpu_ms: s.collector_cpu_ns as f64 / 1e6,
            },
            coverage_lost: snap.run.coverage_lost.clone(),
            timeline: timeline(&snap.acct),
            processes,
            unused_suppressions: Vec::new(),
            incomplete: snap.run.incomplete.clone(),
            live: snap.run.live,
        }
    }
}

/// Descriptor counts per process over time, from the accounting's samples.
fn timeline(acct: &Accounting) -> Vec<Timeline> {
    let Some(start) = acct.samples.first().map(|s| s.ts_ns) else {
        return Vec::new();
    };
    let mut by_pid: BTreeMap<u32, Vec<[u64; 2]>> = BTreeMap::new();
    for s in &acct.samples {
        for &(pid, n) in &s.counts {
            by_pid
                .entry(pid)
                .or_default()
                .push([(s.ts_ns - start) / 1_000_000, u64::from(n)]);
        }
    }
    by_pid
        .into_iter()
        .map(|(pid, points)| Timeline {
            pid,
            comm: acct
                .process(pid)
                .map(|p| p.comm.clone())
                .unwrap_or_default(),
            points,
        })
        .collect()
}

/// Descriptors below this are stdin/stdout/stderr: never leaks.
const FIRST_REPORTED_FD: u32 = 3;

fn process_report(p: &Process, b: &mut Building<'_>) -> ProcessReport {
    let end_ns = p.ended_ns.unwrap_or(b.snap.run.now_ns);
    // Outstanding descriptors by call site...
    let mut by_key: BTreeMap<(GroupKey, Origin), Vec<(u32, u64)>> = BTreeMap::new();
    let mut pre_existing = Vec::new();
    for (&fd, held) in &p.open {
        let Some(acq) = b.snap.acct.acquisition(held.seq) else {
            continue;
        };
        if acq.key.syscall == sys::PRE_EXISTING {
            pre_existing.push(PreExisting {
                fd,
                kind: acq.kind,
                resource: acq.resource.to_string(),
                close_wait: matches!(&acq.resource, Resource::Socket(info)
                    if matches!(info.state, Some((CLOSE_WAIT, _)))),
                peer: acq.peer.clone(),
            });
        } else if fd >= FIRST_REPORTED_FD {
            let origin = if held.across_exec {
                Origin::Exec
            } else if held.inherited {
                Origin::Fork
            } else {
                Origin::Here
            };
            by_key
                .entry((acq.key, origin))
                .or_default()
                .push((fd, held.seq));
        }
    }
    // ...then merged by source location: copies of one call (unrolled loops, inlined twice)
    // are one site to the reader.
    let mut merged: BTreeMap<MergeKey, Merged> = BTreeMap::new();
    for ((key, origin), fds) in by_key {
        let stack = b.site_stack(key.site);
        let created_by = b.chain_stacks(key.chain);
        let Some(first) = b.snap.acct.acquisition(fds[0].1) else {
            continue;
        };
        let signature = signature(&stack, &created_by);
        let m = merged
            .entry((key.syscall, first.kind, origin, signature))
            .or_insert_with(|| Merged {
                origin,
                passed_from: BTreeSet::new(),
                kind: first.kind,
                syscall: key.syscall,
                stack,
                created_by,
                fds: Vec::new(),
                seqs: BTreeSet::new(),
                resources: BTreeSet::new(),
                oldest_ns: u64::MAX,
                counts: Counts::default(),
                close_wait: 0,
                close_wait_since: u64::MAX,
                ages_ms: Vec::new(),
                peers: BTreeMap::new(),
            });
        let c = p.groups.get(&key).copied().unwrap_or_default();
        m.counts.acquired += c.acquired;
        m.counts.released += c.released;
        m.counts.inherited += c.inherited;
        let mut senders = Vec::new();
        for (fd, seq) in fds {
            let Some(acq) = b.snap.acct.acquisition(seq) else {
                continue;
            };
            m.fds.push(fd);
            m.seqs.insert(seq);
            if m.resources.len() < MAX_RESOURCES {
                m.resources.insert(acq.resource.to_string());
            }
            m.oldest_ns = m.oldest_ns.min(acq.ts_ns);
            m.ages_ms.push(end_ns.saturating_sub(acq.ts_ns) / 1_000_000);
            if let Some(peer) = &acq.peer
                && (m.peers.len() < MAX_PEERS || m.peers.contains_key(peer))
            {
                m.peers.entry(peer.clone()).or_default().push(fd);
            }
            if let Some(from) = acq.from
                && m.passed_from.len() < MAX_SENDERS
            {
                senders.push(from);
            }
            if let Resource::Socket(info) = &acq.resource
                && let Some((CLOSE_WAIT, since)) = info.state
            {
                m.close_wait += 1;
                m.close_wait_since = m.close_wait_since.min(since);
            }
        }
        for from in senders {
            let stack = from.key.map(|k| b.site_stack(k.site)).unwrap_or_default();
            let own = stack.iter().find(|f| f.own_code);
            m.passed_from.insert(PassedFrom {
                pid: from.pid,
                function: own.and_then(|f| f.function.clone()),
                file: own.and_then(|f| f.file.clone()),
                line: own.and_then(|f| f.line),
            });
        }
    }
    merge_cut_short(&mut merged);
    let mut leaks: Vec<Group> = merged
        .into_iter()
        .map(|((_, _, _, signature), mut m)| {
            m.fds.sort_unstable();
            let calls = m.seqs.len() as u64;
            let mut peers: Vec<PeerSockets> = m
                .peers
                .into_iter()
                .map(|(peer, mut fds)| {
                    fds.sort_unstable();
                    PeerSockets { peer, fds }
                })
                .collect();
            peers.sort_by_key(|p| p.fds.first().copied());
            Group {
                kind: m.kind,
                count: m.fds.len() as u64,
                calls,
                acquired: m.counts.acquired,
                released: m.counts.released,
                inherited: m.counts.inherited,
                fds: m.fds,
                resources: m.resources.into_iter().collect(),
                syscall: syscalls::name(m.syscall).to_string(),
                oldest_age_ms: end_ns.saturating_sub(m.oldest_ns) / 1_000_000,
                age_ms: HeldAges::of(m.ages_ms),
                verdict: Verdict::Unclosed,
                facts: Facts {
                    origin: m.origin,
                    calls,
                    oldest_age_ms: end_ns.saturating_sub(m.oldest_ns) / 1_000_000,
                    exited: p.exited(),
                    suspect: false,
                },
                close_wait: m.close_wait,
                close_wait_oldest_ms: (m.close_wait > 0)
                    .then(|| end_ns.saturating_sub(m.close_wait_since) / 1_000_000),
                growth_per_min: None,
                passed_from: m.passed_from.into_iter().collect(),
                peers,
                suppressed: None,
                in_baseline: false,
                stack: m.stack,
                created_by: m.created_by,
                site: format!(
                    "{}|{}|{}{}",
                    m.syscall,
                    m.kind,
                    match m.origin {
                        Origin::Here => "",
                        Origin::Fork => "fork|",
                        Origin::Exec => "exec|",
                    },
                    signature.join("|")
                ),
            }
        })
        .collect();
    for g in &mut leaks {
        g.verdict = verdict::decide(&g.facts, b.policy, b.snap.run.live);
    }
    leaks.sort_by_key(|g| std::cmp::Reverse((g.verdict.is_failure(), g.count)));
    let ebadf = libc::EBADF as u32;
    let limit_hits = p
        .failures
        .iter()
        .filter(|((_, errno), _)| *errno != ebadf)
        .map(|((key, errno), h)| LimitHit {
            errno: if *errno == libc::ENFILE as u32 {
                "ENFILE"
            } else {
                "EMFILE"
            },
            count: h.count,
            syscall: syscalls::name(key.syscall).to_string(),
            span_ms: (h.last_ns - h.first_ns) / 1_000_000,
            stack: b.site_stack(key.site),
        })
        .collect();
    let bad_closes = p
        .failures
        .iter()
        .filter(|((_, errno), _)| *errno == ebadf)
        .map(|((key, _), h)| BadClose {
            count: h.count,
            double_closes: h.double,
            span_ms: (h.last_ns - h.first_ns) / 1_000_000,
            stack: b.site_stack(key.site),
        })
        .collect();
    let tasks = task_groups(p, end_ns, b);
    ProcessReport {
        pid: p.pid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        exe: p.exe.clone(),
        exit_code: p.exit_code(),
        signal: p.signal(),
        running: !p.exited(),
        exit_unseen: p.exit_unseen,
        open_at_end: p.open.range(FIRST_REPORTED_FD..).count() as u64,
        leaks,
        pre_existing: b.snap.run.attached.then_some(pre_existing),
        limit_hits,
        bad_closes,
        tasks,
        verify: p.verify.as_ref().map(VerifyReport::from),
    }
}

/// Whether the program started these tasks, rather than its runtime: a thread whose start
/// has a frame of the program's own code (Go's and other runtimes' threads have none); a
/// goroutine whose `go` statement is not in Go's runtime (its collector's workers, ...) and
/// whose stack or creators run the program's code.
fn started_by_program(kind: TaskKind, stack: &[Frame], created_by: &[Vec<Frame>]) -> bool {
    match kind {
        TaskKind::Thread => stack.iter().any(|f| f.own_code),
        TaskKind::Goroutine => {
            let in_runtime = stack
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.starts_with("runtime."));
            !in_runtime
                && stack
                    .iter()
                    .chain(created_by.iter().flatten())
                    .any(|f| f.own_code)
        }
    }
}

/// What outstanding descriptors are merged by: syscall, kind, origin, and the stack's source
/// locations.
type MergeKey = (u16, Kind, Origin, Vec<String>);

/// The outstanding descriptors of one site, being merged.
struct Merged {
    kind: Kind,
    syscall: u16,
    stack: Vec<Frame>,
    created_by: Vec<Vec<Frame>>,
    fds: Vec<u32>,
    seqs: BTreeSet<u64>,
    resources: BTreeSet<String>,
    oldest_ns: u64,
    counts: Counts,
    close_wait: u64,
    close_wait_since: u64,
    origin: Origin,
    passed_from: BTreeSet<PassedFrom>,
    ages_ms: Vec<u64>,
    peers: BTreeMap<Peer, Vec<u32>>,
}

impl Merged {
    /// Takes `other`'s descriptors and counts (the same site).
    fn absorb(&mut self, other: Merged) {
        self.fds.extend(other.fds);
        self.seqs.extend(other.seqs);
        for r in other.resources {
            if self.resources.len() >= MAX_RESOURCES {
                break;
            }
            self.resources.insert(r);
        }
        self.oldest_ns = self.oldest_ns.min(other.oldest_ns);
        self.counts.acquired += other.counts.acquired;
        self.counts.released += other.counts.released;
        self.counts.inherited += other.counts.inherited;
        self.close_wait += other.close_wait;
        self.close_wait_since = self.close_wait_since.min(other.close_wait_since);
        for from in other.passed_from {
            if self.passed_from.len() >= MAX_SENDERS {
                break;
            }
            self.passed_from.insert(from);
        }
        self.ages_ms.extend(other.ages_ms);
        for (peer, fds) in other.peers {
            if self.peers.len() < MAX_PEERS || self.peers.contains_key(&peer) {
                self.peers.entry(peer).or_default().extend(fds);
            }
        }
    }
}

/// Separates a signature's stack from its creators' stacks.
const CREATED_BY: &str = "created by";

/// A site's identity in source terms: its stack's locations, then its creators'.
fn signature(stack: &[Frame], created_by: &[Vec<Frame>]) -> Vec<String> {
    let mut sig: Vec<String> = stack.iter().map(source_location).collect();
    for creator in created_by {
        sig.push(CREATED_BY.into());
        sig.extend(creator.iter().map(source_location));
    }
    sig
}

/// Threads and goroutines alive (at exit, or now) by the site that started them: only sites
/// the program's own code started (a runtime's own threads and goroutines are not its doing).
fn task_groups(p: &Process, end_ns: u64, b: &mut Building<'_>) -> Vec<TaskGroup> {
    let mut merged: BTreeMap<(TaskKind, Vec<String>), TaskGroup> = BTreeMap::new();
    for (&(kind, key), site) in &p.tasks {
        let alive = if p.exited() {
            site.alive_at_exit
        } else {
            site.alive()
        };
        if alive == 0 {
            continue;
        }
        let stack = b.site_stack(key.site);
        let created_by = b.chain_stacks(key.chain);
        if !started_by_program(kind, &stack, &created_by) {
            continue;
        }
        let oldest_ns = if p.exited() {
            site.oldest_at_exit_ns.unwrap_or(end_ns)
        } else {
            p.live_tasks
                .values()
                .filter(|t| t.key == key)
                .map(|t| t.started_ns)
                .min()
                .unwrap_or(end_ns)
        };
        let growth = (!p.exited()).then(|| site.growth_per_min(end_ns)).flatten();
        let sig = signature(&stack, &created_by);
        let g = merged.entry((kind, sig)).or_insert_with(|| TaskGroup {
            kind,
            alive: 0,
            started: 0,
            ended: 0,
            oldest_age_ms: 0,
            growth_per_min: None,
            verdict: Verdict::Unclosed,
            stack,
            created_by,
            facts: Facts::default(),
        });
        g.alive += alive;
        g.started += site.started;
        g.ended += site.ended;
        g.oldest_age_ms = g
            .oldest_age_ms
            .max(end_ns.saturating_sub(oldest_ns) / 1_000_000);
        if let Some(x) = growth {
            *g.growth_per_min.get_or_insert(0.0) += x;
        }
    }
    let mut groups: Vec<TaskGroup> = merged.into_values().collect();
    for g in &mut groups {
        g.facts = Facts {
            origin: Origin::Here,
            calls: g.alive,
            oldest_age_ms: g.oldest_age_ms,
            exited: p.exited(),
            suspect: g.growth_per_min.is_some_and(|x| x > 0.0),
        };
        g.verdict = verdict::decide(&g.facts, b.policy, b.snap.run.live);
    }
    groups.sort_by_key(|g| std::cmp::Reverse((g.verdict.is_failure(), g.alive)));
    groups
}

/// A stack cut short (its copy ended before the thread's first frame: a goroutine's stack
/// followed by an absent page) is the beginning of the whole one: it is merged into the one
/// longest stack of the same syscall, kind, origin and creators that it begins, when there is
/// exactly one and the cut stack already reaches the program's own code (so the site shown is
/// the same).
fn merge_cut_short(merged: &mut BTreeMap<MergeKey, Merged>) {
    // A signature's own stack, and its creators' part (from the "created by" marker).
    let parts = |k: &MergeKey| {
        let at =
            k.3.iter()
                .position(|l| l == CREATED_BY)
                .unwrap_or(k.3.len());
        (k.3[..at].to_vec(), k.3[at..].to_vec())
    };
    let extends = |a: &MergeKey, b: &MergeKey| {
        let ((a_stack, a_creators), (b_stack, b_creators)) = (parts(a), parts(b));
        (a.0, a.1, a.2) == (b.0, b.1, b.2)
            && a_creators == b_creators
            && b_stack.len() > a_stack.len()
            && b_stack.starts_with(&a_stack)
    };
    let keys: Vec<&MergeKey> = merged.keys().collect();
    let mut moves = Vec::new();
    for &key in &keys {
        if !merged[key].stack.iter().any(|f| f.own_code) {
            continue;
        }
        let longer: Vec<&MergeKey> = keys.iter().copied().filter(|k| extends(key, k)).collect();
        let mut whole = longer
            .iter()
            .filter(|k| !longer.iter().any(|other| extends(k, other)));
        if let (Some(&into), None) = (whole.next(), whole.next()) {
            moves.push((key.clone(), into.clone()));
        }
    }
    for (from, into) in moves {
        if let Some(cut) = merged.remove(&from)
            && let Some(whole) = merged.get_mut(&into)
        {
            whole.absorb(cut);
        }
    }
}

/// Where a report gets the frames of its call sites.
#[derive(Clone)]
pub enum Stacks {
    /// Unwound in this run, symbolized when the report is built.
    Live(Vec<Arc<[RawFrame]>>),
    /// Symbolized when they were recorded.
    Recorded(Arc<HashMap<SiteId, Vec<Frame>>>),
}

/// A report being built: its inputs, and the frames symbolized so far.
struct Building<'a> {
    snap: &'a Snapshot,
    policy: &'a Policy,
    symbolizer: &'a mut Symbolizer,
    frames: HashMap<SiteId, Vec<Frame>>,
}

impl Building<'_> {
    /// Symbolized frames of a call site (once per report).
    fn site_stack(&mut self, site: Option<SiteId>) -> Vec<Frame> {
        let Some(s) = site else {
            return Vec::new();
        };
        if let Some(f) = self.frames.get(&s) {
            return f.clone();
        }
        let frames = match &self.snap.stacks {
            Stacks::Live(raw) => raw
                .get(s as usize)
                .map(|raw| symbolize_stack(raw, self.symbolizer))
                .unwrap_or_default(),
            Stacks::Recorded(frames) => frames.get(&s).cloned().unwrap_or_default(),
        };
        self.frames.insert(s, frames.clone());
        frames
    }

    /// The stacks that created a goroutine, its own creator first (empty ones left out).
    fn chain_stacks(&mut self, chain: Option<ChainId>) -> Vec<Vec<Frame>> {
        let links: Vec<_> = self.snap.acct.chain(chain).collect();
        links
            .into_iter()
            .map(|l| self.site_stack(l.site))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{Acquisition, Change};

    fn acquire(a: &mut Accounting, fds: &[i32], seq: u64, acq: Acquisition) {
        a.apply(Change::Acquire {
            pid: 10,
            fds: fds.to_vec(),
            seq,
            acq: Box::new(acq),
        });
    }

    fn sample_accounting(leaked: u32, pipes: u32) -> Accounting {
        let mut a = Accounting::default();
        let key = |syscall| GroupKey {
            site: None,
            syscall,
            chain: None,
        };
        for i in 0..leaked {
            let path = Resource::Path(format!("/tmp/f{i}"));
            let acq = Acquisition::new(key(sys::OPENAT), Kind::File, path, 1_000_000_000);
            acquire(&mut a, &[3 + i as i32], 100 + i as u64, acq);
        }
        for i in 0..pipes {
            let fd = 100 + 2 * i as i32;
            let pipe = Resource::Anon {
                kind: Kind::Pipe,
                ino: 5,
                name: None,
            };
            let acq = Acquisition::new(key(sys::PIPE2), Kind::Pipe, pipe, 2_000_000_000);
            acquire(&mut a, &[fd, fd + 1], 1000 + i as u64, acq);
        }
        a.apply(Change::Exit {
            pid: 10,
            status: 0,
            ts_ns: 3_000_000_000,
        });
        a
    }

    fn build(acct: Accounting, min_count: u64) -> Report {
        let snap = Snapshot {
            acct,
            stacks: Stacks::Live(Vec::new()),
            health: Health::default(),
            run: RunFacts {
                command: vec!["x".into()],
                exit_code: Some(0),
                ..Default::default()
            },
        };
        Report::build(
            &snap,
            &Policy::new(min_count, None),
            &mut Symbolizer::default(),
        )
    }

    #[test]
    fn groups_verdicts_and_order() {
        let r = build(sample_accounting(5, 1), 2);
        let p = &r.processes[0];
        assert_eq!(p.open_at_end, 7);
        assert_eq!(p.leaks.len(), 2);
        let files = &p.leaks[0];
        assert_eq!(
            (files.kind, files.count, files.calls, files.verdict),
            (Kind::File, 5, 5, Verdict::Leak)
        );
        assert_eq!(files.fds, vec![3, 4, 5, 6, 7]);
        assert_eq!(files.oldest_age_ms, 2000);
        assert_eq!(files.syscall, "openat");
        // One pipe() call is a singleton: two descriptors, one call, below min-count 2.
        let pipe = &p.leaks[1];
        assert_eq!(
            (pipe.count, pipe.calls, pipe.verdict),
            (2, 1, Verdict::Unclosed)
        );
        assert!(r.has_leak());
        assert!(!build(sample_accounting(5, 1), 6).has_leak());
    }

    #[test]
    fn sockets_grouped_by_peer_with_held_ages() {
        let mut a = Accounting::default();
        let key = GroupKey {
            site: None,
            syscall: sys::SOCKET,
            chain: None,
        };
        let peer = |pid| Peer {
            pid,
            comm: "postgres".into(),
            cmdline: format!("postgres: app db 127.0.0.1({pid}) idle"),
        };
        for i in 0..4u64 {
            let sock = Resource::Socket(Default::default());
            let acq = Acquisition::new(key, Kind::Socket, sock, (1 + i) * 1_000_000_000);
            acquire(&mut a, &[3 + i as i32], 10 + i, acq);
        }
        // Two sockets to one backend, one to another, one without a peer on this machine.
        for (seq, pid) in [(10, 500), (11, 501), (12, 500)] {
            a.apply(Change::Peer {
                seq,
                peer: Some(Box::new(peer(pid))),
            });
        }
        a.apply(Change::Peer {
            seq: 13,
            peer: None,
        });
        a.apply(Change::Exit {
            pid: 10,
            status: 0,
            ts_ns: 11_000_000_000,
        });
        let r = build(a, 2);
        let g = &r.processes[0].leaks[0];
        assert_eq!(g.count, 4);
        let peers: Vec<(u32, Vec<u32>)> = g
            .peers
            .iter()
            .map(|p| (p.peer.pid, p.fds.clone()))
            .collect();
        assert_eq!(peers, vec![(500, vec![3, 5]), (501, vec![4])]);
        // Held 10, 9, 8 and 7 s at exit.
        assert_eq!(
            g.age_ms,
            HeldAges {
                p50: 8000,
                max: 10_000
            }
        );
        assert_eq!(g.oldest_age_ms, 10_000);
    }

    #[test]
    fn a_stack_cut_short_joins_the_one_whole_stack_it_begins() {
        let frame = |function: &str, own_code| Frame {
            address: "0x1".into(),
            offset: "0x1".into(),
            function: Some(function.into()),
            file: Some(format!("/src/{function}.go")),
            line: Some(1),
            module: "/bin/app".into(),
            inlined: false,
            own_code,
        };
        let stack = |names: &[&str]| -> Vec<Frame> {
            names
                .iter()
                .map(|n| frame(n, n.starts_with("main.")))
                .collect()
        };
        let sites = HashMap::from([
            (
                0,
                stack(&[
                    "syscall.socket",
                    "main.queryUser",
                    "main.run",
                    "runtime.goexit",
                ]),
            ),
            (1, stack(&["syscall.socket", "main.queryUser", "main.run"])),
            (
                2,
                stack(&[
                    "syscall.socket",
                    "main.queryUser",
                    "main.other",
                    "runtime.goexit",
                ]),
            ),
            // Begins two whole stacks: which one it was is unknown.
            (3, stack(&["syscall.socket", "main.queryUser"])),
            // Cut before the program's own code.
            (4, stack(&["syscall.socket"])),
        ]);
        let mut a = Accounting::default();
        let mut fd = 3;
        for (site, n) in [(0, 2), (1, 1), (2, 1), (3, 1), (4, 1)] {
            for _ in 0..n {
                let key = GroupKey {
                    site: Some(site),
                    syscall: sys::SOCKET,
                    chain: None,
                };
                let sock = Resource::Socket(Default::default());
                let acq = Acquisition::new(key, Kind::Socket, sock, 0);
                acquire(&mut a, &[fd], fd as u64, acq);
                fd += 1;
            }
        }
        let snap = Snapshot {
            acct: a,
            stacks: Stacks::Recorded(Arc::new(sites)),
            health: Health::default(),
            run: RunFacts::default(),
        };
        let r = Report::build(&snap, &Policy::new(2, None), &mut Symbolizer::default());
        let mut groups: Vec<(usize, u64)> = r.processes[0]
            .leaks
            .iter()
            .map(|g| (g.stack.len(), g.count))
            .collect();
        groups.sort_unstable();
        // Sites 0 and 1 as one (3 sockets); 2, 3 and 4 on their own.
        assert_eq!(groups, vec![(1, 1), (2, 1), (4, 1), (4, 3)]);
        let whole = r.processes[0].leaks.iter().find(|g| g.count == 3).unwrap();
        assert_eq!((whole.acquired, whole.fds.clone()), (3, vec![3, 4, 5]));
    }

    #[test]
    fn std_streams_are_never_reported() {
        let mut a = Accounting::default();
        let key = GroupKey {
            site: None,
            syscall: sys::DUP2,
            chain: None,
        };
        acquire(
            &mut a,
            &[1],
            5,
            Acquisition::new(key, Kind::File, Resource::Unknown, 0),
        );
        let r = build(a, 1);
        assert!(r.processes[0].leaks.is_empty());
    }
}
