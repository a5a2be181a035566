//! Exit-time verification: a process's descriptor table, still intact when its last thread
//! exits, compared with the accounting. Fails closed: a table that cannot be read or walked
//! whole is reported unverified, with the reason, never exact.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::helpers::generated::bpf_loop;
use tracer_common::{FdKey, MAX_LOOP_SLOTS, VERIFY_LIST, fd_flag, unverified};

use crate::{
    fdtable::{OpenBits, max_fds, task_fdt},
    kmem::kread,
    maps::{OPEN_FDS, VERIFY_SCRATCH, off},
};

/// The comparison's result (the counts and lists of `ExitEvent`), in a per-CPU scratch.
#[repr(C)]
pub struct Verified {
    pub open: u32,
    pub exact: u32,
    pub missing: u32,
    pub phantom: u32,
    pub wrong: u32,
    pub unverified: u32,
    pub table_size: u32,
    /// The table's `struct file *` array.
    files: u64,
    /// File-array entries that could not be read.
    read_failures: u32,
    /// Numbers listed in each list (at most VERIFY_LIST). Kept apart from the counts, which
    /// the loop only increments: the verifier then need not tell their values apart, and its
    /// walk of the loop converges.
    listed: [u32; 3],
    bits: OpenBits,
    pub missing_fds: [u32; VERIFY_LIST],
    pub phantom_fds: [u32; VERIFY_LIST],
    pub wrong_fds: [u32; VERIFY_LIST],
}

/// Keeps a list position inside its list (for the verifier).
const LIST_MASK: usize = VERIFY_LIST - 1;
const _: () = assert!(VERIFY_LIST.is_power_of_two());

/// Appends `fd` to a bounded list whose length is `*n`.
#[inline(always)]
fn note_fd(list: &mut [u32; VERIFY_LIST], n: &mut u32, fd: u32) {
    if (*n as usize) < VERIFY_LIST {
        list[*n as usize & LIST_MASK] = fd;
        *n += 1;
    }
}

/// State of the loop: only what does not change (its counts live in the per-CPU scratch,
/// whose values the verifier does not track, so its walk of the loop converges).
#[repr(C)]
struct VerifyLoop {
    tgid: u32,
    _pad: u32,
}

/// bpf_loop callback: classifies descriptor `fd` and drops foreign entries.
#[inline(never)]
extern "C" fn verify_step(fd: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's VerifyLoop.
    let tgid = unsafe { (*(ctx as *const VerifyLoop)).tgid };
    let Some(v) = VERIFY_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a valid per-CPU map value, used by this program only.
    let v = unsafe { &mut *v };
    let fd = fd as u32;
    let open = v.bits.is_open(fd);
    let key = FdKey { tgid, fd };
    // SAFETY: copy out of a valid map value.
    let entry = OPEN_FDS
        .get_ptr(&key)
        .map(|e| unsafe { ((*e).file, (*e).flags) });
    match entry {
        Some((file, flags)) => {
            if open {
                v.open += 1;
                let current: u64 = match kread(v.files, fd as u64 * 8) {
                    Some(f) => f,
                    None => {
                        v.read_failures += 1;
                        0
                    }
                };
                if file != 0 && current != file {
                    note_fd(&mut v.wrong_fds, &mut v.listed[2], fd);
                    v.wrong += 1;
                } else {
                    v.exact += 1;
                }
            } else {
                note_fd(&mut v.phantom_fds, &mut v.listed[1], fd);
                v.phantom += 1;
            }
            if flags & fd_flag::FOREIGN != 0 {
                let _ = OPEN_FDS.remove(&key);
            }
        }
        None if open => {
            v.open += 1;
            note_fd(&mut v.missing_fds, &mut v.listed[0], fd);
            v.missing += 1;
        }
        None => {}
    }
    0
}

/// Compares the table of exiting `task` (process `tgid`) with the accounting; the result is
/// in this CPU's VERIFY_SCRATCH.
#[inline(always)]
pub fn verify(tgid: u32, task: u64) -> Option<&'static Verified> {
    let fdt = task_fdt(task).unwrap_or(0);
    let files = kread::<u64>(fdt, off!(fdt_fd));
    let size = max_fds(fdt);
    let v = VERIFY_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a valid per-CPU map value, used by this program only (programs do not nest on
    // one CPU for the same tracepoint).
    let v = unsafe { &mut *v };
    v.open = 0;
    v.exact = 0;
    v.missing = 0;
    v.phantom = 0;
    v.wrong = 0;
    v.table_size = size.unwrap_or(0);
    v.files = files.unwrap_or(0);
    v.read_failures = 0;
    v.listed = [0; 3];
    v.bits = OpenBits::new(fdt);
    v.unverified = if fdt == 0 || files.is_none() {
        unverified::NO_TABLE
    } else if size.is_none() {
        unverified::NO_SIZE
    } else if v.table_size > MAX_LOOP_SLOTS {
        unverified::TOO_LARGE
    } else {
        0
    };
    if v.unverified != 0 {
        return Some(v);
    }
    let mut l = VerifyLoop { tgid, _pad: 0 };
    // SAFETY: the callback only touches `l` and maps.
    let r = unsafe {
        bpf_loop(
            v.table_size,
            verify_step as *mut c_void,
            addr_of_mut!(l).cast(),
            0,
        )
    };
    // The callback changed the scratch: read it anew.
    let v = VERIFY_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: as above.
    let v = unsafe { &mut *v };
    if r < 0 {
        v.unverified = unverified::LOOP_FAILED;
    } else if v.read_failures > 0 || v.bits.failures > 0 {
        v.unverified = unverified::READ_FAILED;
    }
    Some(v)
}
