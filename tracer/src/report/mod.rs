//! The report model: one struct, built from the accounting once tracing ends, read by every
//! renderer. Its serde form is the documented JSON schema (README, "JSON report").
pub mod folded;
pub mod gate;
pub mod github;
pub mod html;
pub mod json;
pub mod junit;
pub mod live;
pub mod sarif;
pub mod table;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::Arc,
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use tracer_common::{syscall as sys, tcp_state::CLOSE_WAIT};

use crate::{
    accounting::{Accounting, Counts, GroupKey, Process, SiteId, Verification},
    collector::{Sites, Stats},
    enrich::Kind,
    enrich::Resource,
    probes::{Counters, syscalls},
    symbolize::Symbolizer,
    unwind::RawFrame,
};

/// Exit code of `tracer run --fail-on-leak` when a leak verdict exists.
pub const LEAK_EXIT_CODE: i32 = 99;

/// Most distinct resources listed per group.
const MAX_RESOURCES: usize = 1000;

/// Most distinct senders listed per group.
const MAX_SENDERS: usize = 16;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub command: Vec<String>,
    /// The command's exit code (128 + signal when killed); null when unknown (a record whose
    /// end is missing).
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub min_count: u64,
    pub events: EventTotals,
    /// Acquisition paths this kernel does not let tracer follow (empty when all are).
    pub coverage_lost: Vec<String>,
    pub processes: Vec<ProcessReport>,
    /// Descriptors open per process over time (for graphs).
    pub timeline: Vec<Timeline>,
    /// Suppressions (`--suppressions`) that matched no call site: stale entries to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unused_suppressions: Vec<String>,
    /// From a record that misses its later part (cut short, or stopped at `--max-size`): what
    /// is missing. Processes running at that point get no `leak` verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

/// The number of descriptors a process held over time.
#[derive(Debug, Serialize)]
pub struct Timeline {
    pub pid: u32,
    pub comm: String,
    /// `[milliseconds since tracing began, descriptors open]`, at each change (sampled).
    pub points: Vec<[u64; 2]>,
}

/// An output format of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The terminal report.
    Text,
    /// The JSON report (schema in the README).
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// JUnit XML: one test case per traced process.
    Junit,
    /// GitHub Actions workflow commands (`::error file=...`).
    Github,
    /// Folded stacks (flamegraph.pl, inferno, speedscope), weighted by descriptors.
    Folded,
    /// One self-contained HTML page: flame graph, descriptors over time, table.
    Html,
}

/// Where the text report goes when no `--output` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextTo {
    /// Standard error (`tracer run`: standard output is the command's).
    Stderr,
    Stdout,
    /// Nowhere (`--quiet`).
    Nowhere,
}

/// Writes the final report as `out` asks: in its format to its output, and the JSON report too
/// with `--json`.
pub fn emit(report: &Report, out: &crate::cli::OutputArgs, text_to: TextTo) -> Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    if let Some(path) = &out.json {
        json::write(report, path)?;
    }
    match &out.output {
        Some(path) => {
            let text = report.render(out.format, false)?;
            std::fs::write(path, text)
                .with_context(|| format!("writing the report to {}", path.display()))?;
        }
        None if out.format == Format::Text => match text_to {
            TextTo::Stderr => {
                let color = std::io::stderr().is_terminal();
                eprint!("{}", report.render(Format::Text, color)?);
            }
            TextTo::Stdout => {
                let color = std::io::stdout().is_terminal();
                print!("{}", report.render(Format::Text, color)?);
            }
            TextTo::Nowhere => {}
        },
        None => {
            let text = report.render(out.format, false)?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing the report to standard output")?;
        }
    }
    Ok(())
}

/// Checks, before any work, that the report files `out` names can be written: their
/// directory exists, they are not directories, and none of them is `reading` (the record a
/// report is made from).
pub fn check_outputs(out: &crate::cli::OutputArgs, reading: Option<&Path>) -> Result<()> {
    for path in [&out.output, &out.json].into_iter().flatten() {
        check_output(path)?;
        if reading.is_some_and(|r| same_file(r, path)) {
            bail!("the report {} would overwrite the record", path.display());
        }
    }
    Ok(())
}

