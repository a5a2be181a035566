//! Reading kernel and user memory, counters, identifiers and time.
use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::{MaybeUninit, size_of},
    ptr::read_volatile,
};

use aya_ebpf::helpers::{
    bpf_ktime_get_ns,
    generated::{bpf_probe_read_kernel, bpf_probe_read_user},
};

use crate::maps::{COUNTERS, SEQ};

/// Reads a `T` (plain integers only) from kernel memory at `base + off`.
#[inline(always)]
pub fn kread<T: Copy>(base: u64, off: u64) -> Option<T> {
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

/// Reads a `T` (plain integers only) from user memory.
#[inline(always)]
pub fn uread<T: Copy>(addr: u64) -> Option<T> {
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

/// `v`, through memory: the compiler cannot use what it knows about it, so bounds checks
/// written after this reach the verifier.
#[inline(always)]
pub fn opaque(v: u32) -> u32 {
    let x = v;
    // SAFETY: reads a local.
    unsafe { read_volatile(&x) }
}

/// Adds to a per-CPU counter (`tracer_common::counter`).
#[inline(always)]
pub fn bump(index: u32, by: u64) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer is a valid per-CPU map value (the add is atomic anyway).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(ptr, by) };
    }
}

/// A new acquisition id. Userspace seeds each CPU's counter with `cpu << 48`, so ids are unique
/// across CPUs without asking which CPU this is.
#[inline(always)]
pub fn next_seq() -> u64 {
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

/// CLOCK_MONOTONIC now, in nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}
