//! Login and registration throttling under parallel requests: the limit holds
//! however many attempts are in flight at once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use orderly_core::config::RateLimit;
use tower::ServiceExt;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

fn login_from(peer: [u8; 4], email: &str, password: &str) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("username", email)
        .append_pair("password", password)
        .finish();
    Request::post("/auth/token/")
        .header("content-type", "application/x-www-form-urlencoded")
        .extension(ConnectInfo(SocketAddr::from((peer, 40000))))
        .body(Body::from(body))
        .unwrap()
}

fn register_from(peer: [u8; 4], email: &str) -> Request<Body> {
    let body = serde_json::json!({"email": email, "password": "pw"}).to_string();
    Request::post("/auth/register/")
        .header("content-type", "application/json")
        .extension(ConnectInfo(SocketAddr::from((peer, 40000))))
        .body(Body::from(body))
        .unwrap()
}

/// Send all at once; the statuses, sorted.
async fn in_parallel(app: &TestApp, requests: Vec<Request<Body>>) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        let router = app.app.clone();
        tasks.spawn(async move { router.oneshot(request).await.unwrap().status().as_u16() });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_at_one_account_get_429_after_the_limit() {
    let app = spawn_app().await;
    assert_eq!(
        app.register("victim@example.com", "pw-right").await.status,
        200
    );
    let guesses = (0..60)
        .map(|_| login_from([198, 51, 100, 1], "victim@example.com", "guess"))
        .collect();
    let statuses = in_parallel(&app, guesses).await;
    // 5 per account (the default): every other guess is refused before hashing.
    assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 55, "{statuses:?}");
    assert_eq!(
        app.login("victim@example.com", "pw-right").await.status,
        429,
        "locked means locked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_from_one_address_get_429_after_its_limit() {
    let app = spawn_app().await;
    let guesses = (0..40)
        .map(|n| login_from([203, 0, 113, 9], &format!("u{n}@example.com"), "guess"))
        .collect();
    let statuses = in_parallel(&app, guesses).await;
    // 20 per IP (the default), across accounts.
    assert_eq!(count(&statuses, 401), 20, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 20, "{statuses:?}");
}

#[tokio::test]
async fn a_successful_login_resets_the_account_and_frees_its_address_slot() {
    let app = spawn_app_with(|s| {
        s.login_limits.per_ip = RateLimit {
            limit: 3,
            window: Duration::from_secs(60),
        }
    })
    .await;
    assert_eq!(app.register("a@example.com", "pw").await.status, 200);
    let from = [192, 0, 2, 1];
    for _ in 0..5 {
        let response = app.send(login_from(from, "a@example.com", "pw")).await;
        assert_eq!(response.status, 200, "{}", response.text);
    }
    for n in 0..3 {
        let wrong = login_from(from, &format!("x{n}@example.com"), "guess");
        assert_eq!(app.send(wrong).await.status, 401);
    }
    let response = app.send(login_from(from, "a@example.com", "pw")).await;
    assert_eq!(response.status, 429, "{}", response.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registrations_from_one_address_are_limited() {
    let app = spawn_app_with(|s| {
        s.register_limit = RateLimit {
            limit: 3,
            window: Duration::from_secs(3600),
        }
    })
    .await;
    let from = [198, 51, 100, 7];
    let burst = (0..10)
        .map(|n| register_from(from, &format!("r{n}@example.com")))
        .collect();
    let statuses = in_parallel(&app, burst).await;
    assert_eq!(count(&statuses, 200), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 7, "{statuses:?}");

    let refused = app.send(register_from(from, "late@example.com")).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.text,
        r#"{"detail":"Too many registrations from this address; try again later"}"#
    );
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    // Other addresses are unaffected.
    let elsewhere = app
        .send(register_from([198, 51, 100, 8], "late@example.com"))
        .await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text);
}
