//! fd-bomb: `--total` descriptors held at once, more than any one process may hold: the bomb
//! forks as many children as its descriptor limit needs, each opens its share of eventfds and
//! holds them until all have, then every child exits without closing them. Tests that tracer's
//! memory stays bounded and that what it cannot account is counted, not lost silently.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Descriptors held at once, over every child.
    #[arg(long, default_value_t = 1_000_000)]
    total: usize,
}

/// Raises the soft descriptor limit to the hard one; returns how many a process may hold.
fn raise_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur as usize
}

/// Opens `n` eventfds and never closes them.
#[inline(never)]
fn hold(n: usize) -> usize {
    let mut opened = 0;
    for _ in 0..n {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }; // tracer-demo: leak site
        if fd < 0 {
            break;
        }
        opened += 1;
    }
    opened
}

fn main() {
    let args = Args::parse();
    // Leave room for stdio and the control socket.
    let per_child = raise_limit().saturating_sub(16).max(1);
    let children = args.total.div_ceil(per_child);
    let mut pending = Vec::new();
    let mut left = args.total;
    for _ in 0..children {
        let share = left.min(per_child);
        left -= share;
        let (parent_end, mut child_end) = UnixStream::pair().expect("socketpair");
        // SAFETY: the child only makes syscalls and exits.
        match unsafe { libc::fork() } {
            0 => {
                drop(parent_end);
                let opened = hold(share);
                let _ = child_end.write_all(&(opened as u64).to_le_bytes());
                // Wait for the parent: every child holds its share at the same time.
                let mut go = [0u8; 1];
                let _ = child_end.read_exact(&mut go);
                // SAFETY: exit without running destructors (nothing is closed first).
                unsafe { libc::_exit(0) };
            }
            pid if pid > 0 => {
                drop(child_end);
                pending.push((pid, parent_end));
            }
            _ => panic!("fork failed"),
        }
    }
    let mut held = 0u64;
    for (_, stream) in &mut pending {
        let mut n = [0u8; 8];
        stream.read_exact(&mut n).expect("a child's count");
        held += u64::from_le_bytes(n);
    }
    println!("held {held} descriptors in {children} processes");
    for (pid, mut stream) in pending {
        let _ = stream.write_all(b"x");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}
