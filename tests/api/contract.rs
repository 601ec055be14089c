//! Every case CONTRACT.md spells out, against the running binary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{logs_when, one_item_order, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_docs_and_metrics_answer_on_both_services() {
    let app = spawn_app().await;
    for base in [&app.auth_url, &app.orders_url] {
        let r = app.http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
        let r = app.http.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}/ready");
        let doc: Value = app
            .http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
        let r = app.http.get(format!("{base}/docs/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("swagger"), "{base}/docs");
        let r = app
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.orders_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/orders/", "/orders/{order_id}/", "/orders/user/{user_id}/"] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_gives_integer_ids_and_refuses_a_duplicate_email_in_any_case() {
    let app = spawn_app().await;
    let r = app.register("a@example.com", "pw").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"msg":"User created","user_id":1}"#
    );
    let r = app.register("b@example.com", "pw").await;
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], 2);
    let r = app.register("A@Example.COM", "other").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Email already registered"}"#
    );
    let r = app.register("not-an-email", "pw").await;
    assert_eq!(r.status(), 422);
    let r = app.register("c@example.com", "").await;
    assert_eq!(r.status(), 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_unknown_email_is_401_with_www_authenticate() {
    let app = spawn_app().await;
    app.register("a@example.com", "right").await;
    for (email, pw) in [("a@example.com", "wrong"), ("nobody@example.com", "right")] {
        let r = app.token_response(email, pw).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"detail":"Incorrect email or password"}"#
        );
    }
    let r = app.token_response("a@example.com", "right").await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_need_a_valid_token() {
    let app = spawn_app().await;
    let r = app
        .http
        .post(format!("{}/orders/", app.orders_url))
        .json(&one_item_order())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), r#"{"detail":"Not authenticated"}"#);
    let r = app
        .create_order("garbage.token.here", one_item_order())
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Could not validate credentials"}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_is_created_read_listed_and_guarded_from_other_users() {
    let app = spawn_app().await;
    let (alice_id, alice) = app.user("alice@example.com").await;
    let (_, bob) = app.user("bob@example.com").await;
    let r = app
        .create_order(&alice, json!({"items": [{"name": "Laptop", "price": 999.99, "quantity": 1}, {"name": "Mouse", "price": 29.99, "quantity": 2}], "total_price": 1059.97, "user_id": 999}))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains(r#""status":"PENDING""#), "{text}");
    assert!(
        text.starts_with(r#"{"id":""#),
        "compact JSON, id first: {text}"
    );
    let order: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(order["user_id"], alice_id, "user_id comes from the token");
    assert_eq!(order["total_price"], 1059.97);
    let id = order["id"].as_str().unwrap();

    let r = app.get_order(&alice, id).await;
    assert_eq!(r.status(), 200);
    let r = app.get_order(&bob, id).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"detail":"Not authorized"}"#);
    let r = app
        .get_order(&alice, "6f1c1a40-0000-4000-8000-000000000000")
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), r#"{"detail":"Order not found"}"#);

    let second: Value = app
        .create_order(&alice, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let list: Value = app
        .list_orders(&alice, alice_id, "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], second["id"], "newest first");
    let page: Value = app
        .list_orders(&alice, alice_id, "?limit=1&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], order["id"]);
    let r = app.list_orders(&alice, alice_id, "?limit=1001").await;
    assert_eq!(r.status(), 422);
    let r = app.list_orders(&bob, alice_id, "").await;
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_orders_are_422_in_the_fastapi_shape() {
    let app = spawn_app().await;
    let (_, token) = app.user("a@example.com").await;
    let cases = [
        json!({"items": [{"name": "x", "price": 10.0, "quantity": 2}], "total_price": 25.0}),
        json!({"items": [], "total_price": 0}),
        json!({"items": [{"name": "x", "price": -1, "quantity": 1}], "total_price": -1}),
        json!({"items": [{"name": "x", "price": 1, "quantity": 0}], "total_price": 0}),
        json!({"items": [{"name": "x", "price": 1e300, "quantity": 1e30}], "total_price": 1e308}),
        json!({"items": "nope", "total_price": 1}),
        json!({"total_price": 1}),
    ];
    for body in cases {
        let r = app.create_order(&token, body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let detail: Value = r.json().await.unwrap();
        let first = &detail["detail"][0];
        assert!(
            first["loc"].is_array() && first["msg"].is_string() && first["type"].is_string(),
            "{body} -> {detail}"
        );
    }
    let r = app
        .http
        .post(format!("{}/orders/", app.orders_url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_legal_status_transitions_are_allowed() {
    // The legacy policy, under which the owner may make every legal transition.
    let app = spawn_app_with(&[
        ("WORKER_PAYMENT_DELAY_MS", "60000"),
        ("ORDERS_STATUS_POLICY", "owner"),
    ])
    .await;
    let (_, token) = app.user("a@example.com").await;
    let order: Value = app
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    let patch = |status: &'static str| {
        app.http
            .patch(format!("{}/orders/{id}/", app.orders_url))
            .bearer_auth(&token)
            .json(&json!({"status": status}))
            .send()
    };
    let r = patch("SHIPPED").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Cannot change status from PENDING to SHIPPED"}"#
    );
    let r = patch("PAID").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "PAID");
    assert_eq!(
        app.get_order(&token, id)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "PAID",
        "cache refreshed"
    );
    let r = patch("PENDING").await.unwrap();
    assert_eq!(r.status(), 409);
    let r = patch("SHIPPED").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = patch("CANCELED").await.unwrap();
    assert_eq!(r.status(), 409);
    let r = patch("LOST").await.unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_eleventh_orders_request_in_a_minute_is_429_with_headers() {
    let app = spawn_app_with(&[("ORDERS_RATE_LIMIT", "10/minute")]).await;
    let (id, token) = app.user("a@example.com").await;
    // Unauthenticated requests are refused before they are counted.
    for _ in 0..3 {
        let r = app
            .http
            .get(format!("{}/orders/user/{id}/", app.orders_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The limiter's windows are aligned to the clock's minutes: start well inside
    // one, so all 11 requests are counted together.
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 60.0;
    if into_minute > 50.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - into_minute)).await;
    }
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..11 {
        let r = app.list_orders(&token, id, "").await;
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(&statuses[..10], &[200; 10]);
    let r = last.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], "10");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Rate limit exceeded"}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_and_body_make_one_order() {
    let app = spawn_app().await;
    let (user_id, token) = app.user("a@example.com").await;
    let send = |body: Value| {
        app.http
            .post(format!("{}/orders/", app.orders_url))
            .bearer_auth(&token)
            .header("Idempotency-Key", "abc-123")
            .json(&body)
            .send()
    };
    let first: Value = send(one_item_order()).await.unwrap().json().await.unwrap();
    let second: Value = send(one_item_order()).await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let other = json!({"items": [{"name": "y", "price": 1.0, "quantity": 1}], "total_price": 1.0});
    assert_eq!(send(other).await.unwrap().status(), 422);
    let list: Value = app
        .list_orders(&token, user_id, "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_order_is_paid_by_the_worker_and_the_cache_shows_it() {
    let app = spawn_app().await;
    let (_, token) = app.user("a@example.com").await;
    let order: Value = app
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    // Read once so the PENDING order sits in the cache.
    assert_eq!(
        app.get_order(&token, id)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "PENDING"
    );
    app.wait_for_status(&token, id, "PAID", Duration::from_secs(15))
        .await;
    let (started, paid) = (
        format!("Starting to process order {id}"),
        format!("Order {id} successfully updated to PAID status"),
    );
    let logs = logs_when(|| app.logs(), |l| l.contains(&started) && l.contains(&paid)).await;
    assert!(
        logs.contains(&format!("Starting to process order {id}")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("Order {id} successfully updated to PAID status")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn google_login_without_configuration_is_404_and_undocumented() {
    let app = spawn_app().await;
    for path in ["/auth/login/google", "/auth/callback/google?code=c&state=s"] {
        let r = app
            .http
            .get(format!("{}{path}", app.auth_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"detail":"Google login is not configured"}"#
        );
    }
    let document: Value = app
        .http
        .get(format!("{}/openapi.json", app.auth_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/auth/token/"), "{document}");
    assert!(
        !paths.keys().any(|p| p.contains("google")),
        "{:?}",
        paths.keys()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_process_cleanly() {
    let mut app = spawn_app().await;
    let status = app
        .terminate(Duration::from_secs(30))
        .expect("exited within 30 s");
    assert!(status.success(), "{status:?}\n{}", app.logs());
}
