//! Hostile bytes through the real server (hyper, the body limit, the HTTP edge's
//! extractors): invalid UTF-8, truncated JSON, deep nesting, oversize bodies,
//! wrong content types, `%FF`/`%00` in paths and queries; and SQL-looking and
//! Unicode strings that must come back verbatim. The property runs with many
//! generated cases are in-process (services/{orders,auth}/tests).

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{TestApp, one_item_order, spawn_app};

struct Answer {
    status: u16,
    content_type: Option<String>,
    json: Value,
    text: String,
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut request = app.http.request(method, url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = response.bytes().await.expect("a body");
    Answer {
        status,
        content_type,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
    }
}

/// `{"detail": "..."}`, or for 422 `{"detail": [{"loc", "msg", "type"}, …]}`, as JSON.
fn assert_contract_error(answer: &Answer, want: u16, what: &str) {
    assert_eq!(answer.status, want, "{what}: {}", answer.text);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "{what}"
    );
    match &answer.json["detail"] {
        Value::String(_) => {}
        Value::Array(items) if want == 422 && !items.is_empty() => {
            for item in items {
                assert!(item["loc"].is_array(), "{what}: {item}");
                assert!(item["msg"].is_string(), "{what}: {item}");
                assert!(item["type"].is_string(), "{what}: {item}");
            }
        }
        other => panic!("{what}: detail {other} is off the contract"),
    }
}

