//! Every type that crosses the kernel/user boundary, defined once.
//!
//! The eBPF programs (tracer-ebpf) write these into maps and the ring buffer; the collector
//! (tracer) reads them. All types are `#[repr(C)]` plain old data with explicit padding so both
//! sides agree on the layout byte for byte. Enumerations are carried as integers (`u8`/`u16`/`u32`)
//! because the kernel side may write any value; userspace validates them when decoding.
#![no_std]

use bytemuck::{Pod, Zeroable};

/// Bytes captured for a descriptor's name: the path of an opened file, a memfd's name, or the
/// peer address returned by accept(). Longer paths are truncated (the record says so).
pub const NAME_MAX: usize = 256;

/// Bytes of socket address captured by connect() and bind().
pub const SOCKADDR_MAX: usize = 128;

/// Sizes of the user-stack copies attached to acquisitions. The kernel copies the smallest class
/// that holds the stack from the syscall's stack pointer up to the end of its mapping, capped by
/// [`Config::stack_max`]. Each class is a distinct constant because ring-buffer reservations must
/// have a size known to the verifier.
pub const STACK_CLASSES: [usize; 7] = [1024, 2048, 4096, 8192, 16384, 32768, 65536];

/// The largest stack copy the kernel side can attach to one acquisition.
pub const STACK_MAX: usize = 65536;

/// Maximum number of traced processes tracked at once.
pub const MAX_PROCS: u32 = 16384;

/// Largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
pub const PID_MAX_LIMIT: u32 = 1 << 22;

/// Words of one plane of the `TRACED_BITS` array: one bit per possible pid.
pub const PLANE_WORDS: u32 = PID_MAX_LIMIT / 64;

/// Planes of `TRACED_BITS`, each [`PLANE_WORDS`] long.
pub mod plane {
    /// Set while the process's own descriptors are accounted.
    pub const REGISTERED: u32 = 0;
    /// Set once the process has (or had) a Go or Python layout in `GO_PROCS` / `PY_PROCS`:
    /// only then are those maps looked up on its acquisitions. Never cleared (a stale bit only
    /// costs a lookup that misses).
    pub const RUNTIME: u32 = 1;
    /// Number of planes.
    pub const COUNT: u32 = 2;
}

/// Words of the `TRACED_BITS` array.
pub const TRACED_WORDS: u32 = PLANE_WORDS * plane::COUNT;

pub mod syscall;

/// `fcntl` commands that duplicate a descriptor (ABI constants shared by all architectures).
pub const F_DUPFD: u64 = 0;
/// `fcntl(F_DUPFD_CLOEXEC)`.
pub const F_DUPFD_CLOEXEC: u64 = 1030;
/// `close_range` flag: mark close-on-exec instead of closing.
pub const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
/// `close_range` flag: unshare the descriptor table first.
pub const CLOSE_RANGE_UNSHARE: u64 = 1 << 1;

/// Kinds of ring-buffer records ([`EventHeader::kind`]).
pub mod event {
    /// [`super::AcquireEvent`] followed by the stack copy.
    pub const ACQUIRE: u32 = 1;
    /// [`super::ReleaseBatch`].
    pub const RELEASES: u32 = 2;
    /// [`super::SockAddrEvent`].
    pub const SOCKADDR: u32 = 3;
    /// [`super::ForkEvent`].
    pub const FORK: u32 = 4;
    /// [`super::ExecEvent`].
    pub const EXEC: u32 = 5;
    /// [`super::ExitEvent`].
    pub const EXIT: u32 = 6;
    /// [`super::IoCompleteEvent`].
    pub const IO_COMPLETE: u32 = 8;
    /// [`super::TaskExitEvent`].
    pub const TASK_EXIT: u32 = 9;
    /// [`super::GoSpawnEvent`].
    pub const GO_SPAWN: u32 = 10;
    /// [`super::PyFramesEvent`].
    pub const PY_FRAMES: u32 = 11;
    /// [`super::PyCodeEvent`].
    pub const PY_CODE: u32 = 12;
}

/// Kinds of tasks ([`TaskExitEvent::kind`]): threads and goroutines followed as resources.
pub mod task {
    pub const THREAD: u32 = 1;
    pub const GOROUTINE: u32 = 2;
}

