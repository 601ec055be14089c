//! One declaration for both the router and the list of routes its OpenAPI
//! document is checked against.
//!
//! Services register their routes through [`Routes`] instead of
//! `Router::route`: every `(method, path)` lands in a [`RouteTable`], and
//! trailing-slash spellings are declared with [`Routes::alias`] as aliases of a
//! documented path. `orderly_testkit::openapi` checks a table against the
//! service's OpenAPI document.
//!
//! [`crate::server::finish`] adds `/health`, `/ready` and `/metrics` (and the
//! documentation routes `/docs` and `/openapi.json`, which are not listed);
//! [`ops_table`] lists the first three and [`document_ops`] adds them to a
//! service's document.

use std::collections::BTreeMap;

use axum::Router;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

/// One routed `(method, path)` and the documented path it answers for
/// (itself, or the path it is an alias of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The method routed.
    pub method: Method,
    /// The router's template, e.g. `/orders/{order_id}`.
    pub path: String,
    /// The OpenAPI path, e.g. `/orders/{order_id}/`.
    pub documented_as: String,
}

/// The routes a service answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<RouteEntry>,
}

impl RouteTable {
    /// Every routed `(method, path)`.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// Both tables' routes (a service's own and [`ops_table`]).
    pub fn merge(mut self, other: RouteTable) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// The entry for a request the router matched to `template` (see [`axum::extract::MatchedPath`]).
    pub fn find(&self, method: &Method, template: &str) -> Option<&RouteEntry> {
        self.routes
            .iter()
            .find(|r| r.method == *method && r.path == template)
    }

    fn push(&mut self, method: Method, path: &str, documented_as: &str) {
        self.routes.push(RouteEntry {
            method,
            path: path.to_string(),
            documented_as: documented_as.to_string(),
        });
    }
}

/// A router under construction that records what it routes.
pub struct Routes<S = ()> {
    paths: BTreeMap<String, MethodRouter<S>>,
    table: RouteTable,
    /// (alias, documented path), resolved when the router is built.
    aliases: Vec<(String, String)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            paths: BTreeMap::new(),
            table: RouteTable::default(),
            aliases: Vec::new(),
        }
    }

    fn on<H, T>(mut self, method: Method, filter: MethodFilter, path: &str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let routed = self.paths.remove(path).unwrap_or_default();
        self.paths
            .insert(path.to_string(), routed.on(filter, handler));
        self.table.push(method, path, path);
        self
    }

    /// Route `GET path` to `handler`.
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::GET, MethodFilter::GET, path, handler)
    }

    /// Route `POST path` to `handler`.
    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::POST, MethodFilter::POST, path, handler)
    }

    /// Route `PUT path` to `handler`.
    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::PUT, MethodFilter::PUT, path, handler)
    }

    /// Route `PATCH path` to `handler`.
    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::PATCH, MethodFilter::PATCH, path, handler)
    }

    /// Route `DELETE path` to `handler`.
    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::DELETE, MethodFilter::DELETE, path, handler)
    }

    /// Answer `alias` (e.g. `/orders`) exactly like the documented `path`
    /// (`/orders/`), every method. `path` must be registered by the time the
    /// router is built.
    pub fn alias(mut self, alias: &str, path: &str) -> Self {
        self.aliases.push((alias.to_string(), path.to_string()));
        self
    }

    /// What [`Self::into_router`] will route.
    pub fn table(&self) -> RouteTable {
        let mut table = self.table.clone();
        for (alias, path) in &self.aliases {
            let methods: Vec<Method> = self
                .table
                .routes
                .iter()
                .filter(|r| r.path == *path)
                .map(|r| r.method.clone())
                .collect();
            assert!(
                !methods.is_empty(),
                "alias {alias} names {path}, which has no routes"
            );
            for method in methods {
                table.push(method, alias, path);
            }
        }
        table
    }

    /// The router and the table of what it routes.
    pub fn build(self) -> (Router<S>, RouteTable) {
        let table = self.table();
        let mut router = Router::new();
        for (alias, path) in &self.aliases {
            router = router.route(alias, self.paths[path].clone());
        }
        for (path, routed) in self.paths {
            router = router.route(&path, routed);
        }
        (router, table)
    }

    /// The router alone.
    pub fn into_router(self) -> Router<S> {
        self.build().0
    }
}

/// The operational routes [`crate::server::finish`] adds (through [`crate::health::routes`]).
pub fn ops_table() -> RouteTable {
    let mut table = RouteTable::default();
    for path in OPS_PATHS {
        table.push(Method::GET, path, path);
    }
    table
}

const OPS_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

/// `openapi` with the operational routes documented (tag `ops`).
pub fn document_ops(mut openapi: OpenApi) -> OpenApi {
    let ops = json!({
        "/health": {"get": {
            "tags": ["ops"],
            "summary": "Liveness: the process answers (no dependency is touched)",
            "operationId": "health",
            "responses": {"200": {
                "description": "Alive",
                "content": {"application/json": {"example": {"status": "ok"}}}
            }}
        }},
        "/ready": {"get": {
            "tags": ["ops"],
            "summary": "Readiness: the database, cache and bus answer",
            "operationId": "ready",
            "responses": {
                "200": {"description": "Every dependency answers"},
                "503": {"description": "A dependency does not answer; the body names it"}
            }
        }},
        "/metrics": {"get": {
            "tags": ["ops"],
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {"200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}
            }}
        }}
    });
    let items: BTreeMap<String, utoipa::openapi::PathItem> =
        serde_json::from_value(ops).expect("the ops paths are a valid OpenAPI fragment");
    for (path, item) in items {
        openapi.paths.paths.insert(path, item);
    }
    document_timeouts(openapi)
}

/// The answers the timeouts give on any route ([`crate::timeouts`]): 503 when a
/// request is not answered in time, and 408 when its body stalls.
fn document_timeouts(mut openapi: OpenApi) -> OpenApi {
    let mut paths = match serde_json::to_value(&openapi.paths.paths) {
        Ok(Value::Object(paths)) => paths,
        _ => return openapi,
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let has_body = op.contains_key("requestBody");
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            responses.entry("503").or_insert_with(
                || json!({"description": "Request timed out (HTTP_REQUEST_TIMEOUT_SECONDS)"}),
            );
            if has_body {
                responses
                    .entry("408")
                    .or_insert_with(|| json!({"description": "Request body not received in time (HTTP_BODY_TIMEOUT_SECONDS)"}));
            }
        }
    }
    if let Ok(paths) = serde_json::from_value(Value::Object(paths)) {
        openapi.paths.paths = paths;
    }
    openapi
}

/// The HTTP methods an OpenAPI path item may hold operations for.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Declares the `bearer` security scheme (a JWT in `Authorization: Bearer`) in
/// a service's OpenAPI document, for the operations that need an access token.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "has no routes")]
    fn an_alias_of_nothing_is_a_programming_error() {
        let _ = Routes::<()>::new().alias("/a", "/a/").table();
    }
}
