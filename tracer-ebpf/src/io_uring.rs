//! io_uring: requests create and close descriptors without open/close syscalls. A request is
//! seen at submission (in the submitting io_uring_enter, whose user stack is the call site) and
//! at completion (which gives the descriptor).
use aya_ebpf::{
    helpers::generated::bpf_task_pt_regs,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_task_btf},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tracer_common::{FdKey, IoCompleteEvent, IoReq, UserRegs, counter, event, release, syscall};

use crate::{
    account::{account_fd, release_fd},
    emit::{Acquisition, NAME_KSTR, NameSrc, emit, header},
    fdtable::{S_IFSOCK, current_fdt, fd_file, file_inode, file_socket},
    filter::traced,
    kmem::{bump, kread, next_seq, uread},
    maps::{IO_MULTI, IO_REQS, OPEN_FDS, off},
    sock::track_socket,
    stack::send_acquire,
};

/// io_uring opcodes (uapi).
mod ioring_op {
    pub const ACCEPT: u8 = 13;
    pub const OPENAT: u8 = 18;
    pub const CLOSE: u8 = 19;
    pub const OPENAT2: u8 = 28;
    pub const SOCKET: u8 = 45;
    pub const FIXED_FD_INSTALL: u8 = 54;
    pub const PIPE: u8 = 62;
}
const IORING_CQE_F_MORE: u32 = 2;

/// Word offsets in `struct pt_regs` of the registers a stack needs.
const PT_BP: u64 = 4 * 8;
const PT_IP: u64 = 16 * 8;
const PT_SP: u64 = 19 * 8;

/// A new io_uring request: closes release at once (like close() at entry); requests that
/// will create a descriptor are remembered and their call site sent.
#[btf_tracepoint(function = "io_uring_submit_req")]
pub fn io_submit(ctx: BtfTracePointContext) -> i32 {
    let opcode_off = off!(kiocb_opcode);
    if opcode_off == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !traced(tgid) {
        return 0;
    }
    let req: u64 = ctx.arg(0);
    let Some(op) = kread::<u8>(req, opcode_off) else {
        return 0;
    };
    let (sys, slot_off) = match op {
        ioring_op::OPENAT => (syscall::IOURING_OPENAT, off!(open_file_slot)),
        ioring_op::OPENAT2 => (syscall::IOURING_OPENAT2, off!(open_file_slot)),
        ioring_op::SOCKET => (syscall::IOURING_SOCKET, off!(socket_file_slot)),
        ioring_op::ACCEPT => (syscall::IOURING_ACCEPT, off!(accept_file_slot)),
        ioring_op::PIPE => (syscall::IOURING_PIPE, off!(pipe_file_slot)),
        ioring_op::FIXED_FD_INSTALL => (syscall::IOURING_FD_INSTALL, 0),
        ioring_op::CLOSE => (syscall::IOURING_CLOSE, off!(close_file_slot)),
        _ => return 0,
    };
    if sys == syscall::IOURING_PIPE && off!(pipe_fds) == 0 {
        return 0;
    }
    // Requests on fixed-file slots create or close no descriptor.
    if slot_off != 0 && kread::<u32>(req, slot_off).unwrap_or(1) != 0 {
        return 0;
    }
    if sys == syscall::IOURING_CLOSE {
        let fd: i32 = kread(req, off!(close_fd)).unwrap_or(-1);
        if fd < 0 {
            return 0;
        }
        let key = FdKey {
            tgid,
            fd: fd as u32,
        };
        // io_uring refuses to close a ring's own descriptor.
        // SAFETY: copy out of a valid map value.
        let is_ring = OPEN_FDS
            .get_ptr(&key)
            .is_some_and(|e| unsafe { (*e).syscall } == syscall::IO_URING_SETUP);
        if !is_ring {
            release_fd(tgid, fd as u32, release::IOURING_CLOSE);
        }
        return 0;
    }
    let mut acq = Acquisition::new(pid_tgid, sys, -1, next_seq());
    let pending = IoReq {
        seq: acq.seq,
        fds_ptr: if sys == syscall::IOURING_PIPE {
            kread(req, off!(pipe_fds)).unwrap_or(0)
        } else {
            0
        },
        tgid,
        tid: acq.tid,
        syscall: sys,
        _pad: [0; 3],
    };
    if IO_REQS.insert(&req, &pending, 0).is_err() {
        bump(counter::PENDING_LOST, 1);
        return 0;
    }
    if sys == syscall::IOURING_ACCEPT {
        // Multishot completions may be posted without their request.
        let key = [
            kread::<u64>(req, off!(kiocb_ctx)).unwrap_or(0),
            kread::<u64>(req, off!(kiocb_user_data)).unwrap_or(0),
        ];
        let _ = IO_MULTI.insert(&key, &req, 0);
    }
    match sys {
        syscall::IOURING_OPENAT | syscall::IOURING_OPENAT2 => {
            acq.arg = kread::<i32>(req, off!(open_dfd)).unwrap_or(0) as u32 as u64;
            acq.name_src = NameSrc::new(
                NAME_KSTR,
                kread::<u64>(req, off!(open_filename))
                    .and_then(|f| kread::<u64>(f, off!(filename_name)))
                    .unwrap_or(0),
                0,
            );
        }
        syscall::IOURING_SOCKET => {
            acq.arg = (kread::<u32>(req, off!(socket_domain)).unwrap_or(0) as u64 & 0xffff)
                | ((kread::<u32>(req, off!(socket_type)).unwrap_or(0) as u64 & 0xffff) << 16)
                | ((kread::<u32>(req, off!(socket_protocol)).unwrap_or(0) as u64) << 32);
        }
        _ => {}
    }
    // SAFETY: helpers on the current task; the registers are its user-mode ones.
    let regs_ptr = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
    let regs = UserRegs {
        ip: kread(regs_ptr, PT_IP).unwrap_or(0),
        sp: kread(regs_ptr, PT_SP).unwrap_or(0),
        bp: kread(regs_ptr, PT_BP).unwrap_or(0),
    };
    send_acquire(&acq, &regs);
    0
}

