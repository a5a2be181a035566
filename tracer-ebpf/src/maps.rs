//! Every map, the read-only configuration, and their accessors.
use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    Config, FdEntry, FdKey, GoLayout, IoReq, MAX_PROCS, MemoKey, MemoSig, Passed, ProcState,
    PyFramesEvent, PyLayout, ReleaseBatch, SockOwner, TRACED_WORDS, syscall::Shape,
};

/// Written by userspace before load (kernel offsets, stack size, filters).
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config::ZERO;

/// Reads a field of CONFIG. The volatile read stops the compiler from folding the build-time
/// zeros that userspace replaces before load.
#[inline(always)]
pub fn config_u32(field: *const u32) -> u64 {
    // SAFETY: `field` points into the CONFIG global.
    unsafe { read_volatile(field) as u64 }
}

/// Offset of a kernel structure field, as resolved from BTF by userspace.
macro_rules! off {
    ($field:ident) => {
        $crate::maps::config_u32(core::ptr::addr_of!($crate::maps::CONFIG.offsets.$field))
    };
}
pub(crate) use off;

/// Whether tracer traces the whole system (with the cgroup/comm filters) besides registered
/// processes.
#[inline(always)]
pub fn system_wide() -> bool {
    config_u32(addr_of!(CONFIG.system_wide)) != 0
}

/// The registered processes: parent and flags (the in-kernel filter; see also TRACED_BITS).
#[map]
pub static TRACED: HashMap<u32, ProcState> = HashMap::with_max_entries(MAX_PROCS, 0);

/// One bit per pid in each plane (`tracer_common::plane`): registered, set while the process's
/// own descriptors are accounted (TRACE_SELF), the first check of every hook; and runtime, set
/// once it has a Go or Python layout. One array load each. Mapped by userspace, which sets and
/// clears bits with atomic operations like the kernel does.
#[map]
pub static TRACED_BITS: Array<u64> =
    Array::with_max_entries(TRACED_WORDS, aya_ebpf::bindings::BPF_F_MMAPABLE);

/// Outstanding descriptors of traced processes: the accounting itself. Sized by userspace.
#[map]
pub static OPEN_FDS: HashMap<FdKey, FdEntry> = HashMap::with_max_entries(1, 0);

/// Tracked sockets (`struct sock *`) -> the descriptor holding them, for state changes.
#[map]
pub static SOCKS: HashMap<u64, SockOwner> = HashMap::with_max_entries(65536, 0);

/// Descriptor-table size of a traced thread's pending exec, by thread id (a failed exec's
/// entry is overwritten by the thread's next one).
#[map]
pub static EXEC_FDS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Syscall number -> how to handle it (zero: not hooked). Filled by userspace from
/// `tracer_common::syscall::TABLE`.
#[map]
pub static SYSCALLS: Array<Shape> = Array::with_max_entries(1024, 0);

/// Per-thread cache of the stack mapping holding the last seen stack pointer: (start, end of
/// the part known to be readable).
#[map]
pub static STACK_VMA: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU event and drop counters (`tracer_common::counter`).
#[map]
pub static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(tracer_common::counter::COUNT, 0);

/// Per-CPU acquisition sequence, seeded by userspace with `cpu << 48`.
#[map]
pub static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Memo signatures: the stack words an unwind from these registers reads (see MemoKey).
#[map]
pub static MEMO_SIGS: HashMap<MemoKey, MemoSig> = HashMap::with_max_entries(65536, 0);

/// Memo hash of a stack -> its call site (filled by userspace).
#[map]
pub static MEMO_STACKS: HashMap<u64, u32> = HashMap::with_max_entries(262_144, 0);

/// Scratch of the memo lookup: a copy of the stack span.
#[map]
pub static MEMO_STACK_SCRATCH: PerCpuArray<[u64; crate::memo::SCRATCH_WORDS]> =
    PerCpuArray::with_max_entries(1, 0);

/// Open files (`struct file *`) sent over unix sockets by traced processes -> their sender.
#[map]
pub static PASSED: LruHashMap<u64, Passed> = LruHashMap::with_max_entries(16384, 0);

/// In-flight io_uring requests that will create descriptors, by `struct io_kiocb *`.
#[map]
pub static IO_REQS: HashMap<u64, IoReq> = HashMap::with_max_entries(16384, 0);

/// In-flight multishot-capable requests by (ring, user_data), for completions posted without
/// their request.
#[map]
pub static IO_MULTI: HashMap<[u64; 2], u64> = HashMap::with_max_entries(4096, 0);

/// Scratch of descriptor lists read from SCM_RIGHTS control messages.
#[map]
pub static RIGHTS_SCRATCH: PerCpuArray<[i32; crate::scm_rights::SCRATCH_LEN]> =
    PerCpuArray::with_max_entries(1, 0);

/// Scratch of the exit-time verification (its counts and lists).
#[map]
pub static VERIFY_SCRATCH: PerCpuArray<crate::verify::Verified> =
    PerCpuArray::with_max_entries(1, 0);

/// Go binaries with probes attached, by uprobe cookie: their layouts (written by userspace).
#[map]
pub static GO_BINARIES: Array<GoLayout> = Array::with_max_entries(tracer_common::GO_BINARIES, 0);

/// Go processes: where their runtime keeps the current goroutine (from their binary).
#[map]
pub static GO_PROCS: HashMap<u32, GoLayout> = HashMap::with_max_entries(MAX_PROCS, 0);

/// CPython processes: where their interpreter keeps its threads and frames.
#[map]
pub static PY_PROCS: HashMap<u32, PyLayout> = HashMap::with_max_entries(MAX_PROCS, 0);

/// Python code objects already described, by (process, code object).
#[map]
pub static PY_SEEN: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(65536, 0);

/// The Python thread state of a thread, by thread id.
#[map]
pub static PY_TSTATE: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Scratch of a Python stack being read.
#[map]
pub static PY_FRAMES_SCRATCH: PerCpuArray<PyFramesEvent> = PerCpuArray::with_max_entries(1, 0);

/// Releases gathered per CPU before they go to the ring (see `ReleaseBatch`).
#[map]
pub static RELEASES: PerCpuArray<ReleaseBatch> = PerCpuArray::with_max_entries(1, 0);

/// Records for userspace. Sized by userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);
