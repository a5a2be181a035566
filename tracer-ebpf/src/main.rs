//! tracer's kernel side: records who acquired and released which descriptor, when, with which
//! user stack. No policy lives here.
//!
//! * `fd_enter` / `fd_exit` (attached to the sys_enter_* / sys_exit_* tracepoints of every syscall
//!   that creates a descriptor): remember the arguments at entry, account the new descriptor in
//!   `OPEN_FDS` at successful exit and send an [`AcquireEvent`] with a copy of the user stack.
//! * `fd_close` / `fd_close_range`: release at syscall entry, while the number cannot be reused.
//! * `proc_fork` / `proc_exec` / `proc_exit`: follow the traced tree, copy inherited descriptors,
//!   release close-on-exec descriptors, report exits.
//!
//! Only processes in `TRACED` are accounted; everything else returns after one map lookup.
#![no_std]
#![no_main]
// Atomic read-modify-write is not exposed by core on the BPF target; the intrinsic lowers to the
// BPF atomic add instruction.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod doctor;

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::{MaybeUninit, size_of},
    ptr::{addr_of, addr_of_mut, read_volatile},
};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
        generated::{
            bpf_find_vma, bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf, bpf_loop,
            bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_probe_read_user_str, bpf_task_pt_regs,
        },
    },
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tracer_common::{
    AcquireEvent, CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE, Config, EventHeader, ExecEvent,
    ExitEvent, F_DUPFD, F_DUPFD_CLOEXEC, FdEntry, FdKey, ForkEvent, IoCompleteEvent, IoReq,
    KernelOffsets, MAX_LOOP_SLOTS, MAX_PROCS, MEMO_WORDS, MemoKey, MemoSig, NAME_MAX, Passed,
    ProcState, ReleaseEvent, SOCKADDR_MAX, STACK_CLASSES, SockAddrEvent, SockOwner, SockStateEvent,
    UserRegs, VERIFY_LIST, counter, event, fd_flag, memo_mix, memo_seed, proc_flag, release,
    syscall, unverified,
};

/// Written by userspace before load (kernel offsets, stack size).
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    offsets: KernelOffsets {
        task_files: 0,
        task_signal: 0,
        task_tgid: 0,
        task_pid: 0,
        task_exit_code: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        fdt_open_fds: 0,
        file_inode: 0,
        inode_ino: 0,
        inode_mode: 0,
        signal_live: 0,
        vma_start: 0,
        vma_end: 0,
        binprm_filename: 0,
        file_private_data: 0,
        socket_sk: 0,
        skc_daddr: 0,
        skc_rcv_saddr: 0,
        skc_dport: 0,
        skc_num: 0,
        skc_family: 0,
        skc_v6_daddr: 0,
        skc_v6_rcv_saddr: 0,
        kiocb_opcode: 0,
        kiocb_ctx: 0,
        kiocb_user_data: 0,
        open_dfd: 0,
        open_file_slot: 0,
        open_filename: 0,
        filename_name: 0,
        accept_file_slot: 0,
        socket_domain: 0,
        socket_type: 0,
        socket_protocol: 0,
        socket_file_slot: 0,
        close_fd: 0,
        close_file_slot: 0,
        pipe_fds: 0,
        pipe_file_slot: 0,
        cqe_user_data: 0,
        cqe_res: 0,
        cqe_flags: 0,
    },
    stack_max: 0,
    wakeup_bytes: 0,
    system_wide: 0,
    cgroup_level: 0,
    cgroup_id: 0,
    comm: [0; 16],
};

/// The traced processes (the in-kernel filter).
#[map]
static TRACED: HashMap<u32, ProcState> = HashMap::with_max_entries(MAX_PROCS, 0);

/// Outstanding descriptors of traced processes: the accounting itself. Sized by userspace.
#[map]
static OPEN_FDS: HashMap<FdKey, FdEntry> = HashMap::with_max_entries(1, 0);

/// Tracked sockets (`struct sock *`) -> the descriptor holding them, for state changes.
#[map]
static SOCKS: HashMap<u64, SockOwner> = HashMap::with_max_entries(65536, 0);

/// Descriptor-table size of a traced thread's pending exec, by thread id.
#[map]
static EXEC_FDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Kernel syscall number -> [`syscall`] identifier (0: not traced). Filled by userspace.
#[map]
static SYSCALLS: Array<u16> = Array::with_max_entries(1024, 0);

/// Per-thread cache of the stack mapping holding the last seen stack pointer: (start, end of
/// the part known to be readable).
#[map]
static STACK_VMA: LruHashMap<u32, [u64; 2]> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU event and drop counters ([`counter`]).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU acquisition sequence, seeded by userspace with `cpu << 48`.
#[map]
static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Memo signatures: the stack words an unwind from these registers reads (see MemoKey).
#[map]
static MEMO_SIGS: HashMap<MemoKey, MemoSig> = HashMap::with_max_entries(65536, 0);

/// Memo hash of a stack -> its call site (filled by userspace).
#[map]
static MEMO_STACKS: HashMap<u64, u32> = HashMap::with_max_entries(262_144, 0);

/// Scratch of the memo lookup: the signature's word indexes.
#[map]
static MEMO_WORD_SCRATCH: PerCpuArray<[u16; MEMO_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// Scratch of the memo lookup: a copy of the stack span.
#[map]
static MEMO_STACK_SCRATCH: PerCpuArray<[u64; 4096]> = PerCpuArray::with_max_entries(1, 0);

/// Open files (`struct file *`) sent over unix sockets by traced processes -> their sender.
#[map]
static PASSED: LruHashMap<u64, Passed> = LruHashMap::with_max_entries(16384, 0);

/// In-flight io_uring requests that will create descriptors, by `struct io_kiocb *`.
#[map]
static IO_REQS: HashMap<u64, IoReq> = HashMap::with_max_entries(16384, 0);

/// In-flight multishot-capable requests by (ring, user_data), for completions posted without
/// their request.
#[map]
static IO_MULTI: HashMap<[u64; 2], u64> = HashMap::with_max_entries(4096, 0);

/// Scratch of descriptor lists read from SCM_RIGHTS control messages.
#[map]
static RIGHTS_SCRATCH: PerCpuArray<[i32; RIGHTS_SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Records for userspace. Sized by userspace.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

const EINPROGRESS: i64 = 115;
const EBADF: i64 = 9;
const EMFILE: i64 = 24;
const ENFILE: i64 = 23;
const AT_FDCWD: i32 = -100;
const S_IFMT: u16 = 0o170000;
/// Smallest stack extent worth taking from the per-thread cache (else the mapping is looked up).
const MIN_CACHED_EXTENT: u64 = 4096;
const AF_INET6: u16 = 10;
const S_IFSOCK: u16 = 0o140000;
const CLONE_PIDFD: u64 = 0x1000;
/// landlock_create_ruleset flags that make it return a version or errata, not a descriptor.
const LANDLOCK_QUERY_FLAGS: u64 = 3;
/// bpf() commands that return a new descriptor (bit per command number).
const BPF_FD_CMDS: u64 = (1 << 0)   // MAP_CREATE
    | (1 << 5)   // PROG_LOAD
    | (1 << 7)   // OBJ_GET
    | (1 << 13)  // PROG_GET_FD_BY_ID
    | (1 << 14)  // MAP_GET_FD_BY_ID
    | (1 << 17)  // RAW_TRACEPOINT_OPEN
    | (1 << 18)  // BTF_LOAD
    | (1 << 19)  // BTF_GET_FD_BY_ID
    | (1 << 28)  // LINK_CREATE
    | (1 << 30)  // LINK_GET_FD_BY_ID
    | (1 << 32)  // ENABLE_STATS
    | (1 << 33)  // ITER_CREATE
    | (1 << 36); // TOKEN_CREATE
/// Most descriptors taken from the control messages of one sendmsg/recvmsg call.
const RIGHTS_MAX: u32 = 16;
const RIGHTS_SCRATCH_LEN: usize = 48;
/// Most messages of one sendmmsg/recvmmsg and control messages per message inspected.
const MMSG_MAX: u64 = 4;
const CMSG_MAX: u64 = 4;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// io_uring opcodes (uapi).
mod ioring_op {
    pub const ACCEPT: u8 = 13;
    pub const OPENAT: u8 = 18;
    pub const CLOSE: u8 = 19;
    pub const OPENAT2: u8 = 28;
    pub const SOCKET: u8 = 45;
    pub const FIXED_FD_INSTALL: u8 = 54;
    pub const PIPE: u8 = 62;
}
const IORING_CQE_F_MORE: u32 = 2;

/// Reads a field of CONFIG. The volatile read stops the compiler from folding the build-time zeros
/// that userspace replaces before load.
#[inline(always)]
fn config_u32(field: *const u32) -> u64 {
    // SAFETY: `field` points into the CONFIG global.
    unsafe { read_volatile(field) as u64 }
}

macro_rules! off {
    ($field:ident) => {
        config_u32(addr_of!(CONFIG.offsets.$field))
    };
}

#[inline(always)]
fn bump(index: u32, by: u64) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer is a valid per-CPU map value (the add is atomic anyway).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, by) };
    }
}

