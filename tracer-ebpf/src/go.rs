//! Go goroutines: which goroutine acquires a descriptor, which goroutine created which (at the
//! return of `runtime.newproc1`, a uprobe on its RET instruction: uretprobes break Go, whose
//! stacks move) and when goroutines end (`runtime.goexit0`). Offsets come from the binary: each
//! uprobe's cookie indexes `GO_BINARIES`, and a process's first probe hit copies its binary's
//! layout into `GO_PROCS`, where acquisitions find it.
use aya_ebpf::{
    EbpfContext as _, helpers::generated::bpf_get_attach_cookie, macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{GO_FRAMES, GoLayout, GoSpawnEvent, TaskExitEvent, event, task};

use crate::{
    emit::{emit, header},
    filter::{may_have_runtime, set_runtime, traced},
    kmem::{kread, uread},
    maps::{GO_BINARIES, GO_PROCS, off},
};

/// Word indexes in `struct pt_regs` of the registers Go's calling convention uses here.
const PT_AX: usize = 10;
const PT_R14: usize = 1;

/// A process's Go layout, if it is Go.
#[inline(always)]
fn layout(tgid: u32) -> Option<GoLayout> {
    if !may_have_runtime(tgid) {
        return None;
    }
    // SAFETY: copy out of a valid map value.
    unsafe { GO_PROCS.get(&tgid) }.copied()
}

/// The layout of the binary the probe is attached to, remembered for the process.
#[inline(always)]
fn probe_layout(ctx: &ProbeContext, tgid: u32) -> Option<GoLayout> {
    if let Some(l) = layout(tgid) {
        return Some(l);
    }
    // SAFETY: the helper reads the cookie of the running uprobe.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let l = *GO_BINARIES.get(cookie)?;
    if l.tls_g == 0 {
        return None;
    }
    let _ = GO_PROCS.insert(&tgid, &l, 0);
    set_runtime(tgid);
    Some(l)
}

/// The goroutine a g0 (system stack) runs for: its m's current goroutine.
#[inline(always)]
fn user_g(l: &GoLayout, g: u64) -> u64 {
    let Some(m) = uread::<u64>(g + l.g_m as u64) else {
        return g;
    };
    match uread::<u64>(m + l.m_g0 as u64) {
        Some(g0) if g0 == g => uread::<u64>(m + l.m_curg as u64).unwrap_or(0),
        _ => g,
    }
}

/// What the current thread runs, in a Go process.
pub struct Running {
    /// The goroutine (0: not Go, or none).
    pub goid: u64,
    /// The top of the goroutine (or system) stack that holds `sp` (0: unknown).
    pub stack_hi: u64,
}

impl Running {
    const NONE: Self = Self {
        goid: 0,
        stack_hi: 0,
    };
}

/// The goroutine the current thread runs, and the bounds of the stack its stack pointer `sp`
/// is on: goroutine stacks lie in heap mappings, so the mapping's end says nothing of where
/// one ends.
#[inline(always)]
pub fn running(tgid: u32, task: u64, sp: u64) -> Running {
    let Some(l) = layout(tgid) else {
        return Running::NONE;
    };
    let Some(fs) = kread::<u64>(task, off!(task_fsbase)) else {
        return Running::NONE;
    };
    // A thread before the runtime set its TLS, or a C thread without a g, holds none.
    let g = match uread::<u64>(fs.wrapping_add(l.tls_g as u64)) {
        Some(g) if g != 0 => g,
        _ => return Running::NONE,
    };
    // `g.stack` {lo, hi} is the first field of runtime.g (its offset is fixed in the runtime).
    let stack_hi = match uread::<[u64; 2]>(g) {
        Some([lo, hi]) if lo <= sp && sp < hi => hi,
        _ => 0,
    };
    let user = user_g(&l, g);
    let goid = if user == 0 {
        0
    } else {
        uread::<u64>(user + l.g_goid as u64).unwrap_or(0)
    };
    Running { goid, stack_hi }
}

/// A saved register of the probed thread.
#[inline(always)]
fn reg(ctx: &ProbeContext, index: usize) -> u64 {
    // SAFETY: the context is the probed thread's `struct pt_regs`.
    unsafe { *(ctx.regs as *const u64).add(index) }
}

/// At the RET of `runtime.newproc1`: RAX is the new g, R14 the thread's g0 (the creator is
/// parked in `systemstack`, its state saved in its `sched`).
#[uprobe]
pub fn go_spawn(ctx: ProbeContext) -> u32 {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    let Some(l) = probe_layout(&ctx, tgid) else {
        return 0;
    };
    let newg = reg(&ctx, PT_AX);
    let Some(goid) = uread::<u64>(newg + l.g_goid as u64) else {
        return 0;
    };
    let g0 = reg(&ctx, PT_R14);
    let creator = uread::<u64>(g0 + l.g_m as u64)
        .and_then(|m| uread::<u64>(m + l.m_curg as u64))
        .unwrap_or(0);
    let parent = if l.g_parent_goid != 0 {
        uread::<u64>(newg + l.g_parent_goid as u64).unwrap_or(0)
    } else if creator != 0 {
        uread::<u64>(creator + l.g_goid as u64).unwrap_or(0)
    } else {
        0
    };
    let bp = if creator != 0 {
        uread::<u64>(creator + l.g_sched_bp as u64).unwrap_or(0)
    } else {
        0
    };
    emit::<GoSpawnEvent>(|ev| {
        // SAFETY: writes stay inside the reserved record.
        unsafe {
            (*ev).header = header(event::GO_SPAWN, tgid);
            (*ev).goid = goid;
            (*ev).parent_goid = parent;
            // The creator's stack from its saved frame pointer (Go keeps frame pointers).
            let mut bp = bp;
            let mut n = 0;
            while n < GO_FRAMES && bp != 0 {
                match (uread::<u64>(bp + 8), uread::<u64>(bp)) {
                    (Some(pc), Some(next)) if pc != 0 => {
                        (*ev).pcs[n] = pc;
                        n += 1;
                        bp = next;
                    }
                    _ => break,
                }
            }
            (*ev).n = n as u32;
            (*ev)._pad = 0;
        }
    });
    0
}

/// At the entry of `runtime.goexit0`: RAX is the goroutine that ended.
#[uprobe]
pub fn go_exit(ctx: ProbeContext) -> u32 {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    let Some(l) = probe_layout(&ctx, tgid) else {
        return 0;
    };
    let Some(goid) = uread::<u64>(reg(&ctx, PT_AX) + l.g_goid as u64) else {
        return 0;
    };
    emit::<TaskExitEvent>(|ev| {
        // SAFETY: `ev` is the reserved record.
        unsafe {
            ev.write(TaskExitEvent {
                header: header(event::TASK_EXIT, tgid),
                id: goid,
                kind: task::GOROUTINE,
                group_exit: 0,
            })
        }
    });
    0
}
