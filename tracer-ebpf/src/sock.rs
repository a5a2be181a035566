//! Sockets: the addresses given to connect() and bind(), and the TCP state changes of tracked
//! sockets (`inet_sock_set_state`).
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::{SOCKADDR_MAX, SockAddrEvent, SockOwner, SockStateEvent, event};

use crate::{
    account::seq_of,
    emit::{emit, header},
    kmem::kread,
    maps::{SOCKS, off},
};

const AF_INET6: u16 = 10;

/// Follows the TCP state of a tracked socket.
#[inline(always)]
pub fn track_socket(sk: u64, seq: u64, tgid: u32, fd: i32) {
    if sk != 0 {
        let owner = SockOwner {
            seq,
            tgid,
            fd: fd as u32,
        };
        let _ = SOCKS.insert(&sk, &owner, 0);
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

/// A tracked socket changed TCP state: report it with its addresses.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn sock_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    // SAFETY: copy out of a valid map value.
    let Some(owner) = (unsafe { SOCKS.get(&sk) }).copied() else {
        return 0;
    };
    let family: u16 = kread(sk, off!(skc_family)).unwrap_or(0);
    let (old_state, new_state) = (ctx.arg::<u64>(1) as u32, ctx.arg::<u64>(2) as u32);
    emit::<SockStateEvent>(|ev| {
        // SAFETY: writes stay inside the reserved record.
        unsafe {
            (*ev).header = header(event::SOCK_STATE, owner.tgid);
            (*ev).seq = owner.seq;
            (*ev).fd = owner.fd;
            (*ev).old_state = old_state;
            (*ev).new_state = new_state;
            (*ev).family = family;
            (*ev).sport = kread::<u16>(sk, off!(skc_num)).unwrap_or(0);
            (*ev).dport = u16::from_be(kread::<u16>(sk, off!(skc_dport)).unwrap_or(0));
            (*ev)._pad = [0; 3];
            if family == AF_INET6 {
                (*ev).saddr = kread(sk, off!(skc_v6_rcv_saddr)).unwrap_or([0; 16]);
                (*ev).daddr = kread(sk, off!(skc_v6_daddr)).unwrap_or([0; 16]);
            } else {
                let s: [u8; 4] = kread(sk, off!(skc_rcv_saddr)).unwrap_or([0; 4]);
                let d: [u8; 4] = kread(sk, off!(skc_daddr)).unwrap_or([0; 4]);
                (*ev).saddr = [s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                (*ev).daddr = [d[0], d[1], d[2], d[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            }
        }
    });
    0
}
