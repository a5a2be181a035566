//! The syscall hooks: `sys_enter`, `sys_exit` and `sys_exit_rights`, attached by userspace to
//! the `syscalls:sys_enter_<name>` / `sys_exit_<name>` tracepoints of exactly the syscalls in
//! `tracer_common::syscall::TABLE` (no other syscall runs any of tracer's code; `Desc::program`
//! says which program a syscall gets). Each dispatches on the syscall's [`Shape`].
//!
//! Releases and exec are handled at entry (before the number can be reused, while the table is
//! as it was); acquisitions at a successful exit.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task_btf, bpf_loop, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE, UserRegs, counter, release,
    syscall::{NO_ARG, Shape, detail, fd_from, flag, guard, name_from, role},
};

use crate::{
    account::{account_fd, release_fd, seq_of},
    emit::{Acquisition, NAME_SOCKADDR, NAME_STR, NameSrc},
    fdtable::{OpenBits, S_IFSOCK, current_fdt, fd_file, file_inode, file_socket, max_fds},
    filter::{registered, traced},
    kmem::{bump, next_seq, uread},
    maps::{EXEC_FDS, SYSCALLS, system_wide},
    python,
    scm_rights::rights,
    sock::{sockaddr, track_socket},
    stack::send_acquire,
};

const EINPROGRESS: i64 = 115;
const EBADF: i64 = 9;
const EMFILE: i64 = 24;
const ENFILE: i64 = 23;
const AT_FDCWD: i32 = -100;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_THREAD: u64 = 0x10000;

/// Offsets in `struct syscall_trace_enter` / `syscall_trace_exit` (the tracepoints' records).
/// A program may not read past the end of the shortest record it is attached to: the first
/// argument, or the return value.
const TP_NR: usize = 8;
const TP_ARGS: usize = 16;
const TP_RET: usize = 16;

/// Word indexes in the x86_64 `struct pt_regs` (a stable ABI) of the registers used here.
#[cfg(bpf_target_arch = "x86_64")]
mod pt {
    pub const BP: usize = 4;
    pub const R10: usize = 7;
    pub const R9: usize = 8;
    pub const R8: usize = 9;
    pub const DX: usize = 12;
    pub const SI: usize = 13;
    pub const DI: usize = 14;
    pub const IP: usize = 16;
    pub const SP: usize = 19;
}

/// A word of the tracepoint's record.
#[inline(always)]
fn tp_word<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: the context is the tracepoint's record; these offsets are inside it (the
    // verifier checks loads from the context).
    unsafe { *(ctx.as_ptr().add(off) as *const T) }
}

/// The current task's saved user-mode registers (a BTF pointer: loads are checked by the
/// verifier).
#[inline(always)]
fn user_pt_regs() -> *const u64 {
    // SAFETY: helpers without preconditions; the task is the current one's BTF pointer.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64 }
}

#[inline(always)]
fn reg(regs: *const u64, index: usize) -> u64 {
    // SAFETY: `regs` is the task's `struct pt_regs`; `index` is one of [`pt`].
    unsafe { *regs.add(index) }
}

/// The six syscall arguments, from the saved registers (still as they were at entry).
#[inline(always)]
fn args_from(regs: *const u64) -> [u64; 6] {
    [
        reg(regs, pt::DI),
        reg(regs, pt::SI),
        reg(regs, pt::DX),
        reg(regs, pt::R10),
        reg(regs, pt::R8),
        reg(regs, pt::R9),
    ]
}

/// Instruction, stack and frame pointers of user mode.
#[inline(always)]
fn user_regs(regs: *const u64) -> UserRegs {
    UserRegs {
        ip: reg(regs, pt::IP),
        sp: reg(regs, pt::SP),
        bp: reg(regs, pt::BP),
    }
}

/// Argument `i` (0..6) of a syscall; 0 for [`NO_ARG`].
#[inline(always)]
fn arg(a: &[u64; 6], i: u8) -> u64 {
    match i {
        0 => a[0],
        1 => a[1],
        2 => a[2],
        3 => a[3],
        4 => a[4],
        5 => a[5],
        _ => 0,
    }
}

