//! Per-process, per-call-site accounting of descriptors, driven by decoded kernel events.
//!
//! Pure bookkeeping (no kernel, no I/O): which descriptors each process holds, which acquisition
//! (and so which call site) each came from, and how many each site acquired and released. The
//! kernel's own map stays the authority: [`Accounting::reconcile`] aligns a process with it.
//!
//! Every change can be journaled ([`Accounting::journal`]): a record is that journal, and
//! [`Accounting::apply`] replays it through the same methods, so a report built from a record is
//! the report the live run built.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque, hash_map::Entry},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::{
    enrich::{Kind, Peer, Resource, SocketInfo},
    health::Reconciled,
};

/// Interned call site (an unwound stack), see `collector::Sites`.
pub type SiteId = u32;

/// Interned goroutine ancestry: which stacks created the goroutine (see [`Chain`]).
pub type ChainId = u32;

/// What descriptors are grouped by: the call site, the syscall for stacks that are missing,
/// and for Go the ancestry of the goroutine that acquired them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub site: Option<SiteId>,
    pub syscall: u16,
    pub chain: Option<ChainId>,
}

/// One link of a goroutine's ancestry: the stack of the `go` statement that created it, and
/// the ancestry of the goroutine that ran it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub site: Option<SiteId>,
    pub parent: Option<ChainId>,
}

/// Most links kept of an ancestry (older creators are cut).
const CHAIN_DEPTH: usize = 16;

/// Tasks followed as resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Thread,
    Goroutine,
}

/// A task alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveTask {
    pub key: GroupKey,
    pub started_ns: u64,
    /// For a goroutine: its own ancestry (what it acquires is created by it).
    pub chain: Option<ChainId>,
}

/// Tasks started at one site of one process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskSite {
    pub started: u64,
    pub ended: u64,
    /// Alive when the process exited (or exec'd), and the oldest of those's start.
    pub alive_at_exit: u64,
    pub oldest_at_exit_ns: Option<u64>,
    /// Alive counts over time: at most one point per second, the last [`TASK_HISTORY`].
    pub history: VecDeque<(u64, u64)>,
}

/// Points kept of a task site's history (two minutes).
pub const TASK_HISTORY: usize = 120;

impl TaskSite {
    /// Alive now.
    pub fn alive(&self) -> u64 {
        self.started - self.ended - self.alive_at_exit
    }

    fn note(&mut self, ts_ns: u64) {
        let alive = self.alive();
        match self.history.back_mut() {
            Some(last) if ts_ns / 1_000_000_000 == last.0 / 1_000_000_000 => last.1 = alive,
            _ => {
                self.history.push_back((ts_ns, alive));
                if self.history.len() > TASK_HISTORY {
                    self.history.pop_front();
                }
            }
        }
    }

    /// Change of the alive count per minute over the last minute of history before `now_ns`
    /// (None: less than a second of history).
    pub fn growth_per_min(&self, now_ns: u64) -> Option<f64> {
        let &(_, last) = self.history.back()?;
        let from = now_ns.saturating_sub(60_000_000_000);
        let &(t0, first) = self
            .history
            .iter()
            .find(|(t, _)| *t >= from)
            .or(self.history.front())?;
        let span = now_ns.saturating_sub(t0);
        (span >= 1_000_000_000).then(|| (last as f64 - first as f64) * 60e9 / span as f64)
    }
}

/// One acquiring syscall (one or two descriptors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    pub key: GroupKey,
    pub kind: Kind,
    pub resource: Resource,
    pub ts_ns: u64,
    /// For a descriptor received from another process: who sent it.
    pub from: Option<Sender>,
    /// For a socket: the process holding its other end, as last seen ([`Change::Peer`]).
    #[serde(skip)]
    pub peer: Option<Peer>,
    /// Held descriptors referring to this acquisition (across processes after fork).
    #[serde(skip)]
    refs: u32,
    /// Sent to another process at least once: remembered after its release.
    #[serde(skip)]
    passed: bool,
}

impl Acquisition {
    pub fn new(key: GroupKey, kind: Kind, resource: Resource, ts_ns: u64) -> Self {
        Self {
            key,
            kind,
            resource,
            ts_ns,
            from: None,
            peer: None,
            refs: 0,
            passed: false,
        }
    }
}

/// The sender of a descriptor passed over a unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub pid: u32,
    /// Its number in the sender.
    pub fd: u32,
    /// The sender's acquisition of it, when known.
    pub key: Option<GroupKey>,
}

/// A descriptor a process holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub seq: u64,
    /// Copied from the parent at fork rather than acquired here.
    pub inherited: bool,
    /// Survived an exec in this process: the program now running never asked for it.
    pub across_exec: bool,
}

impl Held {
    fn acquired(seq: u64) -> Self {
        Self {
            seq,
            inherited: false,
            across_exec: false,
        }
    }
}

/// Totals of one call site within one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub acquired: u64,
    pub released: u64,
    pub inherited: u64,
}

/// Failed calls from one call site: acquisitions that hit a descriptor limit, or closes of a
/// descriptor that was not open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u64,
    /// Closes of a number this process had already closed (double closes), for EBADF.
    pub double: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// The comparison of a process's accounting with its real descriptor table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Made by the kernel at exit (else from /proc while the process ran).
    pub at_exit: bool,
    /// Descriptors open in the table.
    pub open: u32,
    /// Open and accounted as what they are.
    pub exact: u32,
    /// Open but not accounted, accounted but not open, accounted as another file or kind:
    /// counts, and the first descriptor numbers.
    pub missing: u32,
    pub phantom: u32,
    pub wrong_kind: u32,
    pub missing_fds: Vec<u32>,
    pub phantom_fds: Vec<u32>,
    pub wrong_kind_fds: Vec<u32>,
    /// Why the comparison could not be made (the table could not be read whole): then the
    /// counts mean nothing and the accounting is not called exact.
    pub unverified: Option<String>,
}

