//! http-fixed: http-leak's twin. Every response body is read, so connections return to the pool
//! and are reused; at the end the client and the upstream shut down cleanly.
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
        let resp = self.client.get(uri).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Reading the body to the end hands the connection back to the pool.
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err("upstream failed".into());
        }
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
    drop(gw);
    upstream.shutdown().await;
    Ok(())
}