/// A new acquisition id. Userspace seeds each CPU's counter with `cpu << 48`, so ids are unique
/// across CPUs without asking which CPU this is.
#[inline(always)]
fn next_seq() -> u64 {
    let Some(ptr) = SEQ.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: valid per-CPU map value. Tracepoint programs run with preemption disabled, so a
    // plain per-CPU increment cannot interleave with another on the same CPU.
    unsafe {
        *ptr += 1;
        *ptr
    }
}

/// Reads a `T` (plain integers only) from kernel memory at `base + off`.
#[inline(always)]
fn kread<T: Copy>(base: u64, off: u64) -> Option<T> {
    if base == 0 {
        return None;
    }
    // Not zero-initialized: on the BPF target zeroing a large value is a byte-by-byte memset
    // call, and the helper writes every byte (zeros on failure, which we do not use).
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel validates the source address and fills `v`.
    let r = unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            (base + off) as *const c_void,
        )
    };
    // SAFETY: on success every byte of `v` was written.
    (r == 0).then(|| unsafe { v.assume_init() })
}

/// The descriptor table (`struct fdtable *`) of a task.
#[inline(always)]
fn task_fdt(task: u64) -> Option<u64> {
    let files: u64 = kread(task, off!(task_files))?;
    kread(files, off!(files_fdt))
}

#[inline(always)]
fn current_fdt() -> Option<u64> {
    // SAFETY: helper without preconditions.
    task_fdt(unsafe { bpf_get_current_task() })
}

/// Word `fd / 64` of the table's open-descriptor bitmap (None if unreadable).
#[inline(always)]
fn open_word(fdt: u64, fd: u32) -> Option<u64> {
    let bits: u64 = kread(fdt, off!(fdt_open_fds))?;
    kread(bits, (fd as u64 / 64) * 8)
}

/// The open file (`struct file *`) behind `fd` in table `fdt` (0 if none).
#[inline(always)]
fn fd_file(fdt: u64, fd: i32) -> u64 {
    if fd < 0 {
        return 0;
    }
    kread::<u64>(fdt, off!(fdt_fd))
        .and_then(|arr| kread::<u64>(arr, fd as u64 * 8))
        .unwrap_or(0)
}

/// Inode number and file type bits of an open file.
#[inline(always)]
fn file_inode(file: u64) -> (u64, u16) {
    match kread::<u64>(file, off!(file_inode)) {
        Some(inode) => (
            kread(inode, off!(inode_ino)).unwrap_or(0),
            kread::<u16>(inode, off!(inode_mode)).unwrap_or(0) & S_IFMT,
        ),
        None => (0, 0),
    }
}

/// The `struct sock *` of a socket file (0 if unknown). Only valid for socket files.
#[inline(always)]
fn file_socket(file: u64) -> u64 {
    kread::<u64>(file, off!(file_private_data))
        .and_then(|socket| kread::<u64>(socket, off!(socket_sk)))
        .unwrap_or(0)
}

#[inline(always)]
fn wakeup_flags() -> u64 {
    // Waking the consumer costs an IPI per record; wake it only once the ring holds
    // `wakeup_bytes` (userspace also drains on a short timer).
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > config_u32(addr_of!(CONFIG.wakeup_bytes)) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn header(kind: u32, tgid: u32) -> EventHeader {
    EventHeader {
        kind,
        tgid,
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Sends a [`ReleaseEvent`].
#[inline(never)]
fn emit_release(tgid: u32, fd: u32, seq: u64, how: u32) {
    bump(counter::RELEASED, 1);
    match EVENTS.reserve::<ReleaseEvent>(0) {
        Some(mut rec) => {
            rec.write(ReleaseEvent {
                // Releases carry no time (nothing needs it; it saves a helper call).
                header: EventHeader {
                    kind: event::RELEASE,
                    tgid,
                    ts_ns: 0,
                },
                seq,
                fd: fd as i32,
                how,
            });
            rec.submit(wakeup_flags());
        }
        None => bump(counter::EVENTS_LOST, 1),
    }
}

/// Removes `(tgid, fd)` from the accounting if tracked, reporting how it was released.
#[inline(never)]
fn release_fd(tgid: u32, fd: u32, how: u32) {
    let key = FdKey { tgid, fd };
    // SAFETY: copies out of a valid map value.
    let Some((seq, sk, flags)) = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).seq, (*e).sk, (*e).flags) })
    else {
        return;
    };
    // Only the thread whose delete succeeds reports it (two threads may race to close).
    if OPEN_FDS.remove(&key).is_ok() {
        if sk != 0 {
            let _ = SOCKS.remove(&sk);
        }
        if flags & fd_flag::FOREIGN != 0 {
            return;
        }
        let how = if flags & fd_flag::PASSED != 0 {
            how | release::PASSED
        } else {
            how
        };
        emit_release(tgid, fd, seq, how);
    }
}

