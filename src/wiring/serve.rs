//! Serving an HTTP app on a listener, and telling the user where it answers.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use orderly_core::Shutdown;
use orderly_core::config::HttpSettings;
use orderly_http::server as http;

/// `http://HOST:PORT` of the listener, with 127.0.0.1 for "any address".
fn local_url(listener: &TcpListener) -> Option<String> {
    let mut addr = listener.local_addr().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    // SocketAddr's Display puts an IPv6 address in brackets, as a URL needs.
    Some(format!("http://{addr}"))
}

/// Binds `addr` (the error names `service` and the address), prints where
/// `service` answers, and serves `app` as one of `tasks`. Returns the URL the
/// service answers at from this machine.
pub async fn start_api(
    service: &'static str,
    addr: &str,
    app: axum::Router,
    shutdown: &Shutdown,
    settings: &HttpSettings,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<Option<String>> {
    let listener = http::bind(addr, service).await?;
    announce_api(service, &listener);
    let url = local_url(&listener);
    tasks.spawn(serve(listener, app, shutdown.clone(), settings.clone()));
    Ok(url)
}

/// Logs and prints `  auth: http://…  (docs: http://…/docs)`.
fn announce_api(service: &str, listener: &TcpListener) {
    if let Some(url) = local_url(listener) {
        tracing::info!(service, %url, docs = %format!("{url}/docs"), "listening");
        println!("{service:>6}: {url}  (docs: {url}/docs)");
    }
}

/// Logs and prints `   ops: http://…`, with `  (console: http://…/console)`
/// when the console is served there.
pub fn announce_ops(listener: &TcpListener, console: Option<&str>) {
    if let Some(url) = local_url(listener) {
        match console {
            Some(path) => {
                tracing::info!(service = "ops", %url, console = %format!("{url}{path}"), "listening");
                println!("{:>6}: {url}  (console: {url}{path})", "ops");
            }
            None => {
                tracing::info!(service = "ops", %url, "listening");
                println!("{:>6}: {url}", "ops");
            }
        }
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
