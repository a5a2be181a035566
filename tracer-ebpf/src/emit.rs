//! Ring-buffer records for userspace: the facts the other modules gathered, written into
//! reserved records without formatting anything.
use core::{
    ffi::c_void,
    mem::size_of,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_smp_processor_id, bpf_probe_read_kernel_str, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
};
use tracer_common::{
    AcquireEvent, EventHeader, FdEntry, NAME_MAX, RELEASE_BATCH, ReleaseBatch, Released, UserRegs,
    counter, event,
};

use crate::{
    kmem::{bump, now_ns},
    maps::{CONFIG, EVENTS, RELEASES, config_u32},
    stack::{record_stack, stack_len_for},
};

/// Submit flags of a record of `len` bytes about to go to the ring. Waking the consumer costs
/// an IPI (a VM exit under a hypervisor), so it is woken only when this record takes the ring
/// past a multiple of `wakeup_bytes`: once per that much data, however long the consumer takes
/// to drain (waking on every record above the mark sent an IPI per record while it drained).
/// Userspace also drains on a short timer, which covers a crossing missed between CPUs.
#[inline(always)]
pub fn wakeup_flags(len: usize) -> u64 {
    let mark = config_u32(addr_of!(CONFIG.wakeup_bytes));
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if mark != 0 && (avail + len as u64) / mark != avail / mark {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// The common prefix of a record, stamped now.
#[inline(always)]
pub fn header(kind: u32, tgid: u32) -> EventHeader {
    EventHeader {
        kind,
        tgid,
        ts_ns: now_ns(),
    }
}

/// Reserves a fixed-size record, fills it with `fill` and submits it (a full ring is counted).
#[inline(always)]
pub fn emit<T: 'static>(fill: impl FnOnce(*mut T)) {
    emit_with(fill, wakeup_flags(size_of::<T>()));
}

/// [`emit`] with the submit flags given (e.g. a forced wakeup).
#[inline(always)]
pub fn emit_with<T: 'static>(fill: impl FnOnce(*mut T), flags: u64) {
    match EVENTS.reserve::<T>(0) {
        Some(mut rec) => {
            fill(rec.as_mut_ptr());
            rec.submit(flags);
        }
        None => bump(counter::EVENTS_LOST, 1),
    }
}

/// Gathers a release in this CPU's [`ReleaseBatch`], which goes to the ring as one record once
/// full (a ring record per release cost more than the rest of a close; userspace also reads the
/// batches in place, so nothing waits for a batch to fill).
#[inline(never)]
pub fn emit_release(tgid: u32, fd: u32, seq: u64, how: u32) {
    bump(counter::RELEASED, 1);
    let Some(b) = RELEASES.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a valid per-CPU map value; the index is masked into the array. The stores are
    // volatile so that they stay in the order userspace relies on (see ReleaseBatch).
    unsafe {
        let i = read_volatile(addr_of!((*b).n)) as usize & (RELEASE_BATCH - 1);
        write_volatile(
            addr_of_mut!((*b).items[i]),
            Released {
                seq,
                tgid,
                fd: fd as i32,
                how,
                _pad: 0,
            },
        );
        let n = i as u32 + 1;
        write_volatile(addr_of_mut!((*b).n), n);
        if n < RELEASE_BATCH as u32 {
            return;
        }
        (*b).header = EventHeader {
            kind: event::RELEASES,
            tgid: 0,
            ts_ns: 0,
        };
        (*b).cpu = bpf_get_smp_processor_id();
        if EVENTS
            .output::<ReleaseBatch>(&*b, wakeup_flags(size_of::<ReleaseBatch>()))
            .is_err()
        {
            bump(counter::EVENTS_LOST, RELEASE_BATCH as u64);
        }
        write_volatile(addr_of_mut!((*b).n), 0);
        let number = read_volatile(addr_of!((*b).number));
        write_volatile(addr_of_mut!((*b).number), number + 1);
    }
}

/// Where an acquisition's name comes from. A plain struct rather than an enum with payloads:
/// copying an enum copies uninitialized payload registers, which the verifier rejects.
#[derive(Clone, Copy)]
pub struct NameSrc {
    pub kind: u32,
    /// User pointer to a NUL-terminated string or to a sockaddr; kernel pointer to a string.
    pub ptr: u64,
    /// User pointer to the sockaddr's length.
    pub len_ptr: u64,
}