/// Accounts a new descriptor. A stale entry with the same number means its release was not seen
/// (or, for dup2/dup3, that the target was implicitly closed): report that release first.
#[inline(always)]
fn account_fd(tgid: u32, fd: i32, entry: &FdEntry, replaced_how: u32) {
    if fd < 0 {
        return;
    }
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    if OPEN_FDS.insert(&key, entry, BPF_NOEXIST as u64).is_ok() {
        bump(counter::ACQUIRED, 1);
        return;
    }
    // SAFETY: copy out of a valid map value.
    if let Some((old, flags)) = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).seq, (*e).flags) })
        && flags & fd_flag::FOREIGN == 0
    {
        emit_release(tgid, fd as u32, old, replaced_how);
    }
    if OPEN_FDS.insert(&key, entry, 0).is_ok() {
        bump(counter::ACQUIRED, 1);
    } else {
        bump(counter::FD_MAP_FULL, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Syscalls: raw tracepoints sys_enter(regs, id) and sys_exit(regs, ret) see every syscall of
// every process; one array lookup discards the syscalls tracer does not hook.

/// Offsets in the x86_64 `struct pt_regs` (a stable ABI) of the registers used here.
#[cfg(bpf_target_arch = "x86_64")]
mod regs {
    pub const BP: u64 = 4 * 8;
    pub const R10: u64 = 7 * 8;
    pub const DX: u64 = 12 * 8;
    pub const SI: u64 = 13 * 8;
    pub const DI: u64 = 14 * 8;
    pub const ORIG_AX: u64 = 15 * 8;
    pub const IP: u64 = 16 * 8;
    pub const SP: u64 = 19 * 8;
}

/// Loads a saved register. `regs` is the BTF-typed `struct pt_regs *` of a tp_btf program, which
/// the verifier lets us read directly (no helper call: this runs on every syscall).
#[inline(always)]
fn reg(regs: *const u64, off: u64) -> u64 {
    // SAFETY: `regs` points to the task's saved registers; the verifier checks the access
    // against the kernel's BTF and the JIT guards it.
    unsafe { *regs.add((off / 8) as usize) }
}

/// The first four syscall arguments.
#[inline(always)]
fn syscall_args(regs: *const u64) -> [u64; 4] {
    [
        reg(regs, regs::DI),
        reg(regs, regs::SI),
        reg(regs, regs::DX),
        reg(regs, regs::R10),
    ]
}

/// Instruction, stack and frame pointers of user mode.
#[inline(always)]
fn user_regs(regs: *const u64) -> UserRegs {
    UserRegs {
        ip: reg(regs, regs::IP),
        sp: reg(regs, regs::SP),
        bp: reg(regs, regs::BP),
    }
}

/// Our identifier of syscall number `nr` (0: not hooked).
#[inline(always)]
fn hooked(nr: u64) -> u16 {
    if nr >= 1024 {
        return 0;
    }
    SYSCALLS.get(nr as u32).copied().unwrap_or(0)
}

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    // Acquisitions are handled at exit only; entry handles releases (before the number can be
    // reused) and exec (which needs the descriptor table as it was).
    let id = hooked(ctx.arg::<u64>(1));
    if id != syscall::CLOSE
        && id != syscall::CLOSE_RANGE
        && id != syscall::EXECVE
        && id != syscall::EXECVEAT
    {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let args = syscall_args(ctx.arg::<*const u64>(0));
    if id == syscall::CLOSE {
        // No filter lookup: only traced processes have entries.
        let fd = args[0] as i32;
        if fd >= 0 {
            release_fd(tgid, fd as u32, release::CLOSE);
        }
        return 0;
    }
    if !traced(tgid) {
        return 0;
    }
    if id == syscall::CLOSE_RANGE {
        close_range(tgid, args[0] as u32, args[1] as u32, args[2]);
        return 0;
    }
    let max_fds = current_fdt()
        .and_then(|fdt| kread::<u32>(fdt, off!(fdt_max_fds)))
        .unwrap_or(0);
    if EXEC_FDS.insert(&(pid_tgid as u32), &max_fds, 0).is_err() {
        bump(counter::INFLIGHT_LOST, 1);
    }
    0
}

/// Whether `tgid`'s own descriptors are accounted: registered, or selected system-wide.
#[inline(always)]
fn traced(tgid: u32) -> bool {
    // SAFETY: read-only use of a map value.
    match unsafe { TRACED.get(&tgid) } {
        Some(s) => s.flags & proc_flag::TRACE_SELF != 0,
        None => config_u32(addr_of!(CONFIG.system_wide)) != 0 && selected(),
    }
}

/// Whether the current process passes the system-wide filters (cgroup, comm).
#[inline(always)]
fn selected() -> bool {
    // SAFETY: CONFIG is a plain global, read volatile like config_u32.
    let cgroup = unsafe { read_volatile(addr_of!(CONFIG.cgroup_id)) };
    if cgroup != 0 {
        let level = config_u32(addr_of!(CONFIG.cgroup_level)) as i32;
        // SAFETY: helper without preconditions.
        if unsafe { bpf_get_current_ancestor_cgroup_id(level) } != cgroup {
            return false;
        }
    }
    // SAFETY: as above.
    let want: [u64; 2] = unsafe { read_volatile(addr_of!(CONFIG.comm).cast()) };
    if want[0] == 0 {
        return true;
    }
    match bpf_get_current_comm() {
        Ok(comm) => {
            // SAFETY: 16 bytes read as two words.
            let have: [u64; 2] = unsafe { core::mem::transmute(comm) };
            have == want
        }
        Err(_) => false,
    }
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    let regs_ptr: *const u64 = ctx.arg(0);
    let id = hooked(reg(regs_ptr, regs::ORIG_AX));
    if id == 0 || id == syscall::CLOSE_RANGE {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if id == syscall::EXECVE || id == syscall::EXECVEAT {
        // A failed exec leaves its entry behind (a successful one was consumed).
        let _ = EXEC_FDS.remove(&(pid_tgid as u32));
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    let tgid = (pid_tgid >> 32) as u32;
    if id == syscall::CLOSE {
        // close() of a descriptor that was not open: a double close or a stray number.
        if ret == -EBADF && traced(tgid) {
            bump(counter::BAD_CLOSE, 1);
            let fd = syscall_args(regs_ptr)[0] as i32;
            failed(pid_tgid, id, EBADF as u32, fd, &user_regs(regs_ptr));
        }
        return 0;
    }
    let is_socket_op = id == syscall::CONNECT || id == syscall::BIND;
    let limit_hit = (ret == -EMFILE || ret == -ENFILE) && !is_socket_op;
    if ret < 0 && !(is_socket_op && ret == -EINPROGRESS) && !limit_hit {
        return 0;
    }
    if !traced(tgid) {
        return 0;
    }
    // The argument registers are still as they were at entry.
    let args = syscall_args(regs_ptr);
    let tid = pid_tgid as u32;
    if limit_hit {
        bump(counter::EMFILE, 1);
        failed(pid_tgid, id, -ret as u32, -1, &user_regs(regs_ptr));
        return 0;
    }
    match id {
        syscall::CONNECT | syscall::BIND => sockaddr(tgid, id, &args),
        syscall::FCNTL if args[1] != F_DUPFD && args[1] != F_DUPFD_CLOEXEC => {}
        // signalfd on an existing descriptor only changes its mask.
        syscall::SIGNALFD | syscall::SIGNALFD4 if args[0] as i32 != -1 => {}
        syscall::BPF if args[0] >= 64 || BPF_FD_CMDS & (1 << args[0]) == 0 => {}
        syscall::LANDLOCK_CREATE_RULESET if args[2] & LANDLOCK_QUERY_FLAGS != 0 => {}
        syscall::CLONE | syscall::CLONE3 => {
            // In the parent only (the child returns 0): the pidfd written to user memory.
            let ptr = if ret <= 0 {
                0
            } else if id == syscall::CLONE {
                if args[0] & CLONE_PIDFD != 0 {
                    args[2]
                } else {
                    0
                }
            } else {
                match uread::<[u64; 2]>(args[0]) {
                    Some([flags, pidfd]) if flags & CLONE_PIDFD != 0 => pidfd,
                    _ => 0,
                }
            };
            if ptr != 0
                && let Some(fd) = uread::<i32>(ptr)
            {
                acquire(tgid, tid, id, &args, fd, -1, &user_regs(regs_ptr));
            }
        }
        syscall::SENDMSG | syscall::SENDMMSG | syscall::RECVMSG | syscall::RECVMMSG => {
            let (msgs, stride) = if id == syscall::SENDMSG || id == syscall::RECVMSG {
                (1, 0)
            } else {
                (ret as u64, MMSGHDR_SIZE)
            };
            let n = collect_rights(args[1], msgs, stride);
            if n == 0 {
                return 0;
            }
            let mut l = RightsLoop {
                tgid,
                tid,
                regs: user_regs(regs_ptr),
                fdt: current_fdt().unwrap_or(0),
                sys: id as u64,
            };
            let step = if id == syscall::SENDMSG || id == syscall::SENDMMSG {
                sent_step as *mut c_void
            } else {
                received_step as *mut c_void
            };
            // SAFETY: the callback only touches `l` and maps.
            unsafe { bpf_loop(n, step, addr_of_mut!(l).cast(), 0) };
        }
        syscall::PIPE | syscall::PIPE2 => {
            let (fd, fd2) = user_fd_pair(args[0]);
            acquire(tgid, tid, id, &args, fd, fd2, &user_regs(regs_ptr));
        }
        syscall::SOCKETPAIR => {
            let (fd, fd2) = user_fd_pair(args[3]);
            acquire(tgid, tid, id, &args, fd, fd2, &user_regs(regs_ptr));
        }
        _ => acquire(tgid, tid, id, &args, ret as i32, -1, &user_regs(regs_ptr)),
    }
    0
}

/// Reads a `T` (plain integers only) from user memory.
#[inline(always)]
fn uread<T: Copy>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_user validates the source address and fills `v`.
    let r = unsafe {
        bpf_probe_read_user(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            addr as *const c_void,
        )
    };
    // SAFETY: on success every byte of `v` was written.
    (r == 0).then(|| unsafe { v.assume_init() })
}

/// Size of `struct mmsghdr` (a `struct msghdr` and the received length, padded).
const MMSGHDR_SIZE: u64 = 64;
/// Offset in `struct msghdr` of `msg_control` (followed by `msg_controllen`).
const MSG_CONTROL: u64 = 32;

/// Copies the descriptors of the SCM_RIGHTS control messages of `msgs` message headers at user
/// address `base` (`stride` bytes apart) into RIGHTS_SCRATCH; returns how many (at most
/// [`RIGHTS_MAX`]).
#[inline(always)]
fn collect_rights(base: u64, msgs: u64, stride: u64) -> u32 {
    let Some(out) = RIGHTS_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // Written C-like, every variable initialized: values the optimizer leaves undefined on
    // some path are rejected by the verifier even when unused.
    let mut n: u32 = 0;
    let mut m: u64 = 0;
    while m < MMSG_MAX && m < msgs {
        let hdr = base + m * stride;
        m += 1;
        // msg_control and msg_controllen.
        let mut ctl = [0u64; 2];
        // SAFETY: the helper validates the user address.
        if unsafe {
            bpf_probe_read_user(
                ctl.as_mut_ptr().cast(),
                16,
                (hdr + MSG_CONTROL) as *const c_void,
            )
        } != 0
        {
            continue;
        }
        let (control, clen) = (ctl[0], ctl[1]);
        let mut off: u64 = 0;
        let mut c: u64 = 0;
        while c < CMSG_MAX && control != 0 && off + 16 <= clen {
            c += 1;
            // cmsghdr: len (u64), level (i32), type (i32), then the data.
            let mut h = [0u64; 2];
            // SAFETY: as above.
            if unsafe {
                bpf_probe_read_user(h.as_mut_ptr().cast(), 16, (control + off) as *const c_void)
            } != 0
            {
                break;
            }
            let len = h[0];
            if len < 16 || len > clen - off {
                break;
            }
            if h[1] as u32 as i32 == SOL_SOCKET
                && (h[1] >> 32) as i32 == SCM_RIGHTS
                && n < RIGHTS_MAX
            {
                let mut count = ((len - 16) / 4) as u32;
                if count > RIGHTS_MAX - n {
                    count = RIGHTS_MAX - n;
                }
                // SAFETY: the masks (kept from the optimizer, for the verifier) hold the copy
                // inside the 48-entry scratch.
                let r = unsafe {
                    bpf_probe_read_user(
                        (out as *mut i32).add((opaque(n) & 15) as usize).cast(),
                        (opaque(count) & 31) * 4,
                        (control + off + 16) as *const c_void,
                    )
                };
                if r == 0 {
                    n += count;
                }
            }
            off += (len + 7) & !7;
        }
    }
    n
}

/// `v`, through memory: the compiler cannot use what it knows about it, so bounds checks
/// written after this reach the verifier.
#[inline(always)]
fn opaque(v: u32) -> u32 {
    let x = v;
    // SAFETY: reads a local.
    unsafe { read_volatile(&x) }
}

/// State of a loop over the descriptors of SCM_RIGHTS messages.
#[repr(C)]
struct RightsLoop {
    tgid: u32,
    tid: u32,
    regs: UserRegs,
    fdt: u64,
    /// The receiving syscall.
    sys: u64,
}

/// The `i`th collected SCM_RIGHTS descriptor.
#[inline(always)]
fn right(i: u64) -> i32 {
    match RIGHTS_SCRATCH.get_ptr(0) {
        // SAFETY: index masked into the scratch.
        Some(fds) => unsafe { (*fds)[i as usize & (RIGHTS_MAX as usize - 1)] },
        None => -1,
    }
}

/// bpf_loop callback of sendmsg: remembers who sent each file.
#[inline(never)]
extern "C" fn sent_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's RightsLoop.
    let l = unsafe { &*(ctx as *const RightsLoop) };
    let fd = right(i);
    if fd < 0 {
        return 0;
    }
    let file = fd_file(l.fdt, fd);
    if file == 0 {
        return 0;
    }
    let key = FdKey {
        tgid: l.tgid,
        fd: fd as u32,
    };
    let seq = match OPEN_FDS.get_ptr_mut(&key) {
        // SAFETY: valid map value.
        Some(e) => unsafe {
            (*e).flags |= fd_flag::PASSED;
            (*e).seq
        },
        None => 0,
    };
    let passed = Passed {
        seq,
        tgid: l.tgid,
        fd: fd as u32,
    };
    if PASSED.insert(&file, &passed, 0).is_err() {
        bump(counter::PENDING_LOST, 1);
    }
    0
}

/// bpf_loop callback of recvmsg: accounts each received descriptor, naming its sender.
#[inline(never)]
extern "C" fn received_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's RightsLoop.
    let l = unsafe { &*(ctx as *const RightsLoop) };
    let fd = right(i);
    if fd < 0 {
        return 0;
    }
    let file = fd_file(l.fdt, fd);
    let (ino, i_mode) = file_inode(file);
    let sk = if i_mode == S_IFSOCK {
        file_socket(file)
    } else {
        0
    };
    // SAFETY: copy out of a valid map value.
    let sender = unsafe { PASSED.get(&file) }.copied().unwrap_or_default();
    let seq = next_seq();
    // SAFETY: helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let entry = FdEntry {
        seq,
        ts_ns,
        tid: l.tid,
        origin_tgid: l.tgid,
        syscall: l.sys as u16,
        flags: 0,
        _pad: 0,
        sk,
        file,
    };
    account_fd(l.tgid, fd, &entry, release::REPLACED);
    track_socket(sk, seq, l.tgid, fd);
    let acq = Acquisition {
        errno: 0,
        sk,
        tgid: l.tgid,
        tid: l.tid,
        fd,
        fd2: -1,
        sys: l.sys as u16,
        i_mode,
        seq,
        src_seq: sender.seq,
        // The sender: pid, and its descriptor number.
        arg: sender.tgid as u64 | (sender.fd as u64) << 32,
        ino: [ino, 0],
        ts_ns,
        name_src: NameSrc::new(NAME_NONE, 0, 0),
    };
    send_acquire(&acq, &l.regs);
    0
}

