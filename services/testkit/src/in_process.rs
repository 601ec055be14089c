//! One request through a service's router in-process (`oneshot`), read to
//! the end, with the route that answered recorded: what the hostile-input
//! properties of auth and orders check every answer against.

use std::net::SocketAddr;
use std::sync::Mutex;

use crate::openapi::Observed;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{HeaderMap, Request};
use serde_json::Value;
use tower::ServiceExt;

/// One answer, read to the end.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// The route template that answered (`None`: no route matched).
    pub route: Option<String>,
}

impl Answer {
    /// The contract's rules for any answer: never a 500, another 5xx only
    /// when `allowed` names it, a status from `allowed` (or the fallback's
    /// 404 when no route matched), and errors as `{"detail": …}` JSON.
    pub fn check(&self, allowed: &[u16]) -> Result<(), String> {
        if self.status == 500 || (self.status >= 500 && !allowed.contains(&self.status)) {
            return Err(format!("a {} answer: {}", self.status, self.text()));
        }
        let unmatched_404 = self.route.is_none() && self.status == 404;
        if !allowed.contains(&self.status) && !unmatched_404 {
            return Err(format!(
                "status {} (route {:?}) is not one of {allowed:?}: {}",
                self.status,
                self.route,
                self.text()
            ));
        }
        if self.status >= 400 {
            crate::contract::check_error_body(self.status, &self.bytes)?;
            let content_type = self
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            if content_type != Some("application/json") {
                return Err(format!(
                    "an error answered with content-type {content_type:?}"
                ));
            }
        }
        Ok(())
    }

    /// The start of the body, for messages.
    pub fn text(&self) -> String {
        let shown = &self.bytes[..self.bytes.len().min(400)];
        String::from_utf8_lossy(shown).into_owned()
    }
}

/// Sends `request` from 127.0.0.1 through `router` and records in
/// `observed` which route answered with which status.
pub async fn send(
    router: &Router,
    observed: &Mutex<Vec<Observed>>,
    mut request: Request<Body>,
) -> Answer {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let method = request.method().to_string();
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("the body is readable")
        .to_vec();
    observed
        .lock()
        .expect("observed lock poisoned")
        .push(Observed {
            method,
            route: route.clone(),
            status,
        });
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        bytes,
        route,
    }
}
