//! Loading, configuring and attaching the eBPF programs, and the handles userspace keeps on their
//! maps. Everything attached here is detached when [`Probes`] is dropped (links are fd-owned, so a
//! crash detaches too).
pub mod btf;
pub mod preflight;
pub mod syscalls;

use anyhow::{Context as _, Result, anyhow, bail};
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{
        BtfTracePoint, RawTracePoint, TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use tracer_common::{
    Config, FdEntry, FdKey, GoLayout, MemoKey, MemoSig, PLANE_WORDS, ProcState, PyLayout,
    ReleaseBatch, STACK_CLASSES, SockOwner, TRACED_WORDS, counter, plane, proc_flag,
    syscall::Shape,
};

use crate::health::Counters;

/// `BPF_NOEXIST` map-update flag: insert only if absent.
const BPF_NOEXIST: u64 = 1;

/// The compiled eBPF object (built by build.rs from tracer-ebpf).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// The compiled eBPF object, for loaders other than [`Probes`] (`tracer doctor`).
pub fn object() -> &'static [u8] {
    EBPF_OBJECT
}

/// Tunables of the kernel side.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Largest user-stack copy per acquisition, bytes (0: no stacks).
    pub stack_max: u32,
    /// Capacity of the outstanding-descriptor map.
    pub max_fds: u32,
    /// Ring buffer size in bytes (power of two).
    pub ring_bytes: u32,
    /// Which processes are traced besides those registered (system-wide mode).
    pub filter: Filter,
}

/// System-wide selection, applied in the kernel before any map write.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Trace every process passing the filters below (not only registered ones).
    pub system_wide: bool,
    /// Only processes with this name.
    pub comm: Option<String>,
    /// Only processes in this cgroup (v2) or below.
    pub cgroup: Option<std::path::PathBuf>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            stack_max: STACK_CLASSES[5] as u32,
            max_fds: 262_144,
            ring_bytes: 16 << 20,
            filter: Filter::default(),
        }
    }
}

/// The loaded and attached programs.
pub struct Probes {
    ebpf: Ebpf,
    lost_coverage: Vec<String>,
    traced_bits: TracedBits,
    /// Go binaries probed (the next `GO_BINARIES` slot), or why Go probes cannot load.
    go_binaries: Result<u32, String>,
    /// The syscall tracepoint links, detached together when dropped (see [`Detach`]).
    _syscall_links: Detach,
}

/// The syscall tracepoint links. Detaching each waits for an RCU grace period under the
/// kernel's global trace-event mutex (about 40 ms here, one after the other): tracer's fifty
/// would hold its exit, and the command's exit code, for two seconds. A child process takes
/// over that wait: it inherits the links, the parent's own references then go at once, and the
/// child's exit does the detaching in the background (the programs are gone a moment later).
struct Detach(Vec<aya::programs::trace_point::TracePointLink>);

impl Drop for Detach {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        if links.is_empty() {
            return;
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return drop(links);
        }
        let [read_end, write_end] = fds;
        // SAFETY: the child only calls async-signal-safe functions (close, read, _exit) before
        // exiting, as required after fork in a multithreaded process.
        match unsafe { libc::fork() } {
            0 => unsafe {
                // Not holding the caller's pipes (its output ends when tracer exits).
                for fd in 0..=2 {
                    libc::close(fd);
                }
                libc::close(write_end);
                // Until the parent has let go of its references (it closes the pipe).
                let mut byte = 0u8;
                while libc::read(read_end, (&raw mut byte).cast(), 1) < 0
                    && *libc::__errno_location() == libc::EINTR
                {}
                libc::_exit(0)
            },
            pid => {
                // SAFETY: closing our end of the pipe we created.
                unsafe { libc::close(read_end) };
                if pid < 0 {
                    // No child: detach here, in parallel (the waits overlap a little).
                    std::thread::scope(|s| {
                        for link in links {
                            s.spawn(move || drop(link));
                        }
                    });
                } else {
                    drop(links);
                }
                // SAFETY: closing our end of the pipe: the child may go.
                unsafe { libc::close(write_end) };
            }
        }
    }
}

