//! The io_uring scenario: a segment store and connection server that does all its descriptor
//! work through an io_uring (IORING_OP_OPENAT, SOCKET, ACCEPT multishot, PIPE,
//! FIXED_FD_INSTALL, CLOSE): descriptors are born and die without open/accept/close syscalls.
//! `leaky` selects the buggy paths; the fixed twin closes everything through the ring.
use std::{
    ffi::CString,
    fs,
    io::{self, Write as _},
    net::TcpStream,
    os::fd::RawFd,
    path::Path,
};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::DemoArgs;

/// Clients that connect to the server.
pub const CLIENTS: usize = 4;
/// Pipes made (IORING_OP_PIPE) and fixed files installed as descriptors.
pub const PIPES: usize = 2;
pub const INSTALLS: usize = 2;

/// Submits one request and waits for its completion; the result (descriptor or -errno).
/// A macro, so that the submitting frame is the caller's own.
#[collapse_debuginfo(yes)]
macro_rules! complete {
    ($ring:expr, $entry:expr) => {{
        let entry: squeue::Entry = $entry;
        // SAFETY: every pointer in the entry outlives the wait below.
        unsafe { $ring.submission().push(&entry) }.map_err(io::Error::other)?;
        $ring.submit_and_wait(1)?;
        let cqe = $ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("no completion"))?;
        cqe.result()
    }};
}

fn check(res: i32, what: &str) -> io::Result<RawFd> {
    if res < 0 {
        Err(io::Error::new(
            io::Error::from_raw_os_error(-res).kind(),
            format!("{what}: {}", io::Error::from_raw_os_error(-res)),
        ))
    } else {
        Ok(res)
    }
}

/// Closes a descriptor through the ring (IORING_OP_CLOSE).
fn close(ring: &mut IoUring, fd: RawFd) -> io::Result<()> {
    check(
        complete!(ring, opcode::Close::new(types::Fd(fd)).build()),
        "close",
    )
    .map(drop)
}

/// Opens one segment file for reading.
fn open_segment(ring: &mut IoUring, path: &Path) -> io::Result<RawFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c.as_ptr())
        .flags(libc::O_RDONLY | libc::O_CLOEXEC)
        .build();
    check(complete!(ring, open), "openat") // tracer-demo: leak site (segment)
}

/// Accepts `CLIENTS` connections with one multishot accept; returns them.
fn accept_clients(ring: &mut IoUring, listener: RawFd) -> io::Result<Vec<RawFd>> {
    let accept = opcode::AcceptMulti::new(types::Fd(listener))
        .build()
        .user_data(7);
    // SAFETY: the entry holds no pointer.
    unsafe { ring.submission().push(&accept) }.map_err(io::Error::other)?;
    let mut accepted = Vec::new();
    while accepted.len() < CLIENTS {
        ring.submit_and_wait(1)?; // tracer-demo: leak site (accept)
        for cqe in ring.completion() {
            accepted.push(check(cqe.result(), "accept")?);
            if !cqueue::more(cqe.flags()) {
                return Err(io::Error::other("multishot accept ended early"));
            }
        }
    }
    // Stop the multishot request: cancel it and reap its final completion.
    let cancel = opcode::AsyncCancel::new(7).build().user_data(8);
    // SAFETY: the entry holds no pointer.
    unsafe { ring.submission().push(&cancel) }.map_err(io::Error::other)?;
    ring.submit_and_wait(2)?;
    ring.completion().for_each(drop);
    Ok(accepted)
}

/// Makes a pipe through the ring.
fn make_channel(ring: &mut IoUring) -> io::Result<[RawFd; 2]> {
    let mut fds = [-1; 2];
    let pipe = opcode::Pipe::new(fds.as_mut_ptr())
        .flags(libc::O_CLOEXEC as u32)
        .build();
    check(complete!(ring, pipe), "pipe")?; // tracer-demo: leak site (pipe)
    Ok(fds)
}

/// Turns fixed file slot 0 into a regular descriptor.
fn install_fixed(ring: &mut IoUring) -> io::Result<RawFd> {
    let install = opcode::FixedFdInstall::new(types::Fixed(0), 0).build();
    check(complete!(ring, install), "fixed fd install") // tracer-demo: leak site (install)
}

/// A listening TCP socket on loopback made through the ring; its port.
fn listen(ring: &mut IoUring) -> io::Result<(RawFd, u16)> {
    let socket = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
    let fd = check(complete!(ring, socket.build()), "socket")?;
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as u16;
    addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: valid socket and address buffers.
    unsafe {
        if libc::bind(fd, (&raw const addr).cast(), len) != 0
            || libc::listen(fd, 64) != 0
            || libc::getsockname(fd, (&raw mut addr).cast(), &mut len) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((fd, u16::from_be(addr.sin_port)))
}

/// Runs the scenario: `--count` segments opened (the leaky version loses the odd ones),
/// `CLIENTS` connections accepted, `PIPES` pipes made and `INSTALLS` fixed files installed
/// (all kept by the leaky version).
pub fn run(args: &DemoArgs, leaky: bool) -> io::Result<()> {
    let mut ring = IoUring::new(64)?;
    let dir = std::env::temp_dir().join(format!("tracer-demo-uring-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    for i in 0..args.count {
        let path = dir.join(format!("segment-{i:04}"));
        fs::File::create(&path)?.write_all(b"segment")?;
        let fd = open_segment(&mut ring, &path)?;
        // BUG (leaky): odd segments are handed to a cache that never closes them.
        if !(leaky && i % 2 == 1) {
            close(&mut ring, fd)?;
        }
    }
    fs::remove_dir_all(&dir)?;

    let (listener, port) = listen(&mut ring)?;
    let clients = (0..CLIENTS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)))
        .collect::<io::Result<Vec<_>>>()?;
    let accepted = accept_clients(&mut ring, listener)?;
    close(&mut ring, listener)?;
    drop(clients);
    if !leaky {
        for fd in accepted {
            close(&mut ring, fd)?;
        }
    }

    for _ in 0..PIPES {
        let [r, w] = make_channel(&mut ring)?;
        if !leaky {
            close(&mut ring, r)?;
            close(&mut ring, w)?;
        }
    }

    let null = fs::File::open("/dev/null")?;
    ring.submitter()
        .register_files(&[std::os::fd::AsRawFd::as_raw_fd(&null)])?;
    drop(null);
    for _ in 0..INSTALLS {
        let fd = install_fixed(&mut ring)?;
        if !leaky {
            close(&mut ring, fd)?;
        }
    }
    println!(
        "io_uring: {} segments, {CLIENTS} connections, {PIPES} pipes, {INSTALLS} installs; open fds: {}",
        args.count,
        crate::open_fds()?
    );
    Ok(())
}
