use std::path::PathBuf;
use std::sync::{LazyLock, Once};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use orderly_core::config::{AuthSettings, GoogleSettings};
use orderly_http::token::{AccessClaims, TokenVerifier};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// One key pair for the whole test binary: RSA generation is the slow part.
static KEYS: LazyLock<(TempDir, PathBuf, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir for keys");
    let (private, public) = orderly_auth::keys::generate_keypair(dir.path()).expect("keygen");
    (dir, private, public)
});

/// Logs only with `TEST_LOG` set, so passing runs stay quiet.
fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            // The writer thread goes on after the guard's drop.
            let _ = orderly_core::telemetry::init("debug");
        }
    });
}

pub struct TestApp {
    pub app: Router,
    /// `None` when the caller owns the database directory.
    _db_dir: Option<TempDir>,
}

pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn settings(db_dir: &TempDir, google: Option<GoogleSettings>) -> AuthSettings {
    let (_, private, public) = &*KEYS;
    AuthSettings {
        bind: "127.0.0.1:0".into(),
        database_url: orderly_core::config::Secret::new(format!(
            "sqlite://{}?mode=rwc",
            db_dir.path().join("auth.db").display()
        )),
        private_key_path: private.clone(),
        public_key_path: public.clone(),
        access_token_ttl: Duration::from_secs(30 * 60),
        cookie_secure: false,
        google,
        previous_public_key_paths: Vec::new(),
        verifier: Default::default(),
        refresh_token_ttl: Duration::from_secs(14 * 86_400),
        login_limits: Default::default(),
        register_limit: orderly_core::config::RateLimit {
            limit: 1_000,
            window: Duration::from_secs(3600),
        },
        trusted_proxies: Default::default(),
        token_format: Default::default(),
    }
}

/// A fresh service on a fresh database, built the way `main` builds it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut AuthSettings)) -> TestApp {
    init_tracing();
    let db_dir = tempfile::tempdir().expect("temp dir for the db");
    let mut settings = settings(&db_dir, None);
    adjust(&mut settings);
    let app = orderly_auth::build(&settings).await.expect("auth builds");
    TestApp {
        app,
        _db_dir: Some(db_dir),
    }
}

/// A service on settings whose database the caller keeps (tests that also open
/// the database themselves).
pub async fn spawn_app_on(settings: &AuthSettings) -> TestApp {
    init_tracing();
    let app = orderly_auth::build(settings).await.expect("auth builds");
    TestApp { app, _db_dir: None }
}

pub fn verifier() -> TokenVerifier {
    TokenVerifier::from_file(&KEYS.2, &Default::default()).expect("public key loads")
}

pub async fn verify(token: &str) -> AccessClaims {
    verifier().verify(token).await.expect("the token verifies")
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn post_json(&self, path: &str, body: &str) -> TestResponse {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    pub async fn register(&self, email: &str, password: &str) -> TestResponse {
        let body = serde_json::json!({"email": email, "password": password}).to_string();
        self.post_json("/auth/register/", &body).await
    }

    pub async fn post_form(&self, path: &str, body: &str) -> TestResponse {
        let request = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", email)
            .append_pair("password", password)
            .finish();
        self.post_form("/auth/token/", &body).await
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> TestResponse {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request.body(Body::empty()).expect("request"))
            .await
    }
}
