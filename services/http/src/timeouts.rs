//! Bounds on how long one request may take once its headers are in: the body
//! must keep coming (tower-http's [`TimeoutBody`]: at most `body` between two
//! pieces), and the whole request must be answered within `request`.
//!
//! Both answer in the contract's shape: 408 `{"detail": …}` when the client was
//! too slow sending its body (the connection is then closed, as the rest of the
//! body may still arrive), 503 `{"detail": …}` when the handler was too slow.
//! (Slow request headers are the server's business: `http::serve` closes the
//! connection.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tower_http::timeout::{TimeoutBody, TimeoutError};

use crate::error::detail_response;

/// Detail of the 408 answer.
pub const BODY_TOO_SLOW: &str = "Request body was not received in time";
/// Detail of the 503 answer.
pub const REQUEST_TOO_SLOW: &str = "Request timed out";

/// The two bounds [`bounded`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest wait for the next piece of the body.
    pub body: Duration,
    /// Longest time from the request's headers to its response.
    pub request: Duration,
}

const STARTED: u8 = 1;
const FINISHED: u8 = 2;
const TIMED_OUT: u8 = 4;

/// What became of a request body, seen from outside the handler.
#[derive(Default)]
struct BodyState(AtomicU8);

impl BodyState {
    fn set(&self, bit: u8) {
        self.0.fetch_or(bit, Ordering::Relaxed);
    }
    fn has(&self, bit: u8) -> bool {
        self.0.load(Ordering::Relaxed) & bit != 0
    }
    /// The handler was reading the body and had not got all of it.
    fn still_coming(&self) -> bool {
        self.has(STARTED) && !self.has(FINISHED)
    }
}

/// A request body under [`TimeoutBody`] that reports whether it was read to
/// the end or timed out.
struct WatchedBody {
    inner: Pin<Box<TimeoutBody<Body>>>,
    state: Arc<BodyState>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.state.set(STARTED);
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.state.set(FINISHED),
            Poll::Ready(Some(Err(e))) if e.is::<TimeoutError>() => self.state.set(TIMED_OUT),
            _ => {}
        }
        polled
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `handle` on `req` under the body and request bounds, answered with
/// `{"detail": …}` when one is exceeded.
pub async fn bounded<F, Fut>(limits: Timeouts, req: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (parts, body) = req.into_parts();
    let state = if body.is_end_stream() {
        None
    } else {
        Some(Arc::new(BodyState::default()))
    };
    let body = match &state {
        None => body,
        Some(state) => Body::new(WatchedBody {
            inner: Box::pin(TimeoutBody::new(limits.body, body)),
            state: state.clone(),
        }),
    };
    // Cheap copies (shared bytes) for the log line of a timeout.
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let timed_out = || state.as_ref().is_some_and(|s| s.has(TIMED_OUT));
    let still_coming = || state.as_ref().is_some_and(|s| s.still_coming());
    let outcome =
        tokio::time::timeout(limits.request, handle(Request::from_parts(parts, body))).await;
    match outcome {
        Ok(_) if timed_out() => body_too_slow(&method, uri.path()),
        Ok(response) => response,
        Err(_) if timed_out() || still_coming() => body_too_slow(&method, uri.path()),
        Err(_) => {
            let path = uri.path();
            tracing::warn!(%method, %path, limit = ?limits.request, "request took too long; answered 503");
            detail_response(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TOO_SLOW)
        }
    }
}

fn body_too_slow(method: &axum::http::Method, path: &str) -> Response {
    tracing::info!(%method, %path, "request body too slow; answered 408");
    let mut response = detail_response(StatusCode::REQUEST_TIMEOUT, BODY_TOO_SLOW);
    // The rest of the body may still arrive: do not read it as the next request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
