//! `/openapi.json` describes exactly what the router routes, and every status
//! a route answers is documented for its operation.

use serde_json::json;

use orderly_orders::openapi;
use orderly_orders::routes::route_table;
use orderly_testkit::openapi::compare;

use crate::helpers::{Backend, TestApp};

#[test]
fn the_route_table_and_the_openapi_document_agree() {
    let problems = compare(&route_table(), &openapi());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_the_checked_one() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let served = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.json, serde_json::to_value(openapi()).unwrap());
    for path in ["/health", "/ready", "/metrics"] {
        assert!(served.json["paths"][path]["get"].is_object(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_in_the_table_is_answered_by_that_route() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let id = app.create_order(1, "x").await;
    for route in route_table().routes() {
        let uri = route
            .path
            .replace("{order_id}", &id)
            .replace("{user_id}", "1");
        let body = match route.method.as_str() {
            "POST" => {
                Some(json!({"items": [{"name": "a", "price": 1, "quantity": 1}], "total_price": 1}))
            }
            "PATCH" => Some(json!({"status": "CANCELED"})),
            _ => None,
        };
        let answer = app.call(route.method.as_str(), &uri, Some(1), body).await;
        assert_eq!(
            answer.route.as_deref(),
            Some(route.path.as_str()),
            "{} {uri} was not answered by its route",
            route.method
        );
        assert!(
            ![404, 405].contains(&answer.status) || answer.json["detail"] == "Order not found",
            "{} {uri}: {}",
            route.method,
            answer.text()
        );
    }
}

/// Method, URI, caller (`None`: no token), body, the status it must get.
type Call = (
    &'static str,
    String,
    Option<i64>,
    Option<serde_json::Value>,
    u16,
);

#[tokio::test(flavor = "multi_thread")]
async fn every_status_each_route_answers_is_documented() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let mine = app.create_order(1, "mine").await;
    let theirs = app.create_order(2, "theirs").await;
    let unknown = uuid::Uuid::nil();
    let order = json!({"items": [{"name": "a", "price": 1, "quantity": 1}], "total_price": 1});
    let too_big = json!({"pad": "x".repeat(300 * 1024)});
    let calls: Vec<Call> = vec![
        ("POST", "/orders/".into(), Some(1), Some(order.clone()), 200),
        ("POST", "/orders".into(), None, Some(order.clone()), 401),
        (
            "POST",
            "/orders/".into(),
            Some(1),
            Some(json!({"items": []})),
            422,
        ),
        (
            "POST",
            "/orders/".into(),
            Some(1),
            Some(too_big.clone()),
            413,
        ),
        ("GET", format!("/orders/{mine}/"), Some(1), None, 200),
        ("GET", format!("/orders/{mine}"), None, None, 401),
        ("GET", format!("/orders/{theirs}/"), Some(1), None, 403),
        ("GET", format!("/orders/{unknown}/"), Some(1), None, 404),
        ("GET", "/orders/%FF/".into(), Some(1), None, 422),
        // The default policy: the owner may cancel, not pay.
        (
            "PATCH",
            format!("/orders/{mine}/"),
            Some(1),
            Some(json!({"status": "PAID"})),
            403,
        ),
        (
            "PATCH",
            format!("/orders/{mine}/"),
            Some(1),
            Some(json!({"status": "CANCELED"})),
            200,
        ),
        // Canceled already: a second cancel is no legal transition.
        (
            "PATCH",
            format!("/orders/{mine}/"),
            Some(1),
            Some(json!({"status": "CANCELED"})),
            409,
        ),
        (
            "PATCH",
            format!("/orders/{theirs}/"),
            Some(1),
            Some(json!({"status": "PAID"})),
            403,
        ),
        (
            "PATCH",
            format!("/orders/{unknown}"),
            Some(1),
            Some(json!({"status": "PAID"})),
            404,
        ),
        (
            "PATCH",
            format!("/orders/{mine}/"),
            Some(1),
            Some(json!({"status": "LOST"})),
            422,
        ),
        (
            "PATCH",
            format!("/orders/{mine}/"),
            Some(1),
            Some(too_big),
            413,
        ),
        ("PATCH", format!("/orders/{mine}/"), None, None, 401),
        ("GET", "/orders/user/1/".into(), Some(1), None, 200),
        ("GET", "/orders/user/2".into(), Some(1), None, 403),
        ("GET", "/orders/user/1/?limit=0".into(), Some(1), None, 422),
        ("GET", "/orders/user/x/".into(), Some(1), None, 422),
        ("GET", "/orders/user/1/".into(), None, None, 401),
        ("GET", "/health".into(), None, None, 200),
        ("GET", "/ready".into(), None, None, 200),
        ("GET", "/metrics".into(), None, None, 200),
    ];
    for (method, uri, user, body, want) in calls {
        let answer = app.call(method, &uri, user, body).await;
        assert_eq!(answer.status, want, "{method} {uri}: {}", answer.text());
        answer.check(&[want]).unwrap();
    }
    // 429 on every route once the limit is used up.
    let limited = TestApp::start(Backend::Sqlite, "1/minute").await.unwrap();
    let id = limited.create_order(1, "x").await;
    for (method, uri, body) in [
        ("POST", "/orders/".to_string(), Some(order)),
        ("GET", format!("/orders/{id}/"), None),
        (
            "PATCH",
            format!("/orders/{id}/"),
            Some(json!({"status": "PAID"})),
        ),
        ("GET", "/orders/user/1/".to_string(), None),
    ] {
        let answer = limited.call(method, &uri, Some(1), body).await;
        assert_eq!(answer.status, 429, "{method} {uri}: {}", answer.text());
        answer.check(&[429]).unwrap();
    }
    for app in [&app, &limited] {
        let undocumented = app.undocumented();
        assert!(undocumented.is_empty(), "{}", undocumented.join("\n"));
    }
}
