//! `/health` (liveness), `/ready` (dependencies) and `/metrics` (Prometheus).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value, json};

/// A dependency `/ready` checks (database, cache, bus).
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

/// The process-wide Prometheus recorder (one per process, shared by all services in it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(Clone)]
struct Checks(Arc<Vec<Arc<dyn ReadinessCheck>>>);

/// The three operational routes, to merge into a service's router.
pub fn routes(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready).with_state(Checks(Arc::new(checks))))
        .route("/metrics", get(move || async move { handle.render() }))
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn ready(State(Checks(checks)): State<Checks>) -> Response {
    let mut report = Map::new();
    let mut failed = Vec::new();
    for c in checks.iter() {
        match tokio::time::timeout(std::time::Duration::from_secs(3), c.check()).await {
            Ok(Ok(())) => {
                report.insert(c.name().into(), Value::from("ok"));
            }
            Ok(Err(e)) => {
                failed.push(format!("{}: {e}", c.name()));
                report.insert(c.name().into(), Value::from(e));
            }
            Err(_) => {
                failed.push(format!("{}: timed out", c.name()));
                report.insert(c.name().into(), Value::from("timed out"));
            }
        }
    }
    if failed.is_empty() {
        axum::Json(json!({"status": "ready", "checks": report})).into_response()
    } else {
        let detail = format!("not ready: {}", failed.join("; "));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"detail": detail, "checks": report})),
        )
            .into_response()
    }
}
