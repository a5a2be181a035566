//! Sockets: the addresses given to connect() and bind(), and the TCP state changes of tracked
//! sockets (`inet_sock_set_state`).
use core::{
    ffi::c_void,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task, bpf_probe_read_user},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{SOCKADDR_MAX, SockAddrEvent, SockOwner, counter, event, tcp_state};

use crate::{
    account::seq_of,
    emit::{emit, header},
    kmem::{bump, kread, now_ns},
    maps::{SOCKS, off},
};

const AF_INET6: u16 = 10;

/// Follows the TCP state of a tracked socket.
#[inline(always)]
pub fn track_socket(sk: u64, seq: u64, tgid: u32, fd: i32) {
    if sk != 0 {
        let _ = SOCKS.insert(&sk, &SockOwner::new(seq, tgid, fd as u32), 0);
    }
}

/// Records the address a tracked socket connected or bound to (`sys`: CONNECT or BIND).
#[inline(always)]
pub fn sockaddr(tgid: u32, sys: u16, args: &[u64; 6]) {
    let fd = args[0] as i32;
    let seq = seq_of(tgid, fd);
    if seq == 0 {
        return;
    }
    let mut len = args[2] as u32;
    if len > SOCKADDR_MAX as u32 {
        len = SOCKADDR_MAX as u32;
    }
    emit::<SockAddrEvent>(|ev| {
        // SAFETY: writes stay inside the reserved record; the helper validates the user
        // pointer.
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
    });
}

/// A tracked socket changed TCP state: its last state, and its addresses once known, are kept
/// in place in its SOCKS entry (no record: userspace reads the states it reports).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn sock_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let Some(o) = SOCKS.get_ptr_mut(&sk) else {
        return 0;
    };
    let new_state = ctx.arg::<u64>(2) as u32;
    // SAFETY: `o` is a valid map value. The stores are volatile so that the state, which a
    // reader takes as "this change happened", is written after the addresses.
    unsafe {
        if read_volatile(addr_of!((*o).frozen)) != 0 {
            return 0;
        }
        // The owner's exit closes what it holds: its first change is one that close() makes.
        if closing(new_state) && process_dying((*o).tgid) {
            write_volatile(addr_of_mut!((*o).frozen), 1);
            return 0;
        }
        // Addresses are set by the changes that start a connection or a listener; after one,
        // once both ports are known, they stay as they are.
        if starting(new_state) || (*o).sport == 0 || (*o).dport == 0 {
            read_addresses(sk, o);
        }
        write_volatile(
            addr_of_mut!((*o).state_at),
            SockOwner::state_at(new_state, now_ns()),
        );
    }
    bump(counter::SOCK_STATES, 1);
    0
}

/// Whether a change to `state` is one that close() makes (or the kernel's close of a dead
/// process's sockets).
#[inline(always)]
fn closing(state: u32) -> bool {
    state == tcp_state::FIN_WAIT1 || state == tcp_state::LAST_ACK || state == tcp_state::CLOSE
}

/// Whether a change to `state` starts a connection or a listener (and so may set addresses).
#[inline(always)]
fn starting(state: u32) -> bool {
    state == tcp_state::SYN_SENT
        || state == tcp_state::SYN_RECV
        || state == tcp_state::ESTABLISHED
        || state == tcp_state::LISTEN
}

/// Copies socket `sk`'s family and its addresses that are set into its entry `o`.
///
/// # Safety
/// `o` is a valid SOCKS value.
#[inline(always)]
unsafe fn read_addresses(sk: u64, o: *mut SockOwner) {
    let family: u16 = kread(sk, off!(skc_family)).unwrap_or(0);
    // SAFETY: the caller's.
    unsafe {
        write_volatile(addr_of_mut!((*o).family), family);
        let sport = kread::<u16>(sk, off!(skc_num)).unwrap_or(0);
        if sport != 0 {
            let saddr = inet_addr(sk, family, off!(skc_v6_rcv_saddr), off!(skc_rcv_saddr));
            write_volatile(addr_of_mut!((*o).saddr), saddr);
            write_volatile(addr_of_mut!((*o).sport), sport);
        }
        let dport = u16::from_be(kread::<u16>(sk, off!(skc_dport)).unwrap_or(0));
        if dport != 0 {
            let daddr = inet_addr(sk, family, off!(skc_v6_daddr), off!(skc_daddr));
            write_volatile(addr_of_mut!((*o).daddr), daddr);
            write_volatile(addr_of_mut!((*o).dport), dport);
        }
    }
}

/// An address of socket `sk`: the IPv6 field at `v6_off`, or the IPv4 one at `v4_off` in the
/// first 4 bytes.
#[inline(always)]
fn inet_addr(sk: u64, family: u16, v6_off: u64, v4_off: u64) -> [u8; 16] {
    if family == AF_INET6 {
        return kread(sk, v6_off).unwrap_or([0; 16]);
    }
    let a: [u8; 4] = kread(sk, v4_off).unwrap_or([0; 4]);
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Whether the current task is process `tgid` exiting as a whole (its last thread, past the
/// point where the kernel closes what it held). In softirq context the current task is
/// whichever one was interrupted.
#[inline(always)]
fn process_dying(tgid: u32) -> bool {
    if (bpf_get_current_pid_tgid() >> 32) as u32 != tgid {
        return false;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let signal = kread::<u64>(task, off!(task_signal)).unwrap_or(0);
    kread::<i32>(signal, off!(signal_live)) == Some(0)
}