/// A completion: if it belongs to a remembered request, accounts the descriptor it created.
#[btf_tracepoint(function = "io_uring_complete")]
pub fn io_complete(ctx: BtfTracePointContext) -> i32 {
    if off!(kiocb_opcode) == 0 {
        return 0;
    }
    let ring: u64 = ctx.arg(0);
    let cqe: u64 = ctx.arg(2);
    let user_data: u64 = kread(cqe, off!(cqe_user_data)).unwrap_or(0);
    let mut req: u64 = ctx.arg(1);
    if req == 0 {
        // SAFETY: copy out of a valid map value.
        match unsafe { IO_MULTI.get(&[ring, user_data]) } {
            Some(r) => req = *r,
            None => return 0,
        }
    }
    // SAFETY: copy out of a valid map value.
    let Some(pending) = (unsafe { IO_REQS.get(&req) }).copied() else {
        return 0;
    };
    let res: i32 = kread(cqe, off!(cqe_res)).unwrap_or(-1);
    let flags: u32 = kread(cqe, off!(cqe_flags)).unwrap_or(0);
    let more = flags & IORING_CQE_F_MORE != 0;
    if !more {
        let _ = IO_REQS.remove(&req);
        if pending.syscall == syscall::IOURING_ACCEPT {
            let _ = IO_MULTI.remove(&[ring, user_data]);
        }
    }
    if res < 0 && more {
        return 0;
    }
    // Completions run in the submitting process (its task or its io-wq workers), which share
    // its descriptor table and memory.
    let here = (bpf_get_current_pid_tgid() >> 32) as u32 == pending.tgid;
    let (fd, fd2) = if res < 0 {
        (res, -1)
    } else if pending.syscall == syscall::IOURING_PIPE {
        match here.then(|| uread::<[i32; 2]>(pending.fds_ptr)).flatten() {
            Some([a, b]) => (a, b),
            None => (-1, -1),
        }
    } else {
        (res, -1)
    };
    let fdt = if here { current_fdt().unwrap_or(0) } else { 0 };
    let (file, file2) = (fd_file(fdt, fd), fd_file(fdt, fd2));
    let (ino, i_mode) = file_inode(file);
    let mut seq = 0;
    if fd >= 0 {
        let pid_tgid = ((pending.tgid as u64) << 32) | pending.tid as u64;
        let acq = Acquisition::new(pid_tgid, pending.syscall, fd, next_seq());
        seq = acq.seq;
        let sk = if i_mode == S_IFSOCK {
            file_socket(file)
        } else {
            0
        };
        track_socket(sk, seq, pending.tgid, fd);
        let _ = account_fd(pending.tgid, fd, &acq.entry(sk, file), release::REPLACED);
        let _ = account_fd(pending.tgid, fd2, &acq.entry(0, file2), release::REPLACED);
    }
    let ino2 = file_inode(file2).0;
    emit::<IoCompleteEvent>(|ev| {
        // SAFETY: `ev` is the reserved record.
        unsafe {
            ev.write(IoCompleteEvent {
                header: header(event::IO_COMPLETE, pending.tgid),
                seq,
                submit_seq: pending.seq,
                ino: [ino, ino2],
                fd,
                fd2,
                i_mode,
                syscall: pending.syscall,
                more: more as u32,
            })
        }
    });
    0
}