/// How syscall number `nr` is handled (None: not hooked).
#[inline(always)]
fn shape_of(nr: i32) -> Option<&'static Shape> {
    if nr < 0 {
        return None;
    }
    SYSCALLS.get(nr as u32).filter(|s| s.id != 0)
}

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only registered processes hold entries, unless tracing system-wide.
    if !registered(tgid) && !system_wide() {
        return 0;
    }
    let Some(shape) = shape_of(tp_word::<i32>(&ctx, TP_NR)) else {
        return 0;
    };
    let a0: u64 = tp_word(&ctx, TP_ARGS);
    match shape.role {
        role::CLOSE => {
            let fd = a0 as i32;
            if fd < 0 || release_fd(tgid, fd as u32, release::CLOSE) || !traced(tgid) {
                return 0;
            }
            // Not accounted: if it is not open either, this close fails with EBADF (a double
            // close or a stray number).
            if let Some(fdt) = current_fdt()
                && !OpenBits::new(fdt).is_open(fd as u32)
            {
                bump(counter::BAD_CLOSE, 1);
                let py_stack = python::send_stack(tgid, pid_tgid as u32);
                failed(
                    pid_tgid,
                    shape.id,
                    EBADF as u32,
                    fd,
                    &user_regs(user_pt_regs()),
                    py_stack,
                );
            }
        }
        role::CLOSE_RANGE if traced(tgid) => {
            // From the registers: one program serves every entry tracepoint, so it reads no
            // further into the record than the shortest one (close's single argument) holds.
            let a = args_from(user_pt_regs());
            close_range(tgid, a[0] as u32, a[1] as u32, a[2]);
        }
        role::EXEC if traced(tgid) => {
            let size = current_fdt().and_then(max_fds).unwrap_or(0);
            if EXEC_FDS.insert(&(pid_tgid as u32), &size, 0).is_err() {
                bump(counter::INFLIGHT_LOST, 1);
            }
        }
        _ => {}
    }
    0
}

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    let Some(shape) = shape_of(tp_word::<i32>(&ctx, TP_NR)) else {
        return 0;
    };
    let ret: i64 = tp_word(&ctx, TP_RET);
    let py_stack = python_stack(shape, pid_tgid, ret);
    match shape.role {
        role::ACQUIRE => acquire_exit(shape, pid_tgid, ret, py_stack),
        role::SOCKADDR if ret >= 0 || ret == -EINPROGRESS => {
            sockaddr(tgid, shape.id, &args_from(user_pt_regs()));
        }
        _ => {}
    }
    0
}

/// The exit of sendmsg/recvmsg and their mmsg forms: descriptors passed in SCM_RIGHTS
/// messages. A program of its own: the verifier checks its loop over the passed descriptors
/// apart from the paths of `sys_exit`.
#[tracepoint]
pub fn sys_exit_rights(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(shape) = shape_of(tp_word::<i32>(&ctx, TP_NR)) else {
        return 0;
    };
    let ret: i64 = tp_word(&ctx, TP_RET);
    let receive = shape.role == role::RECV_RIGHTS;
    if ret < 0 || !(receive || shape.role == role::SEND_RIGHTS) {
        return 0;
    }
    let py_stack = python_stack(shape, pid_tgid, ret);
    let regs = user_pt_regs();
    let mmsg = shape.id == tracer_common::syscall::SENDMMSG
        || shape.id == tracer_common::syscall::RECVMMSG;
    rights(
        pid_tgid,
        shape.id,
        mmsg,
        receive,
        &args_from(regs),
        ret,
        &user_regs(regs),
        py_stack,
    );
    0
}

/// In a CPython process, for a syscall exit that will send acquisitions: sends the thread's
/// Python stack and returns its token (0: none). Called from one place in each exit program,
/// before its paths part: the stack walk is verified once, not along every acquisition path.
#[inline(never)]
fn python_stack(shape: &Shape, pid_tgid: u64, ret: i64) -> u64 {
    // The registers are read only for the few syscalls whose arguments decide.
    let acquires = match shape.role {
        role::ACQUIRE => {
            ret == -EMFILE
                || ret == -ENFILE
                || (ret >= 0
                    && (shape.guard == guard::NONE
                        || guard_passes(shape, &args_from(user_pt_regs()))))
        }
        role::RECV_RIGHTS => ret > 0,
        _ => false,
    };
    if !acquires {
        return 0;
    }
    python::send_stack((pid_tgid >> 32) as u32, pid_tgid as u32)
}