/// Follows the TCP state of a tracked socket.
#[inline(always)]
fn track_socket(sk: u64, seq: u64, tgid: u32, fd: i32) {
    if sk != 0 {
        let owner = SockOwner {
            seq,
            tgid,
            fd: fd as u32,
        };
        let _ = SOCKS.insert(&sk, &owner, 0);
    }
}

/// Reads the two descriptors a pipe()/socketpair() wrote to user memory.
#[inline(always)]
fn user_fd_pair(ptr: u64) -> (i32, i32) {
    let mut fds = [-1i32; 2];
    // SAFETY: bpf_probe_read_user validates the user address.
    let r = unsafe { bpf_probe_read_user(fds.as_mut_ptr().cast(), 8, ptr as *const c_void) };
    if r == 0 { (fds[0], fds[1]) } else { (-1, -1) }
}

/// Accounts the new descriptor(s) `fd` (and `fd2`) of syscall `sys` with arguments `a` and
/// sends the acquisition.
#[inline(always)]
fn acquire(tgid: u32, tid: u32, sys: u16, a: &[u64; 4], fd: i32, fd2: i32, regs: &UserRegs) {
    if fd < 0 {
        return;
    }
    // dup2(fd, fd) and dup3 are no-ops on the same number.
    if (sys == syscall::DUP2 || sys == syscall::DUP3) && a[0] as i32 == a[1] as i32 {
        return;
    }
    let src_fd = match sys {
        syscall::DUP
        | syscall::DUP2
        | syscall::DUP3
        | syscall::FCNTL
        | syscall::ACCEPT
        | syscall::ACCEPT4 => a[0] as i32,
        _ => -1,
    };
    let src_seq = if src_fd >= 0 {
        OPEN_FDS
            .get_ptr(&FdKey {
                tgid,
                fd: src_fd as u32,
            })
            .map(|e| unsafe { (*e).seq })
            .unwrap_or(0)
    } else {
        0
    };
    let seq = next_seq();
    // SAFETY: helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let fdt = current_fdt().unwrap_or(0);
    let file = fd_file(fdt, fd);
    let file2 = fd_file(fdt, fd2);
    // The inode is only needed where the syscall does not say what the descriptor is (a
    // duplicate of an untracked one, a handle or another process's descriptor) and to name
    // pipes; opened paths are classified later.
    let need_inode = (src_fd >= 0 && src_seq == 0)
        || matches!(
            sys,
            syscall::PIPE
                | syscall::PIPE2
                | syscall::SOCKETPAIR
                | syscall::PIDFD_GETFD
                | syscall::OPEN_BY_HANDLE_AT
        );
    let (ino, i_mode, ino2) = if need_inode {
        let (ino, i_mode) = file_inode(file);
        (ino, i_mode, file_inode(file2).0)
    } else {
        (0, 0, 0)
    };
    // Sockets: remember the socket so its TCP state changes can be followed.
    let sk = if matches!(sys, syscall::SOCKET | syscall::ACCEPT | syscall::ACCEPT4)
        || (sys == syscall::PIDFD_GETFD && i_mode == S_IFSOCK)
    {
        file_socket(file)
    } else {
        0
    };
    track_socket(sk, seq, tgid, fd);
    let mut entry = FdEntry {
        seq,
        ts_ns,
        tid,
        origin_tgid: tgid,
        syscall: sys,
        flags: 0,
        _pad: 0,
        sk,
        file,
    };
    let replaced = if sys == syscall::DUP2 || sys == syscall::DUP3 {
        release::DUP2
    } else {
        release::REPLACED
    };
    account_fd(tgid, fd, &entry, replaced);
    entry.sk = 0;
    entry.file = file2;
    account_fd(tgid, fd2, &entry, replaced);

    let arg = match sys {
        syscall::SOCKET | syscall::SOCKETPAIR => {
            (a[0] & 0xffff) | ((a[1] & 0xffff) << 16) | ((a[2] & 0xffff_ffff) << 32)
        }
        // The directory a relative path is resolved against.
        syscall::OPEN | syscall::CREAT => AT_FDCWD as u32 as u64,
        syscall::OPENAT
        | syscall::OPENAT2
        | syscall::OPEN_TREE
        | syscall::OPEN_TREE_ATTR
        | syscall::FSPICK => a[0] & 0xffff_ffff,
        // The other process (its pidfd) and its descriptor number.
        syscall::PIDFD_GETFD => (a[0] & 0xffff_ffff) | (a[1] << 32),
        // The command (bpf), the event type (perf_event_open's attr.type is read in userspace).
        syscall::BPF => a[0],
        _ if src_fd >= 0 => src_fd as u64,
        _ => 0,
    };
    let acq = Acquisition {
        tgid,
        tid,
        fd,
        fd2,
        sys,
        seq,
        src_seq,
        arg,
        ino: [ino, ino2],
        i_mode,
        ts_ns,
        errno: 0,
        sk,
        name_src: match sys {
            syscall::OPEN
            | syscall::CREAT
            | syscall::MEMFD_CREATE
            | syscall::MQ_OPEN
            | syscall::FSOPEN => NameSrc::new(NAME_STR, a[0], 0),
            syscall::OPENAT
            | syscall::OPENAT2
            | syscall::OPEN_TREE
            | syscall::OPEN_TREE_ATTR
            | syscall::FSPICK => NameSrc::new(NAME_STR, a[1], 0),
            syscall::ACCEPT | syscall::ACCEPT4 if a[1] != 0 && a[2] != 0 => {
                NameSrc::new(NAME_SOCKADDR, a[1], a[2])
            }
            _ => NameSrc::new(NAME_NONE, 0, 0),
        },
    };
    send_acquire(&acq, regs);
}

/// A call that failed: an acquisition on a descriptor limit, or a close of descriptor `fd`
/// that was not open. Sent with its stack.
#[inline(never)]
fn failed(pid_tgid: u64, sys: u16, errno: u32, fd: i32, regs: &UserRegs) {
    let acq = Acquisition {
        errno,
        sk: 0,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd: -1,
        fd2: -1,
        sys,
        i_mode: 0,
        seq: 0,
        src_seq: 0,
        arg: fd as u32 as u64,
        ino: [0, 0],
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        name_src: NameSrc::new(NAME_NONE, 0, 0),
    };
    send_acquire(&acq, regs);
}

/// Where the acquisition's name comes from. A plain struct rather than an enum with payloads:
/// copying an enum copies uninitialized payload registers, which the verifier rejects.
#[derive(Clone, Copy)]
struct NameSrc {
    kind: u32,
    /// User pointer to a NUL-terminated string or to a sockaddr.
    ptr: u64,
    /// User pointer to the sockaddr's length.
    len_ptr: u64,
}

const NAME_NONE: u32 = 0;
const NAME_STR: u32 = 1;
const NAME_SOCKADDR: u32 = 2;
/// A NUL-terminated kernel string.
const NAME_KSTR: u32 = 3;

