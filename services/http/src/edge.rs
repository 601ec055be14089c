//! What happens to every request of every service on its way in and out, as
//! one tower layer ([`Edge`]).
//!
//! In order: the request gets its trace context (continued from `traceparent`
//! or new) and a log span naming it; the handler runs under the body and
//! request time bounds ([`crate::timeouts`]), a panic is answered 500; then one
//! access log line, the request metrics, and the `traceparent` and security
//! headers ([`crate::headers`]) on the answer, panics and timeouts included.
//!
//! These were six layers of their own, and each cloned the routes' service and
//! boxed a future on every request: a measurable share of a cached GET's cost.
//! One layer does it with one clone and one box.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::error::detail_response;
use crate::headers;
use crate::timeouts::{self, Timeouts};
use orderly_core::trace_context::{TRACEPARENT, TraceContext};

/// The message of the access log line (one per answered request).
pub const ACCESS_LOG_MESSAGE: &str = "finished processing request";
/// The access log line's target, so a filter can leave it out
/// (`RUST_LOG=info,access=off`) and keep every other line with its span.
pub const ACCESS_LOG_TARGET: &str = "access";

/// The edge of `service`'s routes, with its time bounds.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    service: &'static str,
    limits: Timeouts,
}

impl Edge {
    /// The edge of `service` (its name in logs and metrics).
    pub fn new(service: &'static str, limits: Timeouts) -> Self {
        Self { service, limits }
    }
}

impl<S> Layer<S> for Edge {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService { inner, edge: *self }
    }
}

/// [`Edge`] around one route's service.
#[derive(Debug, Clone)]
pub struct EdgeService<S> {
    inner: S,
    edge: Edge,
}

impl<S> Service<Request> for EdgeService<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The service that was polled ready serves this request; a clone waits
        // for the next one (tower's rule for services that are moved into futures).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.edge, inner, req))
    }
}

async fn handle<S>(edge: Edge, mut inner: S, mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Error = Infallible> + Send,
    S::Response: IntoResponse,
    S::Future: Send,
{
    let started = Instant::now();
    let docs = headers::is_docs(req.uri().path());
    let incoming = req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
    let trace = TraceContext::continue_or_start(incoming);
    req.extensions_mut().insert(trace);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!("http", service = edge.service, method = %method,
        path = %req.uri().path(), trace_id = %trace.trace_id_hex());

    let (mut response, took) = async {
        // A panic in the handler (or in building its future) is caught here.
        let run = AssertUnwindSafe(async {
            timeouts::bounded(edge.limits, req, |req| async move {
                match inner.call(req).await {
                    Ok(response) => response.into_response(),
                    Err(never) => match never {},
                }
            })
            .await
        });
        let response = run.catch_unwind().await.unwrap_or_else(|_| {
            tracing::error!("handler panicked");
            detail_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        });
        let took = started.elapsed();
        log_answer(response.status(), took);
        (response, took)
    }
    .instrument(span)
    .await;

    record_metrics(
        edge.service,
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status(),
        took,
    );
    if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    headers::set_security_headers(response.headers_mut(), docs);
    Ok(response)
}

/// The access log line; answers of the server's own failures (5xx) at error level.
fn log_answer(status: StatusCode, took: Duration) {
    let latency = format_args!("{} ms", took.as_millis());
    let status = status.as_u16();
    if status >= 500 {
        tracing::error!(target: ACCESS_LOG_TARGET, %latency, status, "{ACCESS_LOG_MESSAGE}");
    } else {
        tracing::info!(target: ACCESS_LOG_TARGET, %latency, status, "{ACCESS_LOG_MESSAGE}");
    }
}

fn record_metrics(
    service: &'static str,
    method: &Method,
    route: &str,
    status: StatusCode,
    took: Duration,
) {
    let labels = [
        ("service", Cow::Borrowed(service)),
        ("method", label_of_method(method)),
        ("route", Cow::Owned(route.to_owned())),
        ("status", label_of_status(status)),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(took.as_secs_f64());
}

/// The method as a label without an allocation for the usual ones.
fn label_of_method(method: &Method) -> Cow<'static, str> {
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PATCH, "PATCH"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN.iter().find(|(known, _)| known == method).map_or_else(
        || Cow::Owned(method.to_string()),
        |&(_, s)| Cow::Borrowed(s),
    )
}

/// The status code as a label without an allocation for the usual ones.
fn label_of_status(status: StatusCode) -> Cow<'static, str> {
    const KNOWN: [(u16, &str); 14] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (503, "503"),
    ];
    let code = status.as_u16();
    KNOWN
        .iter()
        .find(|(known, _)| *known == code)
        .map_or_else(|| Cow::Owned(code.to_string()), |&(_, s)| Cow::Borrowed(s))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced_app() -> Router {
        let limits = Timeouts {
            body: Duration::from_secs(5),
            request: Duration::from_secs(5),
        };
        Router::new()
            .route(
                "/",
                get(|req: Request| async move {
                    req.extensions()
                        .get::<TraceContext>()
                        .map(|t| t.traceparent())
                        .unwrap_or_default()
                }),
            )
            .layer(Edge::new("test", limits))
    }

    async fn get_with_traceparent(app: Router, value: &str) -> Response {
        let req = axum::http::Request::builder()
            .uri("/")
            .header(TRACEPARENT, value)
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn the_request_gets_its_trace_context_and_the_answer_carries_it() {
        let continued = get_with_traceparent(traced_app(), VALID).await;
        let header = continued.headers()[TRACEPARENT]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(continued.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            header.as_bytes(),
            &body[..],
            "the handler saw what the response says"
        );
        let t = TraceContext::parse(&header).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(header, VALID, "a span id of its own");

        let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let replaced = get_with_traceparent(traced_app(), zeros).await;
        let t = TraceContext::parse(replaced.headers()[TRACEPARENT].to_str().unwrap())
            .expect("a valid new trace");
        assert_ne!(t.trace_id(), "0".repeat(32));
    }

    #[test]
    fn labels_are_the_method_and_the_code_as_text() {
        for method in [Method::GET, Method::PATCH, Method::OPTIONS, Method::TRACE] {
            assert_eq!(label_of_method(&method), method.as_str());
        }
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(label_of_method(&custom), "PURGE");
        for code in [200, 201, 404, 418, 429, 500, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(label_of_status(status), code.to_string());
        }
    }
}
