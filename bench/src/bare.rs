//! The machine's HTTP ceiling: a bare axum handler returning a fixed JSON body
//! about the size of an order, on its own runtime (as if it were another process).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

/// About the size of a cached order's JSON.
const BODY: &str = r#"{"id":"0191d6c5-6b8e-7c51-a0f3-1d2e3f4a5b6c","user_id":1,"items":[{"name":"Bench item","price":100.0,"quantity":1}],"total_price":100.0,"status":"PENDING","created_at":"2025-01-01T00:00:00Z"}"#;

/// The server; dropping it stops it.
pub(crate) struct BareServer {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Thread name prefix, so CPU time can be told apart from the load generator's.
pub(crate) const THREAD_NAME: &str = "bare-axum";

impl BareServer {
    /// Starts on 127.0.0.1:0 with `threads` runtime workers.
    pub(crate) fn start(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .context("bare axum runtime")?;
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("bind bare axum server")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{THREAD_NAME}-main"))
            .spawn(move || {
                runtime.block_on(async move {
                    let app = Router::new().route(
                        "/",
                        get(|| async { ([(CONTENT_TYPE, "application/json")], BODY) }),
                    );
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("bare axum: {e}");
                            return;
                        }
                    };
                    // Not graceful: idle keep-alive connections must not hold the stop.
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_background();
            })
            .context("bare axum thread")?;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
