//! socket-leak: a metrics shipper that dials the collector for every batch and hands the socket
//! to its event loop as a raw descriptor; when the collector rejects a batch the descriptor is
//! never closed. The collector has closed its side: `--count` sockets sit in CLOSE_WAIT.
use std::{io, net::SocketAddr, net::TcpStream, os::fd::IntoRawFd};

use clap::Parser;
use demos::{DemoArgs, collector};

/// Ships one batch over a fresh connection.
fn ship(addr: SocketAddr, batch: usize) -> io::Result<()> {
    let fd = TcpStream::connect(addr)?.into_raw_fd(); // tracer-demo: leak site
    // BUG: `?` returns with `fd` still open.
    collector::send_batch(fd, batch)?;
    // SAFETY: `fd` is ours and closed exactly once.
    unsafe { libc::close(fd) };
    Ok(())
}

fn main() -> io::Result<()> {
    collector::run(&DemoArgs::parse(), ship)
}