/// How a descriptor was released ([`Released::how`]).
pub mod release {
    /// close().
    pub const CLOSE: u32 = 1;
    /// close_range().
    pub const CLOSE_RANGE: u32 = 2;
    /// Implicitly closed because dup2()/dup3() reused its number.
    pub const DUP2: u32 = 3;
    /// Closed by a successful execve() because it was close-on-exec.
    pub const EXEC: u32 = 4;
    /// Found replaced by a new descriptor with the same number: the release itself was not seen.
    pub const REPLACED: u32 = 5;
    /// IORING_OP_CLOSE.
    pub const IOURING_CLOSE: u32 = 6;
    /// Bit set on `how` when the descriptor had been sent over a unix socket (SCM_RIGHTS): its
    /// acquisition may be named by a receiver later.
    pub const PASSED: u32 = 0x100;
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// Descriptors acquired by traced processes (accounted in the kernel map).
    pub const ACQUIRED: u32 = 0;
    /// Descriptors released by traced processes.
    pub const RELEASED: u32 = 1;
    /// Ring-buffer records dropped because the ring was full.
    pub const EVENTS_LOST: u32 = 2;
    /// Acquisitions not accounted because the descriptor map was full.
    pub const FD_MAP_FULL: u32 = 3;
    /// Acquisitions whose user stack could not be read.
    pub const STACK_UNREADABLE: u32 = 4;
    /// Execs whose close-on-exec releases could not be prepared (exec map full).
    pub const INFLIGHT_LOST: u32 = 5;
    /// Traced processes not registered because the process map was full.
    pub const PROC_MAP_FULL: u32 = 6;
    /// Acquisitions that failed with EMFILE or ENFILE (descriptor limit reached).
    pub const EMFILE: u32 = 7;
    /// close() of a descriptor that was not open (EBADF).
    pub const BAD_CLOSE: u32 = 8;
    /// In-flight io_uring requests or passed descriptors not remembered (map full).
    pub const PENDING_LOST: u32 = 9;
    /// TCP state changes of tracked sockets (kept in place in their SOCKS entries): userspace
    /// reads the entries only when this moved.
    pub const SOCK_STATES: u32 = 10;
    /// Number of counters.
    pub const COUNT: u32 = 11;
}

/// Flags of [`ProcState::flags`].
pub mod proc_flag {
    /// Account this process's descriptors.
    pub const TRACE_SELF: u32 = 1;
    /// Register children forked by this process (they get `TRACE_SELF | TRACE_CHILDREN`).
    pub const TRACE_CHILDREN: u32 = 2;
}

/// Flags of [`FdEntry::flags`].
pub mod fd_flag {
    /// Copied into a child at fork: the child holds it but did not acquire it.
    pub const INHERITED: u16 = 1;
    /// Inherited from outside the traced tree (the launched command's stdio): accounted so that
    /// verification is exact, never reported, no events.
    pub const FOREIGN: u16 = 2;
    /// Sent over a unix socket (SCM_RIGHTS) at least once.
    pub const PASSED: u16 = 4;
}

/// Key of the `OPEN_FDS` map: one open descriptor of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FdKey {
    /// Process (thread-group) id.
    pub tgid: u32,
    /// Descriptor number.
    pub fd: u32,
}

/// Value of the `OPEN_FDS` map: what the kernel knows about an outstanding descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FdEntry {
    /// Acquisition id, unique per acquiring syscall; also the reference to its stack record.
    pub seq: u64,
    /// CLOCK_MONOTONIC time of the acquisition, in nanoseconds.
    pub ts_ns: u64,
    /// Thread that acquired it.
    pub tid: u32,
    /// Process that acquired it (differs from the key's tgid for descriptors inherited at fork).
    pub origin_tgid: u32,
    /// [`syscall`] identifier of the acquisition.
    pub syscall: u16,
    /// [`fd_flag`] bits.
    pub flags: u16,
    pub _pad: u32,
    /// The socket (`struct sock *`) behind a socket descriptor, else 0; its state changes are
    /// followed while the descriptor is open.
    pub sk: u64,
    /// The open file (`struct file *`) the descriptor referred to when accounted (0: unknown).
    /// Verification checks the table still holds this file under this number.
    pub file: u64,
}

