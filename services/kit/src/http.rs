//! What every HTTP service wraps around its routes, and how it is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::detail_response;
use crate::health::{self, ReadinessCheck};
use crate::shutdown::Shutdown;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Add `/health`, `/ready`, `/metrics`, `/docs`, `/openapi.json`, FastAPI-style
/// 404/405 bodies, body limit, panic catching, request logs and metrics.
pub fn finish(
    service: &'static str,
    routes: Router,
    openapi: OpenApi,
    checks: Vec<Arc<dyn ReadinessCheck>>,
) -> Router {
    routes
        .merge(health::routes(checks))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(|| async { detail_response(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            detail_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(move |req, next| {
            record_metrics(service, req, next)
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request| {
                    tracing::info_span!("http", %service, method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("handler panicked");
            detail_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }))
}

async fn record_metrics(service: &'static str, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response.into_response()
}

/// Bind, with the address in the error (port taken, bad address).
pub async fn bind(addr: &str, what: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: cannot listen on {addr}: {e}")))
}

/// Serve until `shutdown`, then let in-flight requests finish (bounded).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
) -> Result<(), std::io::Error> {
    let signal = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { signal.wait().await });
    let drain_bound = async {
        shutdown.wait().await;
        tokio::time::sleep(Duration::from_secs(20)).await;
    };
    tokio::select! {
        result = server => result,
        _ = drain_bound => {
            tracing::warn!("in-flight requests did not finish within 20 s of shutdown");
            Ok(())
        }
    }
}
