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
    AcquireEvent, FdEntry, FdKey, MemoKey, ReleaseEvent, SockAddrEvent, syscall as sys,
};

use crate::{
    accounting::{Accounting, Acquisition, GroupKey, Reconciled, SiteId},
    enrich::{self, Kind, Resource},
    events::{self, Event, c_str},
    memo::Memo,
    probes::{Counters, ProbeOptions, Probes},
    procfs,
    procmaps::ProcMaps,
    unwind::{RawFrame, Unwinder, Unwound},
};

/// A stack as (file, file address) per frame.
type SiteKey = Vec<(Option<Arc<Path>>, u64)>;

/// Interned call sites. Two stacks are the same site when every frame has the same file and
/// file address, so a site is shared across processes running the same binaries.
#[derive(Default)]
pub struct Sites {
    index: HashMap<SiteKey, SiteId>,
    /// Frames of each site, innermost first (addresses from the first occurrence).
    pub stacks: Vec<Vec<RawFrame>>,
}

impl Sites {
    /// The id of this stack, interned on first sight.
    pub fn intern(&mut self, frames: Vec<RawFrame>) -> SiteId {
        let key: Vec<_> = frames.iter().map(|f| (f.path.clone(), f.svma)).collect();
        let next = self.stacks.len() as SiteId;
        *self.index.entry(key).or_insert_with(|| {
            self.stacks.push(frames);
            next
        })
    }
}

/// Collector health figures shown in reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Ring records that failed to decode.
    pub bad_records: u64,
    /// Acquisitions that arrived without a stack copy.
    pub stacks_missing: u64,
    /// Stack copies that could not be unwound: the process's mappings were unknown.
    pub stacks_unmapped: u64,
    /// Mapping records the kernel dropped.
    pub mappings_lost: u64,
    /// Acquisitions that failed on a descriptor limit.
    pub limit_hits: u64,
    /// Acquisitions whose call site the kernel recognized from the stack memo.
    pub memo_hits: u64,
    /// Differences repaired by reconciling with the kernel's map.
    pub reconciled: Reconciled,
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
    /// Last id given to an adopted descriptor.
    pre_seq: u64,
}

/// How often (milliseconds) the collector drains when the kernel does not wake it.
const POLL_MS: i32 = 10;

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

fn lock(c: &Mutex<Collector>) -> MutexGuard<'_, Collector> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ring buffer plus state.
pub struct Collector {
    ring: RingBuf<MapData>,
    pub state: State,
}

