//! Which processes are traced: registered ones (TRACED, TRACED_BITS) and, system-wide, those
//! passing the cgroup and comm filters. Every hook asks this first.
use core::{
    intrinsics::{AtomicOrdering, atomic_and, atomic_or},
    ptr::{addr_of, read_volatile},
};

use aya_ebpf::helpers::{bpf_get_current_comm, generated::bpf_get_current_ancestor_cgroup_id};

use tracer_common::{PLANE_WORDS, plane};

use crate::maps::{CONFIG, TRACED_BITS, config_u32, system_wide};

/// The word and bit of `tgid` in plane `p` of TRACED_BITS.
#[inline(always)]
fn slot(p: u32, tgid: u32) -> (u32, u64) {
    (p * PLANE_WORDS + tgid / 64, 1u64 << (tgid % 64))
}

/// Whether `tgid`'s bit is set in plane `p` (one array load).
#[inline(always)]
fn bit_set(p: u32, tgid: u32) -> bool {
    let (word, bit) = slot(p, tgid);
    TRACED_BITS.get(word).is_some_and(|w| *w & bit != 0)
}

/// Whether `tgid` is registered to have its own descriptors accounted.
#[inline(always)]
pub fn registered(tgid: u32) -> bool {
    bit_set(plane::REGISTERED, tgid)
}

/// Whether `tgid` may have a Go or Python layout (see `plane::RUNTIME`).
#[inline(always)]
pub fn may_have_runtime(tgid: u32) -> bool {
    bit_set(plane::RUNTIME, tgid)
}

/// Marks `tgid` as having a Go or Python layout.
#[inline(always)]
pub fn set_runtime(tgid: u32) {
    set_bit(plane::RUNTIME, tgid, true);
}

/// Marks `tgid` registered (or not) in TRACED_BITS.
#[inline(always)]
pub fn set_registered(tgid: u32, on: bool) {
    set_bit(plane::REGISTERED, tgid, on);
}

/// Sets or clears `tgid`'s bit in plane `p`.
#[inline(always)]
fn set_bit(p: u32, tgid: u32, on: bool) {
    let (word, bit) = slot(p, tgid);
    if let Some(ptr) = TRACED_BITS.get_ptr_mut(word) {
        // SAFETY: a valid map value; userspace updates the same words atomically.
        unsafe {
            if on {
                atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(ptr, bit);
            } else {
                atomic_and::<u64, u64, { AtomicOrdering::SeqCst }>(ptr, !bit);
            }
        }
    }
}

/// Whether `tgid`'s own descriptors are accounted: registered, or selected system-wide (tracer
/// itself never is).
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    registered(tgid)
        || (system_wide() && tgid as u64 != config_u32(addr_of!(CONFIG.tracer_tgid)) && selected())
}

/// Whether the current process passes the system-wide filters (cgroup, comm).
#[inline(always)]
pub fn selected() -> bool {
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
