//! Hostile input on every body, path and query parameter of the orders API:
//! never a 5xx, only statuses the contract allows for the route, errors always
//! `{"detail": …}`, and every status seen documented for its operation.

use axum::body::Body;
use axum::http::Request;
use orderly_testkit::hostile::{
    self, bad_authorization, hostile_string, json_content_type, number_literal, object_of,
    path_segment, query_string, quote, raw_body,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

/// Cases per property (override with PROPTEST_CASES).
const CASES: u32 = 512;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Names that pass validation most of the time, hostile ones otherwise.
fn item_name() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "[a-zA-Z ]{1,20}",
        3 => hostile_string(),
    ]
    .boxed()
}

/// An order whose total adds up, so it is accepted unless a name is refused.
fn valid_order() -> BoxedStrategy<String> {
    prop::collection::vec((item_name(), 1u64..1_000_000, 1u64..5), 1..4)
        .prop_map(|items| {
            let total: u64 = items.iter().map(|(_, cents, q)| cents * q).sum();
            let items: Vec<String> = items
                .iter()
                .map(|(name, cents, q)| {
                    format!(
                        r#"{{"name":{},"price":{}.{:02},"quantity":{q}}}"#,
                        quote(name),
                        cents / 100,
                        cents % 100
                    )
                })
                .collect();
            format!(
                r#"{{"items":[{}],"total_price":{}.{:02}}}"#,
                items.join(","),
                total / 100,
                total % 100
            )
        })
        .boxed()
}

fn price() -> BoxedStrategy<String> {
    prop_oneof![
        2 => (1u64..10_000_000).prop_map(|c| format!("{}.{:02}", c / 100, c % 100)),
        3 => number_literal(),
    ]
    .boxed()
}

/// Anything shaped roughly like `OrderCreate`.
fn order_like() -> BoxedStrategy<String> {
    let item = object_of(vec![
        ("name", item_name().prop_map(|s| quote(&s)).boxed()),
        ("price", price()),
        ("quantity", number_literal()),
    ]);
    let items = prop::collection::vec(item, 0..4)
        .prop_map(|items| format!("[{}]", items.join(",")))
        .boxed();
    prop_oneof![
        2 => valid_order(),
        3 => object_of(vec![("items", items), ("total_price", price())]),
    ]
    .boxed()
}

fn status_like() -> BoxedStrategy<String> {
    object_of(vec![(
        "status",
        prop_oneof![
            3 => select(&["PENDING", "PAID", "SHIPPED", "CANCELED"][..]).prop_map(quote),
            1 => select(&["paid", "Paid", " PAID", "PAID\u{0}", "DELETED", ""][..]).prop_map(quote),
            1 => hostile_string().prop_map(|s| quote(&s)),
            1 => number_literal(),
        ]
        .boxed(),
    )])
}

/// A request body with its content type.
fn request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(Body::from(body)).ok()
}

/// Orders of user 1 (the caller) and of user 2, for ids that exist.
struct World {
    app: TestApp,
    mine: Vec<String>,
    theirs: String,
}

async fn world(backend: Backend) -> Option<World> {
    let app = TestApp::start(backend, "1000000/minute").await?;
    let mut mine = Vec::new();
    for name in ["one", "two", "three"] {
        mine.push(app.create_order(1, name).await);
    }
    let theirs = app.create_order(2, "theirs").await;
    Some(World { app, mine, theirs })
}

impl World {
    fn ids(&self) -> Vec<String> {
        let mut ids = self.mine.clone();
        ids.push(self.theirs.clone());
        ids
    }

    fn finish(&self, what: &str, cases: u32) {
        eprintln!(
            "{what}: {cases} generated cases, statuses seen {:?}",
            self.app.status_counts()
        );
        let undocumented = self.app.undocumented();
        assert!(
            undocumented.is_empty(),
            "statuses missing from the OpenAPI document:\n{}",
            undocumented.join("\n")
        );
    }
}

