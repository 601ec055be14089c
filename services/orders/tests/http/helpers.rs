//! The orders app built the way `main` builds it (store from the settings,
//! `kit::http::finish` around the router), driven in-process with `oneshot`.
//! Tokens are PASETO v4.public (a format orders accepts in production too),
//! so no RSA key has to be generated.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{HeaderMap, Request};
use orderly_kit::config::{Env, Settings};
use orderly_kit::routes::{Observed, undocumented_statuses};
use orderly_kit::token::{AccessClaims, PasetoSigner, TokenVerifier};
use orderly_orders::OrdersState;
use orderly_testkit::TestDatabase;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    router: Router,
    signer: PasetoSigner,
    observed: Mutex<Vec<Observed>>,
    _dir: TempDir,
    _db: Option<TestDatabase>,
}

/// One answer, read to the end.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
    /// The route template that answered (`None`: no route matched).
    pub route: Option<String>,
}

impl Answer {
    /// The contract's rules for any answer: no 5xx, a status `allowed` here
    /// (or the fallback's 404 when no route matched), and errors as
    /// `{"detail": …}` JSON.
    pub fn check(&self, allowed: &[u16]) -> Result<(), String> {
        if self.status >= 500 {
            return Err(format!("a {} answer: {}", self.status, self.text()));
        }
        let unmatched_404 = self.route.is_none() && self.status == 404;
        if !allowed.contains(&self.status) && !unmatched_404 {
            return Err(format!(
                "status {} (route {:?}) is not one of {allowed:?}: {}",
                self.status,
                self.route,
                self.text()
            ));
        }
        if self.status >= 400 {
            orderly_kit::error::check_error_body(self.status, &self.bytes)?;
            let content_type = self
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            if content_type != Some("application/json") {
                return Err(format!(
                    "an error answered with content-type {content_type:?}"
                ));
            }
        }
        Ok(())
    }

    pub fn text(&self) -> String {
        let shown = &self.bytes[..self.bytes.len().min(400)];
        String::from_utf8_lossy(shown).into_owned()
    }
}

impl TestApp {
    /// A fresh app on a fresh database; `None` when PostgreSQL was asked for
    /// and is missing outside CI (see `orderly_testkit::missing`).
    pub async fn start(backend: Backend, rate_limit: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, db) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("orders.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let db = TestDatabase::create().await?;
                (db.url.clone(), Some(db))
            }
        };
        let data_dir = dir.path().display().to_string();
        let env = Env::from_pairs([
            ("ORDERLY_DATA_DIR", data_dir.as_str()),
            ("ORDERS_DATABASE_URL", url.as_str()),
            ("ORDERS_RATE_LIMIT", rate_limit),
        ]);
        let settings = Settings::from_env(&env).expect("test settings");
        let parts = orderly_orders::startup::build(&settings.orders)
            .await
            .expect("the orders service builds");
        let secret = PasetoSigner::generate_secret().expect("an Ed25519 key");
        let signer = PasetoSigner::from_secret_bytes(&secret).expect("the key loads");
        let verifier = TokenVerifier::new(Vec::new(), &settings.orders.verifier)
            .with_paseto_keys(vec![signer.public_key().clone()]);
        let state = OrdersState {
            service: parts.service.clone(),
            verifier: Arc::new(verifier),
            limiter: parts.limiter.clone(),
            trusted_proxies: Arc::new(Vec::new()),
        };
        let router = orderly_kit::http::finish(
            "orders",
            orderly_orders::router(state),
            orderly_orders::openapi(),
            parts.checks.clone(),
            &settings.http,
        )
        .layer(axum::middleware::from_fn(
            orderly_kit::routes::expose_matched_path,
        ));
        Some(Self {
            router,
            signer,
            observed: Mutex::new(Vec::new()),
            _dir: dir,
            _db: db,
        })
    }

    /// A valid access token for user `id`.
    pub fn token(&self, id: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: id.to_string(),
            email: format!("user{id}@example.com"),
            exp: now + 3600,
            iat: Some(now),
            nbf: None,
            jti: None,
            role: None,
            iss: None,
            aud: None,
        };
        self.signer.sign(&claims).expect("the token signs")
    }

    pub async fn send(&self, mut request: Request<Body>) -> Answer {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let method = request.method().to_string();
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let route = response
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string());
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("the body is readable")
            .to_vec();
        self.observed.lock().unwrap().push(Observed {
            method,
            route: route.clone(),
            status,
        });
        Answer {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
            route,
        }
    }

    /// `method uri` as user `user` (no token when `None`), with a JSON body.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        user: Option<i64>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(id) = user {
            request = request.header("authorization", format!("Bearer {}", self.token(id)));
        }
        let body = match body {
            Some(value) => {
                request = request.header("content-type", "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("a valid request"))
            .await
    }

    /// A valid order for `user`; returns its id.
    pub async fn create_order(&self, user: i64, name: &str) -> String {
        let body = json!({
            "items": [{"name": name, "price": 12.5, "quantity": 2}],
            "total_price": 25.0,
        });
        let answer = self.call("POST", "/orders/", Some(user), Some(body)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json["id"].as_str().expect("an id").to_string()
    }

    /// Statuses seen so far that their operation does not document.
    pub fn undocumented(&self) -> Vec<String> {
        let observed = self.observed.lock().unwrap();
        undocumented_statuses(
            &orderly_orders::routes::route_table(),
            &orderly_orders::openapi(),
            observed.iter(),
        )
    }

    /// How often each status was seen, for the test's log.
    pub fn status_counts(&self) -> std::collections::BTreeMap<u16, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for seen in self.observed.lock().unwrap().iter() {
            *counts.entry(seen.status).or_default() += 1;
        }
        counts
    }
}
