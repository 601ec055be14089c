//! Turning [`AuthSettings`] into a ready-to-serve router.

use std::sync::Arc;

use axum::Router;
use orderly_core::config::{AuthSettings, HttpSettings, TokenFormat};
use orderly_http::health::ReadinessCheck;
use orderly_http::token::TokenVerifier;

use crate::google::GoogleClient;
use crate::keys::{self, KeyError};
use crate::password::{self, PasswordError};
use crate::refresh::{SessionStore, Sessions};
use crate::sql_store::SqlUserStore;
use crate::state::{AuthParts, AuthState};
use crate::store::{StoreError, StoreReadiness, User, UserStore};
use crate::throttle::{AttemptCounter, MemoryLoginThrottle};
use crate::tokens::TokenIssuer;

/// Why the service could not start. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the HTTP client for Google login: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// The user store on the database the URL names (`postgres://`,
/// `postgresql://` or `sqlite://`). Opening applies the migrations.
pub async fn open_store(url: &str) -> Result<Arc<dyn UserStore>, StoreError> {
    Ok(open_stores(url).await?.0)
}

/// Both ports of the one database the URL names (they share its pool).
pub async fn open_stores(
    url: &str,
) -> Result<(Arc<dyn UserStore>, Arc<dyn SessionStore>), StoreError> {
    let store = Arc::new(SqlUserStore::connect(url).await?);
    Ok((store.clone(), store))
}

/// Give the user with this e-mail a role (`orderly user promote|demote`).
/// `Ok(None)`: no such user. The next login or refresh carries the new role.
/// A change that takes the `admin` role away also revokes every refresh and
/// access token of the user, so the old role can neither be renewed from an
/// open session nor used by a token already issued (services that poll
/// `GET /auth/revoked-tokens` refuse it within their poll interval).
pub async fn set_role(
    settings: &AuthSettings,
    email: &str,
    role: &str,
) -> Result<Option<User>, StartupError> {
    let (users, sessions) = open_stores(settings.database_url.expose()).await?;
    let email = email.to_lowercase();
    let before = users.find_by_email(&email).await?;
    let Some(after) = sessions.set_role(&email, role).await? else {
        return Ok(None);
    };
    let lost_admin = before.is_some_and(|user| user.role == ADMIN_ROLE) && after.role != ADMIN_ROLE;
    if lost_admin {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let revoked = sessions.revoke_user_sessions(after.id, now).await?;
        tracing::info!(
            user_id = after.id,
            revoked,
            "role lowered: refresh and access tokens revoked"
        );
    }
    Ok(Some(after))
}

/// The role that grants rights beyond one's own orders.
const ADMIN_ROLE: &str = "admin";

impl AuthState {
    /// Open and migrate the user database, load (or on first start generate) the
    /// signing keys, and set up Google login when configured.
    pub async fn from_settings(settings: &AuthSettings) -> Result<Self, StartupError> {
        let (store, session_store) = open_stores(settings.database_url.expose()).await?;
        let keys =
            keys::load_or_generate(&settings.private_key_path, &settings.public_key_path).await?;
        let mut published_keys = vec![keys.public.clone()];
        for key in keys::load_previous(&settings.previous_public_key_paths)? {
            if !published_keys.iter().any(|k| k.kid == key.kid) {
                published_keys.push(key);
            }
        }
        tracing::info!(
            kid = %keys.public.kid,
            published = published_keys.len(),
            "signing tokens with the current key"
        );
        password::warm_up().await?;
        let google = settings.google.clone().map(GoogleClient::new).transpose()?;
        if google.is_none() {
            tracing::info!("Google login is not configured; its routes answer 404");
        }
        let paseto = match &settings.token_format {
            TokenFormat::Jwt => None,
            TokenFormat::Paseto { key_path } => {
                let signer = keys::load_or_generate_paseto(key_path).await?;
                tracing::info!(kid = %signer.public_key().kid, "issuing PASETO v4.public tokens");
                Some(signer)
            }
        };
        let paseto_key = paseto.as_ref().map(|s| s.public_key().clone());
        let verifier = TokenVerifier::new(published_keys.clone(), &settings.verifier)
            .with_paseto_keys(paseto_key.iter().cloned().collect());
        let issuer = TokenIssuer::new(
            keys.encoding,
            keys.public.kid.clone(),
            settings.access_token_ttl,
            settings.verifier.clone(),
        )
        .with_paseto(paseto);
        Ok(AuthState::new(AuthParts {
            store,
            sessions: Sessions::new(session_store, issuer, settings.refresh_token_ttl),
            google,
            cookie_secure: settings.cookie_secure,
            published_keys,
            paseto_key,
            throttle: Arc::new(MemoryLoginThrottle::new(settings.login_limits)),
            registrations: AttemptCounter::new(settings.register_limit),
            trusted_proxies: settings.trusted_proxies.clone(),
            verifier: Arc::new(verifier),
        }))
    }
}

/// What `/ready` checks for this service.
pub fn readiness_checks(state: &AuthState) -> Vec<Arc<dyn ReadinessCheck>> {
    let store: Arc<dyn UserStore> = Arc::clone(state.store());
    vec![Arc::new(StoreReadiness(store))]
}

/// The whole service: state from settings, routes, and the HTTP edge's operational
/// routes and layers (`/health`, `/ready`, `/docs`, metrics, 404/405 bodies),
/// with the default HTTP edge (localhost CORS, default timeouts).
pub async fn build(settings: &AuthSettings) -> Result<Router, StartupError> {
    build_with_http(settings, &HttpSettings::default()).await
}

/// [`build`] with the configured HTTP edge (`Settings::http`: CORS, timeouts).
pub async fn build_with_http(
    settings: &AuthSettings,
    http: &HttpSettings,
) -> Result<Router, StartupError> {
    let state = AuthState::from_settings(settings).await?;
    let checks = readiness_checks(&state);
    let document = crate::routes::served_openapi(state.google_configured());
    Ok(orderly_http::server::finish(
        "auth",
        crate::routes::router(state),
        document,
        checks,
        http,
    ))
}

/// Apply the user database's migrations and return (`orderly migrate`).
/// Touches no keys, so it can run before the first real start.
pub async fn migrate(settings: &AuthSettings) -> Result<(), StartupError> {
    SqlUserStore::connect(settings.database_url.expose())
        .await?
        .db()
        .close()
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn migrate_creates_the_database_and_its_directory_but_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/auth.db");
        let settings = AuthSettings {
            bind: "127.0.0.1:0".into(),
            database_url: orderly_core::config::Secret::new(format!(
                "sqlite://{}?mode=rwc",
                db.display()
            )),
            private_key_path: dir.path().join("keys/private.pem"),
            public_key_path: dir.path().join("keys/public.pem"),
            access_token_ttl: Duration::from_secs(60),
            cookie_secure: false,
            google: None,
            previous_public_key_paths: Vec::new(),
            verifier: Default::default(),
            refresh_token_ttl: Duration::from_secs(3600),
            login_limits: Default::default(),
            register_limit: "30/hour".parse().unwrap(),
            trusted_proxies: Default::default(),
            token_format: Default::default(),
        };
        migrate(&settings).await.unwrap();
        assert!(db.exists());
        assert!(!settings.private_key_path.exists());
        // Running it again is a no-op.
        migrate(&settings).await.unwrap();
    }
}