impl NameSrc {
    const fn new(kind: u32, ptr: u64, len_ptr: u64) -> Self {
        Self { kind, ptr, len_ptr }
    }
}

/// Everything an [`AcquireEvent`] says, gathered before the ring record is reserved.
struct Acquisition {
    /// For a failed acquisition: its errno (fd is then -1).
    errno: u32,
    sk: u64,
    tgid: u32,
    tid: u32,
    fd: i32,
    fd2: i32,
    sys: u16,
    i_mode: u16,
    seq: u64,
    src_seq: u64,
    arg: u64,
    ino: [u64; 2],
    ts_ns: u64,
    name_src: NameSrc,
}

#[repr(C)]
struct VmaRange {
    start: u64,
    end: u64,
}

/// bpf_find_vma callback: remembers the mapping's bounds.
#[inline(never)]
extern "C" fn vma_bounds(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
    let range = ctx as *mut VmaRange;
    let vma = vma as u64;
    // SAFETY: ctx points to the caller's VmaRange on its stack.
    unsafe {
        (*range).start = kread(vma, off!(vma_start)).unwrap_or(0);
        (*range).end = kread(vma, off!(vma_end)).unwrap_or(0);
    }
    0
}

/// Bytes of stack from `sp` to the end of its mapping (0 if unknown).
#[inline(always)]
fn stack_extent(task: *mut c_void, tid: u32, sp: u64) -> u64 {
    // The cached end may have been lowered to what a previous, deeper event could read; it only
    // helps if it still leaves a useful copy from this stack pointer.
    if let Some(&[start, end]) = unsafe { STACK_VMA.get(&tid) } {
        if sp >= start && sp + MIN_CACHED_EXTENT <= end {
            return end - sp;
        }
    }
    // `end: sp` marks "not found" (and avoids a zeroing memset call).
    let mut range = VmaRange { start: 0, end: sp };
    // SAFETY: task is the current task's BTF pointer; the callback only writes `range`.
    let r = unsafe {
        bpf_find_vma(
            task.cast(),
            sp,
            vma_bounds as *mut c_void,
            addr_of_mut!(range).cast(),
            0,
        )
    };
    if r != 0 || range.end <= sp || range.start > sp {
        return 0;
    }
    let _ = STACK_VMA.insert(&tid, &[range.start, range.end], 0);
    range.end - sp
}

/// Lowers the cached readable end of this thread's stack.
#[inline(always)]
fn shrink_stack_end(tid: u32, end: u64) {
    if let Some(range) = STACK_VMA.get_ptr_mut(&tid) {
        // SAFETY: valid map value of two u64.
        unsafe {
            if end < (*range)[1] {
                (*range)[1] = end;
            }
        }
    }
}

/// Sends an acquisition with its call site: recognized by the memo, or a copy of the stack.
#[inline(never)]
fn send_acquire(acq: &Acquisition, regs: &UserRegs) {
    // SAFETY: helper returning the current task's BTF pointer.
    let task = unsafe { bpf_get_current_task_btf() } as *mut c_void;
    let regs = *regs;
    let stack_max = config_u32(addr_of!(CONFIG.stack_max));
    if stack_max != 0 {
        let site = memo_site(acq.tgid, &regs);
        if site != 0 {
            emit_acquire::<0>(acq, &regs, 0, site);
            return;
        }
    }
    let mut want = if stack_max == 0 || regs.sp == 0 {
        0
    } else {
        match stack_extent(task, acq.tid, regs.sp) {
            // Unknown extent: a small copy still usually covers the innermost frames.
            0 => STACK_CLASSES[1] as u64,
            n => n,
        }
    };
    if want > stack_max {
        want = stack_max;
    }
    if want == 0 {
        emit_acquire::<0>(acq, &regs, 0, 0);
    } else if want <= STACK_CLASSES[0] as u64 {
        emit_acquire::<{ STACK_CLASSES[0] }>(acq, &regs, want, 0);
    } else if want <= STACK_CLASSES[1] as u64 {
        emit_acquire::<{ STACK_CLASSES[1] }>(acq, &regs, want, 0);
    } else if want <= STACK_CLASSES[2] as u64 {
        emit_acquire::<{ STACK_CLASSES[2] }>(acq, &regs, want, 0);
    } else if want <= STACK_CLASSES[3] as u64 {
        emit_acquire::<{ STACK_CLASSES[3] }>(acq, &regs, want, 0);
    } else if want <= STACK_CLASSES[4] as u64 {
        emit_acquire::<{ STACK_CLASSES[4] }>(acq, &regs, want, 0);
    } else if want <= STACK_CLASSES[5] as u64 {
        emit_acquire::<{ STACK_CLASSES[5] }>(acq, &regs, want, 0);
    } else {
        emit_acquire::<{ STACK_CLASSES[6] }>(acq, &regs, want, 0);
    }
}

/// State of the memo hash loop.
#[repr(C)]
struct MemoLoop {
    h: u64,
}

/// bpf_loop callback: mixes signature word `i` (index, then value) into the hash.
#[inline(never)]
extern "C" fn memo_step(i: u64, ctx: *mut c_void) -> i64 {
    let (Some(words), Some(stack)) = (MEMO_WORD_SCRATCH.get_ptr(0), MEMO_STACK_SCRATCH.get_ptr(0))
    else {
        return 1;
    };
    // SAFETY: ctx is the caller's MemoLoop; indexes are masked into the scratch arrays.
    unsafe {
        let l = &mut *(ctx as *mut MemoLoop);
        let idx = (*words)[i as usize & (MEMO_WORDS - 1)] as usize;
        let word = (*stack)[idx & 4095];
        l.h = memo_mix(memo_mix(l.h, idx as u64), word);
    }
    0
}

/// The call site (id + 1) of the current stack if the memo knows it, else 0.
#[inline(always)]
fn memo_site(tgid: u32, regs: &UserRegs) -> u32 {
    let key = MemoKey {
        tgid,
        _pad: 0,
        ip: regs.ip,
        sp: regs.sp,
        bp: regs.bp,
    };
    let Some(sig) = MEMO_SIGS.get_ptr(&key) else {
        return 0;
    };
    let (Some(words), Some(stack)) = (
        MEMO_WORD_SCRATCH.get_ptr_mut(0),
        MEMO_STACK_SCRATCH.get_ptr_mut(0),
    ) else {
        return 0;
    };
    // SAFETY: all pointers are valid map values; the copy's length is masked below the
    // scratch's size (userspace never makes a longer span).
    unsafe {
        let n = (*sig).n;
        if n == 0 || n > MEMO_WORDS as u32 {
            return 0;
        }
        let span = (*sig).span & 0x7fff;
        if bpf_probe_read_kernel(
            words.cast(),
            size_of::<[u16; MEMO_WORDS]>() as u32,
            addr_of!((*sig).words).cast(),
        ) != 0
            || bpf_probe_read_user(stack.cast(), span, regs.sp as *const c_void) != 0
        {
            return 0;
        }
        let mut l = MemoLoop { h: memo_seed(&key) };
        bpf_loop(n, memo_step as *mut c_void, addr_of_mut!(l).cast(), 0);
        match MEMO_STACKS.get(&l.h) {
            Some(&site) => site.wrapping_add(1),
            None => 0,
        }
    }
}

/// Reserves an [`AcquireEvent`] with room for `N` stack bytes, fills it and submits it.
#[inline(never)]
fn emit_acquire<const N: usize>(acq: &Acquisition, regs: &UserRegs, want: u64, memo_site: u32) {
    const HDR: usize = size_of::<AcquireEvent>();
    let Some(mut rec) = EVENTS.reserve_bytes(HDR + N, 0) else {
        bump(counter::EVENTS_LOST, 1);
        return;
    };
    let base = rec.as_mut_ptr();
    let ev = base as *mut AcquireEvent;
    let copied;
    // SAFETY: the record holds HDR + N bytes; every write below stays inside it.
    unsafe {
        (*ev).header = EventHeader {
            kind: event::ACQUIRE,
            tgid: acq.tgid,
            ts_ns: acq.ts_ns,
        };
        (*ev).seq = acq.seq;
        (*ev).src_seq = acq.src_seq;
        (*ev).arg = acq.arg;
        (*ev).ino = acq.ino;
        (*ev).regs = *regs;
        (*ev).tid = acq.tid;
        (*ev).fd = acq.fd;
        (*ev).fd2 = acq.fd2;
        (*ev).syscall = acq.sys;
        (*ev).i_mode = acq.i_mode;
        (*ev).memo_site = memo_site;
        (*ev).errno = acq.errno;
        (*ev).sk = acq.sk;
        (*ev).name_len = read_name(addr_of_mut!((*ev).name).cast(), acq.name_src);

        let mut len = want as usize;
        if len > N {
            len = N;
        }
        (*ev).stack_len = 0;
        // A read fails as a whole if any page in range is absent (the randomization gap below
        // the environment at the top of the main stack): halve until it succeeds, and remember
        // the readable end for this thread's later events.
        let mut tries = 0;
        while len >= 256 && tries < 8 {
            let r = bpf_probe_read_user(base.add(HDR).cast(), len as u32, regs.sp as *const c_void);
            if r == 0 {
                (*ev).stack_len = len as u32;
                if tries > 0 {
                    shrink_stack_end(acq.tid, regs.sp + len as u64);
                }
                break;
            }
            len /= 2;
            tries += 1;
        }
        if (*ev).stack_len == 0 && want > 0 {
            bump(counter::STACK_UNREADABLE, 1);
        }
        copied = (*ev).stack_len > 0;
    }
    // A stack copy is a call site the collector has not taught the kernel yet: wake it if it
    // sleeps (the ring's own adaptive wakeup: no IPI while it is busy draining), so that the
    // memo is learned before a burst from that site fills the ring with copies.
    rec.submit(if copied { 0 } else { wakeup_flags() });
}

