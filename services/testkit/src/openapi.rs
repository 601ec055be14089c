//! Whether a service's routes and its OpenAPI document agree: [`compare`]
//! lists where a route table and a document disagree; [`undocumented_statuses`]
//! lists statuses a route was seen to answer that its operation does not
//! document. Each service has a test that both are empty.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use orderly_http::routes::{METHODS, RouteTable};
use serde_json::Value;
use utoipa::openapi::OpenApi;

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
        .routes()
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.documented_as.clone()))
        .collect();
    let mut problems = Vec::new();
    for route in table.routes() {
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
    use orderly_http::routes::{Routes, document_ops, ops_table};
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
}
