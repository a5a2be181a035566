//! The metrics-shipping scenario: a local collector that acknowledges even batches and rejects
//! odd ones, closing every connection after its reply.
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    os::fd::{BorrowedFd, RawFd},
};

use crate::{DemoArgs, Progress};

/// Starts the collector on 127.0.0.1 (a free port) in a thread.
pub fn start() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let batch: usize = line
                .trim()
                .trim_start_matches("batch ")
                .parse()
                .unwrap_or(1);
            let reply: &[u8] = if batch.is_multiple_of(2) {
                b"OK\n"
            } else {
                b"ERR\n"
            };
            let _ = (&stream).write_all(reply);
        }
    });
    Ok(addr)
}

/// Sends batch `n` over the socket `fd` and waits for the collector's acknowledgement.
pub fn send_batch(fd: RawFd, n: usize) -> io::Result<()> {
    // SAFETY: the caller owns `fd` for the duration of this call.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let stream = std::net::TcpStream::from(sock.try_clone_to_owned()?);
    (&stream).write_all(format!("batch {n}\n").as_bytes())?;
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    // The collector closes after replying: wait for that, so the connection is in CLOSE_WAIT
    // (not still ESTABLISHED) whatever happens next.
    reader.read_to_end(&mut Vec::new())?;
    if reply.trim() == "OK" {
        Ok(())
    } else {
        Err(io::Error::other(format!("collector rejected batch {n}")))
    }
}

/// Ships `2 * count` batches through `ship` (odd ones are rejected).
pub fn run(args: &DemoArgs, ship: fn(SocketAddr, usize) -> io::Result<()>) -> io::Result<()> {
    let addr = start()?;
    let mut progress = Progress::start("batches shipped");
    let mut rejected = 0;
    for n in 0..2 * args.count {
        if ship(addr, n).is_err() {
            rejected += 1;
        }
        progress.tick(n + 1);
        args.pace();
    }
    progress.finish(2 * args.count);
    println!("{rejected} batches rejected");
    Ok(())
}