/// Checks that a report file can be created: its directory exists and it is not a directory
/// (`-`, standard output, always can).
pub fn check_output(path: &Path) -> Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    if path.is_dir() {
        bail!(
            "cannot write the report to {}: it is a directory",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write the report to {}: no directory {}",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Report {
    /// The report in `format`; `color` for the text format on a terminal.
    pub fn render(&self, format: Format, color: bool) -> Result<String> {
        Ok(match format {
            Format::Text => table::render(self, table::Options { color }),
            Format::Json => json::to_string(self)?,
            Format::Sarif => sarif::render(self)?,
            Format::Junit => junit::render(self)?,
            Format::Github => github::render(self),
            Format::Folded => folded::render(self),
            Format::Html => html::render(self)?,
        })
    }
}

/// Event totals; `lost` is 0 unless the kernel dropped something (see `drops`).
#[derive(Debug, Default, Serialize)]
pub struct EventTotals {
    pub acquired: u64,
    pub released: u64,
    pub lost: u64,
    pub drops: Drops,
    /// Acquisitions whose stack the kernel recognized from the stack memo (no copy sent).
    pub stack_memo_hits: u64,
    /// CPU time tracer's collector spent on these events (decoding, unwinding, accounting).
    pub collector_cpu_ms: f64,
}

/// Every kind of loss, counted separately.
#[derive(Debug, Default, Serialize)]
pub struct Drops {
    /// Ring-buffer records dropped (ring full).
    pub ring_full: u64,
    /// Descriptors not accounted (descriptor map full).
    pub fd_map_full: u64,
    /// Syscalls whose arguments were not kept (in-flight map full).
    pub inflight_full: u64,
    /// Child processes not followed (process map full).
    pub proc_map_full: u64,
    /// Acquisitions whose user stack could not be read.
    pub stacks_unreadable: u64,
    /// Acquisitions that arrived without a stack for another reason (see the README).
    pub stacks_missing: u64,
    /// Stacks that could not be unwound because the process's mappings were unknown.
    pub stacks_unmapped: u64,
    /// Mapping records the kernel dropped (perf buffer full).
    pub mappings_lost: u64,
    /// Descriptors found in the kernel's map without their acquisition event.
    pub unseen_acquisitions: u64,
    /// Held descriptors the kernel had released without us seeing the release event.
    pub unseen_releases: u64,
}

/// One traced process.
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exe: String,
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Still alive when tracing ended (its descriptors were still open then, not at exit).
    pub running: bool,
    /// Exited without its exit being seen (the kernel's exit record was lost): exit code
    /// unknown, accounting not verified.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exit_unseen: bool,
    /// Descriptors (other than 0-2) still open at exit or at the end of tracing.
    pub open_at_end: u64,
    /// Call sites with descriptors still open, leaks first, biggest first.
    pub leaks: Vec<Group>,
    /// Descriptors already open when tracer attached and still open (origin unknown: no stack,
    /// no age). Only when attaching to a running process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_existing: Option<Vec<PreExisting>>,
    /// Acquisitions that failed because a descriptor limit was reached, by call site.
    pub limit_hits: Vec<LimitHit>,
    /// close() calls on descriptors that were not open (EBADF), by call site.
    pub bad_closes: Vec<BadClose>,
    /// The accounting compared with the process's real descriptor table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
}

impl ProcessReport {
    /// How it ended, in words: "exited with 0", "killed by signal 9", "still running when
    /// tracing ended", ...
    pub fn status(&self) -> String {
        match (self.running, self.exit_code, self.signal) {
            (true, _, _) => "still running when tracing ended".to_string(),
            (_, Some(c), _) => format!("exited with {c}"),
            (_, _, Some(s)) => format!("killed by signal {s}"),
            _ if self.exit_unseen => {
                "exited, its exit record lost (exit code unknown, not verified)".to_string()
            }
            _ => "exited".to_string(),
        }
    }
}

/// close() of a descriptor that was not open, from one call site.
#[derive(Debug, Serialize)]
pub struct BadClose {
    pub count: u64,
    /// Of those, closes of a number this process had already closed (and not reused).
    pub double_closes: u64,
    pub span_ms: u64,
    pub stack: Vec<Frame>,
}

/// Result of comparing the accounting with the kernel's descriptor table.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// `exit`: by the kernel as the process exited; `proc`: from /proc/PID/fd at the end.
    pub source: &'static str,
    /// `exact`, `mismatch`, or `unverified` (the table could not be read whole: see `reason`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub open: u32,
    pub exact: u32,
    /// Open but not accounted; accounted but not open; accounted as another file or kind.
    /// Counts, and the first descriptor numbers of each.
    pub missing: u32,
    pub phantom: u32,
    pub wrong_kind: u32,
    pub missing_fds: Vec<u32>,
    pub phantom_fds: Vec<u32>,
    pub wrong_kind_fds: Vec<u32>,
}