fn create_orders_from_hostile_bodies(backend: Backend, cases: u32) {
    let rt = runtime();
    let Some(world) = rt.block_on(world(backend)) else {
        return;
    };
    let token = world.app.token(1);
    let strategy = (
        raw_body(order_like()),
        json_content_type(),
        select(&["/orders/", "/orders"][..]),
        prop::option::weighted(0.2, "[!-~]{0,300}"),
    );
    hostile::runner(cases)
        .run(&strategy, |(body, content_type, path, key)| {
            let Some(mut req) = request(
                "POST",
                path,
                Some(&token),
                content_type.as_deref(),
                body.clone(),
            ) else {
                return Err(TestCaseError::reject("not a valid request"));
            };
            if let Some(key) = &key {
                match axum::http::HeaderValue::from_str(key) {
                    Ok(v) => {
                        req.headers_mut().insert("idempotency-key", v);
                    }
                    Err(_) => return Err(TestCaseError::reject("not a header value")),
                }
            }
            let answer = rt.block_on(world.app.send(req));
            answer
                .check(&[200, 413, 422])
                .map_err(TestCaseError::fail)?;
            if answer.status == 200 {
                // Accepted: the items come back exactly as sent, for the token's user.
                let sent: Value = serde_json::from_slice(&body).map_err(|e| {
                    TestCaseError::fail(format!("accepted a body serde_json refuses: {e}"))
                })?;
                let got = &answer.json;
                prop_assert_eq!(&got["user_id"], &json!(1));
                prop_assert_eq!(&got["status"], &json!("PENDING"));
                let sent_items = sent["items"].as_array().cloned().unwrap_or_default();
                let got_items = got["items"].as_array().cloned().unwrap_or_default();
                prop_assert_eq!(sent_items.len(), got_items.len());
                for (s, g) in sent_items.iter().zip(&got_items) {
                    // Items may arrive as objects or (serde's sequence form) arrays.
                    let name = s.get("name").or_else(|| s.get(0));
                    prop_assert_eq!(name, Some(&g["name"]));
                }
                let id = got["id"].as_str().unwrap_or_default();
                let read = rt.block_on(world.app.call(
                    "GET",
                    &format!("/orders/{id}/"),
                    Some(1),
                    None,
                ));
                prop_assert_eq!(read.status, 200);
                prop_assert_eq!(&read.json, got);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    world.finish("POST /orders/", cases);
}

#[test]
fn creating_orders_from_hostile_bodies_never_fails_the_server() {
    create_orders_from_hostile_bodies(Backend::Sqlite, hostile::cases(CASES));
}

#[test]
fn creating_orders_from_hostile_bodies_never_fails_the_server_on_postgres() {
    create_orders_from_hostile_bodies(Backend::Postgres, hostile::cases(CASES / 2));
}

#[test]
fn hostile_order_ids_and_status_bodies_never_fail_the_server() {
    let rt = runtime();
    let world = rt.block_on(world(Backend::Sqlite)).expect("SQLite");
    let token = world.app.token(1);
    let strategy = (
        path_segment(world.ids()),
        any::<bool>(),
        select(&["/", ""][..]),
        raw_body(status_like()),
        json_content_type(),
    );
    let cases = hostile::cases(CASES);
    hostile::runner(cases)
        .run(&strategy, |(segment, patch, slash, body, content_type)| {
            let uri = format!("/orders/{segment}{slash}");
            let (method, allowed): (&str, &[u16]) = if patch {
                ("PATCH", &[200, 403, 404, 409, 413, 422])
            } else {
                ("GET", &[200, 403, 404, 422])
            };
            let body = if patch { body } else { Vec::new() };
            let Some(req) = request(method, &uri, Some(&token), content_type.as_deref(), body)
            else {
                return Err(TestCaseError::reject("not a valid URI"));
            };
            let answer = rt.block_on(world.app.send(req));
            answer.check(allowed).map_err(TestCaseError::fail)?;
            if answer.status == 403 {
                prop_assert_eq!(&answer.json["detail"], &json!("Not authorized"));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    world.finish("GET|PATCH /orders/{order_id}/", cases);
}

#[test]
fn hostile_user_ids_and_list_queries_never_fail_the_server() {
    let rt = runtime();
    let world = rt.block_on(world(Backend::Sqlite)).expect("SQLite");
    let token = world.app.token(1);
    // Hostile queries, and well-formed pages whose length is known.
    let query = prop_oneof![
        3 => query_string(&["limit", "offset", "status", "user_id"]).prop_map(|q| (q, None)),
        1 => (1usize..1001, 0usize..5)
            .prop_map(|(limit, offset)| (format!("limit={limit}&offset={offset}"), Some((limit, offset)))),
    ];
    let strategy = (
        path_segment(vec!["1".into(), "2".into()]),
        select(&["/", ""][..]),
        query,
    );
    let cases = hostile::cases(CASES);
    hostile::runner(cases)
        .run(&strategy, |(segment, slash, (query, page))| {
            let uri = format!("/orders/user/{segment}{slash}?{query}");
            let Some(req) = request("GET", &uri, Some(&token), None, Vec::new()) else {
                return Err(TestCaseError::reject("not a valid URI"));
            };
            let answer = rt.block_on(world.app.send(req));
            answer
                .check(&[200, 403, 422])
                .map_err(TestCaseError::fail)?;
            if answer.status == 200 {
                let orders = answer.json.as_array().cloned().unwrap_or_default();
                prop_assert!(orders.len() <= world.mine.len());
                prop_assert!(orders.iter().all(|o| o["user_id"] == json!(1)));
                if let (Some((limit, offset)), "1") = (page, segment.as_str()) {
                    let expected = world.mine.len().saturating_sub(offset).min(limit);
                    prop_assert_eq!(orders.len(), expected);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    world.finish("GET /orders/user/{user_id}/", cases);
}

#[test]
fn hostile_authorization_headers_are_always_401() {
    let rt = runtime();
    let world = rt.block_on(world(Backend::Sqlite)).expect("SQLite");
    let id = world.mine[0].clone();
    let targets: Vec<(&str, String)> = vec![
        ("POST", "/orders/".into()),
        ("GET", format!("/orders/{id}/")),
        ("PATCH", format!("/orders/{id}")),
        ("GET", "/orders/user/1/".into()),
    ];
    let strategy = (select(targets), bad_authorization());
    let cases = hostile::cases(CASES);
    hostile::runner(cases)
        .run(&strategy, |((method, uri), authorization)| {
            let Ok(value) = axum::http::HeaderValue::from_str(&authorization) else {
                return Err(TestCaseError::reject("not a header value"));
            };
            let mut req = request(method, &uri, None, Some("application/json"), b"{}".to_vec())
                .expect("a valid request");
            req.headers_mut().insert("authorization", value);
            let answer = rt.block_on(world.app.send(req));
            answer.check(&[401]).map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                answer
                    .headers
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer")
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    world.finish("Authorization on /orders/*", cases);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_nesting_is_422_and_past_the_body_limit_413_never_a_crash() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let id = app.create_order(1, "x").await;
    let token = app.token(1);
    let cases = [
        (hostile::nested(100_000, false), 422),
        (hostile::nested(40_000, true), 422),
        (
            format!(r#"{{"items":{}}}"#, hostile::nested(100_000, false)),
            422,
        ),
        (
            format!(r#"{{"status":{}}}"#, hostile::nested(40_000, true)),
            422,
        ),
        (hostile::nested(150_000, false), 413),
        (
            format!(r#"{{"items":[],"pad":"{}"}}"#, "x".repeat(256 * 1024)),
            413,
        ),
    ];
    for (body, want) in cases {
        for (method, uri) in [
            ("POST", "/orders/".to_string()),
            ("PATCH", format!("/orders/{id}/")),
        ] {
            let req = request(
                method,
                &uri,
                Some(&token),
                Some("application/json"),
                body.clone().into_bytes(),
            )
            .unwrap();
            let answer = app.send(req).await;
            assert_eq!(
                answer.status,
                want,
                "{method} {} bytes: {}",
                body.len(),
                answer.text()
            );
            answer.check(&[want]).unwrap();
        }
    }
    assert!(app.undocumented().is_empty(), "{:?}", app.undocumented());
}

#[tokio::test(flavor = "multi_thread")]
async fn overflowing_prices_quantities_and_totals_are_422_never_500() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    let token = app.token(1);
    let big = [
        "1e300",
        "-1e300",
        "1e400",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "99999999999999999999999999999",
        "4.9e-324",
        "1e-400",
    ];
    let mut bodies = Vec::new();
    for n in big {
        bodies.push(format!(
            r#"{{"items":[{{"name":"a","price":{n},"quantity":1}}],"total_price":1}}"#
        ));
        bodies.push(format!(
            r#"{{"items":[{{"name":"a","price":1,"quantity":{n}}}],"total_price":1}}"#
        ));
        bodies.push(format!(
            r#"{{"items":[{{"name":"a","price":1,"quantity":1}}],"total_price":{n}}}"#
        ));
    }
    // Every field within its bounds, but the line is more cents than a total
    // may hold: this one used to be accepted with a total of 1.
    bodies.push(
        r#"{"items":[{"name":"a","price":1e10,"quantity":1000000},{"name":"b","price":1,"quantity":1}],"total_price":1}"#.into(),
    );
    for body in bodies {
        let req = request(
            "POST",
            "/orders/",
            Some(&token),
            Some("application/json"),
            body.clone().into_bytes(),
        )
        .unwrap();
        let answer = app.send(req).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text());
        answer.check(&[422]).unwrap();
    }
    // Nothing was stored.
    let list = app.call("GET", "/orders/user/1/", Some(1), None).await;
    assert_eq!(list.json, json!([]));
}

/// Names that must round-trip byte for byte (NUL is refused: no store keeps it).
const VERBATIM_NAMES: &[&str] = &[
    "'; DROP TABLE orders; --",
    "Robert'); DROP TABLE users;--",
    "1' OR '1'='1' --",
    "\" OR \"\"=\"",
    "' UNION SELECT password FROM users --",
    "%s%n%x ${jndi:ldap://x} {{7*7}}",
    "<script>alert(1)</script>",
    "\u{202e}gnp.exe",
    "💥🔥 ünïcødé 日本語 עברית العربية",
    "e\u{301}\u{301}\u{301}",
    "\u{feff}bom \u{10ffff}\u{fffd}",
    "back\\slash \\u0000 \"quoted\"",
    "  padded\ttab\r\n  ",
];

async fn names_round_trip(app: &TestApp) {
    let items: Vec<Value> = VERBATIM_NAMES
        .iter()
        .map(|n| json!({"name": n, "price": 1.5, "quantity": 2}))
        .collect();
    let total = 3.0 * VERBATIM_NAMES.len() as f64;
    let created = app
        .call(
            "POST",
            "/orders/",
            Some(1),
            Some(json!({"items": items, "total_price": total})),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json["id"].as_str().unwrap().to_string();
    let read = app
        .call("GET", &format!("/orders/{id}/"), Some(1), None)
        .await;
    let listed = app
        .call("GET", "/orders/user/1/?limit=1", Some(1), None)
        .await;
    for (from, order) in [
        ("POST", &created.json),
        ("GET", &read.json),
        ("list", &listed.json[0]),
    ] {
        let names: Vec<&str> = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, VERBATIM_NAMES, "{from}");
    }
    // The tables are still there and the order is a normal one.
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    let nul = app
        .call(
            "POST",
            "/orders/",
            Some(1),
            Some(json!({"items": [{"name": "a\u{0}b", "price": 1, "quantity": 1}], "total_price": 1})),
        )
        .await;
    assert_eq!(nul.status, 422, "{}", nul.text());
    assert_eq!(
        nul.json["detail"][0]["loc"],
        json!(["body", "items", 0, "name"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_unicode_item_names_are_stored_and_returned_verbatim() {
    let app = TestApp::start(Backend::Sqlite, "1000/minute")
        .await
        .unwrap();
    names_round_trip(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_unicode_item_names_are_stored_and_returned_verbatim_on_postgres() {
    let Some(app) = TestApp::start(Backend::Postgres, "1000/minute").await else {
        return;
    };
    names_round_trip(&app).await;
}
