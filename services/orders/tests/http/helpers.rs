//! The orders app, built by the function the `orderly` binary builds it with
//! (`orderly_orders::startup::app`), driven in-process with `oneshot`.
//! Tokens are PASETO v4.public (a format orders accepts in production too),
//! so no RSA key has to be generated.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use orderly_core::config::{Env, Settings};
use orderly_http::token::{AccessClaims, PasetoSigner, TokenVerifier};
use orderly_testkit::TestDatabase;
use orderly_testkit::openapi::{Observed, undocumented_statuses};
use serde_json::{Value, json};
use tempfile::TempDir;

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

pub use orderly_testkit::in_process::Answer;

impl TestApp {
    /// A fresh app on a fresh database; `None` when PostgreSQL was asked for
    /// and is missing outside CI (see `orderly_testkit::missing`).
    pub async fn start(backend: Backend, rate_limit: &str) -> Option<Self> {
        Self::start_with(backend, rate_limit, &[]).await
    }

    /// [`start`](Self::start) with more environment variables.
    pub async fn start_with(
        backend: Backend,
        rate_limit: &str,
        extra_env: &[(&str, &str)],
    ) -> Option<Self> {
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
        let env = Env::from_pairs(
            [
                ("ORDERLY_DATA_DIR", data_dir.as_str()),
                ("ORDERS_DATABASE_URL", url.as_str()),
                ("ORDERS_RATE_LIMIT", rate_limit),
            ]
            .into_iter()
            .chain(extra_env.iter().copied()),
        );
        let settings = Settings::from_env(&env).expect("test settings");
        let parts = orderly_orders::startup::build(&settings.orders)
            .await
            .expect("the orders service builds");
        let secret = PasetoSigner::generate_secret().expect("an Ed25519 key");
        let signer = PasetoSigner::from_secret_bytes(&secret).expect("the key loads");
        let verifier = TokenVerifier::new(Vec::new(), &settings.orders.verifier)
            .with_paseto_keys(vec![signer.public_key().clone()]);
        let router = orderly_orders::startup::app(
            &settings.orders,
            &parts,
            Arc::new(verifier),
            Vec::new(),
            &settings.http,
        )
        .layer(axum::middleware::from_fn(
            orderly_testkit::openapi::expose_matched_path,
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
        self.token_with_role(id, None)
    }

    /// A valid access token for user `id` with this `role` claim.
    pub fn token_with_role(&self, id: i64, role: Option<&str>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: id.to_string(),
            email: format!("user{id}@example.com"),
            exp: now + 3600,
            iat: Some(now),
            nbf: None,
            jti: None,
            role: role.map(str::to_string),
            iss: None,
            aud: None,
        };
        self.signer.sign(&claims).expect("the token signs")
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        orderly_testkit::in_process::send(&self.router, &self.observed, request).await
    }

    /// `method uri` as user `user` (no token when `None`), with a JSON body.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        user: Option<i64>,
        body: Option<Value>,
    ) -> Answer {
        let token = user.map(|id| self.token(id));
        self.call_with_token(method, uri, token.as_deref(), body)
            .await
    }

    /// `method uri` with this bearer token (none when `None`), with a JSON body.
    pub async fn call_with_token(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
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
