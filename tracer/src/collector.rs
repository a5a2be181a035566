//! The collector: drains the kernel's ring buffer and the mapping records, unwinds each
//! acquisition's stack, describes the descriptor, and feeds the accounting. At process exit it
//! aligns the accounting with the kernel's map (the authority) and frees the kernel's entries.
use std::{
    collections::HashMap,
    fs,
    os::fd::{AsFd, AsRawFd},
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tracer_common::{
    AcquireEvent, ExitEvent, FdEntry, FdKey, GoSpawnEvent, IoCompleteEvent, MemoKey, Released,
    SockAddrEvent, SockOwner, TaskExitEvent, VERIFY_LIST, fd_flag, release as how, syscall as sys,
    task, unverified,
};

use crate::{
    accounting::{
        Accounting, Acquisition, Change, Described, GroupKey, KernelEntry, Sender, SiteId,
        TaskKind, Verification,
    },
    enrich::{self, Kind, Resource, SocketInfo},
    events::{self, Event, c_str},
    health::{Counters, Health, Stats},
    memo::Memo,
    peers::{self, Candidate},
    probes::{ProbeOptions, Probes},
    procfs,
    procmaps::{FileId, ProcMaps},
    record::{Batch, Begin, End, Recorder, Summary},
    releases::Releases,
    runtimes::Runtimes,
    unwind::{RawFrame, ScriptFrame, Unwinder, Unwound},
};

/// A stack as (file, which file, file address, script frame) per frame.
type SiteKey = Vec<(Option<Arc<Path>>, FileId, u64, Option<Arc<ScriptFrame>>)>;

/// Interned call sites. Two stacks are the same site when every frame has the same file and
/// file address, so a site is shared across processes running the same binaries.
#[derive(Default)]
pub struct Sites {
    index: HashMap<SiteKey, SiteId>,
    /// Frames of each site, innermost first (addresses from the first occurrence).
    pub stacks: Vec<Arc<[RawFrame]>>,
}

impl Sites {
    /// `id` if it is a site handed out (the kernel's memo only knows those).
    pub fn known(&self, id: SiteId) -> Option<SiteId> {
        ((id as usize) < self.stacks.len()).then_some(id)
    }

    /// The id of this stack, interned on first sight.
    pub fn intern(&mut self, frames: Vec<RawFrame>) -> SiteId {
        let key: Vec<_> = frames
            .iter()
            .map(|f| (f.path.clone(), f.file, f.svma, f.script.clone()))
            .collect();
        let next = self.stacks.len() as SiteId;
        *self.index.entry(key).or_insert_with(|| {
            self.stacks.push(frames.into());
            next
        })
    }
}

/// Everything but the ring buffer (split so the ring can be borrowed while state changes).
pub struct State {
    pub probes: Probes,
    maps: ProcMaps,
    unwinder: Unwinder,
    memo: Memo,
    pub sites: Sites,
    pub acct: Accounting,
    pub stats: Stats,
    /// Go and Python processes' runtimes.
    pub runtimes: Runtimes,
    /// Last id given to an adopted descriptor.
    pre_seq: u64,
    /// io_uring submissions awaiting their completion: the submission's record and call site.
    io_pending: HashMap<u64, (Box<AcquireEvent>, Option<SiteId>)>,
    /// When the descriptor counts are sampled next.
    next_sample_ns: u64,
    /// The kernel's map by process, walked once per drain when records were lost.
    scan: Option<HashMap<u32, Vec<(u32, FdEntry)>>>,
    /// When the peers of held sockets are looked up next.
    next_peers_ns: u64,
    /// Which of the kernel's batched releases were taken.
    releases: Releases,
    /// When the batches are read in place next if no record comes.
    next_releases_ns: u64,
    /// The last TCP state change taken of each tracked socket ([`SockOwner::state_at`]), by
    /// acquisition id.
    sock_states: HashMap<u64, u64>,
    /// When the tracked sockets' states are read next, and the kernel's count of changes at
    /// the last read.
    next_sock_states_ns: u64,
    sock_changes: u64,
}

/// How often (milliseconds) the collector drains when the kernel does not wake it.
const POLL_MS: i32 = 10;

/// Interval between the loss counters written to a record (what a record cut short reports).
const TOTALS_NS: u64 = 1_000_000_000;

/// Interval between in-place reads of the kernel's release batches while no record comes.
const IDLE_RELEASES_NS: u64 = 100_000_000;

/// Interval between reads of the tracked sockets' TCP states (kept by the kernel in place; read
/// only if any changed).
const SOCK_STATES_NS: u64 = 1_000_000_000;

/// Interval between samples of the descriptor counts (for the timeline).
const SAMPLE_NS: u64 = 100_000_000;

/// Interval between lookups of who holds the other end of the sockets held.
const PEERS_NS: u64 = 1_000_000_000;

/// Sockets younger than this are not looked up yet (a server accepts, and maybe forks, first).
const PEER_AFTER_NS: u64 = 250_000_000;

/// Acquisition ids of descriptors adopted at attach (kernel ids stay far below).
const PRE_EXISTING_SEQ: u64 = 1 << 63;

/// The collector running on its own thread.
pub struct Collecting {
    shared: Arc<Mutex<Collector>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Collecting {
    /// Runs `f` on the collector between two drains.
    pub fn with<R>(&self, f: impl FnOnce(&mut Collector) -> R) -> R {
        f(&mut lock(&self.shared))
    }

    /// Stops the thread and hands the collector back.
    pub fn stop(self) -> Result<Collector> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the collector thread panicked"))?;
        let shared = Arc::try_unwrap(self.shared)
            .map_err(|_| anyhow::anyhow!("the collector is still shared"))?;
        Ok(shared.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

/// CPU time (user and system) of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the provided timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn lock(c: &Mutex<Collector>) -> MutexGuard<'_, Collector> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ring buffer plus state.
pub struct Collector {
    ring: RingBuf<MapData>,
    pub state: State,
    /// Where the accounting's journal goes (`--record`).
    recorder: Option<Recorder>,
    /// Call sites already handed to the recorder.
    sites_sent: usize,
    /// When the recorder gets the loss counters next.
    next_totals_ns: u64,
}

impl Collector {
    /// Loads and attaches the probes and starts watching mappings.
    pub fn new(opts: &ProbeOptions) -> Result<Self> {
        crate::probes::preflight::check()?;
        // Mapping records first: every process the probes see has its mappings recorded.
        let maps = ProcMaps::new()?;
        let mut probes = Probes::load(opts)?;
        let ring = probes.take_events()?;
        Ok(Self {
            ring,
            recorder: None,
            sites_sent: 0,
            next_totals_ns: 0,
            state: State {
                probes,
                maps,
                unwinder: Unwinder::default(),
                memo: Memo::default(),
                sites: Sites::default(),
                acct: Accounting::default(),
                stats: Stats::default(),
                runtimes: Runtimes::default(),
                pre_seq: 0,
                io_pending: HashMap::new(),
                next_sample_ns: 0,
                scan: None,
                next_peers_ns: 0,
                releases: Releases::default(),
                next_releases_ns: 0,
                sock_states: HashMap::new(),
                next_sock_states_ns: 0,
                sock_changes: 0,
            },
        })
    }

    /// Moves the collector to its own thread, which drains the kernel's records as they come
    /// (woken by the kernel, or every [`POLL_MS`]) until [`Collecting::stop`].
    pub fn spawn(self) -> Result<Collecting> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ring_fd = self.ring.as_fd().as_raw_fd();
        let shared = Arc::new(Mutex::new(self));
        let collector = shared.clone();
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                // Keep up with busy traced programs: the collector would otherwise get only its
                // fair share of the CPU against every traced thread. Best effort.
                // SAFETY: plain syscalls on this thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10) };
                while !flag.load(Ordering::Acquire) {
                    let mut pfd = libc::pollfd {
                        fd: ring_fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; the ring outlives this thread (shared owns it).
                    unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
                    let mut c = lock(&collector);
                    c.drain();
                    c.state.stats.collector_cpu_ns = thread_cpu_ns();
                    let due = c.state.peers_due();
                    drop(c);
                    // Looked up without holding the collector: live views build meanwhile.
                    if let Some(candidates) = due {
                        let found = peers::resolve(&candidates);
                        lock(&collector).state.note_peers(found);
                    }
                }
            })
            .context("starting the collector thread")?;
        Ok(Collecting {
            shared,
            stop,
            thread,
        })
    }

    /// Starts accounting a running process: registers it (and its future children) with the
    /// kernel and adopts the descriptors it already has, marked pre-existing.
    pub fn attach(&mut self, pid: u32) -> Result<usize> {
        procfs::check_pid(pid)?;
        self.state.probes.trace(pid, true)?;
        self.state.acct.apply(Change::Describe(
            pid,
            Box::new(Described {
                started_ns: Some(crate::probes::monotonic_ns()),
                cwd: fs::read_link(format!("/proc/{pid}/cwd")).ok(),
                ..procfs::describe(pid)
            }),
        ));
        self.state.follow_runtime(pid);
        self.state.adopt_open(pid)
    }

    /// Prepares for `program`, about to be started traced (Go probes in place before it runs).
    pub fn prepare(&mut self, program: &Path) {
        let s = &mut self.state;
        s.runtimes.prepare(&mut s.probes, program);
    }

    /// Records everything from now on to `path` (the accounting's journal, symbolized call
    /// sites, counters), up to `max_bytes`.
    pub fn record_to(&mut self, path: &Path, max_bytes: Option<u64>, begin: Begin) -> Result<()> {
        self.recorder = Some(Recorder::start(path, max_bytes, begin)?);
        self.state.acct.journal();
        Ok(())
    }

    /// Hands what changed since the last call to the recorder, if recording, with the loss
    /// counters every [`TOTALS_NS`] (or `totals`, at the end).
    fn record(&mut self, totals: Option<Counters>, end: Option<End>) {
        let Some(rec) = &self.recorder else { return };
        let now = crate::probes::monotonic_ns();
        let totals = match totals {
            Some(c) => Some(c),
            None if now >= self.next_totals_ns => self.state.probes.counters().ok(),
            None => None,
        }
        .map(|counters| {
            self.next_totals_ns = now + TOTALS_NS;
            let stats = self.state.stats;
            (now, Health { counters, stats })
        });
        let stacks = &self.state.sites.stacks;
        let sites: Vec<(SiteId, Arc<[RawFrame]>)> = stacks[self.sites_sent.min(stacks.len())..]
            .iter()
            .enumerate()
            .map(|(i, f)| ((self.sites_sent + i) as SiteId, f.clone()))
            .collect();
        self.sites_sent = stacks.len();
        let changes = self.state.acct.take_changes();
        if changes.is_empty() && sites.is_empty() && totals.is_none() && end.is_none() {
            return;
        }
        rec.send(Batch {
            changes,
            sites,
            totals,
            end,
        });
    }

    /// The state, the ring buffer and the probes released (the probes detach when the state's
    /// `probes` is dropped).
    pub fn into_state(self) -> State {
        self.state
    }

    /// Closes the record (if recording) with how the run ended.
    pub fn end_record(&mut self, counters: Counters, end: End) -> Result<Option<Summary>> {
        self.record(Some(counters), Some(end));
        self.recorder.take().map(Recorder::finish).transpose()
    }

    /// Processes every pending record; returns how many.
    pub fn drain(&mut self) -> usize {
        self.state.scan = None;
        self.state.maps.poll();
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            match events::decode(&item) {
                Ok(ev) => self.state.handle(ev),
                Err(_) => self.state.stats.bad_records += 1,
            }
        }
        let now = crate::probes::monotonic_ns();
        // With the ring quiet, the batches are read every IDLE_RELEASES_NS, not every poll.
        if n > 0 || now >= self.state.next_releases_ns {
            self.state.take_releases();
            self.state.next_releases_ns = now + IDLE_RELEASES_NS;
        }
        if now >= self.state.next_sock_states_ns {
            self.state.take_socket_states();
            self.state.next_sock_states_ns = now + SOCK_STATES_NS;
        }
        if now >= self.state.next_sample_ns {
            self.state.sample(now);
            self.state.next_sample_ns = now + SAMPLE_NS;
        }
        self.record(None, None);
        n
    }

    /// Final drain, then aligns every process still running with the kernel's map and, with
    /// `verify`, checks that accounting against its descriptor table in /proc.
    pub fn finish(&mut self, verify: bool) -> Result<Counters> {
        self.drain();
        self.state.take_releases();
        self.state.take_socket_states();
        self.state.scan = None;
        let live: Vec<u32> = self
            .state
            .acct
            .processes()
            .iter()
            .filter(|p| !p.exited())
            .map(|p| p.pid)
            .collect();
        let held = self.state.peer_candidates(crate::probes::monotonic_ns());
        let found = peers::resolve(&held);
        self.state.note_peers(found);
        for pid in live {
            self.state.reconcile(pid, false);
            if procfs::check_pid(pid).is_err() {
                // Its exit record was lost (ring full): exited, status unknown, not verified.
                let ts_ns = crate::probes::monotonic_ns();
                self.state.acct.apply(Change::ExitUnseen { pid, ts_ns });
            } else if verify {
                let v = self.state.verify_live(pid);
                self.state.acct.apply(Change::Verified(pid, Box::new(v)));
            }
        }
        // Files held at the end whose path is gone were unlinked while held (as /proc says
        // "(deleted)"); a path created anew since is not noticed.
        for (seq, path) in self.state.acct.held_paths() {
            if path.starts_with('/')
                && fs::symlink_metadata(&path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                self.state.acct.apply(Change::Unlinked(seq));
            }
        }
        self.state.stats.mappings_lost = self.state.maps.lost;
        self.record(None, None);
        self.state.probes.counters()
    }
}

impl State {
    /// What this kernel or these programs' runtimes do not let tracer follow (for reports).
    pub fn coverage_lost(&self) -> Vec<String> {
        let probes = self.probes.lost_coverage().iter();
        probes.chain(&self.runtimes.notes).cloned().collect()
    }

    /// Accounts the descriptors `pid` holds now and tracer has not seen acquired as
    /// pre-existing (origin unknown); returns how many.
    fn adopt_open(&mut self, pid: u32) -> Result<usize> {
        let mut adopted = 0;
        for f in procfs::open_fds(pid)? {
            self.pre_seq += 1;
            let seq = PRE_EXISTING_SEQ | self.pre_seq;
            let entry = FdEntry {
                seq,
                tid: pid,
                origin_tgid: pid,
                syscall: sys::PRE_EXISTING,
                ..Default::default()
            };
            // Refused for descriptors the kernel accounted already (acquired since tracing).
            if self.probes.adopt(pid, f.fd, &entry).is_ok() {
                let key = GroupKey {
                    site: None,
                    syscall: sys::PRE_EXISTING,
                    chain: None,
                };
                let acq = Box::new(Acquisition::new(key, f.kind, f.resource, 0));
                self.acct.apply(Change::PreExisting {
                    pid,
                    fd: f.fd,
                    seq,
                    acq,
                });
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    fn handle(&mut self, ev: Event<'_>) {
        match ev {
            Event::Acquire(a, stack) => self.on_acquire(a, stack),
            Event::IoComplete(c) => self.on_io_complete(&c),
            Event::TaskExit(t) => self.on_task_exit(&t),
            Event::GoSpawn(g) => self.on_go_spawn(&g),
            Event::PyFrames(f) => self.runtimes.on_frames(&f),
            Event::PyCode(c) => self.runtimes.on_code(&c),
            Event::Releases(b) => {
                for r in &b.items[self.releases.sent(&b)] {
                    self.on_release(r);
                }
            }
            Event::SockAddr(s) => self.on_sockaddr(&s),
            Event::Fork(f) => self.acct.apply(Change::Fork {
                parent: f.parent_tgid,
                child: f.header.tgid,
                ts_ns: f.header.ts_ns,
            }),
            Event::Exec(e) => {
                let pid = e.header.tgid;
                self.acct.apply(Change::Exec(
                    pid,
                    String::from_utf8_lossy(c_str(&e.filename)).into_owned(),
                    e.header.ts_ns,
                ));
                self.follow_runtime(pid);
                let argv = fs::read(format!("/proc/{pid}/cmdline"))
                    .ok()
                    .map(|cmdline| {
                        cmdline
                            .split(|&b| b == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect()
                    });
                self.acct.apply(Change::Describe(
                    pid,
                    Box::new(Described {
                        cwd: fs::read_link(format!("/proc/{pid}/cwd")).ok(),
                        argv,
                        ..Default::default()
                    }),
                ));
            }
            // System-wide, every selected process's exit is reported: only ours matter.
            Event::Exit(x) if self.acct.process(x.header.tgid).is_none() => {}
            Event::Exit(x) => {
                let pid = x.header.tgid;
                // Its last releases may still be gathered in the kernel's batches.
                self.take_releases();
                // The count just before the process let go of everything.
                self.sample(x.header.ts_ns);
                self.acct.apply(Change::Exit {
                    pid,
                    status: x.status,
                    ts_ns: x.header.ts_ns,
                });
                self.acct
                    .apply(Change::Verified(pid, Box::new(exit_verification(&x))));
                self.reconcile(pid, true);
                self.unwinder.forget(pid);
                self.memo.forget(&mut self.probes, pid);
                self.runtimes.forget(&mut self.probes, pid);
            }
        }
    }

    fn on_acquire(&mut self, a: Box<AcquireEvent>, stack: &[u8]) {
        let pid = a.header.tgid;
        if self.acct.process(pid).is_none() {
            // First seen here (system-wide), neither forked nor exec'd under observation: a
            // process that was running before tracing began. Who is it, what did it hold?
            self.acct.apply(Change::Describe(
                pid,
                Box::new(Described {
                    started_ns: Some(a.header.ts_ns),
                    ..procfs::describe(pid)
                }),
            ));
            let _ = self.adopt_open(pid);
            self.follow_runtime(pid);
        }
        let site = self.site_of(&a, stack);
        let site = self.with_script(&a, site);
        let key = GroupKey {
            site,
            syscall: a.syscall,
            chain: self.chain_of(pid, a.goid),
        };
        if a.syscall == sys::THREAD {
            self.acct.apply(Change::TaskStart {
                pid,
                kind: TaskKind::Thread,
                id: a.arg,
                key,
                ts_ns: a.header.ts_ns,
            });
            return;
        }
        if a.fd < 0 && a.errno != 0 {
            if a.errno == libc::EBADF as u32 {
                // A close of a number held here: its first close may still be in a batch (a
                // double close is told from the release).
                let fd = a.arg as u32;
                if self
                    .acct
                    .process(pid)
                    .is_some_and(|p| p.open.contains_key(&fd))
                {
                    self.take_releases();
                }
                self.stats.bad_closes += 1;
            } else {
                self.stats.limit_hits += 1;
            }
            self.acct.apply(Change::Failure {
                pid,
                key,
                errno: a.errno,
                fd: a.arg as u32 as i32,
                ts_ns: a.header.ts_ns,
            });
            return;
        }
        if sys::is_io_uring(a.syscall) && a.fd < 0 {
            // Submitted: the descriptor comes with the completion.
            self.io_pending.insert(a.seq, (a, site));
            return;
        }
        self.account(&a, key);
    }

    /// The ancestry of goroutine `goid` (0: not Go).
    fn chain_of(&self, pid: u32, goid: u64) -> Option<crate::accounting::ChainId> {
        (goid != 0)
            .then(|| self.acct.goroutine_chain(pid, goid))
            .flatten()
    }

    /// Follows the runtime (Go, CPython) of the program `pid` runs now.
    fn follow_runtime(&mut self, pid: u32) {
        self.maps.refresh(pid);
        let space = self.maps.space(pid);
        self.runtimes.on_exec(&mut self.probes, pid, space);
    }

    /// For a CPython process, the site with the script's frames in place of the interpreter's.
    fn with_script(&mut self, a: &AcquireEvent, site: Option<SiteId>) -> Option<SiteId> {
        let pid = a.header.tgid;
        if self.runtimes.pending(pid) {
            self.maps.refresh(pid);
            if let Some(space) = self.maps.space(pid) {
                self.runtimes.find_libpython(&mut self.probes, pid, space);
            }
        }
        let native = site.map_or(&[][..], |s| &self.sites.stacks[s as usize][..]);
        let Some(frames) = self.runtimes.with_script(pid, a.tid, a.py_stack, native) else {
            return site;
        };
        Some(self.sites.intern(frames))
    }

    /// A thread or goroutine ended.
    fn on_task_exit(&mut self, t: &TaskExitEvent) {
        let kind = match t.kind {
            task::THREAD => {
                self.runtimes.thread_ended(t.header.tgid, t.id as u32);
                TaskKind::Thread
            }
            _ => TaskKind::Goroutine,
        };
        self.acct.apply(Change::TaskEnd {
            pid: t.header.tgid,
            kind,
            id: t.id,
            ts_ns: t.header.ts_ns,
            at_exit: t.group_exit != 0,
        });
    }

    /// A goroutine was created: counted at its creator's stack, under its creator's ancestry.
    fn on_go_spawn(&mut self, g: &GoSpawnEvent) {
        let pid = g.header.tgid;
        let pcs = &g.pcs[..(g.n as usize).min(g.pcs.len())];
        let site = if pcs.is_empty() {
            None
        } else {
            let covered =
                |maps: &mut ProcMaps| maps.space(pid).is_some_and(|s| s.find(pcs[0]).is_some());
            if !covered(&mut self.maps) {
                self.maps.refresh(pid);
            }
            let frames = match self.maps.space(pid) {
                Some(space) => self.unwinder.frames_at(pid, space, pcs),
                None => Vec::new(),
            };
            (!frames.is_empty()).then(|| self.sites.intern(frames))
        };
        let chain = self.acct.goroutine_chain(pid, g.parent_goid);
        self.acct.apply(Change::TaskStart {
            pid,
            kind: TaskKind::Goroutine,
            id: g.goid,
            key: GroupKey {
                site,
                syscall: sys::GOROUTINE,
                chain,
            },
            ts_ns: g.header.ts_ns,
        });
    }

    /// The call site of an acquisition: recognized by the kernel's memo, or unwound.
    fn site_of(&mut self, a: &AcquireEvent, stack: &[u8]) -> Option<SiteId> {
        let pid = a.header.tgid;
        if a.memo_site != 0 {
            // Any other site number is a corrupt record.
            let Some(site) = self.sites.known(a.memo_site - 1) else {
                self.stats.bad_records += 1;
                return None;
            };
            self.stats.memo_hits += 1;
            return Some(site);
        }
        if stack.is_empty() {
            self.stats.stacks_missing += 1;
            return None;
        }
        let key = MemoKey {
            tgid: pid,
            _pad: 0,
            ip: a.regs.ip,
            sp: a.regs.sp,
            bp: a.regs.bp,
        };
        // A copy sent before the kernel learnt its site (a burst from a new site): recognized
        // here the way the kernel would have, without unwinding again.
        if let Some(site) = self.memo.recognize(&key, stack) {
            return Some(site);
        }
        let unwound = self.unwind(pid, a, stack);
        if unwound.frames.is_empty() {
            self.stats.stacks_unmapped += 1;
            return None;
        }
        let site = self.sites.intern(unwound.frames);
        if let Some(reads) = &unwound.reads {
            self.memo.learn(&mut self.probes, key, reads, stack, site);
        }
        Some(site)
    }

    /// Describes and accounts the descriptors of a successful acquisition.
    fn account(&mut self, a: &AcquireEvent, key: GroupKey) {
        let pid = a.header.tgid;
        let received = matches!(a.syscall, sys::RECVMSG | sys::RECVMMSG);
        let source = if received {
            self.acct.sent(a.src_seq).cloned()
        } else {
            self.acct.acquisition(a.src_seq).cloned()
        };
        let kind = enrich::kind_of(a)
            .or(source.as_ref().map(|s| s.kind))
            .unwrap_or_else(|| Kind::from_mode(a.i_mode));
        let relative = matches!(
            a.syscall,
            sys::OPEN | sys::OPENAT | sys::OPENAT2 | sys::CREAT
        ) && a.name.first() != Some(&b'/');
        let cwd = if relative { self.cwd(pid) } else { None };
        let resource = enrich::resource_of(
            a,
            kind,
            cwd.as_deref(),
            source.as_ref().map(|s| &s.resource),
        );
        let mut acq = Acquisition::new(key, kind, resource, a.header.ts_ns);
        if received && a.arg as u32 != 0 {
            acq.from = Some(Sender {
                pid: a.arg as u32,
                fd: (a.arg >> 32) as u32,
                key: source.map(|s| s.key),
            });
        }
        self.acct.apply(Change::Acquire {
            pid,
            fds: vec![a.fd, a.fd2],
            seq: a.seq,
            acq: Box::new(acq),
        });
    }

    /// An io_uring request completed: its descriptors are accounted at the submission's site.
    fn on_io_complete(&mut self, c: &IoCompleteEvent) {
        let pending = if c.more != 0 {
            self.io_pending.get(&c.submit_seq).cloned()
        } else {
            self.io_pending.remove(&c.submit_seq)
        };
        let Some((mut a, site)) = pending else {
            return;
        };
        if c.fd < 0 {
            return;
        }
        a.seq = c.seq;
        a.fd = c.fd;
        a.fd2 = c.fd2;
        a.ino = c.ino;
        a.i_mode = c.i_mode;
        a.header.ts_ns = c.header.ts_ns;
        let key = GroupKey {
            site,
            syscall: a.syscall,
            chain: self.chain_of(a.header.tgid, a.goid),
        };
        self.account(&a, key);
    }

    fn on_release(&mut self, r: &Released) {
        let passed = r.how & how::PASSED != 0;
        self.acct.apply(Change::Release {
            pid: r.tgid,
            fd: r.fd as u32,
            seq: r.seq,
            passed,
        });
    }

    /// Takes the releases gathered in the kernel's per-CPU batches that are not in the ring
    /// yet.
    fn take_releases(&mut self) {
        let Ok(batches) = self.probes.release_batches() else {
            return;
        };
        for (cpu, b) in batches.iter().enumerate() {
            if let Some(b) = b {
                for r in &b.items[self.releases.read_in_place(cpu as u32, b)] {
                    self.on_release(r);
                }
            }
        }
    }

    fn on_sockaddr(&mut self, s: &SockAddrEvent) {
        let addr = enrich::parse_sockaddr(&s.addr[..(s.len as usize).min(s.addr.len())]);
        self.annotate_socket(s.seq, |info| {
            if s.syscall == sys::CONNECT as u32 {
                info.peer = addr;
            } else {
                info.local = addr;
            }
        });
    }

    fn unwind(&mut self, pid: u32, a: &AcquireEvent, stack: &[u8]) -> Unwound {
        // Mappings made just before this acquisition may still sit in the perf buffers.
        let covered =
            |maps: &mut ProcMaps| maps.space(pid).is_some_and(|s| s.find(a.regs.ip).is_some());
        if !covered(&mut self.maps) {
            self.maps.poll();
            if !covered(&mut self.maps) {
                self.maps.refresh(pid);
            }
        }
        match self.maps.space(pid) {
            Some(space) => self.unwinder.unwind(pid, space, &a.regs, stack),
            None => Unwound::default(),
        }
    }

    fn cwd(&mut self, pid: u32) -> Option<std::path::PathBuf> {
        if let Some(cwd) = self.acct.process(pid).and_then(|p| p.cwd.clone()) {
            return Some(cwd);
        }
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        self.acct.apply(Change::Describe(
            pid,
            Box::new(Described {
                cwd: cwd.clone(),
                ..Default::default()
            }),
        ));
        cwd
    }

    /// Updates the socket description of acquisition `seq` (addresses, TCP state).
    /// Takes the state changes of the tracked sockets since the last read.
    fn take_socket_states(&mut self) {
        let changes = self.probes.sock_state_changes();
        if changes == self.sock_changes {
            return;
        }
        let last = std::mem::take(&mut self.sock_states);
        let mut all = true;
        for o in self.probes.socket_owners() {
            if last.get(&o.seq) == Some(&o.state_at) || self.take_socket_state(&o) {
                self.sock_states.insert(o.seq, o.state_at);
            } else {
                all = false;
            }
        }
        // A socket whose acquisition is not known yet is read again next time.
        if all {
            self.sock_changes = changes;
        }
    }

    /// Notes a socket's last state and addresses; false if its acquisition is not known yet.
    fn take_socket_state(&mut self, o: &SockOwner) -> bool {
        let Some((state, ts_ns)) = o.state() else {
            return true;
        };
        if self.acct.socket_info(o.seq).is_none() {
            return false;
        }
        self.annotate_socket(o.seq, |info| {
            info.state = Some((state, ts_ns));
            if o.sport != 0 {
                info.local = Some(enrich::inet_addr(o.family, &o.saddr, o.sport));
            }
            if o.dport != 0 {
                info.peer = Some(enrich::inet_addr(o.family, &o.daddr, o.dport));
            }
        });
        true
    }

    fn annotate_socket(&mut self, seq: u64, f: impl FnOnce(&mut SocketInfo)) {
        if let Some(info) = self.acct.socket_info(seq) {
            let mut info = info.clone();
            f(&mut info);
            self.acct.apply(Change::Socket(seq, Box::new(info)));
        }
    }

    /// The sockets whose peers are due for a lookup (every [`PEERS_NS`]), if any.
    fn peers_due(&mut self) -> Option<Vec<Candidate>> {
        let now = crate::probes::monotonic_ns();
        if now < self.next_peers_ns {
            return None;
        }
        self.next_peers_ns = now + PEERS_NS;
        let held = self.peer_candidates(now.saturating_sub(PEER_AFTER_NS));
        (!held.is_empty()).then_some(held)
    }

    /// Sockets held by live processes since `before` (CLOCK_MONOTONIC ns) that may have a
    /// peer on this machine: unix sockets, and TCP sockets with a peer address. One per
    /// acquisition (a socket shared after fork is looked up once).
    fn peer_candidates(&self, before: u64) -> Vec<Candidate> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for p in self.acct.processes().into_iter().filter(|p| !p.exited()) {
            for (&fd, held) in &p.open {
                let Some(acq) = self.acct.acquisition(held.seq) else {
                    continue;
                };
                let Resource::Socket(info) = &acq.resource else {
                    continue;
                };
                let unix = i32::from(info.family) == libc::AF_UNIX;
                let tcp = matches!(i32::from(info.family), libc::AF_INET | libc::AF_INET6)
                    && i32::from(info.ty & 0xf) == libc::SOCK_STREAM
                    && info.peer.is_some();
                if (unix || tcp) && acq.ts_ns <= before && seen.insert(held.seq) {
                    out.push(Candidate {
                        pid: p.pid,
                        fd,
                        seq: held.seq,
                        unix,
                    });
                }
            }
        }
        out
    }

    /// Journals the peers found that changed.
    fn note_peers(&mut self, found: Vec<(u64, Option<enrich::Peer>)>) {
        for (seq, peer) in found {
            let Some(acq) = self.acct.acquisition(seq) else {
                continue; // released meanwhile
            };
            // Nobody holding the other end now does not erase who held it: at a client's exit
            // its sockets close one by one and their servers' ends go before the exit record.
            if peer.is_none() && acq.peer.is_some() {
                continue;
            }
            if acq.peer != peer {
                self.acct.apply(Change::Peer {
                    seq,
                    peer: peer.map(Box::new),
                });
            }
        }
    }

    /// Samples the descriptor counts that changed.
    fn sample(&mut self, ts_ns: u64) {
        if let Some(s) = self.acct.due_sample(ts_ns) {
            self.acct.apply(Change::Sample(s));
        }
    }

    /// Aligns `pid` with the kernel's entries for it; `release` also frees those entries (the
    /// process has exited and its accounting is final).
    fn reconcile(&mut self, pid: u32, release: bool) {
        let entries = self.kernel_entries(pid);
        let kernel: Vec<(u32, KernelEntry)> = entries
            .iter()
            .map(|(fd, e)| {
                (
                    *fd,
                    KernelEntry {
                        seq: e.seq,
                        origin_tgid: e.origin_tgid,
                        syscall: e.syscall,
                    },
                )
            })
            .collect();
        let (r, unknown) = self.acct.reconcile_diff(pid, &kernel);
        // Entries whose acquisition record was lost: what the kernel's entry says of them.
        let made = entries
            .iter()
            .filter(|(_, e)| unknown.contains(&e.seq))
            .map(|(_, e)| {
                let key = GroupKey {
                    site: None,
                    syscall: e.syscall,
                    chain: None,
                };
                let acq =
                    Acquisition::new(key, unknown_kind(e.syscall), Resource::Unknown, e.ts_ns);
                (e.seq, acq)
            })
            .collect();
        self.acct.apply(Change::Reconcile { pid, kernel, made });
        for (_, e) in &entries {
            if e.flags & fd_flag::PASSED != 0 {
                self.acct.apply(Change::MarkPassed(e.seq));
            }
        }
        self.stats.reconciled.unseen_acquisitions += r.unseen_acquisitions;
        self.stats.reconciled.unseen_releases += r.unseen_releases;
        if release && let Ok(mut map) = self.probes.open_fds() {
            for (fd, e) in &entries {
                let key = FdKey { tgid: pid, fd: *fd };
                // Only if still the same descriptor (the pid may already be reused).
                if map.get(&key, 0).is_ok_and(|cur| cur.seq == e.seq) {
                    let _ = map.remove(&key);
                }
            }
            for (_, e) in &entries {
                if e.sk == 0 {
                    continue;
                }
                // Its state at the exit (the kernel kept it past the exit's own changes).
                if let Some(o) = self.probes.socket_owner(e.sk)
                    && o.seq == e.seq
                {
                    self.take_socket_state(&o);
                }
                self.sock_states.remove(&e.seq);
                self.probes.forget_socket(e.sk);
            }
        }
    }

    /// The kernel's entries for `pid`. Looking up what we hold is enough unless events were
    /// lost; then the whole map is scanned for entries we never heard of.
    fn kernel_entries(&mut self, pid: u32) -> Vec<(u32, FdEntry)> {
        // Only a lost (or undecodable) record can leave an entry we never heard of: an
        // acquisition the map could not hold was not sent either.
        let unknown_entries =
            self.probes.counters().map_or(1, |c| c.events_lost) + self.stats.bad_records > 0;
        let entries: Vec<(u32, FdEntry)> = if unknown_entries {
            if self.scan.is_none() {
                // One walk of the whole map for every process aligned in this drain.
                let mut by_pid: HashMap<u32, Vec<(u32, FdEntry)>> = HashMap::new();
                if let Ok(map) = self.probes.open_fds() {
                    for (k, e) in map.iter().filter_map(|r| r.ok()) {
                        by_pid.entry(k.tgid).or_default().push((k.fd, e));
                    }
                }
                self.scan = Some(by_pid);
            }
            self.scan
                .as_mut()
                .and_then(|s| s.remove(&pid))
                .unwrap_or_default()
        } else {
            let held: Vec<u32> = self
                .acct
                .process(pid)
                .map(|p| p.open.keys().copied().collect())
                .unwrap_or_default();
            let Ok(map) = self.probes.open_fds() else {
                return Vec::new();
            };
            held.into_iter()
                .filter_map(|fd| map.get(&FdKey { tgid: pid, fd }, 0).ok().map(|e| (fd, e)))
                .collect()
        };
        // Descriptors from outside the traced tree are the kernel's bookkeeping only.
        entries
            .into_iter()
            .filter(|(_, e)| e.flags & fd_flag::FOREIGN == 0)
            .collect()
    }

    /// Compares a running process's accounting with its descriptor table in /proc. Numbers
    /// that change while looking (the process is running) are left out.
    fn verify_live(&mut self, pid: u32) -> Verification {
        let unverified = |what: &str, e: anyhow::Error| {
            Verification::unverified(false, format!("{what}: {e:#}"))
        };
        let before = match procfs::open_fds(pid) {
            Ok(fds) => fds,
            Err(e) => return unverified("reading its descriptors", e),
        };
        let accounted: HashMap<u32, FdEntry> = match self.probes.open_fds() {
            Ok(map) => {
                let mut entries = HashMap::new();
                for r in map.iter() {
                    match r {
                        Ok((k, e)) if k.tgid == pid => {
                            entries.insert(k.fd, e);
                        }
                        Ok(_) => {}
                        Err(e) => return unverified("reading the kernel's accounting", e.into()),
                    }
                }
                entries
            }
            Err(e) => return unverified("reading the kernel's accounting", e),
        };
        let after = match procfs::open_fds(pid) {
            Ok(fds) => fds,
            Err(e) => return unverified("reading its descriptors", e),
        };
        let stable: HashMap<u32, &procfs::OpenFd> = before
            .iter()
            .filter(|b| {
                after
                    .iter()
                    .any(|a| a.fd == b.fd && a.ino == b.ino && a.kind == b.kind)
            })
            .map(|f| (f.fd, f))
            .collect();
        let changed: Vec<u32> = before
            .iter()
            .chain(&after)
            .map(|f| f.fd)
            .filter(|fd| !stable.contains_key(fd))
            .collect();
        let mut v = Verification::default();
        let note = |list: &mut Vec<u32>, fd: u32| {
            if list.len() < VERIFY_LIST {
                list.push(fd);
            }
        };
        let mut fds: Vec<u32> = stable.keys().copied().collect();
        fds.sort_unstable();
        for fd in fds {
            let open = stable[&fd];
            v.open += 1;
            match accounted.get(&fd) {
                None => {
                    v.missing += 1;
                    note(&mut v.missing_fds, fd);
                }
                Some(e) => {
                    let kind = self
                        .acct
                        .process(pid)
                        .and_then(|p| p.open.get(&fd))
                        .filter(|h| h.seq == e.seq)
                        .and_then(|h| self.acct.acquisition(h.seq))
                        .map(|a| a.kind);
                    let foreign = e.flags & fd_flag::FOREIGN != 0;
                    if !foreign && kind.is_some_and(|k| !procfs::same_kind(k, open.kind)) {
                        v.wrong_kind += 1;
                        note(&mut v.wrong_kind_fds, fd);
                    } else {
                        v.exact += 1;
                    }
                }
            }
        }
        let mut phantom: Vec<u32> = accounted
            .keys()
            .copied()
            .filter(|fd| !stable.contains_key(fd) && !changed.contains(fd))
            .collect();
        phantom.sort_unstable();
        v.phantom = phantom.len() as u32;
        v.phantom_fds = phantom.into_iter().take(VERIFY_LIST).collect();
        v
    }
}

/// The kernel's exit-time comparison of a process's table with its accounting.
fn exit_verification(x: &ExitEvent) -> Verification {
    let why = match x.unverified {
        0 => None,
        unverified::NO_TABLE => Some("the kernel could not read its descriptor table".to_string()),
        unverified::NO_SIZE => Some("the kernel could not read its descriptor table's size".into()),
        unverified::TOO_LARGE => Some(format!(
            "its descriptor table has {} slots, more than one kernel loop may visit ({})",
            x.table_size,
            tracer_common::MAX_LOOP_SLOTS
        )),
        unverified::READ_FAILED => Some("a kernel read of its descriptor table failed".to_string()),
        unverified::LOOP_FAILED => {
            Some("the kernel refused the loop over its descriptor table".to_string())
        }
        other => Some(format!("unknown reason {other}")),
    };
    if let Some(why) = why {
        return Verification::unverified(true, why);
    }
    let list = |fds: &[u32; VERIFY_LIST], n: u32| fds[..(n as usize).min(VERIFY_LIST)].to_vec();
    Verification {
        at_exit: true,
        open: x.open,
        exact: x.exact,
        missing: x.missing,
        phantom: x.phantom,
        wrong_kind: x.wrong,
        missing_fds: list(&x.missing_fds, x.missing),
        phantom_fds: list(&x.phantom_fds, x.phantom),
        wrong_kind_fds: list(&x.wrong_fds, x.wrong),
        unverified: None,
    }
}

/// Kind guessed from the syscall alone (for entries whose acquire event was lost).
fn unknown_kind(syscall: u16) -> Kind {
    let mut ev: AcquireEvent = bytemuck::Zeroable::zeroed();
    ev.syscall = syscall;
    enrich::kind_of(&ev).unwrap_or(Kind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sites_handed_out_are_known() {
        let mut sites = Sites::default();
        assert_eq!(sites.known(0), None);
        let id = sites.intern(Vec::new());
        assert_eq!(
            (id, sites.known(id), sites.known(id + 1)),
            (0, Some(0), None)
        );
        assert_eq!(sites.known(u32::MAX), None);
    }

    #[test]
    fn a_table_the_kernel_could_not_read_whole_is_unverified() {
        let mut x: ExitEvent = bytemuck::Zeroable::zeroed();
        x.open = 0;
        x.exact = 0;
        assert!(exit_verification(&x).is_exact(), "0 of 0, read whole");
        x.unverified = unverified::TOO_LARGE;
        x.table_size = 1 << 24;
        let v = exit_verification(&x);
        assert!(!v.is_exact());
        assert!(
            v.unverified
                .as_deref()
                .is_some_and(|w| w.contains("16777216 slots"))
        );
        let r = crate::report::VerifyReport::from(&v);
        assert_eq!((r.status, r.reason.is_some()), ("unverified", true));
        for why in [
            unverified::NO_TABLE,
            unverified::NO_SIZE,
            unverified::READ_FAILED,
            unverified::LOOP_FAILED,
        ] {
            x.unverified = why;
            assert_eq!(
                crate::report::VerifyReport::from(&exit_verification(&x)).status,
                "unverified"
            );
        }
    }
}