pub const NAME_NONE: u32 = 0;
pub const NAME_STR: u32 = 1;
pub const NAME_SOCKADDR: u32 = 2;
/// A NUL-terminated kernel string.
pub const NAME_KSTR: u32 = 3;

impl NameSrc {
    pub const NONE: Self = Self::new(NAME_NONE, 0, 0);

    pub const fn new(kind: u32, ptr: u64, len_ptr: u64) -> Self {
        Self { kind, ptr, len_ptr }
    }
}

/// Everything an [`AcquireEvent`] says, gathered before the ring record is reserved.
pub struct Acquisition {
    /// For a failed call: its errno (fd is then -1).
    pub errno: u32,
    pub sk: u64,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub fd2: i32,
    pub sys: u16,
    pub i_mode: u16,
    pub seq: u64,
    pub src_seq: u64,
    pub arg: u64,
    pub ino: [u64; 2],
    pub ts_ns: u64,
    pub name_src: NameSrc,
    /// Token of the Python stack sent for this syscall (0: none).
    pub py_stack: u64,
}

impl Acquisition {
    /// An acquisition of `fd` by `sys` in the current thread, with nothing else known yet.
    #[inline(always)]
    pub fn new(pid_tgid: u64, sys: u16, fd: i32, seq: u64) -> Self {
        Self {
            errno: 0,
            sk: 0,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            fd,
            fd2: -1,
            sys,
            i_mode: 0,
            seq,
            src_seq: 0,
            arg: 0,
            ino: [0, 0],
            ts_ns: now_ns(),
            name_src: NameSrc::NONE,
            py_stack: 0,
        }
    }

    /// The accounting entry of its descriptor(s): the open file `file`, the socket `sk`.
    #[inline(always)]
    pub fn entry(&self, sk: u64, file: u64) -> FdEntry {
        FdEntry {
            seq: self.seq,
            ts_ns: self.ts_ns,
            tid: self.tid,
            origin_tgid: self.tgid,
            syscall: self.sys,
            flags: 0,
            _pad: 0,
            sk,
            file,
        }
    }
}

/// Reserves an [`AcquireEvent`] with room for `N` stack bytes, fills it (copying `want` bytes of
/// stack when it is not recognized: `memo_site` 0) and submits it.
#[inline(never)]
pub fn emit_acquire<const N: usize>(
    acq: &Acquisition,
    regs: &UserRegs,
    want: u64,
    memo_site: u32,
    goid: u64,
) {
    const HDR: usize = size_of::<AcquireEvent>();
    let wake = wakeup_flags(HDR + N);
    let Some(mut rec) = EVENTS.reserve_bytes(HDR + N, 0) else {
        bump(counter::EVENTS_LOST, 1);
        return;
    };
    let base = rec.as_mut_ptr();
    let ev = base as *mut AcquireEvent;
    // SAFETY: the record holds HDR + N bytes; every write below stays inside it.
    let copied = unsafe {
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
        (*ev).goid = goid;
        (*ev).py_stack = acq.py_stack;
        (*ev).name_len = read_name(addr_of_mut!((*ev).name).cast(), acq.name_src);
        (*ev).stack_len = record_stack(base.add(HDR), stack_len_for::<N>(want), acq.tid, regs);
        (*ev).stack_len > 0
    };
    // A stack copy is a call site the collector has not taught the kernel yet: wake it if it
    // sleeps (the ring's own adaptive wakeup: no IPI while it is busy draining), so that the
    // memo is learned before a burst from that site fills the ring with copies.
    rec.submit(if copied { 0 } else { wake });
}

/// Fills `dst` (NAME_MAX bytes) from the acquisition's name source; returns the bytes used.
#[inline(always)]
unsafe fn read_name(dst: *mut u8, src: NameSrc) -> u32 {
    if src.kind == NAME_KSTR || src.kind == NAME_STR {
        // SAFETY: dst has NAME_MAX bytes; the helpers validate the pointer.
        let n = unsafe {
            if src.kind == NAME_KSTR {
                bpf_probe_read_kernel_str(dst.cast(), NAME_MAX as u32, src.ptr as *const c_void)
            } else {
                bpf_probe_read_user_str(dst.cast(), NAME_MAX as u32, src.ptr as *const c_void)
            }
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