/// The kernel's TRACED_BITS array, mapped: one bit per pid in each plane (`tracer_common::plane`),
/// updated atomically on both sides.
struct TracedBits {
    words: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for TracedBits {}

impl TracedBits {
    fn map(ebpf: &mut Ebpf) -> Result<Self> {
        let aya::maps::Map::Array(data) = map(ebpf, "TRACED_BITS")? else {
            bail!("TRACED_BITS is not an array");
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let len = TRACED_WORDS as usize;
        // SAFETY: maps the array (BPF_F_MMAPABLE) read-write and shared; the kernel keeps it
        // alive while the mapping exists.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "mapping the kernel's process filter: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self {
            words: std::ptr::NonNull::new(ptr.cast()).context("mmap returned null")?,
            len,
        })
    }

    /// Sets or clears `pid`'s bit in plane `p` (`tracer_common::plane`).
    fn set(&self, p: u32, pid: u32, on: bool) {
        let word = (p * PLANE_WORDS + pid / 64) as usize;
        let bit = 1u64 << (pid % 64);
        if word >= self.len {
            return;
        }
        // SAFETY: `word` is inside the mapping.
        let w = unsafe { &*self.words.as_ptr().add(word) };
        if on {
            w.fetch_or(bit, std::sync::atomic::Ordering::SeqCst);
        } else {
            w.fetch_and(!bit, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for TracedBits {
    fn drop(&mut self) {
        // SAFETY: unmaps what `map` mapped.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.len * 8) };
    }
}

impl Probes {
    /// Loads the programs and attaches them (after [`preflight::check`]).
    pub fn load(opts: &ProbeOptions) -> Result<Self> {
        let ring_bytes = opts.ring_bytes.next_power_of_two();
        let (cgroup_id, cgroup_level) = match &opts.filter.cgroup {
            Some(path) => cgroup_filter(path)?,
            None => (0, 0),
        };
        let offsets = btf::kernel_offsets()?;
        let config = Config {
            offsets,
            stack_max: opts.stack_max.min(tracer_common::STACK_MAX as u32),
            wakeup_bytes: ring_bytes / 8,
            system_wide: opts.filter.system_wide.into(),
            cgroup_level,
            cgroup_id,
            comm: comm_filter(opts.filter.comm.as_deref())?,
            tracer_tgid: std::process::id(),
            _pad: 0,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("OPEN_FDS", opts.max_fds)
            .map_max_entries("EVENTS", ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| anyhow!("loading the eBPF programs into the kernel: {e}"))?;

        {
            let mut table: Array<_, Shape> = Array::try_from(map(&mut ebpf, "SYSCALLS")?)?;
            for d in syscalls::hooked() {
                table
                    .set(d.nr, d.shape, 0)
                    .with_context(|| format!("registering syscall {}", d.name))?;
            }
        }
        let traced_bits = TracedBits::map(&mut ebpf)?;

        {
            // Each CPU's acquisition ids start at cpu << 48: unique without a CPU lookup.
            let mut seq: PerCpuArray<_, u64> = PerCpuArray::try_from(map(&mut ebpf, "SEQ")?)?;
            let cpus = aya::util::nr_cpus()
                .map_err(|(_, e)| e)
                .context("counting CPUs")?;
            let seeds: Vec<u64> = (0..cpus as u64).map(|cpu| cpu << 48).collect();
            seq.set(0, PerCpuValues::try_from(seeds)?, 0)
                .context("seeding acquisition ids")?;
        }
        {
            // tracer itself is never traced, not even while it attaches (system-wide, its own
            // bpf() and perf_event_open() calls would be).
            let mut traced: HashMap<_, u32, ProcState> =
                HashMap::try_from(map(&mut ebpf, "TRACED")?)?;
            traced
                .insert(std::process::id(), ProcState::default(), 0)
                .context("excluding tracer from tracing")?;
        }
        let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
        for (prog, tp) in [
            ("proc_fork", "sched_process_fork"),
            ("proc_exec", "sched_process_exec"),
            ("proc_exit", "sched_process_exit"),
            ("sock_state", "inet_sock_set_state"),
        ] {
            let p: &mut RawTracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object lacks program {prog}"))?
                .try_into()?;
            p.load()
                .map_err(|e| anyhow!("loading {prog}: {}", verifier_error(&e)))?;
            p.attach(tp)
                .map_err(|e| anyhow!("attaching to raw tracepoint {tp}: {e}"))?;
        }
        let mut lost_coverage = Vec::new();
        if btf::io_uring_supported(&offsets) {
            for (prog, tp) in [
                ("io_submit", "io_uring_submit_req"),
                ("io_complete", "io_uring_complete"),
            ] {
                let p: &mut BtfTracePoint = ebpf
                    .program_mut(prog)
                    .ok_or_else(|| anyhow!("eBPF object lacks program {prog}"))?
                    .try_into()?;
                if let Err(e) = p
                    .load(tp, &btf)
                    .map_err(|e| verifier_error(&e))
                    .and_then(|()| {
                        p.attach()
                            .map(drop)
                            .map_err(|e| format!("attaching to tp_btf/{tp}: {e}"))
                    })
                {
                    lost_coverage.push(format!("io_uring requests are not followed ({e})"));
                    break;
                }
            }
        } else {
            lost_coverage
                .push("io_uring requests are not followed (kernel BTF lacks io_kiocb)".into());
        }
        // Go runtime probes: loaded now, attached to each Go binary as it shows up.
        let mut go_binaries = Ok(0);
        for prog in ["go_spawn", "go_exit"] {
            let p: &mut UProbe = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object lacks program {prog}"))?
                .try_into()?;
            if let Err(e) = p.load() {
                go_binaries = Err(format!("loading {prog}: {}", verifier_error(&e)));
                lost_coverage.push(format!(
                    "goroutines are not followed ({})",
                    verifier_error(&e)
                ));
                break;
            }
        }
        let mut syscall_links = Detach(Vec::new());
        // The syscall hooks go last: once they see a process, its forks, execs and exit are
        // seen too (a process living only while tracer attaches is still whole). Each is
        // attached to the tracepoints of exactly the syscalls it handles.
        for prog in ["sys_enter", "sys_exit", "sys_exit_rights"] {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object lacks program {prog}"))?
                .try_into()?;
            p.load()
                .map_err(|e| anyhow!("loading {prog}: {}", verifier_error(&e)))?;
            for d in syscalls::hooked().filter(|d| d.program() == prog) {
                let tp = syscalls::tracepoint(d);
                match p.attach("syscalls", &tp).and_then(|id| p.take_link(id)) {
                    Ok(link) => syscall_links.0.push(link),
                    Err(e) => lost_coverage
                        .push(format!("{} is not followed (syscalls/{tp}: {e})", d.name)),
                }
            }
        }
        Ok(Self {
            ebpf,
            lost_coverage,
            traced_bits,
            go_binaries,
            _syscall_links: syscall_links,
        })
    }

    /// Acquisition paths this kernel does not let tracer follow (for reports).
    pub fn lost_coverage(&self) -> &[String] {
        &self.lost_coverage
    }

    /// Adds `tgid` to the in-kernel filter. With `self_too` false only its future children are
    /// traced (used by `tracer run` to register the command before it executes).
    pub fn trace(&mut self, tgid: u32, self_too: bool) -> Result<()> {
        let flags = proc_flag::TRACE_CHILDREN | if self_too { proc_flag::TRACE_SELF } else { 0 };
        let mut traced: HashMap<_, u32, ProcState> =
            HashMap::try_from(map(&mut self.ebpf, "TRACED")?)?;
        traced
            .insert(
                tgid,
                ProcState {
                    parent_tgid: 0,
                    flags,
                },
                0,
            )
            .with_context(|| format!("registering pid {tgid} for tracing"))?;
        self.traced_bits.set(plane::REGISTERED, tgid, self_too);
        Ok(())
    }

    /// Accounts a descriptor that was open before tracing began (unless the kernel already
    /// accounts this number: then it was acquired meanwhile).
    pub fn adopt(&mut self, tgid: u32, fd: u32, entry: &FdEntry) -> Result<()> {
        let mut m: HashMap<_, FdKey, FdEntry> =
            HashMap::try_from(map(&mut self.ebpf, "OPEN_FDS")?)?;
        Ok(m.insert(FdKey { tgid, fd }, entry, BPF_NOEXIST)?)
    }

    /// Removes `tgid` from the in-kernel filter.
    pub fn untrace(&mut self, tgid: u32) -> Result<()> {
        let mut traced: HashMap<_, u32, ProcState> =
            HashMap::try_from(map(&mut self.ebpf, "TRACED")?)?;
        self.traced_bits.set(plane::REGISTERED, tgid, false);
        match traced.remove(&tgid) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("unregistering pid {tgid}")),
        }
    }

    /// Takes the ring buffer the programs write events into (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let m = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| anyhow!("ring buffer already taken"))?;
        Ok(RingBuf::try_from(m)?)
    }

    /// The kernel's accounting of outstanding descriptors.
    pub fn open_fds(&mut self) -> Result<HashMap<&mut MapData, FdKey, FdEntry>> {
        Ok(HashMap::try_from(map(&mut self.ebpf, "OPEN_FDS")?)?)
    }

    /// Each CPU's batch of releases not yet sent to the ring, read in place (by CPU; None where
    /// the CPU sent its batch during the read: the ring has it).
    pub fn release_batches(&mut self) -> Result<Vec<Option<ReleaseBatch>>> {
        let arr: PerCpuArray<_, ReleaseBatch> =
            PerCpuArray::try_from(map(&mut self.ebpf, "RELEASES")?)?;
        let first = arr.get(&0, 0)?;
        let again = arr.get(&0, 0)?;
        Ok(first
            .iter()
            .zip(again.iter())
            .map(|(a, b)| (a.number == b.number).then_some(*a))
            .collect())
    }

    /// Installs a stack-memo signature.
    pub fn memo_add_sig(&mut self, key: &MemoKey, sig: &MemoSig) -> Result<()> {
        let mut m: HashMap<_, MemoKey, MemoSig> =
            HashMap::try_from(map(&mut self.ebpf, "MEMO_SIGS")?)?;
        Ok(m.insert(key, sig, 0)?)
    }

    /// Teaches the kernel that stacks with this memo hash are `site`.
    pub fn memo_add_stack(&mut self, hash: u64, site: u32) -> Result<()> {
        let mut m: HashMap<_, u64, u32> = HashMap::try_from(map(&mut self.ebpf, "MEMO_STACKS")?)?;
        Ok(m.insert(hash, site, 0)?)
    }

    /// Forgets a memo signature (best effort).
    pub fn memo_remove_sig(&mut self, key: &MemoKey) {
        if let Ok(m) = map(&mut self.ebpf, "MEMO_SIGS")
            && let Ok(mut m) = HashMap::<_, MemoKey, MemoSig>::try_from(m)
        {
            let _ = m.remove(key);
        }
    }

    /// Forgets a memo stack (best effort).
    pub fn memo_remove_stack(&mut self, hash: u64) {
        if let Ok(m) = map(&mut self.ebpf, "MEMO_STACKS")
            && let Ok(mut m) = HashMap::<_, u64, u32>::try_from(m)
        {
            let _ = m.remove(&hash);
        }
    }

    /// The owner and last state of every tracked socket.
    pub fn socket_owners(&mut self) -> Vec<SockOwner> {
        match map(&mut self.ebpf, "SOCKS")
            .and_then(|m| Ok(HashMap::<_, u64, SockOwner>::try_from(m)?))
        {
            Ok(m) => m.iter().filter_map(|r| r.ok()).map(|(_, o)| o).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The owner and last state of socket `sk`, if tracked.
    pub fn socket_owner(&mut self, sk: u64) -> Option<SockOwner> {
        let m = map(&mut self.ebpf, "SOCKS").ok()?;
        HashMap::<_, u64, SockOwner>::try_from(m)
            .ok()?
            .get(&sk, 0)
            .ok()
    }

    /// Stops following a socket's state (its descriptor's process is gone).
    pub fn forget_socket(&mut self, sk: u64) {
        if let Ok(m) = map(&mut self.ebpf, "SOCKS")
            && let Ok(mut m) = HashMap::<_, u64, SockOwner>::try_from(m)
        {
            let _ = m.remove(&sk);
        }
    }

    /// Follows the goroutines of every process running the Go binary at `path`: its layout in
    /// the next `GO_BINARIES` slot, the probes attached with that slot as their cookie (at the
    /// file offsets of `runtime.newproc1`'s returns and of `runtime.goexit0`).
    pub fn go_binary(
        &mut self,
        path: &std::path::Path,
        layout: &GoLayout,
        spawn_offsets: &[u64],
        exit_offset: u64,
    ) -> Result<()> {
        let slot = self.go_binaries.clone().map_err(|e| anyhow!(e))?;
        if slot >= tracer_common::GO_BINARIES {
            bail!("more than {} Go programs", tracer_common::GO_BINARIES);
        }
        let mut layouts: Array<_, GoLayout> = Array::try_from(map(&mut self.ebpf, "GO_BINARIES")?)?;
        layouts.set(slot, *layout, 0)?;
        self.go_binaries = Ok(slot + 1);
        for (prog, offsets) in [
            ("go_spawn", spawn_offsets),
            ("go_exit", std::slice::from_ref(&exit_offset)),
        ] {
            let p: &mut UProbe = self
                .ebpf
                .program_mut(prog)
                .ok_or_else(|| anyhow!("eBPF object lacks program {prog}"))?
                .try_into()?;
            for &offset in offsets {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(slot as u64),
                };
                p.attach(point, path, UProbeScope::AllProcesses)
                    .with_context(|| format!("attaching {prog} at file offset {offset:#x}"))?;
            }
        }
        Ok(())
    }

    /// Reads the Python frames of `pid`'s acquisitions, with this layout.
    pub fn python_process(&mut self, pid: u32, layout: &PyLayout) -> Result<()> {
        let mut m: HashMap<_, u32, PyLayout> = HashMap::try_from(map(&mut self.ebpf, "PY_PROCS")?)?;
        m.insert(pid, layout, 0)?;
        self.traced_bits.set(plane::RUNTIME, pid, true);
        Ok(())
    }

    /// Stops reading `pid`'s Python frames and forgets which code objects it described.
    pub fn forget_python(&mut self, pid: u32) {
        if let Ok(m) = map(&mut self.ebpf, "PY_PROCS")
            && let Ok(mut m) = HashMap::<_, u32, PyLayout>::try_from(m)
        {
            let _ = m.remove(&pid);
        }
        if let Ok(m) = map(&mut self.ebpf, "PY_SEEN")
            && let Ok(mut m) = HashMap::<_, [u64; 2], u8>::try_from(m)
        {
            let keys: Vec<[u64; 2]> = m
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| k[0] == pid as u64)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
    }

    /// TCP state changes of tracked sockets so far (see `counter::SOCK_STATES`).
    pub fn sock_state_changes(&mut self) -> u64 {
        map(&mut self.ebpf, "COUNTERS")
            .and_then(|m| Ok(PerCpuArray::<_, u64>::try_from(m)?))
            .and_then(|a| Ok(a.get(&counter::SOCK_STATES, 0)?.iter().sum()))
            .unwrap_or(0)
    }

    /// Current kernel counters.
    pub fn counters(&mut self) -> Result<Counters> {
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map(&mut self.ebpf, "COUNTERS")?)?;
        let get = |i: u32| -> Result<u64> { Ok(arr.get(&i, 0)?.iter().sum()) };
        Ok(Counters {
            acquired: get(counter::ACQUIRED)?,
            released: get(counter::RELEASED)?,
            events_lost: get(counter::EVENTS_LOST)?,
            fd_map_full: get(counter::FD_MAP_FULL)?,
            stack_unreadable: get(counter::STACK_UNREADABLE)?,
            inflight_lost: get(counter::INFLIGHT_LOST)?,
            proc_map_full: get(counter::PROC_MAP_FULL)?,
            pending_lost: get(counter::PENDING_LOST)?,
        })
    }
}

/// The kernel's comm filter: the name NUL-padded to 16 bytes.
fn comm_filter(comm: Option<&str>) -> Result<[u8; 16]> {
    let mut out = [0u8; 16];
    if let Some(c) = comm {
        if c.is_empty() || c.len() > 15 {
            bail!(
                "--comm {c:?}: process names are 1 to 15 bytes (the kernel truncates longer ones)"
            );
        }
        out[..c.len()].copy_from_slice(c.as_bytes());
    }
    Ok(out)
}

/// The cgroup v2 id (the directory's inode) of `path` and its depth below the cgroup2 root.
fn cgroup_filter(path: &std::path::Path) -> Result<(u64, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let path = path
        .canonicalize()
        .with_context(|| format!("--cgroup {}", path.display()))?;
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let root = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .ok_or_else(|| anyhow!("--cgroup {}: not in a cgroup v2 hierarchy", path.display()))?;
    let level = path.components().count() - root.components().count();
    let id = std::fs::metadata(&path)
        .with_context(|| format!("--cgroup {}", path.display()))?
        .ino();
    Ok((id, level as u32))
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("eBPF object lacks map {name}"))
}

/// The useful tail of a verifier rejection (the full log is thousands of lines).
fn verifier_error(e: &aya::programs::ProgramError) -> String {
    let text = e.to_string();
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        return format!(
            "{text}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    text
}

/// Seconds since boot on CLOCK_MONOTONIC, the clock of every kernel timestamp, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the provided timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