impl Verification {
    /// A comparison that could not be made, and why.
    pub fn unverified(at_exit: bool, why: String) -> Self {
        Self {
            at_exit,
            unverified: Some(why),
            ..Default::default()
        }
    }

    /// Every open descriptor accounted, nothing else (and the comparison was made).
    pub fn is_exact(&self) -> bool {
        self.unverified.is_none() && self.missing == 0 && self.phantom == 0 && self.wrong_kind == 0
    }
}

/// A traced process.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exe: String,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Raw wait status once exited.
    pub exit_status: Option<u32>,
    /// Gone when tracing ended although its exit was never seen (the exit record was lost):
    /// exited, status unknown.
    pub exit_unseen: bool,
    pub started_ns: u64,
    pub ended_ns: Option<u64>,
    pub open: BTreeMap<u32, Held>,
    pub groups: HashMap<GroupKey, Counts>,
    /// Failed calls by (call site, errno): EMFILE or ENFILE acquisitions, EBADF closes.
    pub failures: BTreeMap<(GroupKey, u32), Failures>,
    /// Descriptor numbers released and not reused since (to tell double closes).
    closed: HashSet<u32>,
    /// Acquisitions (seq, fd) whose number was reused before their release arrived: still
    /// held until it does (releases come in batches, after the acquisitions that follow).
    displaced: HashSet<(u64, u32)>,
    /// Accounting checked against the real table.
    pub verify: Option<Verification>,
    /// Threads and goroutines started, by kind and site.
    pub tasks: HashMap<(TaskKind, GroupKey), TaskSite>,
    pub live_tasks: HashMap<(TaskKind, u64), LiveTask>,
}

impl Process {
    fn task_end(&mut self, kind: TaskKind, id: u64, ts_ns: u64, at_exit: bool) {
        let Some(live) = self.live_tasks.remove(&(kind, id)) else {
            return;
        };
        if let Some(site) = self.tasks.get_mut(&(kind, live.key)) {
            if at_exit {
                site.alive_at_exit += 1;
                site.oldest_at_exit_ns = Some(
                    site.oldest_at_exit_ns
                        .map_or(live.started_ns, |o| o.min(live.started_ns)),
                );
            } else {
                site.ended += 1;
            }
            site.note(ts_ns);
        }
    }

    /// Every task still alive dies with the process's image.
    fn tasks_end_at_exit(&mut self, ts_ns: u64) {
        let live: Vec<_> = self.live_tasks.keys().copied().collect();
        for (kind, id) in live {
            self.task_end(kind, id, ts_ns, true);
        }
    }

    /// Whether it exited (seen, or found gone at the end).
    pub fn exited(&self) -> bool {
        self.exit_status.is_some() || self.exit_unseen
    }

    /// Exit code if it exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        let s = self.exit_status?;
        (s & 0x7f == 0).then_some(((s >> 8) & 0xff) as i32)
    }

    /// Terminating signal if it was killed.
    pub fn signal(&self) -> Option<i32> {
        let s = self.exit_status?;
        (s & 0x7f != 0).then_some((s & 0x7f) as i32)
    }
}

/// The number of descriptors each process held at one moment (only those that changed since
/// the previous sample).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub ts_ns: u64,
    pub counts: Vec<(u32, u32)>,
}

/// What /proc (or an exec) said about a process; `None` fields are left as they were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    pub ppid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub argv: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    pub started_ns: Option<u64>,
}

/// A kernel map entry as reconciliation uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEntry {
    pub seq: u64,
    pub origin_tgid: u32,
    /// The acquiring syscall (what an acquisition never seen is called).
    pub syscall: u16,
}

/// One change to the accounting, as journaled and replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Describe(u32, Box<Described>),
    Acquire {
        pid: u32,
        fds: Vec<i32>,
        seq: u64,
        acq: Box<Acquisition>,
    },
    PreExisting {
        pid: u32,
        fd: u32,
        seq: u64,
        acq: Box<Acquisition>,
    },
    Release {
        pid: u32,
        fd: u32,
        seq: u64,
        passed: bool,
    },
    Failure {
        pid: u32,
        key: GroupKey,
        errno: u32,
        fd: i32,
        ts_ns: u64,
    },
    Verified(u32, Box<Verification>),
    Socket(u64, Box<SocketInfo>),
    /// Who holds the other end of socket acquisition `seq` now (None: nobody on this machine).
    Peer {
        seq: u64,
        peer: Option<Box<Peer>>,
    },
    MarkPassed(u64),
    Fork {
        parent: u32,
        child: u32,
        ts_ns: u64,
    },
    /// A process started another program (pid, path, when).
    Exec(u32, String, u64),
    Exit {
        pid: u32,
        status: u32,
        ts_ns: u64,
    },
    /// A reconciliation: the kernel's entries, and the acquisitions made for those no event
    /// described.
    Reconcile {
        pid: u32,
        kernel: Vec<(u32, KernelEntry)>,
        made: Vec<(u64, Acquisition)>,
    },
    Sample(Sample),
    /// A process found gone at the end without its exit seen.
    ExitUnseen {
        pid: u32,
        ts_ns: u64,
    },
    /// The file an acquisition opened by path was unlinked.
    Unlinked(u64),
    /// A thread or goroutine started at `key` (`key.chain`: the creating goroutine's).
    TaskStart {
        pid: u32,
        kind: TaskKind,
        id: u64,
        key: GroupKey,
        ts_ns: u64,
    },
    /// A task ended; `at_exit`: because its process was exiting.
    TaskEnd {
        pid: u32,
        kind: TaskKind,
        id: u64,
        ts_ns: u64,
        at_exit: bool,
    },
}

