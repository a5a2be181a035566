//! The report model: one struct, built from the accounting once tracing ends, read by every
//! renderer. Its serde form is the documented JSON schema (README, "JSON report").
mod build;
pub mod folded;
pub mod gate;
pub mod github;
pub mod html;
pub mod json;
pub mod junit;
pub mod live;
pub mod sarif;
pub mod table;
pub mod verdict;

pub use crate::frames::Frame;
pub use build::{RunFacts, Snapshot, Stacks};

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    accounting::Verification,
    enrich::{Kind, Peer},
    output::{Format, OutputArgs},
};

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
    /// A live view (or an incomplete record): running processes have no descriptors open "at
    /// exit" yet (see [`verdict::decide`]).
    #[serde(skip)]
    pub live: bool,
}

/// The number of descriptors a process held over time.
#[derive(Debug, Serialize)]
pub struct Timeline {
    pub pid: u32,
    pub comm: String,
    /// `[milliseconds since tracing began, descriptors open]`, at each change (sampled).
    pub points: Vec<[u64; 2]>,
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
pub fn emit(report: &Report, out: &OutputArgs, text_to: TextTo) -> Result<()> {
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

impl Report {
    /// Whether any site fails `--fail-on-leak` (see [`Group::fails`]), or leaks threads or
    /// goroutines.
    pub fn has_leak(&self) -> bool {
        self.processes.iter().any(|p| {
            p.leaks.iter().any(Group::fails) || p.tasks.iter().any(|t| t.verdict.is_failure())
        })
    }

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
    /// Threads and goroutines still alive (at exit, or when tracing ended) by the stack that
    /// started them, for sites in the program's own code.
    pub tasks: Vec<TaskGroup>,
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

/// Threads or goroutines started at one site, still alive.
#[derive(Debug, Serialize)]
pub struct TaskGroup {
    pub kind: crate::accounting::TaskKind,
    /// Alive at exit (exited processes) or when tracing ended.
    pub alive: u64,
    /// Started at this site, and of those ended before the process did.
    pub started: u64,
    pub ended: u64,
    pub oldest_age_ms: u64,
    /// Change of `alive` per minute over the last minute (running processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth_per_min: Option<f64>,
    pub verdict: Verdict,
    /// The stack that started them: `pthread_create`'s caller, a `go` statement.
    pub stack: Vec<Frame>,
    /// For goroutines created by goroutines: the stacks that created their creators, nearest
    /// first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created_by: Vec<Vec<Frame>>,
    #[serde(skip)]
    pub facts: verdict::Facts,
}

impl TaskGroup {
    /// The innermost frame of the program's own code in the stack, else in its creators'.
    pub fn own_frame(&self) -> Option<&Frame> {
        own_frame(&self.stack, &self.created_by)
    }

    /// The innermost frame of the program's own code that has a source file.
    pub fn source_frame(&self) -> Option<&Frame> {
        source_frame(&self.stack, &self.created_by)
    }

    /// "12 goroutines leaked": count, kind and verdict in words.
    pub fn summary(&self) -> String {
        let noun = match self.kind {
            crate::accounting::TaskKind::Thread => "thread",
            crate::accounting::TaskKind::Goroutine => "goroutine",
        };
        let verb = match self.verdict {
            Verdict::Leak | Verdict::Inherited => "leaked (alive at exit)",
            Verdict::Suspect => "possibly leaking (growing)",
            Verdict::Unclosed => "alive",
        };
        let s = if self.alive == 1 { "" } else { "s" };
        format!("{} {noun}{s} {verb}", self.alive)
    }

    /// "8 threads leaked (alive at exit) started at start_workers (threads.c:27) in pid 12
    /// (svc)".
    pub fn headline(&self, p: &ProcessReport) -> String {
        let at = self
            .own_frame()
            .or(self.stack.first())
            .map_or_else(String::new, |f| {
                format!(" started at {}", table::frame_short(f))
            });
        format!("{}{at} in pid {} ({})", self.summary(), p.pid, p.comm)
    }
}

/// The innermost own-code frame of a stack, else of the stacks that created it.
fn own_frame<'a>(stack: &'a [Frame], created_by: &'a [Vec<Frame>]) -> Option<&'a Frame> {
    stack
        .iter()
        .chain(created_by.iter().flatten())
        .find(|f| f.own_code)
}

/// [`own_frame`], among frames with a source file.
fn source_frame<'a>(stack: &'a [Frame], created_by: &'a [Vec<Frame>]) -> Option<&'a Frame> {
    stack
        .iter()
        .chain(created_by.iter().flatten())
        .find(|f| f.own_code && f.file.is_some())
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
    /// A socket whose other end a process on this machine holds: that process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Peer>,
}

/// How long a site's outstanding descriptors have been held (at exit, or now while running).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeldAges {
    /// The median age.
    pub p50: u64,
    /// The oldest's (`oldest_age_ms`).
    pub max: u64,
}

impl HeldAges {
    /// The median and the maximum of `ages` (milliseconds); zeros for none.
    pub fn of(mut ages: Vec<u64>) -> Self {
        if ages.is_empty() {
            return Self::default();
        }
        let mid = (ages.len() - 1) / 2;
        let (_, p50, _) = ages.select_nth_unstable(mid);
        let p50 = *p50;
        Self {
            p50,
            max: ages.into_iter().max().unwrap_or(p50),
        }
    }
}

/// Sockets of one site whose other ends one process holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerSockets {
    pub peer: Peer,
    pub fds: Vec<u32>,
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
    /// Median and maximum age of the descriptors still open.
    pub age_ms: HeldAges,
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
    /// Sockets among them whose other end a process on this machine holds, by that process
    /// (as last seen while they were open), in the order of their first descriptor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerSockets>,
    /// The suppression (`FILE:LINE`) that matched this site: never fails the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// The site is in the `--baseline` report: a known leak, does not fail the run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_baseline: bool,
    /// Innermost frame first.
    pub stack: Vec<Frame>,
    /// For Go: the stacks of the `go` statements that created the acquiring goroutine and its
    /// creators, nearest first, up to one running the program's own code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created_by: Vec<Vec<Frame>>,
    /// Identity of the call site across snapshots (syscall, kind, source locations).
    #[serde(skip)]
    pub site: String,
    /// What its verdict was decided from.
    #[serde(skip)]
    pub facts: verdict::Facts,
}

impl Group {
    /// Whether this site fails `--fail-on-leak`: a failing verdict, neither suppressed nor in
    /// the baseline.
    pub fn fails(&self) -> bool {
        self.verdict.is_failure() && self.suppressed.is_none() && !self.in_baseline
    }

