//! Processes: fork (register the child, copy inherited descriptors), exec (release close-on-exec
//! descriptors) and exit (verify the table, report the exit).
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, generated::bpf_loop,
        generated::bpf_probe_read_kernel_str,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{
    ExecEvent, ExitEvent, FdEntry, FdKey, ForkEvent, MAX_LOOP_SLOTS, NAME_MAX, ProcState,
    TaskExitEvent, counter, event, fd_flag, proc_flag, release, task,
};

/// `signal_struct.flags`: the process is exiting (exit_group, a fatal signal).
const SIGNAL_GROUP_EXIT: u32 = 0x4;

use crate::{
    account::release_fd,
    emit::{emit, emit_with, header},
    fdtable::{OpenBits, current_fdt, fd_file, max_fds, task_fdt},
    filter::{selected, set_registered},
    kmem::{bump, kread},
    maps::{EXEC_FDS, GO_PROCS, OPEN_FDS, PY_PROCS, TRACED, off, system_wide},
    verify::verify,
};

/// State of a loop over a table's descriptors at fork or exec.
#[repr(C)]
struct TableLoop {
    tgid: u32,
    /// Fork: the child.
    other: u32,
    /// Exec: descriptors at or above this are closed (the new table's size).
    limit: u32,
    /// Descriptors handled.
    count: u32,
    /// Account descriptors not in the accounting as [`fd_flag::FOREIGN`].
    foreign: u32,
    _pad: u32,
    bits: OpenBits,
}

impl TableLoop {
    const fn new(tgid: u32, other: u32, limit: u32, foreign: bool, fdt: u64) -> Self {
        Self {
            tgid,
            other,
            limit,
            count: 0,
            foreign: foreign as u32,
            _pad: 0,
            bits: OpenBits::new(fdt),
        }
    }
}

/// Runs `step` over descriptors 0..n of a loop's table (bounded by the kernel's loop limit).
#[inline(always)]
fn for_each_slot(n: u32, step: extern "C" fn(u64, *mut c_void) -> i64, l: &mut TableLoop) {
    let n = if n > MAX_LOOP_SLOTS {
        MAX_LOOP_SLOTS
    } else {
        n
    };
    // SAFETY: the callback only touches `l` and maps.
    unsafe { bpf_loop(n, step as *mut c_void, addr_of_mut!(*l).cast(), 0) };
}

/// bpf_loop callback of fork: copies the parent's entry for each descriptor open in the child
/// (or, from a launcher, accounts it as foreign).
#[inline(never)]
extern "C" fn fork_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's TableLoop.
    let l = unsafe { &mut *(ctx as *mut TableLoop) };
    let fd = fd as u32;
    if !l.bits.is_open(fd) {
        return 0;
    }
    let entry = match OPEN_FDS.get_ptr(&FdKey { tgid: l.tgid, fd }) {
        // SAFETY: copy out of a valid map value.
        Some(ptr) => {
            let mut e = unsafe { *ptr };
            e.flags |= fd_flag::INHERITED;
            e
        }
        None if l.foreign != 0 => FdEntry::foreign(fd_file(l.bits.fdt(), fd as i32)),
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
        None => system_wide() && selected(),
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
        set_registered(child_tgid, true);
    }
    // A traced parent's descriptors are copied; a launcher's, and those a parent first seen
    // system-wide opened before tracing began, are accounted as foreign (not the program's
    // doing, but verification must know them).
    let fdt = task_fdt(child).unwrap_or(0);
    let mut l = TableLoop::new(
        parent_tgid,
        child_tgid,
        0,
        !copy_fds || parent.is_none(),
        fdt,
    );
    if fdt != 0 {
        for_each_slot(max_fds(fdt).unwrap_or(0), fork_step, &mut l);
    }
    let inherited = l.count;
    emit::<ForkEvent>(|ev| {
        // SAFETY: `ev` is the reserved record.
        unsafe {
            ev.write(ForkEvent {
                header: header(event::FORK, child_tgid),
                parent_tgid,
                inherited,
            })
        }
    });
    0
}