impl From<&Verification> for VerifyReport {
    fn from(v: &Verification) -> Self {
        VerifyReport {
            source: if v.at_exit { "exit" } else { "proc" },
            status: if v.unverified.is_some() {
                "unverified"
            } else if v.is_exact() {
                "exact"
            } else {
                "mismatch"
            },
            reason: v.unverified.clone(),
            open: v.open,
            exact: v.exact,
            missing: v.missing,
            phantom: v.phantom,
            wrong_kind: v.wrong_kind,
            missing_fds: v.missing_fds.clone(),
            phantom_fds: v.phantom_fds.clone(),
            wrong_kind_fds: v.wrong_kind_fds.clone(),
        }
    }
}

/// Who sent descriptors a process received over a unix socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PassedFrom {
    pub pid: u32,
    /// The sender's innermost own-code frame where it acquired the descriptor, when known.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A descriptor that was open before tracer attached.
#[derive(Clone, Debug, Serialize)]
pub struct PreExisting {
    pub fd: u32,
    pub kind: Kind,
    pub resource: String,
    /// A socket in CLOSE_WAIT: the peer closed it, this process never did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub close_wait: bool,
}

/// Failed acquisitions (EMFILE: the process's limit; ENFILE: the system's) from one call site.
#[derive(Debug, Serialize)]
pub struct LimitHit {
    pub errno: &'static str,
    pub count: u64,
    pub syscall: String,
    /// Time from the first to the last failure.
    pub span_ms: u64,
    pub stack: Vec<Frame>,
}

/// Whether a call site leaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// At least `--min-count` acquisitions from this site still open.
    Leak,
    /// Still open, but fewer: a log file or a runtime's singleton opened once.
    Unclosed,
    /// Live processes: still growing over consecutive intervals, or old descriptors while more
    /// keep coming (see `tracer --help`).
    Suspect,
    /// Survived an exec into a program that never asked for them: secrets and sockets leaking
    /// into spawned programs. Attributed to the stack (in the old program) that opened them.
    Inherited,
}

impl Verdict {
    /// Whether the verdict fails `--fail-on-leak`.
    pub fn is_failure(self) -> bool {
        matches!(self, Verdict::Leak | Verdict::Inherited)
    }
}

/// Outstanding descriptors from one call site in one process.
#[derive(Debug, Serialize)]
pub struct Group {
    pub kind: Kind,
    /// Descriptors still open.
    pub count: u64,
    /// Syscalls they came from (a pipe() pair is one call, two descriptors).
    pub calls: u64,
    /// Descriptors this process acquired at this site, and released of those from it.
    pub acquired: u64,
    pub released: u64,
    /// Descriptors inherited from the parent at fork from this site.
    pub inherited: u64,
    pub fds: Vec<u32>,
    pub resources: Vec<String>,
    pub syscall: String,
    pub oldest_age_ms: u64,
    pub verdict: Verdict,
    /// Sockets among them in CLOSE_WAIT (the peer closed; this process never did), and for how
    /// long the oldest has been.
    pub close_wait: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_wait_oldest_ms: Option<u64>,
    /// Change of `count` per minute while observed (live modes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth_per_min: Option<f64>,
    /// Descriptors received over a unix socket (SCM_RIGHTS): their senders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed_from: Vec<PassedFrom>,
    /// The suppression (`FILE:LINE`) that matched this site: never fails the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// The site is in the `--baseline` report: a known leak, does not fail the run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_baseline: bool,
    /// Innermost frame first.
    pub stack: Vec<Frame>,
    /// Identity of the call site across snapshots (syscall, kind, source locations).
    #[serde(skip)]
    pub site: String,
}

impl Group {
    /// Whether this site fails `--fail-on-leak`: a failing verdict, neither suppressed nor in
    /// the baseline.
    pub fn fails(&self) -> bool {
        self.verdict.is_failure() && self.suppressed.is_none() && !self.in_baseline
    }

    /// The innermost frame of the program's own code (the site to look at).
    pub fn own_frame(&self) -> Option<&Frame> {
        self.stack.iter().find(|f| f.own_code)
    }

    /// "37 socket descriptors leaked": count, kind and verdict in words.
    pub fn summary(&self) -> String {
        let verb = match self.verdict {
            Verdict::Leak => "leaked",
            Verdict::Inherited => "leaked across exec",
            Verdict::Suspect => "possibly leaking",
            Verdict::Unclosed => "left open",
        };
        let s = if self.count == 1 { "" } else { "s" };
        format!("{} {} descriptor{s} {verb}", self.count, self.kind)
    }