/// Whether the arguments make this call one that creates a descriptor.
#[inline(always)]
fn guard_passes(shape: &Shape, a: &[u64; 6]) -> bool {
    let v = arg(a, shape.guard_arg);
    match shape.guard {
        guard::ARG_IS_EITHER => v == shape.guard_values[0] || v == shape.guard_values[1],
        guard::ARG_IS_MINUS_ONE => v as i32 == -1,
        guard::ARG_BIT_IN => v < 64 && shape.guard_values[0] & (1 << v) != 0,
        guard::ARG_MASK_CLEAR => v & shape.guard_values[0] == 0,
        _ => true,
    }
}

/// The exit of an acquiring syscall that returned `ret`.
#[inline(always)]
fn acquire_exit(shape: &Shape, pid_tgid: u64, ret: i64, py_stack: u64) {
    let limit_hit = ret == -EMFILE || ret == -ENFILE;
    if ret < 0 && !limit_hit {
        return;
    }
    let regs_ptr = user_pt_regs();
    let regs = user_regs(regs_ptr);
    if limit_hit {
        bump(counter::EMFILE, 1);
        failed(pid_tgid, shape.id, -ret as u32, -1, &regs, py_stack);
        return;
    }
    let a = args_from(regs_ptr);
    if !guard_passes(shape, &a) {
        return;
    }
    // In the parent, a thread started: a task of its own (the child returns 0).
    let clone_flags = match shape.fd_from {
        fd_from::CLONE_PIDFD => a[0],
        fd_from::CLONE3_PIDFD => uread::<u64>(a[0]).unwrap_or(0),
        _ => 0,
    };
    if ret > 0 && clone_flags & CLONE_THREAD != 0 {
        thread_started(pid_tgid, ret as u32, &regs, py_stack);
    }
    let (fd, fd2) = match shape.fd_from {
        fd_from::PAIR => user_fd_pair(arg(&a, shape.fd_arg)),
        // In the parent only (the child returns 0): the pidfd written to user memory.
        fd_from::CLONE_PIDFD if ret > 0 && a[0] & CLONE_PIDFD != 0 => {
            (uread::<i32>(a[2]).unwrap_or(-1), -1)
        }
        fd_from::CLONE3_PIDFD if ret > 0 => match uread::<[u64; 2]>(a[0]) {
            Some([flags, pidfd]) if flags & CLONE_PIDFD != 0 => {
                (uread::<i32>(pidfd).unwrap_or(-1), -1)
            }
            _ => (-1, -1),
        },
        fd_from::RET => (ret as i32, -1),
        _ => (-1, -1),
    };
    acquire(shape, pid_tgid, &a, (fd, fd2), &regs, py_stack);
}

/// Reads the two descriptors a pipe()/socketpair() wrote to user memory.
#[inline(always)]
fn user_fd_pair(ptr: u64) -> (i32, i32) {
    match uread::<[i32; 2]>(ptr) {
        Some([a, b]) => (a, b),
        None => (-1, -1),
    }
}

