//! Descriptors passed over unix sockets (SCM_RIGHTS control messages): who sent each file, and
//! the descriptors a receiver gets, accounted with the sender named.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_user};
use tracer_common::{FdKey, Passed, STACK_MAX, UserRegs, counter, fd_flag, release};

use crate::{
    account::account_fd,
    emit::{Acquisition, emit_acquire},
    fdtable::{S_IFSOCK, current_fdt, fd_file, file_inode, file_socket},
    kmem::{bump, next_seq, opaque},
    maps::{OPEN_FDS, PASSED, RIGHTS_SCRATCH},
    sock::track_socket,
    stack::{CallSite, call_site},
};

/// Most descriptors taken from the control messages of one sendmsg/recvmsg call.
const RIGHTS_MAX: u32 = 16;
/// Entries of the per-CPU scratch: room for a copy of up to RIGHTS_MAX - 1 descriptors placed
/// after up to RIGHTS_MAX - 1 already collected.
pub const SCRATCH_LEN: usize = 48;
/// Keeps a collected count inside the scratch's first RIGHTS_MAX entries (for the verifier).
const COLLECTED_MASK: u32 = RIGHTS_MAX - 1;
/// Keeps one copy's count at most 2 * RIGHTS_MAX - 1 (for the verifier).
const COPY_MASK: u32 = 2 * RIGHTS_MAX - 1;
const _: () = assert!((COLLECTED_MASK + COPY_MASK) as usize <= SCRATCH_LEN);

/// Most messages of one sendmmsg/recvmmsg and control messages per message inspected.
const MMSG_MAX: u64 = 4;
const CMSG_MAX: u64 = 4;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
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
                // inside the scratch.
                let r = unsafe {
                    bpf_probe_read_user(
                        (out as *mut i32)
                            .add((opaque(n) & COLLECTED_MASK) as usize)
                            .cast(),
                        (opaque(count) & COPY_MASK) * 4,
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

/// State of a loop over the descriptors of SCM_RIGHTS messages.
#[repr(C)]
struct RightsLoop {
    pid_tgid: u64,
    regs: UserRegs,
    fdt: u64,
    /// The receiving syscall.
    sys: u64,
    /// Token of the receiver's Python stack (0: none).
    py_stack: u64,
    /// The receiving call's site, found once for all its descriptors (a lookup of the memo
    /// in the callback made its verification take seconds).
    site: CallSite,
}

/// The `i`th collected SCM_RIGHTS descriptor.
#[inline(always)]
fn right(i: u64) -> i32 {
    match RIGHTS_SCRATCH.get_ptr(0) {
        // SAFETY: index masked into the scratch.
        Some(fds) => unsafe { (*fds)[i as usize & COLLECTED_MASK as usize] },
        None => -1,
    }
}

/// bpf_loop callback of sendmsg: remembers who sent each file.
#[inline(never)]
extern "C" fn sent_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the caller's RightsLoop.
    let l = unsafe { &*(ctx as *const RightsLoop) };
    let fd = right(i);
    let file = fd_file(l.fdt, fd);
    if file == 0 {
        return 0;
    }
    let tgid = (l.pid_tgid >> 32) as u32;
    let key = FdKey {
        tgid,
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
        tgid,
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
    let mut acq = Acquisition::new(l.pid_tgid, l.sys as u16, fd, next_seq());
    let entry = acq.entry(sk, file);
    let _ = account_fd(acq.tgid, fd, &entry, release::REPLACED);
    track_socket(sk, acq.seq, acq.tgid, fd);
    acq.sk = sk;
    acq.i_mode = i_mode;
    acq.ino = [ino, 0];
    acq.src_seq = sender.seq;
    // The sender: pid, and its descriptor number.
    acq.arg = sender.tgid as u64 | (sender.fd as u64) << 32;
    acq.py_stack = l.py_stack;
    // Copies go in records of one size: the verifier checks the callback on each of its passes
    // over the loop, and every size class there cost about a second of start-up. Copies are
    // only sent until userspace has taught the memo the call site.
    let site = &l.site;
    if site.memo_site != 0 || site.want == 0 {
        emit_acquire::<0>(&acq, &l.regs, 0, site.memo_site, site.goid);
    } else {
        emit_acquire::<STACK_MAX>(&acq, &l.regs, site.want, 0, site.goid);
    }
    0
}

/// sendmsg/sendmmsg (`receive` false) or recvmsg/recvmmsg that succeeded with `ret`.
#[inline(always)]
pub fn rights(
    pid_tgid: u64,
    sys: u16,
    mmsg: bool,
    receive: bool,
    args: &[u64; 6],
    ret: i64,
    regs: &UserRegs,
    py_stack: u64,
) {
    let (msgs, stride) = if mmsg {
        (ret as u64, MMSGHDR_SIZE)
    } else {
        (1, 0)
    };
    let n = collect_rights(args[1], msgs, stride);
    if n == 0 {
        return;
    }
    let mut l = RightsLoop {
        pid_tgid,
        regs: *regs,
        fdt: current_fdt().unwrap_or(0),
        sys: sys as u64,
        py_stack,
        site: if receive {
            call_site((pid_tgid >> 32) as u32, pid_tgid as u32, regs)
        } else {
            CallSite::NONE
        },
    };
    let step = if receive {
        received_step as *mut c_void
    } else {
        sent_step as *mut c_void
    };
    // SAFETY: the callback only touches `l` and maps.
    unsafe { bpf_loop(n, step, addr_of_mut!(l).cast(), 0) };
}
