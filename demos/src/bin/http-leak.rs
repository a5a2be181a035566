//! http-leak: an API gateway that keeps the responses of failed upstream calls in a backlog "to
//! report later". An unread response pins its connection, so the pool opens a new one for the
//! next call: `--count` failed calls leave `--count` connections open on each side. The service
//! is stopped the way services are (exit), with its state still held.
use http_body_util::BodyExt as _;
use hyper::{StatusCode, Uri, body::Bytes};

use clap::Parser;
use demos::{
    DemoArgs,
    gateway::{self, HttpClient},
};

struct Gateway {
    client: HttpClient,
    base: String,
}

impl Gateway {
    fn uri(&self, path: &str) -> Result<Uri, String> {
        format!("{}{path}", self.base)
            .parse()
            .map_err(|e| format!("{e}"))
    }

    /// Calls the upstream; the body of a successful call.
    async fn fetch(&self, path: &str) -> Result<Bytes, String> {
        let uri = self.uri(path)?;
        let resp = self.client.get(uri).await.map_err(|e| e.to_string())?; // tracer-demo: leak site
        if resp.status() != StatusCode::OK {
            // BUG: the unread body keeps the connection checked out of the pool forever.
            gateway::backlog().push(resp);
            return Err("upstream failed".into());
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_bytes())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = DemoArgs::parse();
    let upstream = gateway::start_upstream().await?;
    let gw = Gateway {
        client: gateway::client(),
        base: format!("http://{}", upstream.addr),
    };
    gateway::drive(&args, |path| async { gw.fetch(path).await.is_ok() }).await;
    println!(
        "backlog: {} failed responses kept",
        gateway::backlog().len()
    );
    std::process::exit(0);
}