    /// The innermost frame of the program's own code (the site to look at): in the stack,
    /// else in the stacks that created its goroutine.
    pub fn own_frame(&self) -> Option<&Frame> {
        own_frame(&self.stack, &self.created_by)
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
        source_frame(&self.stack, &self.created_by)
    }
}

/// `file` relative to the current directory, when it is under it.
pub fn relative_to_cwd(file: &str) -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let rel = Path::new(file).strip_prefix(&cwd).ok()?;
    Some(rel.display().to_string())
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
        age_ms: HeldAges {
            p50: 1200,
            max: 1500,
        },
        verdict,
        close_wait: 0,
        close_wait_oldest_ms: None,
        growth_per_min: None,
        passed_from: vec![],
        peers: vec![],
        suppressed: None,
        in_baseline: false,
        stack,
        created_by: vec![],
        site: format!("{syscall}|{kind}"),
        facts: Default::default(),
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
    accept.peers = vec![PeerSockets {
        peer: Peer {
            pid: 4321,
            comm: "postgres".into(),
            cmdline: "postgres: app db 127.0.0.1(5555) idle in transaction".into(),
        },
        fds: vec![3, 4],
    }];
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
        tasks: vec![],
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
        live: false,
    }
}

#[cfg(test)]
mod tests {
    use super::HeldAges;

    #[test]
    fn held_ages_are_the_median_and_the_oldest() {
        assert_eq!(HeldAges::of(vec![]), HeldAges { p50: 0, max: 0 });
        assert_eq!(HeldAges::of(vec![7]), HeldAges { p50: 7, max: 7 });
        assert_eq!(
            HeldAges::of(vec![40_000, 41_000, 39_000, 100]),
            HeldAges {
                p50: 39_000,
                max: 41_000
            }
        );
        assert_eq!(HeldAges::of(vec![5, 1, 3]), HeldAges { p50: 3, max: 5 });
    }
}