impl Collector {
    /// Loads and attaches the probes and starts watching mappings.
    pub fn new(opts: &ProbeOptions) -> Result<Self> {
        let mut probes = Probes::load(opts)?;
        let ring = probes.take_events()?;
        Ok(Self {
            ring,
            state: State {
                probes,
                maps: ProcMaps::new()?,
                unwinder: Unwinder::default(),
                memo: Memo::default(),
                sites: Sites::default(),
                acct: Accounting::default(),
                stats: Stats::default(),
                pre_seq: 0,
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
                    lock(&collector).drain();
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
        let fds = procfs::open_fds(pid)?;
        let acct = &mut self.state.acct;
        let p = acct.process_mut(pid);
        p.comm = procfs::comm(pid).unwrap_or_default();
        p.exe = procfs::exe(pid).unwrap_or_default();
        p.ppid = procfs::ppid(pid).unwrap_or(0);
        p.cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        p.started_ns = crate::probes::monotonic_ns();
        let mut adopted = 0;
        for f in fds {
            self.state.pre_seq += 1;
            let seq = PRE_EXISTING_SEQ | self.state.pre_seq;
            let entry = FdEntry {
                seq,
                tid: pid,
                origin_tgid: pid,
                syscall: sys::PRE_EXISTING,
                ..Default::default()
            };
            if self.state.probes.adopt(pid, f.fd, &entry).is_ok() {
                let key = GroupKey {
                    site: None,
                    syscall: sys::PRE_EXISTING,
                };
                acct.pre_existing(pid, f.fd, seq, Acquisition::new(key, f.kind, f.resource, 0));
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    /// Processes every pending record; returns how many.
    pub fn drain(&mut self) -> usize {
        self.state.maps.poll();
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            match events::decode(&item) {
                Ok(ev) => self.state.handle(ev),
                Err(_) => self.state.stats.bad_records += 1,
            }
        }
        n
    }

    /// Final drain, then aligns every process still running with the kernel's map.
    pub fn finish(&mut self) -> Result<Counters> {
        self.drain();
        let live: Vec<u32> = self
            .state
            .acct
            .processes()
            .iter()
            .filter(|p| p.exit_status.is_none())
            .map(|p| p.pid)
            .collect();
        for pid in live {
            self.state.reconcile(pid, false);
        }
        self.state.stats.mappings_lost = self.state.maps.lost;
        self.state.probes.counters()
    }
}

impl State {
    fn handle(&mut self, ev: Event<'_>) {
        match ev {
            Event::Acquire(a, stack) => self.on_acquire(&a, stack),
            Event::Release(r) => self.on_release(&r),
            Event::SockAddr(s) => self.on_sockaddr(&s),
            // After its process exited, a socket's changes are the kernel closing it.
            Event::SockState(s)
                if self
                    .acct
                    .process(s.header.tgid)
                    .is_some_and(|p| p.exit_status.is_some()) => {}
            Event::SockState(s) => {
                let (local, peer) = (
                    enrich::inet_addr(s.family, &s.saddr, s.sport),
                    enrich::inet_addr(s.family, &s.daddr, s.dport),
                );
                self.acct.annotate_socket(s.seq, |info| {
                    info.state = Some((s.new_state, s.header.ts_ns));
                    if s.sport != 0 {
                        info.local = Some(local);
                    }
                    if s.dport != 0 {
                        info.peer = Some(peer);
                    }
                });
            }
            Event::Fork(f) => self.acct.fork(f.parent_tgid, f.header.tgid, f.header.ts_ns),
            Event::Exec(e) => {
                let pid = e.header.tgid;
                self.acct.exec(
                    pid,
                    String::from_utf8_lossy(c_str(&e.filename)).into_owned(),
                );
                let p = self.acct.process_mut(pid);
                p.cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
                if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
                    p.argv = cmdline
                        .split(|&b| b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                }
            }
            // System-wide, every selected process's exit is reported: only ours matter.
            Event::Exit(x) if self.acct.process(x.header.tgid).is_none() => {}
            Event::Exit(x) => {
                let pid = x.header.tgid;
                self.acct.exit(pid, x.status, x.header.ts_ns);
                self.reconcile(pid, true);
                self.unwinder.forget(pid);
                self.memo.forget(&mut self.probes, pid);
            }
        }
    }

    fn on_acquire(&mut self, a: &AcquireEvent, stack: &[u8]) {
        let pid = a.header.tgid;
        if self.acct.process(pid).is_none() {
            // First seen here (system-wide): who is it?
            let p = self.acct.process_mut(pid);
            p.comm = procfs::comm(pid).unwrap_or_default();
            p.exe = procfs::exe(pid).unwrap_or_default();
            p.ppid = procfs::ppid(pid).unwrap_or(0);
            p.started_ns = a.header.ts_ns;
        }
        let site = if a.memo_site != 0 {
            self.stats.memo_hits += 1;
            Some(a.memo_site - 1)
        } else if stack.is_empty() {
            self.stats.stacks_missing += 1;
            None
        } else {
            let unwound = self.unwind(pid, a, stack);
            if unwound.frames.is_empty() {
                self.stats.stacks_unmapped += 1;
                None
            } else {
                let site = self.sites.intern(unwound.frames);
                if let Some(reads) = &unwound.reads {
                    let key = MemoKey {
                        tgid: pid,
                        _pad: 0,
                        ip: a.regs.ip,
                        sp: a.regs.sp,
                        bp: a.regs.bp,
                    };
                    self.memo.learn(&mut self.probes, key, reads, stack, site);
                }
                Some(site)
            }
        };
        let key = GroupKey {
            site,
            syscall: a.syscall,
        };
        if a.fd < 0 {
            self.stats.limit_hits += 1;
            self.acct.limit_hit(pid, key, a.errno, a.header.ts_ns);
            return;
        }
        let source = self.acct.acquisition(a.src_seq).cloned();
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
        self.acct.acquire(
            pid,
            &[a.fd, a.fd2],
            a.seq,
            Acquisition::new(key, kind, resource, a.header.ts_ns),
        );
    }

    fn on_release(&mut self, r: &ReleaseEvent) {
        self.acct.release(r.header.tgid, r.fd as u32, r.seq);
    }

    fn on_sockaddr(&mut self, s: &SockAddrEvent) {
        let addr = enrich::parse_sockaddr(&s.addr[..(s.len as usize).min(s.addr.len())]);
        self.acct.annotate_socket(s.seq, |info| {
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
        let p = self.acct.process_mut(pid);
        if p.cwd.is_none() {
            p.cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        }
        p.cwd.clone()
    }

    /// Aligns `pid` with the kernel's entries for it; `release` also frees those entries (the
    /// process has exited and its accounting is final).
    fn reconcile(&mut self, pid: u32, release: bool) {
        let entries = self.kernel_entries(pid);
        let r = self.acct.reconcile(pid, &entries, |e| {
            Acquisition::new(
                GroupKey {
                    site: None,
                    syscall: e.syscall,
                },
                unknown_kind(e.syscall),
                Resource::Unknown,
                e.ts_ns,
            )
        });
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
                if e.sk != 0 {
                    self.probes.forget_socket(e.sk);
                }
            }
        }
    }

    /// The kernel's entries for `pid`. Looking up what we hold is enough unless events were
    /// lost; then the whole map is scanned for entries we never heard of.
    fn kernel_entries(&mut self, pid: u32) -> Vec<(u32, FdEntry)> {
        let lost = self.probes.counters().map_or(1, |c| c.lost()) + self.stats.bad_records;
        let held: Vec<u32> = self
            .acct
            .process(pid)
            .map(|p| p.open.keys().copied().collect())
            .unwrap_or_default();
        let Ok(map) = self.probes.open_fds() else {
            return Vec::new();
        };
        if lost == 0 {
            held.into_iter()
                .filter_map(|fd| map.get(&FdKey { tgid: pid, fd }, 0).ok().map(|e| (fd, e)))
                .collect()
        } else {
            map.iter()
                .filter_map(|r| r.ok())
                .filter(|(k, _)| k.tgid == pid)
                .map(|(k, e)| (k.fd, e))
                .collect()
        }
    }
}

/// Kind guessed from the syscall alone (for entries whose acquire event was lost).
fn unknown_kind(syscall: u16) -> Kind {
    let mut ev: AcquireEvent = bytemuck::Zeroable::zeroed();
    ev.syscall = syscall;
    enrich::kind_of(&ev).unwrap_or(Kind::Other)
}