impl FdEntry {
    /// The entry of a descriptor received from outside the traced tree (a launcher, or a parent
    /// tracer never saw): not the program's, but known to verification.
    pub const fn foreign(file: u64) -> Self {
        Self {
            seq: 0,
            ts_ns: 0,
            tid: 0,
            origin_tgid: 0,
            syscall: 0,
            flags: fd_flag::FOREIGN | fd_flag::INHERITED,
            _pad: 0,
            sk: 0,
            file,
        }
    }
}

/// Value of the `TRACED` map: the in-kernel filter of traced processes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ProcState {
    /// Process that forked this one (0 for the roots registered by userspace).
    pub parent_tgid: u32,
    /// [`proc_flag`] bits.
    pub flags: u32,
}

/// User-mode registers at the syscall, the unwinder's starting point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct UserRegs {
    /// Instruction pointer (return address into the syscall wrapper).
    pub ip: u64,
    /// Stack pointer; the stack copy starts here.
    pub sp: u64,
    /// Frame pointer.
    pub bp: u64,
}

/// Common prefix of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EventHeader {
    /// [`event`] kind.
    pub kind: u32,
    /// Process the record is about.
    pub tgid: u32,
    /// CLOCK_MONOTONIC time in nanoseconds.
    pub ts_ns: u64,
}

/// A successful acquisition of one descriptor (or a pair), followed in the same ring record by
/// `stack_len` bytes of user stack starting at `regs.sp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AcquireEvent {
    pub header: EventHeader,
    /// Acquisition id (see [`FdEntry::seq`]).
    pub seq: u64,
    /// Acquisition id of the descriptor this one derives from (dup source, accept listener,
    /// the sender's descriptor of a received one), or 0.
    pub src_seq: u64,
    /// Syscall-specific detail: packed socket (domain | type << 16 | protocol << 32), the
    /// directory descriptor of open* (AT_FDCWD for open/creat), the source descriptor of
    /// dup/accept, the sender (pid | fd << 32) of a received descriptor, the bpf() command.
    pub arg: u64,
    /// Inode numbers of `fd` and `fd2`; only read for pipes, socket pairs and duplicates of
    /// untracked descriptors, else 0.
    pub ino: [u64; 2],
    /// User registers at the syscall.
    pub regs: UserRegs,
    /// Acquiring thread.
    pub tid: u32,
    /// The new descriptor.
    pub fd: i32,
    /// The second descriptor of pipe()/socketpair(), -1 otherwise.
    pub fd2: i32,
    /// [`syscall`] identifier.
    pub syscall: u16,
    /// `i_mode` of `fd`'s inode (file type bits); only read for duplicates of untracked
    /// descriptors, else 0.
    pub i_mode: u16,
    /// Bytes of `name` in use; larger than [`NAME_MAX`] means truncated.
    pub name_len: u32,
    /// Bytes of stack copy following this record.
    pub stack_len: u32,
    /// Call site recognized by the stack memo (site id + 1), 0 when the stack was copied.
    pub memo_site: u32,
    /// For a failed call (`fd` = -1): the errno, EMFILE or ENFILE for acquisitions, EBADF for
    /// close() (`arg` is then the descriptor). Else 0.
    pub errno: u32,
    /// The socket (`struct sock *`) behind `fd` for sockets, else 0.
    pub sk: u64,
    /// The Go goroutine that acquired it (0: not Go, or not known).
    pub goid: u64,
    /// The [`PyFramesEvent::token`] of the acquiring thread's Python stack, sent just before
    /// (0: none).
    pub py_stack: u64,
    /// Path (open*, creat), name (memfd_create) or peer sockaddr (accept*).
    pub name: [u8; NAME_MAX],
}

/// Releases gathered in one [`ReleaseBatch`].
pub const RELEASE_BATCH: usize = 64;

/// A descriptor released by a traced process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Released {
    /// Acquisition id of the released descriptor.
    pub seq: u64,
    pub tgid: u32,
    /// The descriptor number.
    pub fd: i32,
    /// [`release`] reason.
    pub how: u32,
    pub _pad: u32,
}

/// Releases gathered per CPU (the kernel's `RELEASES` map) and sent to the ring as one record
/// when full, instead of a record each.
///
/// Userspace also reads the per-CPU buffers in place, without a lock: the kernel writes an
/// item before counting it in `n`, and on sending resets `n` before it increments `number`, so a
/// reader that finds the same `number` before and after its copy holds `items[..n]` of that `number`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ReleaseBatch {
    pub header: EventHeader,
    /// Batches this CPU sent before this one (read before `n`: keep it first).
    pub number: u64,
    /// The CPU that gathered it.
    pub cpu: u32,
    /// Items in use.
    pub n: u32,
    pub items: [Released; RELEASE_BATCH],
}

