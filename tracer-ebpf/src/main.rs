//! tracer's kernel side: records who acquired and released which descriptor, when, with which
//! user stack. No policy lives here.
//!
//! * [`syscalls`]: `sys_enter` / `sys_exit`, attached to the tracepoints of exactly the syscalls
//!   in `tracer_common::syscall::TABLE`; they account new descriptors at a successful exit and
//!   release them at entry ([`account`]), with [`scm_rights`] and [`sock`] for what travels
//!   over sockets.
//! * [`lifecycle`]: `proc_fork`, `proc_exec`, `proc_exit` follow the traced tree, copy inherited
//!   descriptors, release close-on-exec ones, and [`verify`] each table at exit.
//! * [`io_uring`]: `io_submit` / `io_complete`, requests that create or close descriptors.
//! * [`sock`]: `sock_state`, the TCP state of tracked sockets.
//! * [`go`]: `go_spawn`, `go_exit`, uprobes on the Go runtime: which goroutine created which.
//! * [`python`]: the CPython stack of each acquisition in a Python process.
//!
//! Only processes passing [`filter`] are accounted; everything else returns after one array
//! load. Records go to userspace through [`emit`], with the user stack from [`stack`] (or the
//! call site the [`memo`] recognized).
#![no_std]
#![no_main]
// Atomic read-modify-write is not exposed by core on the BPF target; the intrinsics lower to
// the BPF atomic instructions.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod account;
mod doctor;
mod emit;
mod fdtable;
mod filter;
mod go;
mod io_uring;
mod kmem;
mod lifecycle;
mod maps;
mod memo;
mod python;
mod scm_rights;
mod sock;
mod stack;
mod syscalls;
mod verify;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