impl Change {
    /// When it happened, for the changes that say.
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Change::Acquire { acq, .. } => Some(acq.ts_ns),
            Change::TaskStart { ts_ns, .. }
            | Change::TaskEnd { ts_ns, .. }
            | Change::Exec(_, _, ts_ns)
            | Change::Failure { ts_ns, .. }
            | Change::Fork { ts_ns, .. }
            | Change::Exit { ts_ns, .. }
            | Change::ExitUnseen { ts_ns, .. } => Some(*ts_ns),
            Change::Sample(s) => Some(s.ts_ns),
            _ => None,
        }
    }
}

/// Appended to the path of a file unlinked while held, as /proc shows it.
const DELETED: &str = " (deleted)";

/// Most released acquisitions remembered because they were sent to another process.
const PASSED_MEMORY: usize = 65536;

/// Most releases kept waiting for their acquisition.
const EARLY_MAX: usize = 65536;

/// The whole accounting.
#[derive(Clone, Default)]
pub struct Accounting {
    acqs: HashMap<u64, Acquisition>,
    /// Released acquisitions that had been sent to another process, oldest first.
    passed: HashMap<u64, Acquisition>,
    passed_order: VecDeque<u64>,
    procs: HashMap<u32, Process>,
    /// Processes whose pid was reused while we still reported on them.
    archived: Vec<Process>,
    /// Release events for descriptors we did not hold (their acquisition was not seen).
    pub unmatched_releases: u64,
    /// Releases that came before their acquisition, by (seq, fd): the pid and whether it had
    /// been passed (another CPU's release can overtake the acquisition's record).
    early: HashMap<(u64, u32), (u32, bool)>,
    /// Descriptor counts over time.
    pub samples: Vec<Sample>,
    /// Last sampled count per process.
    sampled: HashMap<u32, u32>,
    /// Changes not yet taken by [`Accounting::take_changes`] (journaling on).
    journal: Option<Vec<Change>>,
    /// Goroutine ancestries, interned.
    chains: Vec<Chain>,
    chain_index: HashMap<Chain, ChainId>,
}

