//! leaky-server: an HTTP service (hyper, on 127.0.0.1) that opens its audit log for every request
//! and keeps the handle in a session cache nothing ever evicts: one descriptor leaked per
//! request. It generates its own load (`--rate` requests per second, for `--duration` seconds),
//! so it can be watched live: `sudo tracer --pid $(pgrep leaky-server)`.
use std::{
    convert::Infallible,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use clap::Parser;
use demos::Progress;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Stop the load after this many requests for `--pause` seconds (then resume).
    #[arg(long)]
    pause_after: Option<usize>,
    #[arg(long, default_value_t = 5.0)]
    pause: f64,
}

/// Open audit-log handles, one per session; nothing removes them.
static SESSIONS: Mutex<Vec<File>> = Mutex::new(Vec::new());

static AUDIT_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Records a request in the audit log; returns the log's handle for the session.
fn audit(path: &Path, uri: &hyper::Uri) -> io::Result<File> {
    let mut log = OpenOptions::new().create(true).append(true).open(path)?; // tracer-demo: leak site
    writeln!(log, "GET {uri}")?;
    Ok(log)
}

/// Serves one request, recording it in the audit log.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(path) = AUDIT_LOG.get()
        && let Ok(log) = audit(path, req.uri())
    {
        // BUG: the handle is cached for the "session" and never closed.
        SESSIONS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(log);
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let args = Args::parse();
    let path = std::env::temp_dir().join(format!("tracer-demo-audit-{}.log", std::process::id()));
    let _ = AUDIT_LOG.set(path.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr}");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
            tokio::spawn(conn);
        }
    });
    let client = demos::gateway::client();
    let uri: hyper::Uri = format!("http://{addr}/api")
        .parse()
        .map_err(io::Error::other)?;
    let start = Instant::now();
    let mut progress = Progress::start("requests served");
    let mut served = 0;
    let pause = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    while start.elapsed().as_secs_f64() < args.duration {
        if let Ok(resp) = client.get(uri.clone()).await {
            let _ = resp.into_body().collect().await;
            served += 1;
        }
        progress.tick(served);
        if Some(served) == args.pause_after {
            progress.finish(served);
            println!(
                "[PAUSE] {served} requests served; resuming in {} s",
                args.pause
            );
            tokio::time::sleep(Duration::from_secs_f64(args.pause)).await;
        }
        tokio::time::sleep(pause).await;
    }
    progress.finish(served);
    let _ = std::fs::remove_file(&path);
    // A service is stopped, not unwound: its sessions are still open when it exits.
    std::process::exit(0);
}
