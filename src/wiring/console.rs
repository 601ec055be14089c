//! The console under the orders API (`ORDERS_CONSOLE=on`): admins sign in
//! with their account, which the auth service checks and the orders verifier
//! confirms, instead of being on loopback or holding the console token.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Result, bail};
use async_trait::async_trait;
use axum::http::StatusCode;

use orderly_console::{Access, AdminSignIn, ConsoleParts, SignInError, SignedIn};
use orderly_core::config::Settings;
use orderly_http::health::ReadinessCheck;
use orderly_http::token::TokenVerifier;

use super::ops::ConsoleInputs;

/// How long auth may take to answer a sign-in (it hashes the password).
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(8);

/// Signs admins in at auth's token endpoint and verifies the token it issues
/// as the orders API verifies bearer tokens.
struct AuthSignIn {
    http: reqwest::Client,
    token_url: String,
    verifier: Arc<TokenVerifier>,
}

#[async_trait]
impl AdminSignIn for AuthSignIn {
    async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, SignInError> {
        let unavailable = |why: String| SignInError::Unavailable(why);
        let response = self
            .http
            .post(&self.token_url)
            .form(&[("username", email), ("password", password)])
            .send()
            .await
            .map_err(|e| unavailable(format!("POST {}: {e}", self.token_url)))?;
        match response.status() {
            StatusCode::OK => {}
            // 422: an empty e-mail or password, which is no account either.
            StatusCode::UNAUTHORIZED | StatusCode::UNPROCESSABLE_ENTITY => {
                return Err(SignInError::Credentials);
            }
            StatusCode::TOO_MANY_REQUESTS => return Err(SignInError::Throttled),
            other => return Err(unavailable(format!("POST {}: {other}", self.token_url))),
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unavailable(format!("its token response: {e}")))?;
        let Some(token) = body.get("access_token").and_then(|t| t.as_str()) else {
            return Err(unavailable("its token response has no access_token".into()));
        };
        // Auth said yes; the role and the expiry are read from the token as
        // the API reads them, so the console grants nothing the API would not.
        let claims = self
            .verifier
            .verify(token)
            .await
            .map_err(|e| unavailable(format!("its token does not verify here: {e}")))?;
        if claims.role.as_deref() != Some("admin") {
            return Err(SignInError::NotAdmin);
        }
        Ok(SignedIn {
            user: format!("admin:{}", claims.email),
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp.max(0) as u64),
        })
    }
}

/// The console's routes for the orders listener, to merge into the finished
/// API router (after its layers, which it must not get: the API's
/// Content-Security-Policy would block the console's script and styles).
/// `local_auth`: the URL of the auth service of this process, if any.
pub fn under_orders(
    settings: &Settings,
    inputs: ConsoleInputs,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    verifier: Arc<TokenVerifier>,
    local_auth: Option<&str>,
) -> Result<axum::Router> {
    let Some(token_url) = settings.orders.token_url(local_auth) else {
        bail!(
            "ORDERS_CONSOLE=on, but where auth signs admins in is unknown: run auth in this \
             process, or set ORDERS_REVOKED_TOKENS_URL or ORDERS_JWKS_URL to auth's"
        );
    };
    tracing::info!(%token_url, "the console is served under the orders API for admin accounts");
    let http = reqwest::Client::builder()
        .timeout(SIGN_IN_TIMEOUT)
        .build()?;
    let sign_in = AuthSignIn {
        http,
        token_url,
        verifier,
    };
    Ok(orderly_console::router(ConsoleParts {
        orders: inputs.orders,
        jobs: inputs.jobs,
        bus: inputs.bus,
        checks,
        pending_after: settings.reconcile.after,
        access: Access::Admin(Arc::new(sign_in)),
    }))
}