    /// "37 socket descriptors leaked (accept4, still open at exit) at serve::accept_conn
    /// (src/serve.rs:40) in pid 1234 (svc)": what, where and in which process, in one line.
    pub fn headline(&self, p: &ProcessReport) -> String {
        let state = if p.running {
            "still open when tracing ended"
        } else {
            "still open at exit"
        };
        let at = self
            .own_frame()
            .or(self.stack.first())
            .map_or_else(String::new, |f| format!(" at {}", table::frame_short(f)));
        format!(
            "{} ({}, {state}){at} in pid {} ({})",
            self.summary(),
            self.syscall,
            p.pid,
            p.comm
        )
    }

    /// The innermost frame of the program's own code that has a source file: where an
    /// annotation points.
    pub fn source_frame(&self) -> Option<&Frame> {
        self.stack.iter().find(|f| f.own_code && f.file.is_some())
    }
}

/// `file` relative to the current directory, when it is under it.
pub fn relative_to_cwd(file: &str) -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let rel = Path::new(file).strip_prefix(&cwd).ok()?;
    Some(rel.display().to_string())
}

/// One stack frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Frame {
    /// Address in the process, hex.
    pub address: String,
    /// Address in the module file (for offline symbolization), hex.
    pub offset: String,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub module: String,
    pub inlined: bool,
    /// Part of the program's own code rather than a library, runtime or toolchain.
    pub own_code: bool,
}

/// What the report needs besides the accounting.
pub struct Inputs<'a> {
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub min_count: u64,
    /// CLOCK_MONOTONIC now, for the age of descriptors of processes still running.
    pub now_ns: u64,
    pub counters: Counters,
    pub stats: Stats,
    pub acct: &'a Accounting,
    /// The call sites' frames.
    pub stacks: Stacks<'a>,
    /// Attached to running processes: list what was open before.
    pub attached: bool,
    /// Live mode: a process still running has no `leak` verdict (nothing is "open at exit"
    /// yet); the live view marks its growing sites `suspect`.
    pub live: bool,
    /// Acquisition paths the kernel does not let tracer follow.
    pub coverage_lost: &'a [String],
}

impl Report {
    /// Builds the report, symbolizing the stacks of every outstanding group.
    pub fn build(mut input: Inputs<'_>) -> Report {
        let mut stacks: HashMap<SiteId, Vec<Frame>> = HashMap::new();
        let processes = input
            .acct
            .processes()
            .into_iter()
            .map(|p| process_report(p, &mut input, &mut stacks))
            .collect();
        let c = input.counters;
        let drops = Drops {
            ring_full: c.events_lost,
            fd_map_full: c.fd_map_full,
            inflight_full: c.inflight_lost,
            proc_map_full: c.proc_map_full,
            stacks_unreadable: c.stack_unreadable,
            stacks_missing: input
                .stats
                .stacks_missing
                .saturating_sub(c.stack_unreadable),
            stacks_unmapped: input.stats.stacks_unmapped,
            mappings_lost: input.stats.mappings_lost,
            unseen_acquisitions: input.stats.reconciled.unseen_acquisitions,
            unseen_releases: input.stats.reconciled.unseen_releases,
        };
        Report {
            tool: "tracer",
            version: env!("CARGO_PKG_VERSION"),
            command: input.command.clone(),
            exit_code: input.exit_code,
            duration_ms: input.duration_ms,
            min_count: input.min_count,
            events: EventTotals {
                acquired: c.acquired,
                released: c.released,
                lost: c.lost() + input.stats.bad_records,
                drops,
                stack_memo_hits: input.stats.memo_hits,
                collector_cpu_ms: input.stats.collector_cpu_ns as f64 / 1e6,
            },
            coverage_lost: input.coverage_lost.to_vec(),
            timeline: timeline(input.acct),
            processes,
            unused_suppressions: Vec::new(),
            incomplete: None,
        }
    }