/// Accounts the new descriptor(s) `fd` (and `fd2`) of a syscall with arguments `a` and sends
/// the acquisition.
#[inline(always)]
fn acquire(
    shape: &Shape,
    pid_tgid: u64,
    a: &[u64; 6],
    (fd, fd2): (i32, i32),
    regs: &UserRegs,
    py_stack: u64,
) {
    if fd < 0 {
        return;
    }
    let dup2 = shape.flags & flag::DUP2 != 0;
    // dup2(fd, fd) and dup3 are no-ops on the same number.
    if dup2 && a[0] as i32 == a[1] as i32 {
        return;
    }
    let tgid = (pid_tgid >> 32) as u32;
    let src_fd = if shape.src_fd_arg == NO_ARG {
        -1
    } else {
        arg(a, shape.src_fd_arg) as i32
    };
    let mut acq = Acquisition::new(pid_tgid, shape.id, fd, next_seq());
    acq.fd2 = fd2;
    acq.py_stack = py_stack;
    acq.src_seq = seq_of(tgid, src_fd);
    let fdt = current_fdt().unwrap_or(0);
    let file = fd_file(fdt, fd);
    let file2 = fd_file(fdt, fd2);
    // The inode is only needed where the syscall does not say what the descriptor is (a
    // duplicate of an untracked one, a handle or another process's descriptor) and to name
    // pipes; opened paths are classified later.
    if (src_fd >= 0 && acq.src_seq == 0) || shape.flags & flag::NEED_INODE != 0 {
        let (ino, i_mode) = file_inode(file);
        acq.ino = [ino, file_inode(file2).0];
        acq.i_mode = i_mode;
    }
    // Sockets: remember the socket so its TCP state changes can be followed.
    if shape.flags & flag::SOCKET != 0
        || (shape.flags & flag::SOCKET_IF_INODE != 0 && acq.i_mode == S_IFSOCK)
    {
        acq.sk = file_socket(file);
    }
    let replaced = if dup2 {
        release::DUP2
    } else {
        release::REPLACED
    };
    // Not accounted (the map is full, counted): nothing to follow, nothing to send.
    if !account_fd(tgid, fd, &acq.entry(acq.sk, file), replaced) {
        return;
    }
    let _ = account_fd(tgid, fd2, &acq.entry(0, file2), replaced);
    track_socket(acq.sk, acq.seq, tgid, fd);
    acq.arg = match shape.detail {
        detail::SOCKET_TRIPLE => {
            (a[0] & 0xffff) | ((a[1] & 0xffff) << 16) | ((a[2] & 0xffff_ffff) << 32)
        }
        detail::AT_FDCWD => AT_FDCWD as u32 as u64,
        detail::ARG32 => arg(a, shape.detail_arg) & 0xffff_ffff,
        detail::ARG => arg(a, shape.detail_arg),
        // The other process (its pidfd) and its descriptor number.
        detail::PIDFD_GETFD => (a[0] & 0xffff_ffff) | (a[1] << 32),
        detail::SRC_FD if src_fd >= 0 => src_fd as u64,
        _ => 0,
    };
    acq.name_src = match shape.name_from {
        name_from::STRING => NameSrc::new(NAME_STR, arg(a, shape.name_arg), 0),
        name_from::SOCKADDR => {
            let (ptr, len_ptr) = (arg(a, shape.name_arg), arg(a, shape.name_len_arg));
            if ptr != 0 && len_ptr != 0 {
                NameSrc::new(NAME_SOCKADDR, ptr, len_ptr)
            } else {
                NameSrc::NONE
            }
        }
        _ => NameSrc::NONE,
    };
    send_acquire(&acq, regs);
}

/// A thread `tid` started by the current one: sent with the starting stack.
#[inline(never)]
fn thread_started(pid_tgid: u64, tid: u32, regs: &UserRegs, py_stack: u64) {
    let mut acq = Acquisition::new(pid_tgid, tracer_common::syscall::THREAD, -1, 0);
    acq.arg = tid as u64;
    acq.py_stack = py_stack;
    send_acquire(&acq, regs);
}

/// A call that failed: an acquisition on a descriptor limit, or a close of descriptor `fd`
/// that was not open. Sent with its stack.
#[inline(always)]
fn failed(pid_tgid: u64, sys: u16, errno: u32, fd: i32, regs: &UserRegs, py_stack: u64) {
    let mut acq = Acquisition::new(pid_tgid, sys, -1, 0);
    acq.errno = errno;
    acq.py_stack = py_stack;
    acq.arg = fd as u32 as u64;
    send_acquire(&acq, regs);
}

/// State of a loop over a range of descriptor numbers.
#[repr(C)]
struct RangeLoop {
    tgid: u32,
    first: u32,
    last: u32,
    _pad: u32,
    bits: OpenBits,
}

/// bpf_loop callback of close_range(): releases tracked open descriptors in the range.
#[inline(never)]
extern "C" fn close_range_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's RangeLoop.
    let l = unsafe { &mut *(ctx as *mut RangeLoop) };
    let fd = l.first + i as u32;
    if fd > l.last {
        return 1;
    }
    if l.bits.is_open(fd) {
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
    let size = max_fds(fdt).unwrap_or(0);
    if size == 0 || first >= size {
        return;
    }
    let last = if last >= size { size - 1 } else { last };
    let mut l = RangeLoop {
        tgid,
        first,
        last,
        _pad: 0,
        bits: OpenBits::new(fdt),
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
