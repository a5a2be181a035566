//! The user stack of an acquisition: recognized by the memo, or copied (from the stack pointer
//! to the end of its mapping, or of its goroutine stack in Go, in one of the fixed size classes
//! the ring needs) for userspace to unwind.
use core::{
    ffi::c_void,
    ptr::{addr_of, addr_of_mut},
};

use aya_ebpf::helpers::generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_probe_read_user};
use tracer_common::{STACK_CLASSES, UserRegs, counter};

use crate::{
    emit::{Acquisition, emit_acquire},
    go,
    kmem::{bump, kread},
    maps::{CONFIG, STACK_VMA, config_u32, off},
    memo::memo_site,
};

/// Smallest stack extent worth taking from the per-thread cache (else the mapping is looked up).
const MIN_CACHED_EXTENT: u64 = 4096;

/// Smallest copy tried when a read of the whole extent fails.
const MIN_COPY: usize = 256;

/// Halvings tried before giving up on a copy.
const COPY_TRIES: u32 = 8;

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
fn stack_extent(tid: u32, sp: u64) -> u64 {
    // The cached end may have been lowered to what a previous, deeper event could read; it only
    // helps if it still leaves a useful copy from this stack pointer.
    // SAFETY: read-only use of a map value.
    if let Some(&[start, end]) = unsafe { STACK_VMA.get(&tid) }
        && sp >= start
        && sp + MIN_CACHED_EXTENT <= end
    {
        return end - sp;
    }
    // `end: sp` marks "not found" (and avoids a zeroing memset call).
    let mut range = VmaRange { start: 0, end: sp };
    // SAFETY: the current task's BTF pointer; the callback only writes `range`.
    let r = unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf().cast(),
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

/// The bytes of a copy into a record with room for `N`.
#[inline(always)]
pub fn stack_len_for<const N: usize>(want: u64) -> usize {
    if want as usize > N { N } else { want as usize }
}

/// Copies `len` bytes of user stack from `regs.sp` into `dst`; returns the bytes copied.
///
/// # Safety
/// `dst` has room for `len` bytes.
#[inline(always)]
pub unsafe fn record_stack(dst: *mut u8, len: usize, tid: u32, regs: &UserRegs) -> u32 {
    // A read fails as a whole if any page in range is absent (the randomization gap below the
    // environment at the top of the main stack): halve until it succeeds, and remember the
    // readable end for this thread's later events.
    let mut len = len;
    let mut tries = 0;
    let want = len;
    while len >= MIN_COPY && tries < COPY_TRIES {
        // SAFETY: `dst` has room for `len` bytes (halved from the caller's bound).
        let r = unsafe { bpf_probe_read_user(dst.cast(), len as u32, regs.sp as *const c_void) };
        if r == 0 {
            if tries > 0 {
                shrink_stack_end(tid, regs.sp + len as u64);
            }
            return len as u32;
        }
        len /= 2;
        tries += 1;
    }
    if want > 0 {
        bump(counter::STACK_UNREADABLE, 1);
    }
    0
}

/// How an acquisition's call site goes to userspace: recognized by the memo, or as a copy of
/// `want` bytes of stack; and, in Go, the acquiring goroutine.
pub struct CallSite {
    /// The memo's call site id + 1 (0: not recognized).
    pub memo_site: u32,
    pub want: u64,
    pub goid: u64,
}

impl CallSite {
    /// No call site: nothing is sent with it.
    pub const NONE: Self = Self {
        memo_site: 0,
        want: 0,
        goid: 0,
    };
}

/// The call site of the current thread's stack at `regs` (an acquisition by process `tgid`,
/// thread `tid`).
#[inline(always)]
pub fn call_site(tgid: u32, tid: u32, regs: &UserRegs) -> CallSite {
    // SAFETY: helper returning the current task's BTF pointer.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let go = go::running(tgid, task, regs.sp);
    let stack_max = config_u32(addr_of!(CONFIG.stack_max));
    if stack_max != 0 {
        let memo_site = memo_site(tgid, regs);
        if memo_site != 0 {
            return CallSite {
                memo_site,
                want: 0,
                goid: go.goid,
            };
        }
    }
    let mut want = if stack_max == 0 || regs.sp == 0 {
        0
    } else if go.stack_hi != 0 {
        go.stack_hi - regs.sp
    } else {
        match stack_extent(tid, regs.sp) {
            // Unknown extent: a small copy still usually covers the innermost frames.
            0 => STACK_CLASSES[1] as u64,
            n => n,
        }
    };
    if want > stack_max {
        want = stack_max;
    }
    CallSite {
        memo_site: 0,
        want,
        goid: go.goid,
    }
}

/// Sends an acquisition with its call site: recognized by the memo, or a copy of the stack;
/// for Go, with the acquiring goroutine.
#[inline(never)]
pub fn send_acquire(acq: &Acquisition, regs: &UserRegs) {
    let regs = *regs;
    let site = call_site(acq.tgid, acq.tid, &regs);
    let (want, goid) = (site.want, site.goid);
    // One record size per class: reservations must have a size known to the verifier.
    if site.memo_site != 0 || want == 0 {
        emit_acquire::<0>(acq, &regs, 0, site.memo_site, goid);
    } else if want <= STACK_CLASSES[0] as u64 {
        emit_acquire::<{ STACK_CLASSES[0] }>(acq, &regs, want, 0, goid);
    } else if want <= STACK_CLASSES[1] as u64 {
        emit_acquire::<{ STACK_CLASSES[1] }>(acq, &regs, want, 0, goid);
    } else if want <= STACK_CLASSES[2] as u64 {
        emit_acquire::<{ STACK_CLASSES[2] }>(acq, &regs, want, 0, goid);
    } else if want <= STACK_CLASSES[3] as u64 {
        emit_acquire::<{ STACK_CLASSES[3] }>(acq, &regs, want, 0, goid);
    } else if want <= STACK_CLASSES[4] as u64 {
        emit_acquire::<{ STACK_CLASSES[4] }>(acq, &regs, want, 0, goid);
    } else if want <= STACK_CLASSES[5] as u64 {
        emit_acquire::<{ STACK_CLASSES[5] }>(acq, &regs, want, 0, goid);
    } else {
        emit_acquire::<{ STACK_CLASSES[6] }>(acq, &regs, want, 0, goid);
    }
}
