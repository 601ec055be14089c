//! One declaration for both the router and the list of routes its OpenAPI
//! document is checked against.
//!
//! Services register their routes through [`Routes`] instead of
//! `Router::route`: every `(method, path)` lands in a [`RouteTable`], and
//! trailing-slash spellings are declared with [`Routes::alias`] as aliases of a
//! documented path. [`compare`] lists where a table and an OpenAPI document
//! disagree; [`undocumented_statuses`] lists statuses a route was seen to
//! answer that its operation does not document. Each service has a test that
//! both are empty.
//!
//! [`crate::http::finish`] adds `/health`, `/ready` and `/metrics` (and the
//! documentation routes `/docs` and `/openapi.json`, which are not listed);
//! [`ops_table`] lists the first three and [`document_ops`] adds them to a
//! service's document.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use serde_json::{Value, json};
use utoipa::openapi::OpenApi;

/// One routed `(method, path)` and the documented path it answers for
/// (itself, or the path it is an alias of).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
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
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// Both tables' routes (a service's own and [`ops_table`]).
    pub fn merge(mut self, other: RouteTable) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// The entry for a request the router matched to `template` (see [`MatchedPath`]).
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

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::GET, MethodFilter::GET, path, handler)
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::POST, MethodFilter::POST, path, handler)
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::PUT, MethodFilter::PUT, path, handler)
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.on(Method::PATCH, MethodFilter::PATCH, path, handler)
    }

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

    pub fn into_router(self) -> Router<S> {
        self.build().0
    }
}

/// The operational routes [`crate::http::finish`] adds (through [`crate::health::routes`]).
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

/// The answers kit's timeouts give on any route (kit::timeouts): 503 when a
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

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document: (METHOD, path) → its JSON.
fn operations(openapi: &OpenApi) -> BTreeMap<(String, String), Value> {
    let doc = serde_json::to_value(openapi).unwrap_or_default();
    let mut ops = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    ops.insert((method.to_ascii_uppercase(), path.clone()), op.clone());
                }
            }
        }
    }
    ops
}

/// `{name}` segments of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// Where the table and the document disagree, one sentence each; empty when
/// every routed operation is documented, every documented one routed, and each
/// operation's path parameters are the ones its template has.
pub fn compare(table: &RouteTable, openapi: &OpenApi) -> Vec<String> {
    let ops = operations(openapi);
    let routed: BTreeSet<(String, String)> = table
        .routes
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.documented_as.clone()))
        .collect();
    let mut problems = Vec::new();
    for route in &table.routes {
        let key = (
            route.method.as_str().to_string(),
            route.documented_as.clone(),
        );
        if !ops.contains_key(&key) {
            problems.push(if route.path == route.documented_as {
                format!(
                    "{} {} is routed but not in the OpenAPI document",
                    key.0, key.1
                )
            } else {
                format!(
                    "{} {} is routed as an alias of {}, which is not in the OpenAPI document",
                    key.0, route.path, key.1
                )
            });
        }
    }
    for ((method, path), op) in &ops {
        if !routed.contains(&(method.clone(), path.clone())) {
            problems.push(format!(
                "{method} {path} is in the OpenAPI document but not routed"
            ));
            continue;
        }
        let documented: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        let expected = template_params(path);
        if documented != expected {
            problems.push(format!(
                "{method} {path} documents path parameters {documented:?}, the template has {expected:?}"
            ));
        }
    }
    problems
}

/// One answer seen in a test: the request's method, the route template the
/// router matched (`None`: no route matched) and the status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observed {
    pub method: String,
    pub route: Option<String>,
    pub status: u16,
}

/// Observed statuses of routed operations that the operation's `responses` do
/// not list, one sentence each (deduplicated). Answers of unmatched requests
/// and of methods a path does not route (405) are not about an operation and
/// are skipped.
pub fn undocumented_statuses<'a>(
    table: &RouteTable,
    openapi: &OpenApi,
    observed: impl IntoIterator<Item = &'a Observed>,
) -> Vec<String> {
    let ops = operations(openapi);
    let mut problems = BTreeSet::new();
    for seen in observed {
        let Some(route) = &seen.route else { continue };
        let Ok(method) = seen.method.parse::<Method>() else {
            continue;
        };
        let Some(entry) = table.find(&method, route) else {
            continue;
        };
        let key = (
            entry.method.as_str().to_string(),
            entry.documented_as.clone(),
        );
        let status = seen.status.to_string();
        let documented = ops
            .get(&key)
            .and_then(|op| op["responses"].as_object())
            .is_some_and(|responses| responses.contains_key(&status));
        if !documented {
            problems.insert(format!(
                "{} {} answered {} (via {route}), which its OpenAPI operation does not document",
                key.0, key.1, seen.status
            ));
        }
    }
    problems.into_iter().collect()
}