fn nested(depth: usize, objects: bool) -> Vec<u8> {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_hostile_bodies_get_the_contracts_422_or_413_and_the_server_stays_up() {
    let app = spawn_app().await;
    let (_, token) = app.user("hostile@example.com").await;
    let json = Some("application/json");
    let bodies: Vec<(&str, Option<&str>, Vec<u8>, u16)> =
        vec![
        (
            "invalid UTF-8 in a string",
            json,
            b"{\"items\":[{\"name\":\"\xff\xfe\",\"price\":1,\"quantity\":1}],\"total_price\":1}"
                .to_vec(),
            422,
        ),
        ("invalid UTF-8 only", json, b"\xff\xfe\xfd\x00\x80".to_vec(), 422),
        ("truncated JSON", json, b"{\"items\":[{\"name\":\"a\"".to_vec(), 422),
        ("a NUL byte", json, b"{\"items\":\x00}".to_vec(), 422),
        ("100 000 nested arrays", json, nested(100_000, false), 422),
        ("40 000 nested objects", json, nested(40_000, true), 422),
        ("150 000 nested arrays (past the limit)", json, nested(150_000, false), 413),
        ("300 KiB", json, vec![b' '; 300 * 1024], 413),
        (
            "the wrong content type",
            Some("text/plain"),
            one_item_order().to_string().into_bytes(),
            422,
        ),
        (
            "an i64 overflow",
            json,
            br#"{"items":[{"name":"a","price":1,"quantity":9223372036854775808}],"total_price":1}"#
                .to_vec(),
            422,
        ),
        (
            "1e300 and 1e400",
            json,
            br#"{"items":[{"name":"a","price":1e300,"quantity":1}],"total_price":1e400}"#.to_vec(),
            422,
        ),
    ];
    for (what, content_type, body, want) in bodies {
        let orders = send(
            &app,
            reqwest::Method::POST,
            &format!("{}/orders/", app.orders_url),
            Some(&token),
            content_type,
            body.clone(),
        )
        .await;
        assert_contract_error(&orders, want, &format!("POST /orders/ with {what}"));
        let auth = send(
            &app,
            reqwest::Method::POST,
            &format!("{}/auth/register/", app.auth_url),
            None,
            content_type,
            body,
        )
        .await;
        assert_contract_error(&auth, want, &format!("POST /auth/register/ with {what}"));
    }
    // Still serving, and nothing was stored.
    for base in [&app.auth_url, &app.orders_url] {
        let health = app.http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    let (id, _) = app.user("after@example.com").await;
    assert!(id > 1);
    let list = app.list_orders(&token, 1, "").await;
    assert_eq!(list.json::<Value>().await.unwrap(), json!([]));
    assert!(!app.logs().contains("panicked"), "{}", app.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_path_and_query_parameters_are_422_not_400_text() {
    let app = spawn_app().await;
    let (user_id, token) = app.user("paths@example.com").await;
    let created: Value = app
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let base = &app.orders_url;
    // (Dot segments, even `%2e%2e`, are resolved by the HTTP client before
    // sending; the in-process tests send them.)
    let cases: Vec<(String, u16)> = vec![
        (format!("{base}/orders/%FF/"), 422),
        (format!("{base}/orders/%C3%28"), 422),
        (format!("{base}/orders/%00/"), 422),
        (format!("{base}/orders/9223372036854775808/"), 422),
        (format!("{base}/orders/not-a-uuid/"), 422),
        (format!("{base}/orders/user/%FF/"), 422),
        (format!("{base}/orders/user/9223372036854775808/"), 422),
        (format!("{base}/orders/user/1e300/"), 422),
        (format!("{base}/orders/user/{user_id}/?limit=%FF"), 422),
        (
            format!("{base}/orders/user/{user_id}/?limit=5&limit=abc"),
            422,
        ),
        (format!("{base}/orders/user/{user_id}/?limit=1001"), 422),
        (format!("{base}/orders/user/{user_id}/?limit=-1"), 422),
        (format!("{base}/orders/user/{user_id}/?offset=-1"), 422),
        (
            format!("{base}/orders/user/{user_id}/?offset=9223372036854775808"),
            422,
        ),
        (format!("{base}/orders/user/{user_id}/?limit=%00"), 422),
    ];
    for (url, want) in cases {
        let answer = send(
            &app,
            reqwest::Method::GET,
            &url,
            Some(&token),
            None,
            Vec::new(),
        )
        .await;
        assert_contract_error(&answer, want, &url);
    }
    // Repeated parameters: the last one wins (as in FastAPI); junk is ignored.
    for query in [
        "?limit=abc&limit=1",
        "?limit=1&status=%FF&junk=%00",
        "?offset=9223372036854775807&offset=0&limit=1",
    ] {
        let r = app.list_orders(&token, user_id, query).await;
        assert_eq!(r.status(), 200, "{query}");
        let orders: Value = r.json().await.unwrap();
        assert_eq!(orders, json!([created.clone()]), "{query}");
    }
    let far = app
        .list_orders(&token, user_id, "?offset=9223372036854775807")
        .await;
    assert_eq!(far.status(), 200);
    assert_eq!(far.json::<Value>().await.unwrap(), json!([]));
}

/// Names and e-mails that must round-trip byte for byte.
const NAMES: &[&str] = &[
    "'; DROP TABLE orders; --",
    "Robert'); DROP TABLE users;--",
    "1' OR '1'='1' --",
    "\" OR \"\"=\"",
    "<script>alert(1)</script>",
    "\u{202e}gnp.exe",
    "💥🔥 ünïcødé 日本語 עברית العربية",
    "e\u{301}\u{301}\u{301}",
    "back\\slash \\u0000 \"quoted\"",
];

#[tokio::test(flavor = "multi_thread")]
async fn sql_looking_and_unicode_strings_are_stored_and_returned_verbatim() {
    let app = spawn_app().await;
    let email = "robert');drop_table_users;--ünï@example.com";
    let (user_id, token) = app.user(email).await;
    // The token's e-mail claim is the registered address.
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email"], email);

    let items: Vec<Value> = NAMES
        .iter()
        .map(|n| json!({"name": n, "price": 2.25, "quantity": 2}))
        .collect();
    let body = json!({"items": items, "total_price": 4.5 * NAMES.len() as f64});
    let created = app.create_order(&token, body).await;
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let read: Value = app.get_order(&token, id).await.json().await.unwrap();
    let listed: Value = app
        .list_orders(&token, user_id, "")
        .await
        .json()
        .await
        .unwrap();
    for (from, order) in [("POST", &created), ("GET", &read), ("list", &listed[0])] {
        let names: Vec<&str> = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, NAMES, "{from}");
    }
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