/// bpf_loop callback of exec: releases tracked descriptors that exec closed.
#[inline(never)]
extern "C" fn exec_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's TableLoop.
    let l = unsafe { &mut *(ctx as *mut TableLoop) };
    let fd = fd as u32;
    let key = FdKey { tgid: l.tgid, fd };
    if OPEN_FDS.get_ptr(&key).is_none() {
        // A process selected system-wide from this exec on (by its new name) holds what its
        // unseen parent gave it: foreign, known to verification.
        if l.foreign != 0
            && fd < l.limit
            && l.bits.is_open(fd)
            && OPEN_FDS
                .insert(&key, &FdEntry::foreign(fd_file(l.bits.fdt(), fd as i32)), 0)
                .is_err()
        {
            bump(counter::FD_MAP_FULL, 1);
        }
        return 0;
    }
    if fd >= l.limit || !l.bits.is_open(fd) {
        release_fd(l.tgid, fd, release::EXEC);
        l.count += 1;
    }
    0
}

/// The process's image is gone: so are its Go and Python layouts.
#[inline(always)]
fn forget_runtime(tgid: u32) {
    let _ = GO_PROCS.remove(&tgid);
    let _ = PY_PROCS.remove(&tgid);
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn proc_exec(ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !crate::filter::traced(tgid) {
        return 0;
    }
    // The thread that called exec (its id before exec took over the thread group).
    let old_tid = ctx.arg::<u64>(1) as u32;
    // SAFETY: copy out of a valid map value.
    let before = unsafe { EXEC_FDS.get(&old_tid) }.copied().unwrap_or(0);
    let _ = EXEC_FDS.remove(&old_tid);
    forget_runtime(tgid);
    let fdt = current_fdt().unwrap_or(0);
    let size = max_fds(fdt).unwrap_or(0);
    // Traced without registration: selected system-wide.
    // SAFETY: read-only lookup.
    let foreign = unsafe { TRACED.get(&tgid) }.is_none();
    let mut l = TableLoop::new(tgid, 0, size, foreign, fdt);
    for_each_slot(if before > size { before } else { size }, exec_step, &mut l);
    let released = l.count;
    let filename: u64 = kread(ctx.arg::<u64>(2), off!(binprm_filename)).unwrap_or(0);
    emit::<ExecEvent>(|ev| {
        // SAFETY: writes stay inside the reserved record; the helper validates the kernel
        // pointer.
        unsafe {
            (*ev).header = header(event::EXEC, tgid);
            (*ev).released = released;
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
    });
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn proc_exit(_ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !crate::filter::traced(tgid) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    // The group is dead once signal->live dropped to zero (it is decremented before this
    // tracepoint); earlier threads' exits are not process exits.
    let signal = kread::<u64>(task, off!(task_signal)).unwrap_or(0);
    let live: i32 = kread(signal, off!(signal_live)).unwrap_or(0);
    if live != 0 {
        // A thread ended: alive at the exit if the whole process is exiting.
        let tid = bpf_get_current_pid_tgid() as u32;
        let flags: u32 = kread(signal, off!(signal_flags)).unwrap_or(0);
        emit::<TaskExitEvent>(|ev| {
            // SAFETY: `ev` is the reserved record.
            unsafe {
                ev.write(TaskExitEvent {
                    header: header(event::TASK_EXIT, tgid),
                    id: tid as u64,
                    kind: task::THREAD,
                    group_exit: (flags & SIGNAL_GROUP_EXIT != 0) as u32,
                })
            }
        });
        return 0;
    }
    let status: u32 = kread(task, off!(task_exit_code)).unwrap_or(0);
    let _ = TRACED.remove(&tgid);
    forget_runtime(tgid);
    set_registered(tgid, false);
    // The table is still intact here (files are released after this tracepoint): compare it
    // with the accounting.
    let Some(v) = verify(tgid, task) else {
        return 0;
    };
    emit_with::<ExitEvent>(
        |ev| {
            // SAFETY: `ev` is the reserved record.
            unsafe {
                (*ev).header = header(event::EXIT, tgid);
                (*ev).status = status;
                (*ev).open = v.open;
                (*ev).exact = v.exact;
                (*ev).missing = v.missing;
                (*ev).phantom = v.phantom;
                (*ev).wrong = v.wrong;
                (*ev).unverified = v.unverified;
                (*ev).table_size = v.table_size;
                (*ev).missing_fds = v.missing_fds;
                (*ev).phantom_fds = v.phantom_fds;
                (*ev).wrong_fds = v.wrong_fds;
            }
        },
        BPF_RB_FORCE_WAKEUP as u64,
    );
    0
}
