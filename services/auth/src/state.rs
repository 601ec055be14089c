//! What handlers share: the stores, sessions (token issuing), Google login, the
//! published keys, the verifier of our own access tokens, and the login and
//! registration throttles.

use std::sync::Arc;

use axum::extract::FromRef;
use orderly_core::config::TrustedProxies;
use orderly_http::token::{PasetoKey, TokenVerifier, VerifyingKey};

use crate::google::GoogleClient;
use crate::refresh::Sessions;
use crate::store::UserStore;
use crate::throttle::{AttemptCounter, LoginThrottle};

#[derive(Clone)]
pub struct AuthState(Arc<Inner>);

struct Inner {
    store: Arc<dyn UserStore>,
    sessions: Sessions,
    google: Option<GoogleClient>,
    cookie_secure: bool,
    /// Current key first, then the previous ones (JWKS order).
    published_keys: Vec<VerifyingKey>,
    paseto_key: Option<PasetoKey>,
    throttle: Arc<dyn LoginThrottle>,
    registrations: AttemptCounter,
    trusted_proxies: TrustedProxies,
    verifier: Arc<TokenVerifier>,
}

/// Everything [`AuthState::new`] needs.
pub struct AuthParts {
    pub store: Arc<dyn UserStore>,
    pub sessions: Sessions,
    /// `None` makes the Google routes answer 404 and leaves them out of the
    /// served OpenAPI document.
    pub google: Option<GoogleClient>,
    pub cookie_secure: bool,
    pub published_keys: Vec<VerifyingKey>,
    /// The Ed25519 key of PASETO tokens, published in the JWKS next to the RSA keys.
    pub paseto_key: Option<PasetoKey>,
    pub throttle: Arc<dyn LoginThrottle>,
    /// Registrations per client IP.
    pub registrations: AttemptCounter,
    pub trusted_proxies: TrustedProxies,
    /// Checks our own access tokens (linking a Google account needs a session).
    pub verifier: Arc<TokenVerifier>,
}

impl AuthState {
    pub fn new(parts: AuthParts) -> Self {
        Self(Arc::new(Inner {
            store: parts.store,
            sessions: parts.sessions,
            google: parts.google,
            cookie_secure: parts.cookie_secure,
            published_keys: parts.published_keys,
            paseto_key: parts.paseto_key,
            throttle: parts.throttle,
            registrations: parts.registrations,
            trusted_proxies: parts.trusted_proxies,
            verifier: parts.verifier,
        }))
    }

    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.0.store
    }

    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    pub(crate) fn google(&self) -> Option<&GoogleClient> {
        self.0.google.as_ref()
    }

    pub(crate) fn cookie_secure(&self) -> bool {
        self.0.cookie_secure
    }

    pub fn published_keys(&self) -> &[VerifyingKey] {
        &self.0.published_keys
    }

    pub fn paseto_key(&self) -> Option<&PasetoKey> {
        self.0.paseto_key.as_ref()
    }

    pub(crate) fn throttle(&self) -> &Arc<dyn LoginThrottle> {
        &self.0.throttle
    }

    pub(crate) fn registrations(&self) -> &AttemptCounter {
        &self.0.registrations
    }

    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        &self.0.trusted_proxies
    }

    /// Whether Google login is configured (its routes are served and documented).
    pub fn google_configured(&self) -> bool {
        self.0.google.is_some()
    }
}

/// For kit's `CurrentUser` extractor on the routes that need a session.
impl FromRef<AuthState> for Arc<TokenVerifier> {
    fn from_ref(state: &AuthState) -> Self {
        Arc::clone(&state.0.verifier)
    }
}
