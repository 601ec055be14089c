use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use orderly_kit::config::{GoogleSettings, Secret};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with, verify};

const NOT_CONFIGURED: &str = r#"{"detail":"Google login is not configured (set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET)"}"#;
const INVALID_STATE: &str = r#"{"detail":"Invalid state parameter (CSRF check failed)"}"#;

/// A stand-in for Google's token and userinfo endpoints on 127.0.0.1:0.
/// Accepts only code `good-code` with the right client credentials, and answers
/// userinfo only for the access token it issued.
async fn spawn_provider(email_verified: Value) -> String {
    async fn token(Form(form): Form<HashMap<String, String>>) -> (StatusCode, Json<Value>) {
        let field = |k: &str| form.get(k).map(String::as_str);
        let ok = field("code") == Some("good-code")
            && field("grant_type") == Some("authorization_code")
            && field("client_id") == Some("client-1")
            && field("client_secret") == Some("shh")
            && field("redirect_uri") == Some("http://localhost:8001/auth/callback/google");
        if ok {
            (
                StatusCode::OK,
                Json(json!({"access_token": "google-at", "token_type": "Bearer"})),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant", "secret": "leak-me-not"})),
            )
        }
    }
    async fn userinfo(
        State(verified): State<Value>,
        headers: HeaderMap,
    ) -> (StatusCode, Json<Value>) {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer google-at") {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_token"})),
            );
        }
        let info =
            json!({"sub": "g-123", "email": "Carol@Example.com", "email_verified": verified});
        (StatusCode::OK, Json(info))
    }
    let app = Router::new()
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(email_verified);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn google_settings(provider: &str) -> GoogleSettings {
    GoogleSettings {
        client_id: "client-1".into(),
        client_secret: Secret::new("shh"),
        redirect_uri: "http://localhost:8001/auth/callback/google".into(),
        auth_url: "https://accounts.example.test/o/oauth2/v2/auth".into(),
        token_url: format!("{provider}/token"),
        userinfo_url: format!("{provider}/userinfo"),
    }
}

async fn app_with_provider(email_verified: Value) -> TestApp {
    let provider = spawn_provider(email_verified).await;
    spawn_app_with(|s| s.google = Some(google_settings(&provider))).await
}

/// Start a login and return the state from the cookie.
async fn start_login(app: &TestApp) -> String {
    let response = app.get("/auth/login/google", None).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let cookie = response.header("set-cookie").expect("set-cookie");
    let value = cookie.split(';').next().unwrap();
    value
        .strip_prefix("oauth_state=")
        .expect("oauth_state cookie")
        .to_string()
}

#[tokio::test]
async fn both_google_routes_answer_503_when_google_is_not_configured() {
    let app = spawn_app().await;
    for path in ["/auth/login/google", "/auth/callback/google?code=c&state=s"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, 503, "{path}");
        assert_eq!(response.text, NOT_CONFIGURED);
    }
}

#[tokio::test]
async fn login_returns_the_authorize_url_and_sets_the_state_cookie() {
    let app = app_with_provider(json!(true)).await;
    let response = app.get("/auth/login/google", None).await;
    assert_eq!(response.status, 200);

    let cookie = response.header("set-cookie").unwrap();
    let state = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("oauth_state=")
        .unwrap();
    assert_eq!(state.len(), 43, "32 random bytes, base64url");
    assert_eq!(
        cookie,
        format!("oauth_state={state}; HttpOnly; SameSite=Lax; Max-Age=600; Path=/")
    );
    assert_eq!(
        response.json["login_url"],
        format!(
            "https://accounts.example.test/o/oauth2/v2/auth?response_type=code&client_id=client-1\
             &redirect_uri=http%3A%2F%2Flocalhost%3A8001%2Fauth%2Fcallback%2Fgoogle\
             &scope=openid%20email%20profile&state={state}"
        )
    );
    assert_ne!(
        start_login(&app).await,
        state,
        "each login gets a fresh state"
    );
}

#[tokio::test]
async fn the_state_cookie_is_secure_when_configured() {
    let provider = spawn_provider(json!(true)).await;
    let app = spawn_app_with(|s| {
        s.google = Some(google_settings(&provider));
        s.cookie_secure = true;
    })
    .await;
    let response = app.get("/auth/login/google", None).await;
    assert!(
        response
            .header("set-cookie")
            .unwrap()
            .ends_with("; Path=/; Secure")
    );
}

