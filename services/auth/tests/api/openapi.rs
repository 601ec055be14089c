//! `/openapi.json` describes exactly what the router routes, and every status
//! a route answers is documented for its operation.

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::Request;
use orderly_testkit::openapi::{Observed, compare, expose_matched_path, undocumented_statuses};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

#[test]
fn the_route_table_and_the_openapi_document_agree() {
    let problems = compare(&orderly_auth::route_table(), &orderly_auth::openapi());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_served_document_is_the_checked_one_less_google_when_unconfigured() {
    let app = spawn_app().await;
    let served = app.get("/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.json,
        serde_json::to_value(orderly_auth::served_openapi(false)).unwrap()
    );
    let mut checked = serde_json::to_value(orderly_auth::openapi()).unwrap();
    let paths = checked["paths"].as_object_mut().unwrap();
    for path in [
        "/auth/login/google",
        "/auth/callback/google",
        "/auth/link/google",
    ] {
        assert!(paths.remove(path).is_some(), "{path}");
    }
    assert_eq!(served.json, checked);
    assert_eq!(
        serde_json::to_value(orderly_auth::served_openapi(true)).unwrap(),
        serde_json::to_value(orderly_auth::openapi()).unwrap()
    );
}

/// Send one request; note (method, matched route, status).
async fn observe(
    app: &TestApp,
    observed: &mut Vec<Observed>,
    request: Request<Body>,
) -> (u16, Value) {
    let method = request.method().to_string();
    let response = app
        .app
        .clone()
        .layer(axum::middleware::from_fn(expose_matched_path))
        .oneshot(request)
        .await
        .unwrap();
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    if status >= 400 {
        orderly_testkit::contract::check_error_body(status, &bytes).unwrap();
    }
    observed.push(Observed {
        method,
        route,
        status,
    });
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_route_in_the_table_is_answered_by_that_route() {
    let app = spawn_app().await;
    let mut observed = Vec::new();
    for route in orderly_auth::route_table().routes() {
        let request = Request::builder()
            .method(route.method.clone())
            .uri(&route.path)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (status, _) = observe(&app, &mut observed, request).await;
        assert_ne!(status, 405, "{} {}", route.method, route.path);
        let seen = observed.last().unwrap();
        assert_eq!(
            seen.route.as_deref(),
            Some(route.path.as_str()),
            "{} {} was not answered by its route",
            route.method,
            route.path
        );
    }
}

#[tokio::test]
async fn every_status_each_route_answers_is_documented() {
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let mut observed = Vec::new();

    let app = spawn_app().await;
    let register = |email: &str, password: &str| {
        post(
            "/auth/register/",
            json,
            json!({"email": email, "password": password}).to_string(),
        )
    };
    let big = vec![b'a'; 300 * 1024];
    let expectations: Vec<(Request<Body>, u16)> = vec![
        (register("a@example.com", "pw"), 200),
        (register("A@example.com", "pw"), 400),
        (register("not-an-email", "pw"), 422),
        (post("/auth/register", json, big.clone()), 413),
        (
            post("/auth/token/", form, "username=a%40example.com&password=pw"),
            200,
        ),
        (post("/auth/token", form, "username=a%40example.com"), 422),
        (post("/auth/token/", form, big.clone()), 413),
        (
            post("/auth/refresh", json, r#"{"refresh_token":"nope"}"#),
            401,
        ),
        (post("/auth/refresh", json, "{}"), 422),
        (post("/auth/refresh", form, big.clone()), 413),
        (
            post("/auth/logout", json, r#"{"refresh_token":"nope"}"#),
            204,
        ),
        (post("/auth/logout", json, "[]"), 422),
        (post("/auth/logout", json, big), 413),
        (get("/auth/login/google"), 404),
        (get("/auth/callback/google?state=x&code=y"), 404),
        (
            post("/auth/link/google", json, r#"{"code":"c","state":"s"}"#),
            404,
        ),
        (get("/.well-known/jwks.json"), 200),
        (get("/health"), 200),
        (get("/ready"), 200),
        (get("/metrics"), 200),
    ];
    for (request, want) in expectations {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, body) = observe(&app, &mut observed, request).await;
        assert_eq!(status, want, "{what}: {body}");
    }
    // Five wrong passwords lock the account (default limits): 401 then 429.
    for attempt in 1..=6 {
        let request = post("/auth/token/", form, "username=a%40example.com&password=no");
        let (status, _) = observe(&app, &mut observed, request).await;
        assert_eq!(
            status,
            if attempt <= 5 { 401 } else { 429 },
            "attempt {attempt}"
        );
    }
    // A real refresh token rotates (200).
    let login = post(
        "/auth/token/",
        form,
        "username=new%40example.com&password=pw",
    );
    observe(&app, &mut observed, register("new@example.com", "pw")).await;
    let (_, tokens) = observe(&app, &mut observed, login).await;
    let refresh = json!({"refresh_token": tokens["refresh_token"]}).to_string();
    let (status, _) = observe(&app, &mut observed, post("/auth/refresh", json, refresh)).await;
    assert_eq!(status, 200);

    // With Google configured (unreachable): the callback's 400 and 502, the login's 200.
    let google = spawn_app_with(|s| {
        s.google = Some(orderly_core::config::GoogleSettings {
            client_id: "c".into(),
            client_secret: orderly_core::config::Secret::new("s"),
            redirect_uri: "http://localhost:8001/auth/callback/google".into(),
            auth_url: "https://accounts.example.test/auth".into(),
            token_url: format!("http://127.0.0.1:{}/token", orderly_testkit::free_port()),
            jwks_url: "http://127.0.0.1:1/certs".into(),
            issuers: vec!["https://accounts.google.com".into()],
        })
    })
    .await;
    let with_cookies = |uri: &str| {
        Request::get(uri)
            .header("cookie", "oauth_state=s.n; oauth_pkce=v")
            .body(Body::empty())
            .unwrap()
    };
    let link = |body: &str, token: Option<&str>| {
        let mut request = Request::post("/auth/link/google")
            .header("content-type", "application/json")
            .header("cookie", "oauth_state=s.n; oauth_pkce=v");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::from(body.to_string())).unwrap()
    };
    let signed_in = google
        .post_json(
            "/auth/register/",
            r#"{"email":"linker@example.com","password":"pw"}"#,
        )
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    let access = google.login("linker@example.com", "pw").await.json["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for (request, want) in [
        (get("/auth/login/google"), 200),
        (get("/auth/callback/google?code=c"), 400),
        (with_cookies("/auth/callback/google?state=s&code=c"), 502),
        (link(r#"{"code":"c","state":"s"}"#, None), 401),
        (link(r#"{"code":"c"}"#, Some(&access)), 400),
        (link("[]", Some(&access)), 422),
        (link(r#"{"code":"c","state":"s"}"#, Some(&access)), 502),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, body) = observe(&google, &mut observed, request).await;
        assert_eq!(status, want, "{what}: {body}");
    }

    let undocumented = undocumented_statuses(
        &orderly_auth::route_table(),
        &orderly_auth::openapi(),
        &observed,
    );
    assert!(undocumented.is_empty(), "{}", undocumented.join("\n"));
}
