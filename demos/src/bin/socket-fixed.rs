//! socket-fixed: socket-leak's twin; the socket is owned (and so closed) on every path.
use std::{io, net::SocketAddr, net::TcpStream, os::fd::AsRawFd};

use clap::Parser;
use demos::{DemoArgs, collector};

/// Ships one batch over a fresh connection.
fn ship(addr: SocketAddr, batch: usize) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    collector::send_batch(stream.as_raw_fd(), batch)
}

fn main() -> io::Result<()> {
    collector::run(&DemoArgs::parse(), ship)
}