/// An address given to connect() or bind() on a tracked socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SockAddrEvent {
    pub header: EventHeader,
    /// Acquisition id of the socket.
    pub seq: u64,
    /// The socket descriptor.
    pub fd: i32,
    /// [`syscall::CONNECT`] or [`syscall::BIND`].
    pub syscall: u32,
    /// Bytes of `addr` in use.
    pub len: u32,
    pub _pad: u32,
    /// The raw `struct sockaddr`.
    pub addr: [u8; SOCKADDR_MAX],
}

/// A traced process forked a new process (not a thread); `header.tgid` is the child.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ForkEvent {
    pub header: EventHeader,
    /// The forking process.
    pub parent_tgid: u32,
    /// Descriptors copied into the child's accounting.
    pub inherited: u32,
}

/// A traced process completed execve().
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Close-on-exec descriptors released by this exec.
    pub released: u32,
    pub _pad: u32,
    /// Path of the new program, as the kernel resolved it.
    pub filename: [u8; NAME_MAX],
}

/// Most descriptor numbers listed per kind of mismatch in [`ExitEvent`].
pub const VERIFY_LIST: usize = 8;

/// Why the kernel could not compare a process's table with its accounting
/// ([`ExitEvent::unverified`]; 0: it could). Verification fails closed: any of these makes the
/// comparison "unverified", never "exact".
pub mod unverified {
    /// The task's descriptor table could not be read.
    pub const NO_TABLE: u32 = 1;
    /// The table's size could not be read.
    pub const NO_SIZE: u32 = 2;
    /// The table has more slots than one kernel loop may visit.
    pub const TOO_LARGE: u32 = 3;
    /// A word of the open-descriptor bitmap or an entry of the file array could not be read.
    pub const READ_FAILED: u32 = 4;
    /// The kernel refused the loop over the table.
    pub const LOOP_FAILED: u32 = 5;
}

/// Most descriptor-table slots a kernel loop visits (the kernel's `BPF_MAX_LOOPS`).
pub const MAX_LOOP_SLOTS: u32 = 1 << 23;

/// The last thread of a traced process exited. Its descriptor table, still intact at this
/// point, was compared with the accounting (kernel-side verification). Descriptors inherited
/// from outside the traced tree count as accounted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// Wait status, as waitpid() would report it.
    pub status: u32,
    /// Descriptors open in the table.
    pub open: u32,
    /// Open and accounted.
    pub exact: u32,
    /// Open but not accounted (an acquisition tracer did not see).
    pub missing: u32,
    /// Accounted but not open (a release tracer did not see).
    pub phantom: u32,
    /// Open and accounted, but the number now refers to another file than the one accounted.
    pub wrong: u32,
    /// [`unverified`] reason (0: the comparison is complete), and the table size it concerns.
    pub unverified: u32,
    pub table_size: u32,
    /// The first missing, phantom and wrong descriptor numbers.
    pub missing_fds: [u32; VERIFY_LIST],
    pub phantom_fds: [u32; VERIFY_LIST],
    pub wrong_fds: [u32; VERIFY_LIST],
}

/// An io_uring request submitted earlier (an [`AcquireEvent`] with `fd` -1 and the
/// submission's `seq`) completed: with new descriptors, or finally failed (`fd` < 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct IoCompleteEvent {
    pub header: EventHeader,
    /// Acquisition id of the new descriptors (0 if none).
    pub seq: u64,
    /// Acquisition id of the submission (its stack and name).
    pub submit_seq: u64,
    /// Inode numbers of `fd` and `fd2`.
    pub ino: [u64; 2],
    /// The new descriptor, or the negated errno.
    pub fd: i32,
    /// Second descriptor (IORING_OP_PIPE), else -1.
    pub fd2: i32,
    /// File type bits of `fd`'s inode.
    pub i_mode: u16,
    /// [`syscall`] pseudo-identifier of the operation.
    pub syscall: u16,
    /// More completions will follow (multishot accept).
    pub more: u32,
}

