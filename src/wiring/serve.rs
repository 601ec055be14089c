//! Serving an HTTP app on a listener, and telling the user where it answers.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use orderly_core::Shutdown;
use orderly_core::config::HttpSettings;
use orderly_http::server as http;

/// `http://HOST:PORT` of the listener, with 127.0.0.1 for "any address".
fn local_url(listener: &TcpListener) -> Option<String> {
    let addr = listener.local_addr().ok()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    Some(format!("http://{host}:{}", addr.port()))
}

/// Binds `addr` (the error names `service` and the address), prints where
/// `service` answers, and serves `app` as one of `tasks`.
pub async fn start_api(
    service: &'static str,
    addr: &str,
    app: axum::Router,
    shutdown: &Shutdown,
    settings: &HttpSettings,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<()> {
    let listener = http::bind(addr, service).await?;
    announce_api(service, &listener);
    tasks.spawn(serve(listener, app, shutdown.clone(), settings.clone()));
    Ok(())
}

/// Logs and prints `  auth: http://…  (docs: http://…/docs)`.
fn announce_api(service: &str, listener: &TcpListener) {
    if let Some(url) = local_url(listener) {
        tracing::info!(service, %url, docs = %format!("{url}/docs"), "listening");
        println!("{service:>6}: {url}  (docs: {url}/docs)");
    }
}

/// Logs and prints `   ops: http://…` (no docs there).
pub fn announce_ops(listener: &TcpListener) {
    if let Some(url) = local_url(listener) {
        tracing::info!(service = "ops", %url, "listening");
        println!("{:>6}: {url}", "ops");
    }
}

/// The server as a task: it ends with the shutdown, or fails.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: Shutdown,
    settings: HttpSettings,
) -> Result<()> {
    http::serve(listener, app, shutdown, &settings)
        .await
        .context("http server")
}
