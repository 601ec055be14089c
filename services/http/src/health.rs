//! `/health` (liveness), `/ready` (dependencies) and `/metrics` (Prometheus).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Map, Value, json};

use orderly_core::metric_catalog::{LATENCY_BUCKETS, METRICS, MetricKind};
pub use orderly_core::readiness::ReadinessCheck;

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (one per process, shared by all services in it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = prometheus_builder().build_recorder();
            let handle = recorder.handle();
            spawn_upkeep(handle.clone(), METRICS_UPKEEP_EVERY);
            // Fails only if another recorder is installed; then ours renders nothing.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe_metrics();
            }
            handle
        })
        .clone()
}

/// Histograms with buckets, which Prometheus can add up across instances
/// (summaries' quantiles cannot be).
fn prometheus_builder() -> PrometheusBuilder {
    let builder = PrometheusBuilder::new();
    match builder.set_buckets(LATENCY_BUCKETS) {
        Ok(builder) => builder,
        // Only an empty list is refused; the constant is not empty.
        Err(e) => {
            tracing::warn!(error = %e, "histogram buckets refused; histograms are summaries");
            PrometheusBuilder::new()
        }
    }
}

/// `# HELP` for every metric of the catalogue.
fn describe_metrics() {
    for m in METRICS {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// A recorder built without its exporter keeps every histogram sample until
/// something drains it; a process nobody scrapes would grow by 8 bytes per
/// request for ever. A plain thread, so it needs no runtime and outlives none.
fn spawn_upkeep(handle: PrometheusHandle, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms grow until scraped");
    }
}

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

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

/// Every check at once (each bounded by [`CHECK_TIMEOUT`]): 200
/// `{"status":"ready","checks":{name: "ok" | "degraded: …"}}`, or 503
/// `{"detail":"not ready: …","checks":{…}}` naming each failed critical check.
async fn ready(State(Checks(checks)): State<Checks>) -> Response {
    let mut running = tokio::task::JoinSet::new();
    for (i, c) in checks.iter().enumerate() {
        let c = c.clone();
        running.spawn(async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                Ok(r) => r,
                Err(_) => Err("timed out".to_string()),
            };
            (i, outcome)
        });
    }
    let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; checks.len()];
    while let Some(joined) = running.join_next().await {
        if let Ok((i, outcome)) = joined {
            outcomes[i] = Some(outcome);
        }
    }
    let mut report = Map::new();
    let mut failed = Vec::new();
    for (c, outcome) in checks.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| Err("check panicked".into()));
        let value = match outcome {
            Ok(()) => "ok".to_string(),
            Err(e) if !c.critical() => format!("degraded: {e}"),
            Err(e) => {
                failed.push(format!("{}: {e}", c.name()));
                e
            }
        };
        report.insert(c.name().into(), Value::from(value));
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

/// The operational routes alone, for roles without an HTTP API of their own
/// (consumer, worker: `ORDERLY_OPS_BIND`), with the contract's 404 body.
pub fn ops_router(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    routes(checks)
        .fallback(|| async { crate::error::detail_response(StatusCode::NOT_FOUND, "Not Found") })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// 16 M samples are 128 MB while they wait to be counted; with upkeep
    /// running they are folded into the buckets as they come.
    #[test]
    fn histogram_samples_do_not_pile_up_unscraped() {
        use metrics::Recorder;
        let recorder = prometheus_builder().build_recorder();
        spawn_upkeep(recorder.handle(), std::time::Duration::from_millis(10));
        let key = metrics::Key::from_static_name("upkeep_test_seconds");
        let metadata = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        let histogram = recorder.register_histogram(&key, &metadata);
        let before = resident_bytes();
        for burst in 0..64 {
            for i in 0..250_000 {
                histogram.record(f64::from(burst * 250_000 + i) * 1e-9);
            }
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(
            grown < 48 << 20,
            "resident memory grew by {} MB over 16 M samples",
            grown >> 20
        );
    }

    #[test]
    fn histograms_are_exported_with_buckets_and_described() {
        use metrics::Recorder;
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let key = metrics::Key::from_static_name("http_request_duration_seconds");
        let metadata = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        recorder.describe_histogram(
            "http_request_duration_seconds".into(),
            None,
            "Time to answer".into(),
        );
        recorder.register_histogram(&key, &metadata).record(0.003);
        let text = handle.render();
        assert!(
            text.contains("http_request_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(!text.contains("quantile="), "a summary:\n{text}");
        assert!(text.contains("# HELP http_request_duration_seconds Time to answer"));
    }

    struct Fixed {
        name: &'static str,
        result: Result<(), &'static str>,
        critical: bool,
    }

    #[async_trait::async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn check(&self) -> Result<(), String> {
            self.result.map_err(str::to_string)
        }
        fn critical(&self) -> bool {
            self.critical
        }
    }

    fn check(
        name: &'static str,
        result: Result<(), &'static str>,
        critical: bool,
    ) -> Arc<dyn ReadinessCheck> {
        Arc::new(Fixed {
            name,
            result,
            critical,
        })
    }

    async fn get_ready(checks: Vec<Arc<dyn ReadinessCheck>>) -> (StatusCode, Value) {
        let response = ops_router(checks)
            .oneshot(Request::get("/ready").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_check_is_reported_by_name() {
        let (status, body) = get_ready(vec![
            check("database", Ok(()), true),
            check("bus", Ok(()), true),
        ])
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ready", "checks": {"database": "ok", "bus": "ok"}})
        );
    }

    #[tokio::test]
    async fn a_failing_critical_check_makes_503_naming_it() {
        let (status, body) = get_ready(vec![
            check("database", Ok(()), true),
            check("bus", Err("broker unavailable"), true),
        ])
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["detail"], "not ready: bus: broker unavailable");
        assert_eq!(body["checks"]["bus"], "broker unavailable");
        assert_eq!(body["checks"]["database"], "ok");
    }

    #[tokio::test]
    async fn a_failing_non_critical_check_is_degraded_not_unready() {
        let (status, body) = get_ready(vec![
            check("database", Ok(()), true),
            check("rate_limiter", Err("connection refused"), false),
        ])
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(
            body["checks"]["rate_limiter"],
            "degraded: connection refused"
        );
    }

    #[tokio::test]
    async fn the_ops_router_serves_health_and_metrics_and_404s_the_rest() {
        let app = ops_router(Vec::new());
        for (path, want) in [
            ("/health", StatusCode::OK),
            ("/metrics", StatusCode::OK),
            ("/ready", StatusCode::OK),
            ("/orders/", StatusCode::NOT_FOUND),
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), want, "{path}");
        }
    }
}