/// Fills `dst` (NAME_MAX bytes) from the acquisition's name source; returns the bytes used.
#[inline(always)]
unsafe fn read_name(dst: *mut u8, src: NameSrc) -> u32 {
    if src.kind == NAME_KSTR {
        // SAFETY: dst has NAME_MAX bytes; the helper validates the kernel pointer.
        let n = unsafe {
            bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, src.ptr as *const c_void)
        };
        return if n > 0 { (n - 1) as u32 } else { 0 };
    }
    if src.kind == NAME_STR {
        // SAFETY: dst has NAME_MAX bytes; the helper validates the user pointer.
        let n = unsafe {
            bpf_probe_read_user_str(dst.cast(), NAME_MAX as u32, src.ptr as *const c_void)
        };
        return if n > 0 { (n - 1) as u32 } else { 0 };
    }
    if src.kind != NAME_SOCKADDR {
        return 0;
    }
    let mut len: u32 = 0;
    // SAFETY: the helpers validate user pointers; the length is clamped to NAME_MAX.
    unsafe {
        if bpf_probe_read_user(addr_of_mut!(len).cast(), 4, src.len_ptr as *const c_void) != 0 {
            return 0;
        }
        if len > NAME_MAX as u32 {
            len = NAME_MAX as u32;
        }
        if bpf_probe_read_user(dst.cast(), len, src.ptr as *const c_void) != 0 {
            return 0;
        }
    }
    len
}

/// Records the address a tracked socket connected or bound to.
#[inline(always)]
fn sockaddr(tgid: u32, sys: u16, args: &[u64; 4]) {
    let fd = args[0] as i32;
    if fd < 0 {
        return;
    }
    let Some(seq) = OPEN_FDS
        .get_ptr(&FdKey {
            tgid,
            fd: fd as u32,
        })
        .map(|e| unsafe { (*e).seq })
    else {
        return;
    };
    let Some(mut rec) = EVENTS.reserve::<SockAddrEvent>(0) else {
        bump(counter::EVENTS_LOST, 1);
        return;
    };
    let ev = rec.as_mut_ptr();
    let mut len = args[2] as u32;
    if len > SOCKADDR_MAX as u32 {
        len = SOCKADDR_MAX as u32;
    }
    // SAFETY: writes stay inside the reserved record; the helper validates the user pointer.
    unsafe {
        (*ev).header = header(event::SOCKADDR, tgid);
        (*ev).seq = seq;
        (*ev).fd = fd;
        (*ev).syscall = sys as u32;
        (*ev)._pad = 0;
        let r = bpf_probe_read_user(
            addr_of_mut!((*ev).addr).cast(),
            len,
            args[1] as *const c_void,
        );
        (*ev).len = if r == 0 { len } else { 0 };
    }
    rec.submit(wakeup_flags());
}

// ---------------------------------------------------------------------------------------------
// Releases.

/// State of a loop over a range of descriptor numbers.
#[repr(C)]
struct FdLoop {
    tgid: u32,
    /// Second process (fork: the child).
    other: u32,
    first: u32,
    last: u32,
    fdt: u64,
    /// Cached bitmap word and the index it was read for (u32::MAX: none yet).
    word: u64,
    word_index: u32,
    /// Descriptors handled.
    count: u32,
    /// Fork from a launcher: account the child's descriptors as [`fd_flag::FOREIGN`].
    foreign: u32,
    _pad: u32,
}

impl FdLoop {
    #[inline(always)]
    fn is_open(&mut self, fd: u32) -> bool {
        let index = fd / 64;
        if index != self.word_index {
            self.word = open_word(self.fdt, fd).unwrap_or(0);
            self.word_index = index;
        }
        self.word & (1u64 << (fd % 64)) != 0
    }
}

/// bpf_loop callback of close_range(): releases tracked open descriptors in the range.
#[inline(never)]
extern "C" fn close_range_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's FdLoop.
    let l = unsafe { &mut *(ctx as *mut FdLoop) };
    let fd = l.first + i as u32;
    if fd > l.last {
        return 1;
    }
    if l.is_open(fd) {
        release_fd(l.tgid, fd, release::CLOSE_RANGE);
    }
    0
}

/// close_range(first, last, flags): releases the tracked open descriptors in the range.
#[inline(always)]
fn close_range(tgid: u32, first: u32, last: u32, flags: u64) {
    // Invalid calls fail without closing anything; CLOEXEC only marks (exec releases them).
    if flags & !(CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE) != 0
        || first > last
        || flags & CLOSE_RANGE_CLOEXEC != 0
    {
        return;
    }
    let Some(fdt) = current_fdt() else { return };
    let max_fds: u32 = kread(fdt, off!(fdt_max_fds)).unwrap_or(0);
    if max_fds == 0 || first >= max_fds {
        return;
    }
    let last = if last >= max_fds { max_fds - 1 } else { last };
    let mut l = FdLoop {
        tgid,
        other: 0,
        first,
        last,
        fdt,
        word: 0,
        word_index: u32::MAX,
        count: 0,
        foreign: 0,
        _pad: 0,
    };
    // SAFETY: the callback only touches `l` and maps.
    unsafe {
        bpf_loop(
            last - first + 1,
            close_range_step as *mut c_void,
            addr_of_mut!(l).cast(),
            0,
        )
    };
}

// ---------------------------------------------------------------------------------------------
// Process lifecycle.