impl Accounting {
    /// Starts journaling every change (for a record).
    pub fn journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The changes journaled since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Applies one change: the only way the accounting changes, and the only place changes
    /// are journaled (a record replays the journal through here).
    pub fn apply(&mut self, change: Change) {
        if let Some(j) = &mut self.journal {
            j.push(change.clone());
        }
        match change {
            Change::Describe(pid, d) => self.describe(pid, *d),
            Change::Acquire { pid, fds, seq, acq } => self.acquire(pid, &fds, seq, *acq),
            Change::PreExisting { pid, fd, seq, acq } => self.pre_existing(pid, fd, seq, *acq),
            Change::Release {
                pid,
                fd,
                seq,
                passed,
            } => self.release(pid, fd, seq, passed),
            Change::Failure {
                pid,
                key,
                errno,
                fd,
                ts_ns,
            } => self.failure(pid, key, errno, fd, ts_ns),
            Change::Verified(pid, v) => self.process_mut(pid).verify = Some(*v),
            Change::Socket(seq, info) => {
                if let Some(Acquisition {
                    resource: Resource::Socket(i),
                    ..
                }) = self.acqs.get_mut(&seq)
                {
                    *i = *info;
                }
            }
            Change::Peer { seq, peer } => {
                if let Some(a) = self.acqs.get_mut(&seq) {
                    a.peer = peer.map(|p| *p);
                }
            }
            Change::Unlinked(seq) => self.unlinked(seq),
            Change::MarkPassed(seq) => {
                if let Some(a) = self.acqs.get_mut(&seq) {
                    a.passed = true;
                }
            }
            Change::Fork {
                parent,
                child,
                ts_ns,
            } => self.fork(parent, child, ts_ns),
            Change::Exec(pid, exe, ts_ns) => self.exec(pid, exe, ts_ns),
            Change::Exit { pid, status, ts_ns } => {
                self.drop_early(pid);
                let p = self.process_mut(pid);
                p.exit_status = Some(status);
                p.ended_ns = Some(ts_ns);
                p.tasks_end_at_exit(ts_ns);
            }
            Change::TaskStart {
                pid,
                kind,
                id,
                key,
                ts_ns,
            } => self.task_start(pid, kind, id, key, ts_ns),
            Change::TaskEnd {
                pid,
                kind,
                id,
                ts_ns,
                at_exit,
            } => {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.task_end(kind, id, ts_ns, at_exit);
                }
            }
            Change::ExitUnseen { pid, ts_ns } => {
                let p = self.process_mut(pid);
                p.exit_unseen = true;
                p.ended_ns = Some(ts_ns);
            }
            Change::Reconcile { pid, kernel, made } => self.reconcile(pid, &kernel, made),
            Change::Sample(sample) => {
                for &(pid, n) in &sample.counts {
                    self.sampled.insert(pid, n);
                }
                self.samples.push(sample);
            }
        }
    }

    /// A task started: counted at its site; a goroutine gets its own ancestry.
    fn task_start(&mut self, pid: u32, kind: TaskKind, id: u64, key: GroupKey, ts_ns: u64) {
        let chain = match kind {
            TaskKind::Goroutine => self.intern_chain(Chain {
                site: key.site,
                parent: key.chain,
            }),
            TaskKind::Thread => key.chain,
        };
        let p = self.process_mut(pid);
        let live = LiveTask {
            key,
            started_ns: ts_ns,
            chain,
        };
        if let Some(old) = p.live_tasks.insert((kind, id), live) {
            // An id reused without its end seen: the old one is gone.
            if let Some(site) = p.tasks.get_mut(&(kind, old.key)) {
                site.ended += 1;
            }
        }
        let site = p.tasks.entry((kind, key)).or_default();
        site.started += 1;
        site.note(ts_ns);
    }

    fn intern_chain(&mut self, chain: Chain) -> Option<ChainId> {
        if chain.site.is_none() && chain.parent.is_none() {
            return None;
        }
        // Ancestries deeper than CHAIN_DEPTH lose their oldest creators.
        let chain = if self.chain(chain.parent).count() >= CHAIN_DEPTH {
            let mut links: Vec<Chain> = self.chain(chain.parent).take(CHAIN_DEPTH - 1).collect();
            links.reverse();
            let mut parent = None;
            for l in links {
                parent = self.intern_chain(Chain { parent, ..l });
            }
            Chain { parent, ..chain }
        } else {
            chain
        };
        if let Some(&id) = self.chain_index.get(&chain) {
            return Some(id);
        }
        let id = self.chains.len() as ChainId;
        self.chains.push(chain);
        self.chain_index.insert(chain, id);
        Some(id)
    }

    /// The links of an ancestry, the goroutine's own creator first.
    pub fn chain(&self, id: Option<ChainId>) -> impl Iterator<Item = Chain> + '_ {
        std::iter::successors(id.and_then(|i| self.chains.get(i as usize)).copied(), |c| {
            c.parent.and_then(|i| self.chains.get(i as usize)).copied()
        })
    }

    /// The ancestry of goroutine `goid` of `pid` (what it acquires was created by it).
    pub fn goroutine_chain(&self, pid: u32, goid: u64) -> Option<ChainId> {
        self.procs
            .get(&pid)?
            .live_tasks
            .get(&(TaskKind::Goroutine, goid))?
            .chain
    }

    /// Records what is known of a process's identity.
    fn describe(&mut self, pid: u32, d: Described) {
        let p = self.process_mut(pid);
        if let Some(v) = d.ppid {
            p.ppid = v;
        }
        if let Some(v) = d.comm {
            p.comm = v;
        }
        if let Some(v) = d.exe {
            p.exe = v;
        }
        if let Some(v) = d.argv {
            p.argv = v;
        }
        if let Some(v) = d.cwd {
            p.cwd = Some(v);
        }
        if let Some(v) = d.started_ns {
            p.started_ns = v;
        }
    }

    /// The process `pid`, created on first use.
    fn process_mut(&mut self, pid: u32) -> &mut Process {
        self.procs.entry(pid).or_insert_with(|| Process {
            pid,
            ..Default::default()
        })
    }

    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    pub fn acquisition(&self, seq: u64) -> Option<&Acquisition> {
        self.acqs.get(&seq)
    }

    /// An acquisition by id, including released ones that had been sent to another process.
    pub fn sent(&self, seq: u64) -> Option<&Acquisition> {
        self.acqs.get(&seq).or_else(|| self.passed.get(&seq))
    }

    /// Records that `pid` acquired `fds` (one, or a pair) in acquisition `seq`.
    fn acquire(&mut self, pid: u32, fds: &[i32], seq: u64, acq: Acquisition) {
        let key = acq.key;
        let mut acq = acq;
        let proc = self.procs.entry(pid).or_insert_with(|| Process {
            pid,
            ..Default::default()
        });
        for &fd in fds.iter().filter(|&&fd| fd >= 0) {
            proc.closed.remove(&(fd as u32));
            if let Some(old) = proc.open.insert(fd as u32, Held::acquired(seq)) {
                proc.displaced.insert((old.seq, fd as u32));
            }
            acq.refs += 1;
            proc.groups.entry(key).or_default().acquired += 1;
        }
        self.acqs.insert(seq, acq);
        if self.early.is_empty() {
            return;
        }
        for &fd in fds.iter().filter(|&&fd| fd >= 0) {
            if let Some((pid, passed)) = self.early.remove(&(seq, fd as u32)) {
                self.release(pid, fd as u32, seq, passed);
            }
        }
    }

    /// Records a descriptor that was already open when tracing began (no acquisition seen, so
    /// no call-site counts).
    fn pre_existing(&mut self, pid: u32, fd: u32, seq: u64, acq: Acquisition) {
        let mut acq = acq;
        acq.refs = 1;
        self.acqs.insert(seq, acq);
        let old = self.process_mut(pid).open.insert(fd, Held::acquired(seq));
        if let Some(old) = old {
            self.unref(old.seq);
        }
    }

    /// Records a release; `passed`: the descriptor had been sent to another process.
    fn release(&mut self, pid: u32, fd: u32, seq: u64, passed: bool) {
        let Some(proc) = self.procs.get_mut(&pid) else {
            // Read in place, a release can overtake even its process's fork record.
            if self.early.len() < EARLY_MAX {
                self.early.insert((seq, fd), (pid, passed));
            } else {
                self.unmatched_releases += 1;
            }
            return;
        };
        match proc.open.get(&fd) {
            Some(h) if h.seq == seq => {
                proc.open.remove(&fd);
                proc.closed.insert(fd);
            }
            _ if proc.displaced.remove(&(seq, fd)) => {}
            _ if !self.acqs.contains_key(&seq) && self.early.len() < EARLY_MAX => {
                self.early.insert((seq, fd), (pid, passed));
                return;
            }
            _ => {
                self.unmatched_releases += 1;
                return;
            }
        }
        if let Some(acq) = self.acqs.get_mut(&seq) {
            proc.groups.entry(acq.key).or_default().released += 1;
            acq.passed |= passed;
        }
        self.unref(seq);
    }

    /// Releases from `pid` still waiting for their acquisition will not get it (it exited):
    /// they are counted unmatched.
    fn drop_early(&mut self, pid: u32) {
        let before = self.early.len();
        self.early.retain(|_, (p, _)| *p != pid);
        self.unmatched_releases += (before - self.early.len()) as u64;
    }

    /// Records a call at `key` that failed with `errno`: an acquisition on EMFILE or ENFILE,
    /// or a close of descriptor `fd` on EBADF.
    fn failure(&mut self, pid: u32, key: GroupKey, errno: u32, fd: i32, ts_ns: u64) {
        let p = self.process_mut(pid);
        let double = errno == libc::EBADF as u32 && fd >= 0 && p.closed.contains(&(fd as u32));
        let h = p.failures.entry((key, errno)).or_default();
        if h.count == 0 {
            h.first_ns = ts_ns;
        }
        h.count += 1;
        h.double += u64::from(double);
        h.last_ns = ts_ns;
    }

    /// The socket description of acquisition `seq`, when it is a socket.
    pub fn socket_info(&self, seq: u64) -> Option<&SocketInfo> {
        match self.acqs.get(&seq) {
            Some(Acquisition {
                resource: Resource::Socket(info),
                ..
            }) => Some(info),
            _ => None,
        }
    }

    /// The file acquisition `seq` opened was unlinked: its path says so.
    fn unlinked(&mut self, seq: u64) {
        if let Some(Acquisition {
            resource: Resource::Path(path),
            ..
        }) = self.acqs.get_mut(&seq)
            && !path.ends_with(DELETED)
        {
            path.push_str(DELETED);
        }
    }

    /// Acquisitions by path still held, with their paths (to look for unlinked files).
    pub fn held_paths(&self) -> Vec<(u64, String)> {
        let mut seen = HashSet::new();
        self.procs
            .values()
            .flat_map(|p| p.open.values())
            .filter(|h| seen.insert(h.seq))
            .filter_map(|h| match self.acqs.get(&h.seq) {
                Some(Acquisition {
                    resource: Resource::Path(path),
                    ..
                }) if !path.ends_with(DELETED) => Some((h.seq, path.clone())),
                _ => None,
            })
            .collect()
    }

    /// A new process: starts with a copy of its parent's descriptors.
    fn fork(&mut self, parent: u32, child: u32, ts_ns: u64) {
        self.retire(child);
        let (held, comm, exe, cwd, argv) = match self.procs.get(&parent) {
            Some(p) => (
                p.open.clone(),
                p.comm.clone(),
                p.exe.clone(),
                p.cwd.clone(),
                p.argv.clone(),
            ),
            None => Default::default(),
        };
        let mut groups: HashMap<GroupKey, Counts> = HashMap::new();
        let mut open = BTreeMap::new();
        for (fd, h) in held {
            if let Some(acq) = self.acqs.get_mut(&h.seq) {
                acq.refs += 1;
                groups.entry(acq.key).or_default().inherited += 1;
                open.insert(
                    fd,
                    Held {
                        seq: h.seq,
                        inherited: true,
                        across_exec: h.across_exec,
                    },
                );
            }
        }
        self.procs.insert(
            child,
            Process {
                pid: child,
                ppid: parent,
                comm,
                exe,
                argv,
                cwd,
                started_ns: ts_ns,
                open,
                groups,
                ..Default::default()
            },
        );
    }

    /// The process now runs `exe`; the descriptors it still holds survived the exec.
    fn exec(&mut self, pid: u32, exe: String, ts_ns: u64) {
        let p = self.process_mut(pid);
        // The old program's threads and goroutines died with it.
        p.tasks_end_at_exit(ts_ns);
        for h in p.open.values_mut() {
            h.across_exec = true;
        }
        p.closed.clear();
        p.comm = exe
            .rsplit('/')
            .next()
            .unwrap_or(&exe)
            .chars()
            .take(15)
            .collect();
        p.exe = exe;
    }

    /// What aligning `pid` with the kernel's entries for it would repair (see
    /// [`Change::Reconcile`]), and the entries whose acquisition was never seen.
    pub fn reconcile_diff(
        &self,
        pid: u32,
        kernel: &[(u32, KernelEntry)],
    ) -> (Reconciled, Vec<u64>) {
        let mut out = Reconciled::default();
        let held = self.procs.get(&pid).map(|p| &p.open);
        let in_kernel: HashMap<u32, u64> = kernel.iter().map(|(fd, e)| (*fd, e.seq)).collect();
        for (fd, h) in held.into_iter().flatten() {
            if in_kernel.get(fd) != Some(&h.seq) {
                out.unseen_releases += 1;
            }
        }
        // A displaced descriptor's number holds another one now: its release is not in yet.
        out.unseen_releases += self.procs.get(&pid).map_or(0, |p| p.displaced.len() as u64);
        let mut unknown = Vec::new();
        for (fd, e) in kernel {
            if held.and_then(|o| o.get(fd)).is_some_and(|h| h.seq == e.seq) {
                continue;
            }
            out.unseen_acquisitions += 1;
            if !self.acqs.contains_key(&e.seq) {
                unknown.push(e.seq);
            }
        }
        (out, unknown)
    }

    /// Aligns `pid`'s held descriptors with the kernel's entries for it, which are the truth;
    /// `made` are the acquisitions of entries no event described.
    fn reconcile(
        &mut self,
        pid: u32,
        kernel: &[(u32, KernelEntry)],
        made: Vec<(u64, Acquisition)>,
    ) {
        let mut made: HashMap<u64, Acquisition> = made.into_iter().collect();
        let held: Vec<(u32, Held)> = match self.procs.get(&pid) {
            Some(p) => p.open.iter().map(|(f, h)| (*f, *h)).collect(),
            None => Vec::new(),
        };
        let in_kernel: HashMap<u32, &KernelEntry> = kernel.iter().map(|(fd, e)| (*fd, e)).collect();
        let displaced = self
            .procs
            .get_mut(&pid)
            .map(|p| std::mem::take(&mut p.displaced))
            .unwrap_or_default();
        for (seq, _) in displaced {
            self.unref(seq);
        }
        for (fd, h) in &held {
            if in_kernel.get(fd).is_none_or(|e| e.seq != h.seq) {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.open.remove(fd);
                }
                self.unref(h.seq);
            }
        }
        for (fd, e) in kernel {
            let matches = self
                .procs
                .get(&pid)
                .and_then(|p| p.open.get(fd))
                .is_some_and(|h| h.seq == e.seq);
            if matches {
                continue;
            }
            let acq = match self.acqs.entry(e.seq) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(made.remove(&e.seq).unwrap_or_else(|| {
                    Acquisition::new(
                        GroupKey {
                            site: None,
                            syscall: e.syscall,
                            chain: None,
                        },
                        Kind::Other,
                        Resource::Unknown,
                        0,
                    )
                })),
            };
            acq.refs += 1;
            let key = acq.key;
            let inherited = e.origin_tgid != pid;
            let p = self.process_mut(pid);
            p.open.insert(
                *fd,
                Held {
                    seq: e.seq,
                    inherited,
                    across_exec: false,
                },
            );
            let c = p.groups.entry(key).or_default();
            if inherited {
                c.inherited += 1;
            } else {
                c.acquired += 1;
            }
        }
    }

    /// The sample of every process whose descriptor count changed since the last sample.
    pub fn due_sample(&self, ts_ns: u64) -> Option<Sample> {
        let mut counts: Vec<(u32, u32)> = self
            .procs
            .values()
            .map(|p| (p.pid, p.open.len() as u32))
            .filter(|(pid, n)| self.sampled.get(pid) != Some(n))
            .collect();
        if counts.is_empty() {
            return None;
        }
        counts.sort_unstable();
        Some(Sample { ts_ns, counts })
    }

    /// Every process, archived ones first, then by pid.
    pub fn processes(&self) -> Vec<&Process> {
        let mut live: Vec<&Process> = self.procs.values().collect();
        live.sort_by_key(|p| (p.started_ns, p.pid));
        self.archived.iter().chain(live).collect()
    }

    /// Moves an exited process out of the way of a new process with the same pid.
    fn retire(&mut self, pid: u32) {
        if let Some(old) = self.procs.remove(&pid)
            && old.exited()
        {
            self.archived.push(old);
        }
    }

    fn unref(&mut self, seq: u64) {
        if let Entry::Occupied(mut o) = self.acqs.entry(seq) {
            let a = o.get_mut();
            a.refs = a.refs.saturating_sub(1);
            if a.refs == 0 {
                let a = o.remove();
                if a.passed {
                    if self.passed_order.len() >= PASSED_MEMORY
                        && let Some(old) = self.passed_order.pop_front()
                    {
                        self.passed.remove(&old);
                    }
                    self.passed_order.push_back(seq);
                    self.passed.insert(seq, a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::syscall as sys;

    fn acq(site: u32) -> Acquisition {
        Acquisition::new(
            GroupKey {
                site: Some(site),
                syscall: sys::OPENAT,
                chain: None,
            },
            Kind::File,
            Resource::Path(format!("/tmp/{site}")),
            10,
        )
    }

    fn acquire(a: &mut Accounting, pid: u32, fds: &[i32], seq: u64, acq: Acquisition) {
        a.apply(Change::Acquire {
            pid,
            fds: fds.to_vec(),
            seq,
            acq: Box::new(acq),
        });
    }

    fn release(a: &mut Accounting, pid: u32, fd: u32, seq: u64, passed: bool) {
        a.apply(Change::Release {
            pid,
            fd,
            seq,
            passed,
        });
    }

    #[test]
    fn acquire_release_counts_per_site() {
        let mut a = Accounting::default();
        for i in 0..5 {
            acquire(&mut a, 1, &[3 + i], 100 + i as u64, acq(7));
        }
        release(&mut a, 1, 3, 100, false);
        release(&mut a, 1, 4, 101, false);
        // Wrong seq: not ours.
        release(&mut a, 1, 5, 999, false);
        let p = a.process(1).unwrap();
        assert_eq!(p.open.len(), 3);
        let key = GroupKey {
            site: Some(7),
            syscall: sys::OPENAT,
            chain: None,
        };
        assert_eq!(
            p.groups[&key],
            Counts {
                acquired: 5,
                released: 2,
                inherited: 0
            }
        );
        assert!(
            a.acquisition(100).is_none(),
            "released acquisitions are forgotten"
        );
        assert!(a.acquisition(102).is_some());
        // The unknown one waits for its acquisition until the process exits.
        assert_eq!(a.unmatched_releases, 0);
        a.apply(Change::Exit {
            pid: 1,
            status: 0,
            ts_ns: 1,
        });
        assert_eq!(a.unmatched_releases, 1);
    }

    #[test]
    fn a_release_may_come_before_its_acquisition() {
        let mut a = Accounting::default();
        // Even before its process is known (read in place ahead of the fork record).
        release(&mut a, 1, 3, 100, false);
        acquire(&mut a, 1, &[3], 100, acq(7));
        release(&mut a, 1, 4, 101, false);
        acquire(&mut a, 1, &[4], 101, acq(7));
        acquire(&mut a, 1, &[3], 102, acq(7));
        let p = a.process(1).unwrap();
        assert_eq!(p.open.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(p.groups.values().map(|c| c.released).sum::<u64>(), 2);
        assert_eq!(a.unmatched_releases, 0);
        assert!(a.acquisition(100).is_none() && a.acquisition(101).is_none());
    }

    #[test]
    fn a_number_reused_before_its_release_came_is_released_by_it() {
        let mut a = Accounting::default();
        // fd 3 closed and opened again: the release of 100 comes after 101's acquisition.
        acquire(&mut a, 1, &[3], 100, acq(7));
        acquire(&mut a, 1, &[3], 101, acq(7));
        assert!(a.acquisition(100).is_some(), "held until its release");
        release(&mut a, 1, 3, 100, false);
        let p = a.process(1).unwrap();
        assert_eq!(p.open[&3].seq, 101);
        assert_eq!(p.groups.values().map(|c| c.released).sum::<u64>(), 1);
        assert_eq!(a.unmatched_releases, 0);
        assert!(a.acquisition(100).is_none());
        // Reconciled before its release came: the kernel's table is the truth.
        acquire(&mut a, 1, &[3], 102, acq(7));
        let kernel = [(
            3,
            KernelEntry {
                seq: 102,
                origin_tgid: 1,
                syscall: sys::OPENAT,
            },
        )];
        let (r, _) = a.reconcile_diff(1, &kernel);
        assert_eq!(r.unseen_releases, 1);
        a.apply(Change::Reconcile {
            pid: 1,
            kernel: kernel.to_vec(),
            made: Vec::new(),
        });
        assert!(a.acquisition(101).is_none());
    }

    #[test]
    fn pairs_count_two_descriptors_one_acquisition() {
        let mut a = Accounting::default();
        acquire(&mut a, 1, &[3, 4], 50, acq(1));
        assert_eq!(a.process(1).unwrap().open.len(), 2);
        release(&mut a, 1, 3, 50, false);
        assert!(a.acquisition(50).is_some());
        release(&mut a, 1, 4, 50, false);
        assert!(a.acquisition(50).is_none());
    }

    #[test]
    fn fork_inherits_and_releases_independently() {
        let mut a = Accounting::default();
        acquire(&mut a, 1, &[3], 10, acq(1));
        a.apply(Change::Fork {
            parent: 1,
            child: 2,
            ts_ns: 5,
        });
        let child = a.process(2).unwrap();
        assert_eq!(
            child.open[&3],
            Held {
                seq: 10,
                inherited: true,
                across_exec: false,
            }
        );
        assert_eq!(child.ppid, 1);
        release(&mut a, 2, 3, 10, false);
        assert!(a.process(1).unwrap().open.contains_key(&3));
        assert!(a.acquisition(10).is_some());
        release(&mut a, 1, 3, 10, false);
        assert!(a.acquisition(10).is_none());
        assert_eq!(a.unmatched_releases, 0);
    }

    #[test]
    fn exec_marks_survivors_and_double_closes_are_told_apart() {
        let mut a = Accounting::default();
        acquire(&mut a, 1, &[3], 10, acq(1));
        acquire(&mut a, 1, &[4], 11, acq(1));
        release(&mut a, 1, 4, 11, false);
        let close = GroupKey {
            site: Some(9),
            syscall: sys::CLOSE,
            chain: None,
        };
        let ebadf = libc::EBADF as u32;
        for (fd, ts_ns) in [(4, 1), (77, 2)] {
            a.apply(Change::Failure {
                pid: 1,
                key: close,
                errno: ebadf,
                fd,
                ts_ns,
            });
        }
        let f = a.process(1).unwrap().failures[&(close, ebadf)];
        assert_eq!((f.count, f.double), (2, 1));
        a.apply(Change::Exec(1, "/bin/helper".into(), 5));
        assert!(a.process(1).unwrap().open[&3].across_exec);
        a.apply(Change::Fork {
            parent: 1,
            child: 2,
            ts_ns: 5,
        });
        assert!(a.process(2).unwrap().open[&3].across_exec);
    }

    #[test]
    fn passed_acquisitions_outlive_their_release() {
        let mut a = Accounting::default();
        acquire(&mut a, 1, &[3], 10, acq(1));
        acquire(&mut a, 1, &[4], 11, acq(2));
        release(&mut a, 1, 3, 10, true);
        release(&mut a, 1, 4, 11, false);
        assert!(a.acquisition(10).is_none());
        assert_eq!(a.sent(10).map(|s| s.key.site), Some(Some(1)));
        assert!(a.sent(11).is_none());
    }

    #[test]
    fn reconcile_trusts_the_kernel() {
        let mut a = Accounting::default();
        acquire(&mut a, 1, &[3], 10, acq(1));
        acquire(&mut a, 1, &[4], 11, acq(1));
        let entry = |seq, syscall| KernelEntry {
            seq,
            origin_tgid: 1,
            syscall,
        };
        let kernel = vec![(4, entry(11, sys::OPENAT)), (9, entry(77, sys::SOCKET))];
        let (r, unknown) = a.reconcile_diff(1, &kernel);
        assert_eq!(
            r,
            Reconciled {
                unseen_acquisitions: 1,
                unseen_releases: 1
            }
        );
        assert_eq!(unknown, [77]);
        let made = vec![(
            77,
            Acquisition::new(
                GroupKey {
                    site: None,
                    syscall: sys::SOCKET,
                    chain: None,
                },
                Kind::Socket,
                Resource::Unknown,
                0,
            ),
        )];
        a.apply(Change::Reconcile {
            pid: 1,
            kernel,
            made,
        });
        let p = a.process(1).unwrap();
        assert_eq!(p.open.keys().copied().collect::<Vec<_>>(), vec![4, 9]);
        assert_eq!(a.acquisition(77).unwrap().kind, Kind::Socket);
    }

    #[test]
    fn the_journal_replays_to_the_same_accounting() {
        let mut a = Accounting::default();
        a.journal();
        acquire(&mut a, 1, &[3], 10, acq(1));
        acquire(&mut a, 1, &[4, 5], 11, acq(2));
        release(&mut a, 1, 4, 11, false);
        a.apply(Change::Exit {
            pid: 1,
            status: 0,
            ts_ns: 9,
        });
        let mut b = Accounting::default();
        for c in a.take_changes() {
            b.apply(c);
        }
        let (pa, pb) = (a.process(1).unwrap(), b.process(1).unwrap());
        assert_eq!(pa.open, pb.open);
        assert_eq!(pa.groups, pb.groups);
        assert_eq!(pa.exit_code(), pb.exit_code());
    }

    #[test]
    fn pid_reuse_archives_the_exited_process() {
        let mut a = Accounting::default();
        acquire(&mut a, 5, &[3], 1, acq(1));
        a.apply(Change::Exit {
            pid: 5,
            status: 0,
            ts_ns: 100,
        });
        a.apply(Change::Fork {
            parent: 1,
            child: 5,
            ts_ns: 200,
        });
        let all = a.processes();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].open.len(), 1);
        assert_eq!(all[0].exit_code(), Some(0));
    }

    #[test]
    fn wait_status_decoding() {
        let p = Process {
            exit_status: Some(3 << 8),
            ..Default::default()
        };
        assert_eq!((p.exit_code(), p.signal()), (Some(3), None));
        let k = Process {
            exit_status: Some(9),
            ..Default::default()
        };
        assert_eq!((k.exit_code(), k.signal()), (None, Some(9)));
    }
}

#[cfg(test)]
mod task_tests {
    use super::*;
    use tracer_common::syscall as sys;

    const S: u64 = 1_000_000_000;

    fn start(a: &mut Accounting, kind: TaskKind, id: u64, site: SiteId, chain: Option<ChainId>) {
        a.apply(Change::TaskStart {
            pid: 1,
            kind,
            id,
            key: GroupKey {
                site: Some(site),
                syscall: sys::GOROUTINE,
                chain,
            },
            ts_ns: id * S,
        });
    }

    #[test]
    fn goroutines_carry_the_ancestry_of_their_creators() {
        let mut a = Accounting::default();
        // Goroutine 1 (site 10) starts 2 (site 20), which starts 3 (site 30).
        start(&mut a, TaskKind::Goroutine, 1, 10, None);
        let c1 = a.goroutine_chain(1, 1);
        start(&mut a, TaskKind::Goroutine, 2, 20, c1);
        let c2 = a.goroutine_chain(1, 2);
        start(&mut a, TaskKind::Goroutine, 3, 30, c2);
        let links: Vec<Option<SiteId>> = a.chain(a.goroutine_chain(1, 3)).map(|c| c.site).collect();
        assert_eq!(links, [Some(30), Some(20), Some(10)]);
        // Same ancestry, same id.
        start(&mut a, TaskKind::Goroutine, 4, 30, c2);
        assert_eq!(a.goroutine_chain(1, 4), a.goroutine_chain(1, 3));
        assert_eq!(a.goroutine_chain(1, 99), None);
    }

    #[test]
    fn deep_ancestries_keep_the_nearest_creators() {
        let mut a = Accounting::default();
        let mut parent = None;
        for id in 1..=40 {
            start(&mut a, TaskKind::Goroutine, id, id as SiteId, parent);
            parent = a.goroutine_chain(1, id);
        }
        let links: Vec<Option<SiteId>> = a.chain(parent).map(|c| c.site).collect();
        assert_eq!(links.len(), CHAIN_DEPTH);
        assert_eq!(links[0], Some(40));
        assert_eq!(links[CHAIN_DEPTH - 1], Some(40 - CHAIN_DEPTH as SiteId + 1));
    }

    #[test]
    fn tasks_alive_at_exit_and_growth() {
        let mut a = Accounting::default();
        for id in 1..=5 {
            start(&mut a, TaskKind::Thread, id, 7, None);
        }
        let key = GroupKey {
            site: Some(7),
            syscall: sys::GOROUTINE,
            chain: None,
        };
        let site = &a.process(1).expect("process").tasks[&(TaskKind::Thread, key)];
        assert_eq!(site.alive(), 5);
        // One alive every second for 5 s: +60/min.
        assert_eq!(site.growth_per_min(5 * S).map(f64::round), Some(60.0));
        a.apply(Change::TaskEnd {
            pid: 1,
            kind: TaskKind::Thread,
            id: 2,
            ts_ns: 6 * S,
            at_exit: false,
        });
        // Killed by the process's exit, and still alive at its exit.
        a.apply(Change::TaskEnd {
            pid: 1,
            kind: TaskKind::Thread,
            id: 3,
            ts_ns: 7 * S,
            at_exit: true,
        });
        a.apply(Change::Exit {
            pid: 1,
            status: 0,
            ts_ns: 7 * S,
        });
        let site = &a.process(1).expect("process").tasks[&(TaskKind::Thread, key)];
        assert_eq!(
            (site.started, site.ended, site.alive_at_exit, site.alive()),
            (5, 1, 4, 0)
        );
        assert_eq!(site.oldest_at_exit_ns, Some(S));
    }
}