    /// Whether any site fails `--fail-on-leak` (see [`Group::fails`]).
    pub fn has_leak(&self) -> bool {
        self.processes
            .iter()
            .any(|p| p.leaks.iter().any(Group::fails))
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

/// How the process came to hold a group's descriptors. Copies inherited at fork are the
/// parent's descriptors (a leak there is reported in the parent); those that survived an exec
/// leaked into a program that never asked for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Here,
    Fork,
    Exec,
}

/// Descriptors below this are stdin/stdout/stderr: never leaks.
const FIRST_REPORTED_FD: u32 = 3;

fn process_report(
    p: &Process,
    input: &mut Inputs<'_>,
    stacks: &mut HashMap<SiteId, Vec<Frame>>,
) -> ProcessReport {
    let end_ns = p.ended_ns.unwrap_or(input.now_ns);
    // Outstanding descriptors by call site...
    let mut by_key: BTreeMap<(GroupKey, Origin), Vec<(u32, u64)>> = BTreeMap::new();
    let mut pre_existing = Vec::new();
    for (&fd, held) in &p.open {
        let Some(acq) = input.acct.acquisition(held.seq) else {
            continue;
        };
        if acq.key.syscall == sys::PRE_EXISTING {
            pre_existing.push(PreExisting {
                fd,
                kind: acq.kind,
                resource: acq.resource.to_string(),
                close_wait: matches!(&acq.resource, Resource::Socket(info)
                    if matches!(info.state, Some((CLOSE_WAIT, _)))),
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
    struct Merged {
        kind: Kind,
        syscall: u16,
        stack: Vec<Frame>,
        fds: Vec<u32>,
        seqs: BTreeSet<u64>,
        resources: BTreeSet<String>,
        oldest_ns: u64,
        counts: Counts,
        close_wait: u64,
        close_wait_since: u64,
        origin: Origin,
        passed_from: BTreeSet<PassedFrom>,
    }
    let mut merged: BTreeMap<(u16, Kind, Origin, Vec<String>), Merged> = BTreeMap::new();
    for ((key, origin), fds) in by_key {
        let stack = site_stack(key.site, input, stacks);
        let Some(first) = input.acct.acquisition(fds[0].1) else {
            continue;
        };
        let signature = stack.iter().map(source_location).collect();
        let m = merged
            .entry((key.syscall, first.kind, origin, signature))
            .or_insert_with(|| Merged {
                origin,
                passed_from: BTreeSet::new(),
                kind: first.kind,
                syscall: key.syscall,
                stack,
                fds: Vec::new(),
                seqs: BTreeSet::new(),
                resources: BTreeSet::new(),
                oldest_ns: u64::MAX,
                counts: Counts::default(),
                close_wait: 0,
                close_wait_since: u64::MAX,
            });
        let c = p.groups.get(&key).copied().unwrap_or_default();
        m.counts.acquired += c.acquired;
        m.counts.released += c.released;
        m.counts.inherited += c.inherited;
        let mut senders = Vec::new();
        for (fd, seq) in fds {
            let Some(acq) = input.acct.acquisition(seq) else {
                continue;
            };
            m.fds.push(fd);
            m.seqs.insert(seq);
            if m.resources.len() < MAX_RESOURCES {
                m.resources.insert(acq.resource.to_string());
            }
            m.oldest_ns = m.oldest_ns.min(acq.ts_ns);
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
            let stack = from
                .key
                .map(|k| site_stack(k.site, input, stacks))
                .unwrap_or_default();
            let own = stack.iter().find(|f| f.own_code);
            m.passed_from.insert(PassedFrom {
                pid: from.pid,
                function: own.and_then(|f| f.function.clone()),
                file: own.and_then(|f| f.file.clone()),
                line: own.and_then(|f| f.line),
            });
        }
    }
    let mut leaks: Vec<Group> = merged
        .into_iter()
        .map(|((_, _, _, signature), mut m)| {
            m.fds.sort_unstable();
            let calls = m.seqs.len() as u64;
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
                verdict: if m.origin == Origin::Exec {
                    Verdict::Inherited
                } else if m.origin == Origin::Here
                    && calls >= input.min_count
                    && (!input.live || p.exited())
                {
                    Verdict::Leak
                } else {
                    Verdict::Unclosed
                },
                close_wait: m.close_wait,
                close_wait_oldest_ms: (m.close_wait > 0)
                    .then(|| end_ns.saturating_sub(m.close_wait_since) / 1_000_000),
                growth_per_min: None,
                passed_from: m.passed_from.into_iter().collect(),
                suppressed: None,
                in_baseline: false,
                stack: m.stack,
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
            stack: site_stack(key.site, input, stacks),
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
            stack: site_stack(key.site, input, stacks),
        })
        .collect();
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
        pre_existing: input.attached.then_some(pre_existing),
        limit_hits,
        bad_closes,
        verify: p.verify.as_ref().map(VerifyReport::from),
    }
}

/// Where a report gets the frames of its call sites.
pub enum Stacks<'a> {
    /// Unwound in this run, symbolized now (the symbolizer is kept across live reports).
    Live {
        sites: &'a Sites,
        symbolizer: &'a mut Symbolizer,
    },
    /// Symbolized when they were recorded.
    Recorded(&'a HashMap<SiteId, Vec<Frame>>),
}

impl Stacks<'_> {
    fn frames(&mut self, site: SiteId) -> Vec<Frame> {
        match self {
            Stacks::Live { sites, symbolizer } => sites
                .stacks
                .get(site as usize)
                .map(|raw| symbolize_stack(raw, symbolizer))
                .unwrap_or_default(),
            Stacks::Recorded(frames) => frames.get(&site).cloned().unwrap_or_default(),
        }
    }
}

/// Symbolized frames of a call site (cached per report).
fn site_stack(
    site: Option<SiteId>,
    input: &mut Inputs<'_>,
    stacks: &mut HashMap<SiteId, Vec<Frame>>,
) -> Vec<Frame> {
    let Some(s) = site else {
        return Vec::new();
    };
    stacks
        .entry(s)
        .or_insert_with(|| input.stacks.frames(s))
        .clone()
}

/// A frame's identity in source terms (module and offset when there are no symbols).
fn source_location(f: &Frame) -> String {
    match (&f.function, &f.file, f.line) {
        (Some(func), Some(file), line) => format!("{func}@{file}:{}", line.unwrap_or(0)),
        (Some(func), None, _) => format!("{func}@{}+{}", f.module, f.offset),
        _ => format!("{}+{}", f.module, f.offset),
    }
}

/// Symbolizes a stack; each address may become several frames through inlining.
pub fn symbolize_stack(raw: &[RawFrame], symbolizer: &mut Symbolizer) -> Vec<Frame> {
    let mut by_module: HashMap<Arc<Path>, Vec<u64>> = HashMap::new();
    for f in raw {
        if let Some(p) = &f.path {
            by_module.entry(p.clone()).or_default().push(f.svma);
        }
    }
    let mut resolved: HashMap<(Arc<Path>, u64), Arc<[crate::symbolize::SymFrame]>> = HashMap::new();
    for (path, addrs) in by_module {
        for (addr, syms) in addrs.iter().zip(symbolizer.symbolize(&path, &addrs)) {
            resolved.insert((path.clone(), *addr), syms);
        }
    }
    let mut out = Vec::new();
    for f in raw {
        let module = f
            .path
            .as_ref()
            .map_or_else(|| "[unknown]".to_string(), |p| p.display().to_string());
        let syms = f
            .path
            .as_ref()
            .and_then(|p| resolved.get(&(p.clone(), f.svma)).cloned());
        match syms {
            Some(syms) => {
                for s in syms.iter() {
                    let mut frame = Frame {
                        address: format!("{:#x}", f.avma),
                        offset: format!("{:#x}", f.svma),
                        function: s.function.clone(),
                        file: s.file.clone(),
                        line: s.line,
                        module: module.clone(),
                        inlined: s.inlined,
                        own_code: false,
                    };
                    frame.own_code = is_own_code(&frame);
                    out.push(frame);
                }
            }
            None => out.push(Frame {
                address: format!("{:#x}", f.avma),
                offset: format!("{:#x}", f.svma),
                function: None,
                file: None,
                line: None,
                module,
                inlined: false,
                own_code: false,
            }),
        }
    }
    // The C `main` a Rust binary's runtime calls the program's main through is not the program.
    for i in 1..out.len() {
        let shim = out[i].function.as_deref() == Some("main")
            && out[i].file.is_none()
            && out[i - 1]
                .function
                .as_deref()
                .is_some_and(|f| f.starts_with("std::rt::lang_start"));
        if shim {
            out[i].own_code = false;
        }
    }
    out
}

/// Source paths of toolchains, package caches and system headers.
const LIBRARY_SOURCE_MARKERS: &[&str] = &[
    "/rustc/",
    "/.cargo/registry/",
    "/.cargo/git/",
    "/cargo/registry/",
    "/.rustup/toolchains/",
    "/usr/lib/go",
    "/usr/local/go/",
    "/go/pkg/mod/",
    "/usr/include/",
    "/usr/lib/gcc/",
];

/// Directories of system libraries.
const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
];

/// Function-name prefixes of language runtimes and standard libraries (used without file info).
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    "runtime.",
    "syscall.",
    "internal/",
    "os.",
    "net.",
    "net/",
    "io.",
    "bufio.",
    "__libc_",
    "_start",
    "__GI_",
];

/// Whether a frame belongs to the program's own code rather than a library or runtime.
pub fn is_own_code(f: &Frame) -> bool {
    let Some(function) = &f.function else {
        return false;
    };
    if SYSTEM_LIBRARY_DIRS.iter().any(|d| f.module.starts_with(d)) {
        return false;
    }
    match &f.file {
        Some(file) => {
            !LIBRARY_SOURCE_MARKERS.iter().any(|m| file.contains(m))
                // glibc and other system sources are recorded relative to their build tree.
                && !file.starts_with("./")
                && !file.starts_with("../")
        }
        None => !RUNTIME_PREFIXES.iter().any(|p| function.starts_with(p)),
    }
}

/// A report for the renderers' tests: `svc` (pid 1234, exited) with a leak, an unclosed pipe
/// and a suppressed leak; `worker` (pid 1240, running) with an inherited leak without frames
/// of its own code, a suspect with an inlined frame, and a leak in the baseline. Source files
/// are under the current directory except `/elsewhere/config.rs`.
#[cfg(test)]
pub(crate) fn sample_report() -> Report {
    let cwd = std::env::current_dir().expect("current directory");
    let src = |f: &str| cwd.join(f).display().to_string();
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let frame = |function: Option<&str>, file: Option<String>, line, module: &str, own| Frame {
        address: "0x7f0000001000".into(),
        offset: "0x29d90".into(),
        function: function.map(Into::into),
        file,
        line,
        module: module.into(),
        inlined: false,
        own_code: own,
    };
    let start = || frame(None, None, None, libc, false);
    let group = |kind, count, verdict, syscall: &str, stack| Group {
        kind,
        count,
        calls: count,
        acquired: count,
        released: 0,
        inherited: 0,
        fds: (3..3 + count as u32).collect(),
        resources: vec![format!("{kind} resource")],
        syscall: syscall.into(),
        oldest_age_ms: 1500,
        verdict,
        close_wait: 0,
        close_wait_oldest_ms: None,
        growth_per_min: None,
        passed_from: vec![],
        suppressed: None,
        in_baseline: false,
        stack,
        site: format!("{syscall}|{kind}"),
    };
    let svc_main = |line| {
        frame(
            Some("svc::main"),
            Some(src("src/main.rs")),
            Some(line),
            "/srv/svc",
            true,
        )
    };
    let mut accept = group(
        Kind::Socket,
        37,
        Verdict::Leak,
        "accept4",
        vec![
            frame(Some("accept4"), None, None, libc, false),
            frame(
                Some("std::net::tcp::TcpListener::accept"),
                Some("/rustc/abc/library/std/src/net/tcp.rs".into()),
                Some(100),
                "/srv/svc",
                false,
            ),
            frame(
                Some("serve::accept_conn"),
                Some(src("src/serve.rs")),
                Some(40),
                "/srv/svc",
                true,
            ),
            frame(
                Some("serve::run"),
                Some(src("src/serve.rs")),
                Some(12),
                "/srv/svc",
                true,
            ),
            svc_main(3),
            start(),
        ],
    );
    accept.resources = vec!["tcp 127.0.0.1:8080 <- 127.0.0.1:50000".into()];
    let mut pipe = group(
        Kind::Pipe,
        2,
        Verdict::Unclosed,
        "pipe2",
        vec![
            frame(Some("pipe2"), None, None, libc, false),
            frame(
                Some("config::load"),
                Some("/elsewhere/config.rs".into()),
                Some(7),
                "/srv/svc",
                true,
            ),
            svc_main(5),
        ],
    );
    pipe.calls = 1;
    let mut log = group(
        Kind::File,
        5,
        Verdict::Leak,
        "openat",
        vec![
            frame(Some("open64"), None, None, libc, false),
            frame(
                Some("log::open_log"),
                Some(src("src/log.rs")),
                Some(9),
                "/srv/svc",
                true,
            ),
            svc_main(4),
        ],
    );
    log.suppressed = Some("tracer.supp:3".into());
    let libc_only = || vec![frame(Some("openat64"), None, None, libc, false), start()];
    let inherited = group(Kind::File, 3, Verdict::Inherited, "openat", libc_only());
    let mut dial = frame(
        Some("net::dial"),
        Some(src("src/net.rs")),
        Some(21),
        "/srv/worker",
        true,
    );
    dial.inlined = true;
    let suspect = group(
        Kind::Socket,
        4,
        Verdict::Suspect,
        "socket",
        vec![
            frame(Some("socket"), None, None, libc, false),
            dial,
            frame(
                Some("worker::connect"),
                Some(src("src/worker.rs")),
                Some(30),
                "/srv/worker",
                true,
            ),
        ],
    );
    let mut known = group(Kind::Eventfd, 1, Verdict::Leak, "eventfd2", libc_only());
    known.in_baseline = true;
    let process = |pid, comm: &str, running: bool, leaks: Vec<Group>| ProcessReport {
        pid,
        ppid: 1,
        comm: comm.into(),
        exe: format!("/srv/{comm}"),
        exit_code: (!running).then_some(0),
        signal: None,
        running,
        exit_unseen: false,
        open_at_end: leaks.iter().map(|g| g.count).sum(),
        leaks,
        pre_existing: None,
        limit_hits: vec![],
        bad_closes: vec![],
        verify: None,
    };
    Report {
        tool: "tracer",
        version: "0.1.0",
        command: vec!["./svc".into(), "--port".into(), "8080".into()],
        exit_code: Some(0),
        duration_ms: 2500,
        min_count: 2,
        events: EventTotals {
            acquired: 100,
            released: 48,
            lost: 2,
            ..Default::default()
        },
        coverage_lost: vec![],
        processes: vec![
            process(1234, "svc", false, vec![accept, pipe, log]),
            process(1240, "worker", true, vec![inherited, suspect, known]),
        ],
        timeline: vec![],
        unused_suppressions: vec![],
        incomplete: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{accounting::Acquisition, enrich::Resource};
    use tracer_common::syscall as sys;

    fn frame(function: &str, file: Option<&str>, module: &str) -> Frame {
        Frame {
            address: "0x1".into(),
            offset: "0x1".into(),
            function: Some(function.into()),
            file: file.map(Into::into),
            line: Some(1),
            module: module.into(),
            inlined: false,
            own_code: false,
        }
    }

    #[test]
    fn own_code_classification() {
        assert!(is_own_code(&frame(
            "demo::leak",
            Some("/src/demo/main.rs"),
            "/src/demo/target/demo"
        )));
        assert!(!is_own_code(&frame(
            "std::fs::File::open",
            Some("/rustc/abc/library/std/src/fs.rs"),
            "/src/demo/target/demo"
        )));
        assert!(!is_own_code(&frame(
            "__libc_open64",
            Some("../sysdeps/unix/open64.c"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        )));
        assert!(!is_own_code(&frame(
            "os.OpenFile",
            Some("/usr/lib/go-1.19/src/os/file.go"),
            "/tmp/goleak"
        )));
        assert!(is_own_code(&frame(
            "main.leak",
            Some("/tmp/leak.go"),
            "/tmp/goleak"
        )));
        assert!(!is_own_code(&frame("runtime.goexit", None, "/tmp/goleak")));
        assert!(is_own_code(&frame("leak_file", None, "/tmp/leakc")));
    }

    fn sample_accounting(leaked: u32, pipes: u32) -> Accounting {
        let mut a = Accounting::default();
        a.describe(10, Default::default());
        for i in 0..leaked {
            a.acquire(
                10,
                &[3 + i as i32],
                100 + i as u64,
                Acquisition::new(
                    GroupKey {
                        site: None,
                        syscall: sys::OPENAT,
                    },
                    Kind::File,
                    Resource::Path(format!("/tmp/f{i}")),
                    1_000_000_000,
                ),
            );
        }
        for i in 0..pipes {
            let fd = 100 + 2 * i as i32;
            a.acquire(
                10,
                &[fd, fd + 1],
                1000 + i as u64,
                Acquisition::new(
                    GroupKey {
                        site: None,
                        syscall: sys::PIPE2,
                    },
                    Kind::Pipe,
                    Resource::Anon {
                        kind: Kind::Pipe,
                        ino: 5,
                        name: None,
                    },
                    2_000_000_000,
                ),
            );
        }
        a.exit(10, 0, 3_000_000_000);
        a
    }

    fn build(a: &Accounting, min_count: u64) -> Report {
        let sites = Sites::default();
        let mut symbolizer = Symbolizer::default();
        Report::build(Inputs {
            command: vec!["x".into()],
            exit_code: Some(0),
            duration_ms: 1,
            min_count,
            now_ns: 0,
            counters: Counters::default(),
            stats: Stats::default(),
            acct: a,
            stacks: Stacks::Live {
                sites: &sites,
                symbolizer: &mut symbolizer,
            },
            attached: false,
            live: false,
            coverage_lost: &[],
        })
    }

    #[test]
    fn groups_verdicts_and_order() {
        let a = sample_accounting(5, 1);
        let r = build(&a, 2);
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
        assert!(!build(&a, 6).has_leak());
    }

    #[test]
    fn std_streams_are_never_reported() {
        let mut a = Accounting::default();
        a.acquire(
            1,
            &[1],
            5,
            Acquisition::new(
                GroupKey {
                    site: None,
                    syscall: sys::DUP2,
                },
                Kind::File,
                Resource::Unknown,
                0,
            ),
        );
        let r = build(&a, 1);
        assert!(r.processes[0].leaks.is_empty());
    }
}