/// A thread (or, from Go's runtime, a goroutine) of a traced process ended. Threads started
/// are [`AcquireEvent`]s of `syscall::THREAD` (with the creating stack); goroutines started are
/// [`GoSpawnEvent`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct TaskExitEvent {
    pub header: EventHeader,
    /// Thread id, or goroutine id.
    pub id: u64,
    /// [`task`] kind.
    pub kind: u32,
    /// It ended because its process was exiting (it was still alive at the process's exit).
    pub group_exit: u32,
}

/// Go binaries probed at once (the `GO_BINARIES` map).
pub const GO_BINARIES: u32 = 256;

/// Most frames of a goroutine creator's stack kept.
pub const GO_FRAMES: usize = 32;

/// A goroutine was created (a uprobe at the return of `runtime.newproc1`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GoSpawnEvent {
    pub header: EventHeader,
    pub goid: u64,
    /// The goroutine whose `go` statement created it (0: the runtime, a timer, C code).
    pub parent_goid: u64,
    /// Return addresses of the creator's stack at the `go` statement, innermost first (frame
    /// pointers: Go keeps them).
    pub pcs: [u64; GO_FRAMES],
    pub n: u32,
    pub _pad: u32,
}

/// Where a Go binary keeps what the kernel reads (from its ELF symbols and DWARF): by uprobe
/// cookie in the `GO_BINARIES` map, by process in `GO_PROCS`. `tls_g` 0: an empty slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GoLayout {
    /// The current g is at `fs_base + tls_g` (negative).
    pub tls_g: i64,
    /// Offsets in `runtime.g`: `goid`, `m`, `sched` + `gobuf.bp`, `parentGoid` (0: none, Go
    /// before 1.21).
    pub g_goid: u32,
    pub g_m: u32,
    pub g_sched_bp: u32,
    pub g_parent_goid: u32,
    /// Offsets in `runtime.m`: `g0`, `curg`.
    pub m_g0: u32,
    pub m_curg: u32,
}

/// Most Python frames kept per acquisition.
pub const PY_FRAMES: usize = 32;

/// One Python frame: its code object and the index of its current instruction (code units).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PyFrame {
    pub code: u64,
    pub instr: i64,
}

/// The Python stack of the acquisition with the same `seq`, innermost first (sent just before
/// it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct PyFramesEvent {
    pub header: EventHeader,
    /// Names this stack for the acquisitions that follow it ([`AcquireEvent::py_stack`]).
    pub token: u64,
    pub tid: u32,
    pub n: u32,
    pub frames: [PyFrame; PY_FRAMES],
}

/// Bytes kept of a code object's strings and line table.
pub const PY_NAME_MAX: usize = 128;
pub const PY_FILE_MAX: usize = 256;
pub const PY_LINETABLE_MAX: usize = 2048;

/// A Python code object, the first time a process's stack shows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct PyCodeEvent {
    pub header: EventHeader,
    pub code: u64,
    pub firstlineno: i32,
    /// Bytes in use of each field; the strings' `state` bits (kind, compact, ascii).
    pub name_len: u32,
    pub file_len: u32,
    pub linetable_len: u32,
    pub name_state: u32,
    pub file_state: u32,
    pub qualname: [u8; PY_NAME_MAX],
    pub filename: [u8; PY_FILE_MAX],
    pub linetable: [u8; PY_LINETABLE_MAX],
}

/// Where a CPython interpreter keeps what the kernel reads, by process: the `PY_PROCS` map.
/// Offsets per minor version (see `tracer::python`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PyLayout {
    /// Address of `_PyRuntime` in the process.
    pub runtime: u64,
    pub interpreters_head: u32,
    pub interp_next: u32,
    pub interp_threads_head: u32,
    pub tstate_next: u32,
    pub tstate_native_thread_id: u32,
    /// 3.11/3.12: `tstate.cframe` then `_PyCFrame.current_frame`; 3.13: `current_frame` in
    /// the thread state (`cframe_current_frame` is then `u32::MAX`).
    pub tstate_cframe: u32,
    pub cframe_current_frame: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_instr: u32,
    pub frame_owner: u32,
    pub code_firstlineno: u32,
    pub code_filename: u32,
    pub code_qualname: u32,
    pub code_linetable: u32,
    pub code_adaptive: u32,
    pub unicode_state: u32,
    pub unicode_length: u32,
    pub unicode_ascii_data: u32,
    pub unicode_compact_data: u32,
    pub bytes_size: u32,
    pub bytes_data: u32,
}

