//! The CORS layer for the origins `CORS_ALLOWED_ORIGINS` allows (see
//! [`orderly_core::config::CorsOrigins`] for what they are and how they parse).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, request::Parts};
use orderly_core::config::CorsOrigins;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a browser may send cross-origin.
pub const ALLOWED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "traceparent",
    "tracestate",
];

/// Response headers a browser script may read (the rate limit's).
pub const EXPOSED_HEADERS: [&str; 4] = [
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The tower-http layer: preflights answered from the allow-list;
/// credentials allowed except with `*`.
pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let headers = ALLOWED_HEADERS.map(HeaderName::from_static);
    let exposed = EXPOSED_HEADERS.map(HeaderName::from_static);
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(headers)
        .expose_headers(exposed)
        .max_age(PREFLIGHT_MAX_AGE);
    match origins {
        CorsOrigins::Any => layer.allow_origin(AllowOrigin::any()),
        CorsOrigins::List(list) => layer
            .allow_credentials(true)
            .allow_origin(AllowOrigin::list(
                list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
            )),
        CorsOrigins::Localhost => {
            layer
                .allow_credentials(true)
                .allow_origin(AllowOrigin::predicate(|origin: &HeaderValue, _: &Parts| {
                    origin
                        .to_str()
                        .is_ok_and(|o| CorsOrigins::Localhost.allows(o))
                }))
        }
    }
}
