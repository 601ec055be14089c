//! Security headers on every response of auth and orders.
//!
//! The APIs answer JSON only, so their Content-Security-Policy allows nothing.
//! The Swagger UI under `/docs` (the vendored swagger-ui 5 bundle) loads its
//! scripts, styles and favicons from the same origin, uses `data:` images in
//! its stylesheet and inline `style` attributes, and fetches `/openapi.json`
//! (and "Try it out" requests) from the same origin: its policy allows exactly
//! that. It needs no inline script and no `eval`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Where the services serve the Swagger UI.
pub const DOCS_PATH: &str = "/docs";

/// The policy of every API (JSON) response.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The policy of the Swagger UI pages and assets.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is the Swagger UI's (it gets [`DOCS_CSP`]).
pub fn is_docs(path: &str) -> bool {
    path == DOCS_PATH
        || path
            .strip_prefix(DOCS_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and a
/// Content-Security-Policy on every response (`docs`: one of the Swagger UI's);
/// `Cache-Control: no-store` on API responses that do not choose their own
/// caching (tokens, orders and user data must not be kept by browsers or
/// proxies; the JWKS sets its own). `crate::edge` calls it on every answer.
pub fn set_security_headers(headers: &mut HeaderMap, docs: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let csp = if docs { DOCS_CSP } else { API_CSP };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if !docs {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
}

/// The headers [`set_security_headers`] sets on every response, for tests.
pub const ALWAYS: [(HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_docs_tree_is_docs() {
        assert!(is_docs("/docs"));
        assert!(is_docs("/docs/"));
        assert!(is_docs("/docs/swagger-ui.css"));
        assert!(!is_docs("/docsx"));
        assert!(!is_docs("/openapi.json"));
        assert!(!is_docs("/orders/docs"));
    }
}