/// Value of the `PASSED` map: who sent a file over a unix socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Passed {
    /// The sender's acquisition of the descriptor it sent (0 if the sender does not account it).
    pub seq: u64,
    pub tgid: u32,
    pub fd: u32,
}

/// Value of the `IO_REQS` map: an io_uring request that will produce a descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IoReq {
    /// The submission's acquisition id.
    pub seq: u64,
    /// User pointer where IORING_OP_PIPE writes its two descriptors.
    pub fds_ptr: u64,
    pub tgid: u32,
    pub tid: u32,
    pub syscall: u16,
    pub _pad: [u16; 3],
}

/// Most stack words a memo signature covers.
pub const MEMO_WORDS: usize = 128;

/// Largest stack span (bytes from the stack pointer) a memo signature covers: a per-CPU map
/// value (at most 32 KiB) holds the copy, and the kernel bounds lengths with a 15-bit mask.
pub const MEMO_SPAN: usize = 32768 - 8;

/// Key of the `MEMO_SIGS` map: the registers an unwind starts from, in one process.
///
/// Stack memoization (exact): after unwinding a full stack copy, userspace records which stack
/// words the unwinder read. The unwind is a function of the registers and of those words only,
/// so a later acquisition with the same registers and the same values at the same words has
/// the same stack: the kernel then sends the known site instead of a copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct MemoKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Value of the `MEMO_SIGS` map: the stack words an unwind from a [`MemoKey`] reads, and the
/// stack first learnt under them (most registers only ever see one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MemoSig {
    /// Words in use in `words`.
    pub n: u32,
    /// Bytes from the stack pointer covering every word.
    pub span: u32,
    /// Hash of the first stack learnt under this signature, and its call site: a match needs
    /// no second lookup (other stacks are in `MEMO_STACKS`).
    pub hash: u64,
    pub site: u32,
    pub _pad: u32,
    /// Word indexes (byte offset / 8 from the stack pointer), in the order read.
    pub words: [u16; MEMO_WORDS],
}

/// Start of a memo hash: the key.
pub fn memo_seed(key: &MemoKey) -> u64 {
    let h = memo_mix(0x9e37_79b9_7f4a_7c15, key.tgid as u64);
    memo_mix(memo_mix(memo_mix(h, key.ip), key.sp), key.bp)
}

/// One step of the memo hash (the same on both sides of the boundary).
#[inline(always)]
pub fn memo_mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 29)
}

/// Hash of a stack under a signature: the seed, then the value of each word in signature
/// order (the key fixes the signature, so the indexes add nothing).
pub fn memo_hash(key: &MemoKey, sig_words: &[u16], word_at: impl Fn(u16) -> u64) -> u64 {
    sig_words
        .iter()
        .fold(memo_seed(key), |h, &i| memo_mix(h, word_at(i)))
}

/// Value of the `SOCKS` map: which descriptor a tracked socket belongs to, and its last TCP
/// state change (the `inet_sock_set_state` tracepoint), written in place by the kernel and read
/// by userspace: a connection changes state several times, and only the last one is reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SockOwner {
    /// Acquisition id of the socket's descriptor.
    pub seq: u64,
    pub tgid: u32,
    pub fd: u32,
    /// The last change: its CLOCK_MONOTONIC time with the new state in the top bits (see
    /// [`SockOwner::state`]); 0 before any. One word, so that a reader never pairs a state with
    /// another change's time.
    pub state_at: u64,
    /// Set by the first change the owner's own exit makes (the kernel closing what the process
    /// held): the state at the exit is kept, later changes are not recorded.
    pub frozen: u32,
    /// Address family (AF_INET, AF_INET6).
    pub family: u16,
    /// Local and remote ports, host order (0: not known yet).
    pub sport: u16,
    pub dport: u16,
    pub _pad: [u16; 3],
    /// Local and remote addresses (IPv4 in the first 4 bytes), valid with their port.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

impl SockOwner {
    /// Bits of [`SockOwner::state_at`] above the time, holding the state.
    pub const STATE_SHIFT: u32 = 60;

