//! close-wait: a client that keeps every connection "for reuse" after reading the response, but
//! the server closes each connection once it has replied: `--count` sockets sit in CLOSE_WAIT
//! (the peer closed, this process never did) for `--hold` seconds.
use std::{
    io::{self, BufRead, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use clap::Parser;
use demos::Progress;

#[derive(Parser)]
struct Args {
    /// Connections kept.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// Wait for a line on stdin before starting (to attach a tracer first).
    #[arg(long)]
    wait: bool,
    /// Seconds to hold the connections before exiting.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
}

/// Answers each request and closes the connection.
fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_ok() {
            let _ = (&stream).write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    }
}

/// Fetches a page over a new connection, keeping the connection afterwards.
fn fetch(addr: std::net::SocketAddr, kept: &mut Vec<TcpStream>) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr)?; // tracer-demo: leak site
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    // BUG: kept "for reuse", but the server has closed it: it stays in CLOSE_WAIT.
    kept.push(stream);
    Ok(body)
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    if args.wait {
        demos::wait_for_line()?;
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || serve(listener));
    let mut progress = Progress::start("connections kept");
    let mut kept = Vec::new();
    for i in 0..args.count {
        fetch(addr, &mut kept)?;
        progress.tick(i + 1);
    }
    progress.finish(kept.len());
    println!(
        "[HOLD] {} connections in CLOSE_WAIT for {} s",
        kept.len(),
        args.hold
    );
    std::thread::sleep(Duration::from_secs_f64(args.hold));
    Ok(())
}
