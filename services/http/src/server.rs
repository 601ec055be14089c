//! What every HTTP service wraps around its routes, and how it is served.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::edge::Edge;
use crate::error::detail_response;
use crate::headers::DOCS_PATH;
use crate::health::{self, ReadinessCheck};
use crate::timeouts::Timeouts;
use crate::write_deadline::WriteDeadline;
use orderly_core::Shutdown;
use orderly_core::config::HttpSettings;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long in-flight requests may go on after shutdown was asked for.
pub const DRAIN_BOUND: Duration = Duration::from_secs(20);

/// Add `/health`, `/ready`, `/metrics`, `/docs`, `/openapi.json`, FastAPI-style
/// 404/405 bodies, body limit, body and request timeouts, CORS, security
/// headers, panic catching, request logs and metrics.
pub fn finish(
    service: &'static str,
    routes: Router,
    openapi: OpenApi,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    http: &HttpSettings,
) -> Router {
    let limits = Timeouts {
        body: http.body_timeout,
        request: http.request_timeout,
    };
    // "none": the UI must not send the spec's URL to swagger.io's validator
    // (and the docs' Content-Security-Policy would block its badge anyway).
    let docs = SwaggerUi::new(DOCS_PATH)
        .url("/openapi.json", openapi)
        .config(Config::default().validator_url("none"));
    routes
        .merge(health::routes(checks))
        .merge(docs)
        .fallback(|| async { detail_response(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            detail_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Preflights (OPTIONS) are answered here, before any handler or 405.
        .layer(crate::cors::layer(&http.cors))
        // Outermost: logs, meters and heads every answer, preflights included.
        .layer(Edge::new(service, limits))
}

/// Bind, with the address in the error (port taken, bad address).
pub async fn bind(addr: &str, what: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: cannot listen on {addr}: {e}")))
}

/// Serve HTTP/1 until `shutdown`; then stop accepting, close idle kept-alive
/// connections, and let in-flight requests finish (at most [`DRAIN_BOUND`]).
///
/// A client gets `http.header_read_timeout` for each request's headers (from
/// the connection's start or the previous response), and a response that it
/// stops reading for `http.write_timeout` is abandoned; either way its
/// connection is closed: slow or silent clients cannot hold connections open.
/// Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    http: &HttpSettings,
) -> Result<(), std::io::Error> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let stream = WriteDeadline::new(stream, http.write_timeout);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header timeouts, resets and malformed requests end up here.
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(DRAIN_BOUND) => {
            tracing::warn!("in-flight requests did not finish within {DRAIN_BOUND:?} of shutdown");
            Ok(())
        }
    }
}

/// Connection-level failures are the client's; others (too many open files)
/// would spin, so wait a little before accepting again.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