    /// The owner of a socket just acquired, with no state change yet.
    pub const fn new(seq: u64, tgid: u32, fd: u32) -> Self {
        Self {
            seq,
            tgid,
            fd,
            state_at: 0,
            frozen: 0,
            family: 0,
            sport: 0,
            dport: 0,
            _pad: [0; 3],
            saddr: [0; 16],
            daddr: [0; 16],
        }
    }

    /// [`SockOwner::state_at`] of a change to `state` at `ts_ns`.
    pub const fn state_at(state: u32, ts_ns: u64) -> u64 {
        (ts_ns & ((1 << Self::STATE_SHIFT) - 1)) | ((state as u64) << Self::STATE_SHIFT)
    }

    /// The last state (kernel numbering) and since when, if it changed since acquired.
    pub const fn state(&self) -> Option<(u32, u64)> {
        if self.state_at == 0 {
            return None;
        }
        Some((
            (self.state_at >> Self::STATE_SHIFT) as u32,
            self.state_at & ((1 << Self::STATE_SHIFT) - 1),
        ))
    }
}

/// TCP states as the kernel numbers them (`TCP_ESTABLISHED` ...).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
}

/// Offsets of kernel structure fields, resolved by userspace from the running kernel's BTF
/// (hand-made CO-RE: the eBPF programs read kernel memory at these offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub task_signal: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_exit_code: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub fdt_open_fds: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_mode: u32,
    pub signal_live: u32,
    pub vma_start: u32,
    pub vma_end: u32,
    pub binprm_filename: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// io_uring (all 0 when the kernel's BTF lacks them: io_uring is then not followed).
    pub kiocb_opcode: u32,
    pub kiocb_ctx: u32,
    pub kiocb_user_data: u32,
    pub open_dfd: u32,
    pub open_file_slot: u32,
    pub open_filename: u32,
    pub filename_name: u32,
    pub accept_file_slot: u32,
    pub socket_domain: u32,
    pub socket_type: u32,
    pub socket_protocol: u32,
    pub socket_file_slot: u32,
    pub close_fd: u32,
    pub close_file_slot: u32,
    pub pipe_fds: u32,
    pub pipe_file_slot: u32,
    pub cqe_user_data: u32,
    pub cqe_res: u32,
    pub cqe_flags: u32,
    /// `task_struct.thread.fsbase`: a thread's TLS base (Go's g, Python's thread state).
    pub task_fsbase: u32,
    /// `signal_struct.flags` (SIGNAL_GROUP_EXIT: the process is exiting).
    pub signal_flags: u32,
}

/// Read-only configuration written into the eBPF object before it is loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Config {
    pub offsets: KernelOffsets,
    /// Largest stack copy per acquisition, in bytes (0 disables stacks).
    pub stack_max: u32,
    /// Unread bytes in the ring buffer above which a record wakes the collector.
    pub wakeup_bytes: u32,
    /// Trace every process that passes the filters below, not only those in `TRACED`.
    pub system_wide: u32,
    /// Cgroup level of `cgroup_id` (its depth under the cgroup2 root).
    pub cgroup_level: u32,
    /// Only processes in this cgroup (v2 id) or below it; 0: any.
    pub cgroup_id: u64,
    /// Only processes with this `comm` (NUL-padded); all zeros: any.
    pub comm: [u8; 16],
    /// tracer's own process, never traced (not even system-wide).
    pub tracer_tgid: u32,
    pub _pad: u32,
}

impl Config {
    /// The build-time configuration userspace overwrites before load.
    pub const ZERO: Self = {
        // SAFETY: every field is an integer or an array of integers.
        unsafe { core::mem::zeroed() }
    };
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all these types are repr(C), Copy, and valid for any bit pattern.
    unsafe impl aya::Pod for FdKey {}
    unsafe impl aya::Pod for FdEntry {}
    unsafe impl aya::Pod for ProcState {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for MemoKey {}
    unsafe impl aya::Pod for MemoSig {}
    unsafe impl aya::Pod for SockOwner {}
    unsafe impl aya::Pod for Passed {}
    unsafe impl aya::Pod for IoReq {}
    unsafe impl aya::Pod for super::syscall::Shape {}
    unsafe impl aya::Pod for GoLayout {}
    unsafe impl aya::Pod for PyLayout {}
    unsafe impl aya::Pod for ReleaseBatch {}
}