/// Middleware (`Router::layer(axum::middleware::from_fn(expose_matched_path))`)
/// that copies the request's [`MatchedPath`] into the response's extensions, so
/// a test driving the router can tell which route answered.
pub async fn expose_matched_path(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;
    use utoipa::OpenApi as _;

    #[utoipa::path(get, path = "/things/{id}/", params(("id" = String, Path)),
        responses((status = 200), (status = 404)))]
    async fn get_thing() -> &'static str {
        "thing"
    }

    #[utoipa::path(post, path = "/things/", responses((status = 200)))]
    async fn post_thing() -> &'static str {
        "posted"
    }

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(get_thing, post_thing))]
    struct Doc;

    fn routes() -> Routes {
        Routes::new()
            .get("/things/{id}/", get_thing)
            .alias("/things/{id}", "/things/{id}/")
            .post("/things/", post_thing)
    }

    #[test]
    fn a_documented_table_has_no_differences() {
        assert_eq!(
            compare(&routes().table(), &Doc::openapi()),
            Vec::<String>::new()
        );
        let with_ops = routes().table().merge(ops_table());
        assert_eq!(
            compare(&with_ops, &document_ops(Doc::openapi())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_timeouts_answers_are_documented_on_every_operation() {
        #[utoipa::path(post, path = "/bodies/", request_body = String,
            responses((status = 200), (status = 503, description = "limiter down")))]
        async fn with_body() {}
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(with_body, get_thing))]
        struct BodyDoc;
        let table = Routes::<()>::new()
            .post("/bodies/", with_body)
            .get("/things/{id}/", get_thing)
            .table();
        assert_eq!(compare(&table, &BodyDoc::openapi()), Vec::<String>::new());
        let doc = serde_json::to_value(document_ops(BodyDoc::openapi())).unwrap();
        let post = &doc["paths"]["/bodies/"]["post"]["responses"];
        assert!(post.get("408").is_some(), "{post}");
        // A route's own 503 keeps its description.
        assert_eq!(post["503"]["description"], "limiter down");
        let get = &doc["paths"]["/things/{id}/"]["get"]["responses"];
        assert!(get.get("503").is_some(), "{get}");
        assert!(
            get.get("408").is_none(),
            "a GET has no body to wait for: {get}"
        );
        assert!(
            get.get("404").is_some(),
            "the route's own answers stay: {get}"
        );
    }

    #[test]
    fn an_undocumented_route_and_an_unrouted_operation_are_both_reported() {
        let table = routes().patch("/things/{id}/", get_thing).table();
        let problems = compare(&table, &Doc::openapi());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("PATCH /things/{id}/ is routed"));
        assert!(problems[1].contains("alias of /things/{id}/"));

        let table = Routes::<()>::new().get("/things/{id}/", get_thing).table();
        let problems = compare(&table, &Doc::openapi());
        assert_eq!(
            problems,
            vec!["POST /things/ is in the OpenAPI document but not routed"]
        );
        // The ops routes are only consistent together with their documentation.
        assert_eq!(
            compare(&routes().table().merge(ops_table()), &Doc::openapi()).len(),
            3
        );
    }

    #[test]
    fn a_path_parameter_missing_from_the_document_is_reported() {
        #[utoipa::path(get, path = "/other/{id}", responses((status = 200)))]
        async fn other() {}
        #[derive(utoipa::OpenApi)]
        #[openapi(paths(other))]
        struct OtherDoc;
        let table = Routes::<()>::new().get("/other/{id}", other).table();
        let problems = compare(&table, &OtherDoc::openapi());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("path parameters"));
    }

    #[test]
    fn statuses_are_checked_against_the_operation_an_alias_stands_for() {
        let seen = |method: &str, route: Option<&str>, status| Observed {
            method: method.into(),
            route: route.map(str::to_string),
            status,
        };
        let observed = [
            seen("GET", Some("/things/{id}"), 404),
            seen("GET", Some("/things/{id}/"), 200),
            seen("GET", Some("/things/{id}"), 422),
            seen("POST", Some("/things/"), 413),
            // Not an operation: skipped.
            seen("DELETE", Some("/things/{id}/"), 405),
            seen("GET", None, 404),
        ];
        let problems = undocumented_statuses(&routes().table(), &Doc::openapi(), &observed);
        assert_eq!(
            problems,
            vec![
                "GET /things/{id}/ answered 422 (via /things/{id}), which its OpenAPI operation does not document",
                "POST /things/ answered 413 (via /things/), which its OpenAPI operation does not document",
            ]
        );
    }

    #[tokio::test]
    async fn the_router_answers_aliases_like_their_path_and_exposes_the_template() {
        let router = routes()
            .into_router()
            .layer(axum::middleware::from_fn(expose_matched_path));
        for uri in ["/things/7/", "/things/7"] {
            let response = router
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{uri}");
            let matched = response.extensions().get::<MatchedPath>().unwrap();
            assert_eq!(matched.as_str(), uri.replace('7', "{id}"));
        }
    }

    #[test]
    #[should_panic(expected = "has no routes")]
    fn an_alias_of_nothing_is_a_programming_error() {
        let _ = Routes::<()>::new().alias("/a", "/a/").table();
    }
}
