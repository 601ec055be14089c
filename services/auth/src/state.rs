//! What handlers share: the user store, the token issuer, and Google login.

use std::sync::Arc;

use crate::google::GoogleClient;
use crate::store::UserStore;
use crate::tokens::TokenIssuer;

#[derive(Clone)]
pub struct AuthState(Arc<Inner>);

struct Inner {
    store: Arc<dyn UserStore>,
    issuer: TokenIssuer,
    google: Option<GoogleClient>,
    cookie_secure: bool,
}

impl AuthState {
    /// `google: None` makes the Google routes answer 503.
    pub fn new(
        store: Arc<dyn UserStore>,
        issuer: TokenIssuer,
        google: Option<GoogleClient>,
        cookie_secure: bool,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            issuer,
            google,
            cookie_secure,
        }))
    }

    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.0.store
    }

    pub(crate) fn issuer(&self) -> &TokenIssuer {
        &self.0.issuer
    }

    pub(crate) fn google(&self) -> Option<&GoogleClient> {
        self.0.google.as_ref()
    }

    pub(crate) fn cookie_secure(&self) -> bool {
        self.0.cookie_secure
    }
}