/// bpf_loop callback of fork: copies the parent's entry for each descriptor open in the child
/// (or, from a launcher, accounts it as foreign).
#[inline(never)]
extern "C" fn fork_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's FdLoop.
    let l = unsafe { &mut *(ctx as *mut FdLoop) };
    let fd = fd as u32;
    if !l.is_open(fd) {
        return 0;
    }
    let entry = match OPEN_FDS.get_ptr(&FdKey { tgid: l.tgid, fd }) {
        // SAFETY: copy out of a valid map value.
        Some(ptr) => {
            let mut e = unsafe { *ptr };
            e.flags |= fd_flag::INHERITED;
            e
        }
        None if l.foreign != 0 => foreign_entry(l.fdt, fd),
        None => return 0,
    };
    if OPEN_FDS
        .insert(&FdKey { tgid: l.other, fd }, &entry, 0)
        .is_ok()
    {
        if entry.flags & fd_flag::FOREIGN == 0 {
            l.count += 1;
            bump(counter::ACQUIRED, 1);
        }
    } else {
        bump(counter::FD_MAP_FULL, 1);
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn proc_fork(ctx: RawTracePointContext) -> i32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: read-only use of a map value.
    let parent = (unsafe { TRACED.get(&parent_tgid) }).copied();
    // A registered parent passes registration on; a traced parent passes its descriptors on.
    let register_child = parent.is_some_and(|p| p.flags & proc_flag::TRACE_CHILDREN != 0);
    let copy_fds = match parent {
        Some(p) => p.flags & proc_flag::TRACE_SELF != 0,
        None => config_u32(addr_of!(CONFIG.system_wide)) != 0 && selected(),
    };
    if !register_child && !copy_fds {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let child_tgid: u32 = kread(child, off!(task_tgid)).unwrap_or(0);
    // Threads share the parent's tgid and descriptor accounting.
    if child_tgid == 0 || child_tgid == parent_tgid {
        return 0;
    }
    if register_child {
        let state = ProcState {
            parent_tgid,
            flags: proc_flag::TRACE_SELF | proc_flag::TRACE_CHILDREN,
        };
        if TRACED.insert(&child_tgid, &state, 0).is_err() {
            bump(counter::PROC_MAP_FULL, 1);
            return 0;
        }
    }
    let mut l = FdLoop {
        tgid: parent_tgid,
        other: child_tgid,
        first: 0,
        last: 0,
        fdt: task_fdt(child).unwrap_or(0),
        word: 0,
        word_index: u32::MAX,
        count: 0,
        foreign: 0,
        _pad: 0,
    };
    // A traced parent's descriptors are copied; a launcher's, and those a parent first seen
    // system-wide opened before tracing began, are accounted as foreign (not the program's
    // doing, but verification must know them).
    l.foreign = (!copy_fds || parent.is_none()) as u32;
    if l.fdt != 0 {
        let max_fds: u32 = kread(l.fdt, off!(fdt_max_fds)).unwrap_or(0);
        // SAFETY: the callback only touches `l` and maps.
        unsafe { bpf_loop(max_fds, fork_step as *mut c_void, addr_of_mut!(l).cast(), 0) };
    }
    match EVENTS.reserve::<ForkEvent>(0) {
        Some(mut rec) => {
            rec.write(ForkEvent {
                header: header(event::FORK, child_tgid),
                parent_tgid,
                inherited: l.count,
            });
            rec.submit(wakeup_flags());
        }
        None => bump(counter::EVENTS_LOST, 1),
    }
    0
}

/// bpf_loop callback of exec: releases tracked descriptors that exec closed.
#[inline(never)]
/// The entry of a descriptor received from outside the traced tree (a launcher, or a parent
/// tracer never saw): not the program's, but known to verification.
#[inline(always)]
fn foreign_entry(fdt: u64, fd: u32) -> FdEntry {
    FdEntry {
        seq: 0,
        ts_ns: 0,
        tid: 0,
        origin_tgid: 0,
        syscall: 0,
        flags: fd_flag::FOREIGN | fd_flag::INHERITED,
        _pad: 0,
        sk: 0,
        file: fd_file(fdt, fd as i32),
    }
}

extern "C" fn exec_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's FdLoop.
    let l = unsafe { &mut *(ctx as *mut FdLoop) };
    let fd = fd as u32;
    let key = FdKey { tgid: l.tgid, fd };
    if OPEN_FDS.get_ptr(&key).is_none() {
        // A process selected system-wide from this exec on (by its new name) holds what its
        // unseen parent gave it: foreign, known to verification.
        if l.foreign != 0 && fd < l.last && l.is_open(fd) {
            if OPEN_FDS.insert(&key, &foreign_entry(l.fdt, fd), 0).is_err() {
                bump(counter::FD_MAP_FULL, 1);
            }
        }
        return 0;
    }
    if fd >= l.last || !l.is_open(fd) {
        release_fd(l.tgid, fd, release::EXEC);
        l.count += 1;
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn proc_exec(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    // The thread that called exec (its id before exec took over the thread group).
    let old_tid = ctx.arg::<u64>(1) as u32;
    let scan = match EXEC_FDS.get_ptr(&old_tid) {
        // SAFETY: valid map value.
        Some(ptr) => unsafe { *ptr },
        None => 0,
    };
    let _ = EXEC_FDS.remove(&old_tid);
    let fdt = current_fdt().unwrap_or(0);
    let max_fds: u32 = kread(fdt, off!(fdt_max_fds)).unwrap_or(0);
    let mut l = FdLoop {
        tgid,
        other: 0,
        first: 0,
        // Descriptors at or above the new table's size are closed.
        last: max_fds,
        fdt,
        word: 0,
        word_index: u32::MAX,
        count: 0,
        // Traced without registration: selected system-wide.
        // SAFETY: read-only lookup.
        foreign: unsafe { TRACED.get(&tgid) }.is_none() as u32,
        _pad: 0,
    };
    let scan = if scan > max_fds { scan } else { max_fds };
    // SAFETY: the callback only touches `l` and maps.
    unsafe { bpf_loop(scan, exec_step as *mut c_void, addr_of_mut!(l).cast(), 0) };

    let Some(mut rec) = EVENTS.reserve::<ExecEvent>(0) else {
        bump(counter::EVENTS_LOST, 1);
        return 0;
    };
    let ev = rec.as_mut_ptr();
    let filename: u64 = kread(ctx.arg::<u64>(2), off!(binprm_filename)).unwrap_or(0);
    // SAFETY: writes stay inside the reserved record; the helper validates the kernel pointer.
    unsafe {
        (*ev).header = header(event::EXEC, tgid);
        (*ev).released = l.count;
        (*ev)._pad = 0;
        let n = bpf_probe_read_kernel_str(
            addr_of_mut!((*ev).filename).cast(),
            NAME_MAX as u32,
            filename as *const c_void,
        );
        if n <= 0 {
            (*ev).filename[0] = 0;
        }
    }
    rec.submit(wakeup_flags());
    0
}

/// State of the exit-time comparison of a descriptor table with the accounting.
#[repr(C)]
struct VerifyLoop {
    tgid: u32,
    open: u32,
    exact: u32,
    missing: u32,
    phantom: u32,
    wrong: u32,
    fdt: u64,
    /// The table's `struct file *` array.
    files: u64,
    word: u64,
    word_index: u32,
    /// Kernel reads that failed (any makes the comparison unverified).
    read_failures: u32,
    missing_fds: [u32; VERIFY_LIST],
    phantom_fds: [u32; VERIFY_LIST],
    wrong_fds: [u32; VERIFY_LIST],
}

/// Appends `fd` to a bounded list whose length is `n` before the call.
#[inline(always)]
fn note_fd(list: &mut [u32; VERIFY_LIST], n: u32, fd: u32) {
    if (n as usize) < VERIFY_LIST {
        list[n as usize & (VERIFY_LIST - 1)] = fd;
    }
}

/// bpf_loop callback of exit: classifies descriptor `fd` and drops foreign entries.
#[inline(never)]
extern "C" fn verify_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's VerifyLoop.
    let l = unsafe { &mut *(ctx as *mut VerifyLoop) };
    let fd = fd as u32;
    let index = fd / 64;
    if index != l.word_index {
        l.word = match open_word(l.fdt, fd) {
            Some(w) => w,
            None => {
                l.read_failures += 1;
                0
            }
        };
        l.word_index = index;
    }
    let open = l.word & (1u64 << (fd % 64)) != 0;
    let key = FdKey { tgid: l.tgid, fd };
    // SAFETY: copy out of a valid map value.
    let entry = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).file, (*e).flags) });
    match entry {
        Some((file, flags)) => {
            if open {
                l.open += 1;
                let current: u64 = match kread(l.files, fd as u64 * 8) {
                    Some(f) => f,
                    None => {
                        l.read_failures += 1;
                        0
                    }
                };
                if file != 0 && current != file {
                    note_fd(&mut l.wrong_fds, l.wrong, fd);
                    l.wrong += 1;
                } else {
                    l.exact += 1;
                }
            } else {
                note_fd(&mut l.phantom_fds, l.phantom, fd);
                l.phantom += 1;
            }
            if flags & fd_flag::FOREIGN != 0 {
                let _ = OPEN_FDS.remove(&key);
            }
        }
        None if open => {
            l.open += 1;
            note_fd(&mut l.missing_fds, l.missing, fd);
            l.missing += 1;
        }
        None => {}
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn proc_exit(_ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    // The group is dead once signal->live dropped to zero (it is decremented before this
    // tracepoint); earlier threads' exits are not process exits.
    let live: i32 = kread::<u64>(task, off!(task_signal))
        .and_then(|signal| kread(signal, off!(signal_live)))
        .unwrap_or(0);
    if live != 0 {
        return 0;
    }
    let status: u32 = kread(task, off!(task_exit_code)).unwrap_or(0);
    let _ = TRACED.remove(&tgid);
    // The table is still intact here (files are released after this tracepoint): compare it
    // with the accounting.
    let fdt = task_fdt(task).unwrap_or(0);
    let files = kread::<u64>(fdt, off!(fdt_fd));
    let mut l = VerifyLoop {
        tgid,
        open: 0,
        exact: 0,
        missing: 0,
        phantom: 0,
        wrong: 0,
        fdt,
        files: files.unwrap_or(0),
        word: 0,
        word_index: u32::MAX,
        read_failures: 0,
        missing_fds: [0; VERIFY_LIST],
        phantom_fds: [0; VERIFY_LIST],
        wrong_fds: [0; VERIFY_LIST],
    };
    // Fails closed: a table that cannot be read or walked whole is "unverified", never exact.
    let max_fds = kread::<u32>(fdt, off!(fdt_max_fds));
    let size = max_fds.unwrap_or(0);
    let mut why = if fdt == 0 || files.is_none() {
        unverified::NO_TABLE
    } else if max_fds.is_none() {
        unverified::NO_SIZE
    } else if size > MAX_LOOP_SLOTS {
        unverified::TOO_LARGE
    } else {
        0
    };
    if why == 0 {
        // SAFETY: the callback only touches `l` and maps.
        let r = unsafe { bpf_loop(size, verify_step as *mut c_void, addr_of_mut!(l).cast(), 0) };
        if r < 0 {
            why = unverified::LOOP_FAILED;
        } else if l.read_failures > 0 {
            why = unverified::READ_FAILED;
        }
    }
    match EVENTS.reserve::<ExitEvent>(0) {
        Some(mut rec) => {
            rec.write(ExitEvent {
                header: header(event::EXIT, tgid),
                status,
                open: l.open,
                exact: l.exact,
                missing: l.missing,
                phantom: l.phantom,
                wrong: l.wrong,
                unverified: why,
                table_size: size,
                missing_fds: l.missing_fds,
                phantom_fds: l.phantom_fds,
                wrong_fds: l.wrong_fds,
            });
            rec.submit(BPF_RB_FORCE_WAKEUP as u64);
        }
        None => bump(counter::EVENTS_LOST, 1),
    }
    0
}

// ---------------------------------------------------------------------------------------------
// io_uring: requests create and close descriptors without open/close syscalls. A request is
// seen at submission (in the submitting io_uring_enter, whose user stack is the call site) and
// at completion (which gives the descriptor).

/// A new io_uring request: closes release at once (like close() at entry); requests that
/// will create a descriptor are remembered and their call site sent.
#[btf_tracepoint(function = "io_uring_submit_req")]
pub fn io_submit(ctx: BtfTracePointContext) -> i32 {
    let opcode_off = off!(kiocb_opcode);
    if opcode_off == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    let req: u64 = ctx.arg(0);
    let Some(op) = kread::<u8>(req, opcode_off) else {
        return 0;
    };
    let (sys, slot_off) = match op {
        ioring_op::OPENAT => (syscall::IOURING_OPENAT, off!(open_file_slot)),
        ioring_op::OPENAT2 => (syscall::IOURING_OPENAT2, off!(open_file_slot)),
        ioring_op::SOCKET => (syscall::IOURING_SOCKET, off!(socket_file_slot)),
        ioring_op::ACCEPT => (syscall::IOURING_ACCEPT, off!(accept_file_slot)),
        ioring_op::PIPE => (syscall::IOURING_PIPE, off!(pipe_file_slot)),
        ioring_op::FIXED_FD_INSTALL => (syscall::IOURING_FD_INSTALL, 0),
        ioring_op::CLOSE => (syscall::IOURING_CLOSE, off!(close_file_slot)),
        _ => return 0,
    };
    if sys == syscall::IOURING_PIPE && off!(pipe_fds) == 0 {
        return 0;
    }
    // Requests on fixed-file slots create or close no descriptor.
    if slot_off != 0 && kread::<u32>(req, slot_off).unwrap_or(1) != 0 {
        return 0;
    }
    if sys == syscall::IOURING_CLOSE {
        let fd: i32 = kread(req, off!(close_fd)).unwrap_or(-1);
        if fd < 0 {
            return 0;
        }
        let key = FdKey {
            tgid,
            fd: fd as u32,
        };
        // io_uring refuses to close a ring's own descriptor.
        // SAFETY: copy out of a valid map value.
        let is_ring = OPEN_FDS
            .get_ptr(&key)
            .is_some_and(|e| unsafe { (*e).syscall } == syscall::IO_URING_SETUP);
        if !is_ring {
            release_fd(tgid, fd as u32, release::IOURING_CLOSE);
        }
        return 0;
    }
    let seq = next_seq();
    let tid = pid_tgid as u32;
    let pending = IoReq {
        seq,
        fds_ptr: if sys == syscall::IOURING_PIPE {
            kread(req, off!(pipe_fds)).unwrap_or(0)
        } else {
            0
        },
        tgid,
        tid,
        syscall: sys,
        _pad: [0; 3],
    };
    if IO_REQS.insert(&req, &pending, 0).is_err() {
        bump(counter::PENDING_LOST, 1);
        return 0;
    }
    if sys == syscall::IOURING_ACCEPT {
        // Multishot completions may be posted without their request.
        let key = [
            kread::<u64>(req, off!(kiocb_ctx)).unwrap_or(0),
            kread::<u64>(req, off!(kiocb_user_data)).unwrap_or(0),
        ];
        let _ = IO_MULTI.insert(&key, &req, 0);
    }
    let (arg, name_src) = match sys {
        syscall::IOURING_OPENAT | syscall::IOURING_OPENAT2 => (
            kread::<i32>(req, off!(open_dfd)).unwrap_or(0) as u32 as u64,
            NameSrc::new(
                NAME_KSTR,
                kread::<u64>(req, off!(open_filename))
                    .and_then(|f| kread::<u64>(f, off!(filename_name)))
                    .unwrap_or(0),
                0,
            ),
        ),
        syscall::IOURING_SOCKET => (
            (kread::<u32>(req, off!(socket_domain)).unwrap_or(0) as u64 & 0xffff)
                | ((kread::<u32>(req, off!(socket_type)).unwrap_or(0) as u64 & 0xffff) << 16)
                | ((kread::<u32>(req, off!(socket_protocol)).unwrap_or(0) as u64) << 32),
            NameSrc::new(NAME_NONE, 0, 0),
        ),
        _ => (0, NameSrc::new(NAME_NONE, 0, 0)),
    };
    // SAFETY: helpers on the current task; the registers are its user-mode ones.
    let regs_ptr = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let regs = UserRegs {
        ip: kread(regs_ptr, regs::IP).unwrap_or(0),
        sp: kread(regs_ptr, regs::SP).unwrap_or(0),
        bp: kread(regs_ptr, regs::BP).unwrap_or(0),
    };
    let acq = Acquisition {
        errno: 0,
        sk: 0,
        tgid,
        tid,
        fd: -1,
        fd2: -1,
        sys,
        i_mode: 0,
        seq,
        src_seq: 0,
        arg,
        ino: [0, 0],
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        name_src,
    };
    send_acquire(&acq, &regs);
    0
}

/// A completion: if it belongs to a remembered request, accounts the descriptor it created.
#[btf_tracepoint(function = "io_uring_complete")]
pub fn io_complete(ctx: BtfTracePointContext) -> i32 {
    if off!(kiocb_opcode) == 0 {
        return 0;
    }
    let ring: u64 = ctx.arg(0);
    let cqe: u64 = ctx.arg(2);
    let user_data: u64 = kread(cqe, off!(cqe_user_data)).unwrap_or(0);
    let mut req: u64 = ctx.arg(1);
    if req == 0 {
        // SAFETY: copy out of a valid map value.
        match unsafe { IO_MULTI.get(&[ring, user_data]) } {
            Some(r) => req = *r,
            None => return 0,
        }
    }
    // SAFETY: copy out of a valid map value.
    let Some(pending) = (unsafe { IO_REQS.get(&req) }).copied() else {
        return 0;
    };
    let res: i32 = kread(cqe, off!(cqe_res)).unwrap_or(-1);
    let flags: u32 = kread(cqe, off!(cqe_flags)).unwrap_or(0);
    let more = flags & IORING_CQE_F_MORE != 0;
    if !more {
        let _ = IO_REQS.remove(&req);
        if pending.syscall == syscall::IOURING_ACCEPT {
            let _ = IO_MULTI.remove(&[ring, user_data]);
        }
    }
    if res < 0 && more {
        return 0;
    }
    // Completions run in the submitting process (its task or its io-wq workers), which share
    // its descriptor table and memory.
    let here = (bpf_get_current_pid_tgid() >> 32) as u32 == pending.tgid;
    let (fd, fd2) = if res < 0 {
        (res, -1)
    } else if pending.syscall == syscall::IOURING_PIPE {
        if here {
            user_fd_pair(pending.fds_ptr)
        } else {
            (-1, -1)
        }
    } else {
        (res, -1)
    };
    let fdt = if here { current_fdt().unwrap_or(0) } else { 0 };
    let (file, file2) = (fd_file(fdt, fd), fd_file(fdt, fd2));
    let (ino, i_mode) = file_inode(file);
    let seq = if fd >= 0 { next_seq() } else { 0 };
    if fd >= 0 {
        let sk = if i_mode == S_IFSOCK {
            file_socket(file)
        } else {
            0
        };
        track_socket(sk, seq, pending.tgid, fd);
        let mut entry = FdEntry {
            seq,
            // SAFETY: helper without preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            tid: pending.tid,
            origin_tgid: pending.tgid,
            syscall: pending.syscall,
            flags: 0,
            _pad: 0,
            sk,
            file,
        };
        account_fd(pending.tgid, fd, &entry, release::REPLACED);
        entry.sk = 0;
        entry.file = file2;
        account_fd(pending.tgid, fd2, &entry, release::REPLACED);
    }
    let Some(mut rec) = EVENTS.reserve::<IoCompleteEvent>(0) else {
        bump(counter::EVENTS_LOST, 1);
        return 0;
    };
    rec.write(IoCompleteEvent {
        header: header(event::IO_COMPLETE, pending.tgid),
        seq,
        submit_seq: pending.seq,
        ino: [ino, file_inode(file2).0],
        fd,
        fd2,
        i_mode,
        syscall: pending.syscall,
        more: more as u32,
    });
    rec.submit(wakeup_flags());
    0
}

/// A tracked socket changed TCP state: report it with its addresses.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn sock_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    // SAFETY: copy out of a valid map value.
    let Some(owner) = (unsafe { SOCKS.get(&sk) }).copied() else {
        return 0;
    };
    let Some(mut rec) = EVENTS.reserve::<SockStateEvent>(0) else {
        bump(counter::EVENTS_LOST, 1);
        return 0;
    };
    let family: u16 = kread(sk, off!(skc_family)).unwrap_or(0);
    let ev = rec.as_mut_ptr();
    // SAFETY: writes stay inside the reserved record.
    unsafe {
        (*ev).header = header(event::SOCK_STATE, owner.tgid);
        (*ev).seq = owner.seq;
        (*ev).fd = owner.fd;
        (*ev).old_state = ctx.arg::<u64>(1) as u32;
        (*ev).new_state = ctx.arg::<u64>(2) as u32;
        (*ev).family = family;
        (*ev).sport = kread::<u16>(sk, off!(skc_num)).unwrap_or(0);
        (*ev).dport = u16::from_be(kread::<u16>(sk, off!(skc_dport)).unwrap_or(0));
        (*ev)._pad = [0; 3];
        if family == AF_INET6 {
            (*ev).saddr = kread(sk, off!(skc_v6_rcv_saddr)).unwrap_or([0; 16]);
            (*ev).daddr = kread(sk, off!(skc_v6_daddr)).unwrap_or([0; 16]);
        } else {
            let s: [u8; 4] = kread(sk, off!(skc_rcv_saddr)).unwrap_or([0; 4]);
            let d: [u8; 4] = kread(sk, off!(skc_daddr)).unwrap_or([0; 4]);
            (*ev).saddr = [s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            (*ev).daddr = [d[0], d[1], d[2], d[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        }
    }
    rec.submit(wakeup_flags());
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