#[tokio::test]
async fn a_callback_without_state_is_rejected() {
    let app = app_with_provider(json!(true)).await;
    let response = app
        .get(
            "/auth/callback/google?code=good-code",
            Some("oauth_state=abc"),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, r#"{"detail":"Missing state parameter"}"#);
}

#[tokio::test]
async fn a_callback_whose_state_differs_from_the_cookie_or_has_no_cookie_is_rejected() {
    let app = app_with_provider(json!(true)).await;
    let state = start_login(&app).await;
    let path = format!("/auth/callback/google?code=good-code&state={state}");

    let mismatched = app.get(&path, Some("oauth_state=someone-elses")).await;
    assert_eq!(mismatched.status, 400);
    assert_eq!(mismatched.text, INVALID_STATE);

    let no_cookie = app.get(&path, None).await;
    assert_eq!(no_cookie.status, 400);
    assert_eq!(no_cookie.text, INVALID_STATE);
}

#[tokio::test]
async fn a_callback_without_code_is_rejected() {
    let app = app_with_provider(json!(true)).await;
    let state = start_login(&app).await;
    let cookie = format!("oauth_state={state}");
    let response = app
        .get(
            &format!("/auth/callback/google?state={state}&error=access_denied"),
            Some(&cookie),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.text, r#"{"detail":"Missing code parameter"}"#);
}

#[tokio::test]
async fn a_verified_google_account_signs_in_and_gets_the_same_user_next_time() {
    let app = app_with_provider(json!(true)).await;
    for _ in 0..2 {
        let state = start_login(&app).await;
        let cookie = format!("theme=dark; oauth_state={state}");
        let response = app
            .get(
                &format!("/auth/callback/google?code=good-code&state={state}"),
                Some(&cookie),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.json["token_type"], "bearer");
        let claims = verify(response.json["access_token"].as_str().unwrap()).await;
        assert_eq!(claims.sub, "1");
        assert_eq!(claims.email, "carol@example.com");
        assert!(
            response
                .header("set-cookie")
                .unwrap()
                .starts_with("oauth_state=; HttpOnly")
        );
        assert!(response.header("set-cookie").unwrap().contains("Max-Age=0"));
    }
    // The Google-only account has no password to log in with.
    let response = app.login("carol@example.com", "").await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn google_login_links_to_an_existing_password_account_with_that_email() {
    let app = app_with_provider(json!(true)).await;
    app.register("someone@example.com", "pw").await;
    let registered = app.register("carol@example.com", "pw").await;
    assert_eq!(registered.json["user_id"], 2);

    let state = start_login(&app).await;
    let response = app
        .get(
            &format!("/auth/callback/google?code=good-code&state={state}"),
            Some(&format!("oauth_state={state}")),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        verify(response.json["access_token"].as_str().unwrap())
            .await
            .sub,
        "2"
    );
    // The password still works too.
    assert_eq!(app.login("carol@example.com", "pw").await.status, 200);
}

#[tokio::test]
async fn an_unverified_google_email_is_rejected() {
    let app = app_with_provider(json!(false)).await;
    let state = start_login(&app).await;
    let response = app
        .get(
            &format!("/auth/callback/google?code=good-code&state={state}"),
            Some(&format!("oauth_state={state}")),
        )
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.text,
        r#"{"detail":"Google account e-mail is not verified"}"#
    );
}

#[tokio::test]
async fn a_provider_failure_is_a_502_that_leaks_nothing() {
    let app = app_with_provider(json!(true)).await;
    let state = start_login(&app).await;
    let response = app
        .get(
            &format!("/auth/callback/google?code=stolen-code&state={state}"),
            Some(&format!("oauth_state={state}")),
        )
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.text, r#"{"detail":"Google login failed"}"#);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    // Port 9 on localhost: nothing listens, the connection is refused at once.
    let app = spawn_app_with(|s| s.google = Some(google_settings("http://127.0.0.1:9"))).await;
    let state = start_login(&app).await;
    let response = app
        .get(
            &format!("/auth/callback/google?code=good-code&state={state}"),
            Some(&format!("oauth_state={state}")),
        )
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.text, r#"{"detail":"Google login failed"}"#);
}
