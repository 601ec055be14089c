//! What handlers share: the stores, sessions (token issuing), Google login, the
//! published keys and the login throttle.

use std::net::IpAddr;
use std::sync::Arc;

use orderly_http::token::{PasetoKey, VerifyingKey};

use crate::google::GoogleClient;
use crate::refresh::Sessions;
use crate::store::UserStore;
use crate::throttle::LoginThrottle;

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
    trusted_proxies: Vec<IpAddr>,
}

/// Everything [`AuthState::new`] needs.
pub struct AuthParts {
    pub store: Arc<dyn UserStore>,
    pub sessions: Sessions,
    /// `None` makes the Google routes answer 503.
    pub google: Option<GoogleClient>,
    pub cookie_secure: bool,
    pub published_keys: Vec<VerifyingKey>,
    /// The Ed25519 key of PASETO tokens, published in the JWKS next to the RSA keys.
    pub paseto_key: Option<PasetoKey>,
    pub throttle: Arc<dyn LoginThrottle>,
    pub trusted_proxies: Vec<IpAddr>,
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
            trusted_proxies: parts.trusted_proxies,
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

    pub(crate) fn trusted_proxies(&self) -> &[IpAddr] {
        &self.0.trusted_proxies
    }
}
