//! The API-gateway scenario: a local upstream HTTP service (hyper) that fails every other call,
//! and a pooled HTTP client (hyper-util) for the gateway each binary implements.
use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    sync::{Mutex, MutexGuard, PoisonError},
};

use http_body_util::{Empty, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{DemoArgs, Progress};

/// The gateway's HTTP client, with a connection pool.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A new pooled client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Responses of failed calls kept "to report later".
pub static BACKLOG: Mutex<Vec<Response<Incoming>>> = Mutex::new(Vec::new());

/// The backlog.
pub fn backlog() -> MutexGuard<'static, Vec<Response<Incoming>>> {
    BACKLOG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The upstream service, running until [`Upstream::shutdown`].
pub struct Upstream {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Stops accepting, then waits for open connections to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The upstream's error page: large, like the HTML error pages of real services, so a client
/// that does not read it cannot receive it whole and keeps the connection busy.
static ERROR_PAGE: [u8; 256 * 1024] = [b'!'; 256 * 1024];

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body): (_, &'static [u8]) = if req.uri().path() == "/flaky" {
        (StatusCode::SERVICE_UNAVAILABLE, &ERROR_PAGE)
    } else {
        (StatusCode::OK, b"ok")
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    Ok(resp)
}

/// Starts the upstream on 127.0.0.1 (a free port).
pub async fn start_upstream() -> io::Result<Upstream> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle));
                    tokio::spawn(graceful.watch(conn));
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(Upstream { addr, stop, task })
}

/// Path of call `i`: calls alternate between a healthy and a failing endpoint.
pub fn path_for(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "/ok" } else { "/flaky" }
}

/// Makes `2 * count` calls through `fetch` (half fail), printing progress.
pub async fn drive<F, Fut>(args: &DemoArgs, mut fetch: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut progress = Progress::start("requests made");
    let (mut ok, mut failed) = (0, 0);
    for i in 0..2 * args.count {
        if fetch(path_for(i)).await {
            ok += 1;
        } else {
            failed += 1;
        }
        progress.tick(i + 1);
        if let Some(pause) = args.interval() {
            tokio::time::sleep(pause).await;
        }
    }
    progress.finish(2 * args.count);
    println!("{ok} calls succeeded, {failed} failed");
}
