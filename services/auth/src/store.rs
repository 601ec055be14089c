//! Where users live. Handlers see only [`UserStore`]; SQLite is one implementation
//! (PostgreSQL can be another without touching the routes).

use std::sync::Arc;

use async_trait::async_trait;
use orderly_http::health::ReadinessCheck;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A registered user as the routes need it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    /// PHC string; `None` for accounts created through Google login.
    pub hashed_password: Option<String>,
    pub google_sub: Option<String>,
    pub role: String,
}

impl std::fmt::Debug for User {
    // Keeps the password hash out of logs and assertion messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("has_password", &self.hashed_password.is_some())
            .field("google_sub", &self.google_sub)
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another user has this e-mail (compared case-insensitively).
    #[error("e-mail already registered")]
    DuplicateEmail,
    /// The e-mail belongs to a user already linked to a different Google account.
    #[error("the e-mail is linked to a different Google account")]
    GoogleAccountConflict,
    #[error("cannot open the user database {url}")]
    Open { url: String, source: BoxError },
    #[error("user database migration failed: {0}")]
    Migrate(#[source] BoxError),
    #[error("user database error: {0}")]
    Database(#[source] BoxError),
}

/// Contracts: e-mails are passed lowercased by the caller and matched
/// case-insensitively by the store; ids are positive and never reused.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Insert a password user; [`StoreError::DuplicateEmail`] if the e-mail is taken.
    async fn create_user(&self, email: &str, password_hash: &str) -> Result<i64, StoreError>;

    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;

    /// The user for a Google identity: found by `google_sub`; else a new user
    /// without a password is created. Never links by e-mail (whoever controls a
    /// Google account with that address would get the account):
    /// [`StoreError::GoogleAccountConflict`] when another user has the e-mail.
    /// Safe against concurrent calls for the same identity.
    async fn find_or_create_google(
        &self,
        google_sub: &str,
        email: &str,
    ) -> Result<User, StoreError>;

    /// Link a Google identity to the user `user_id` (asked for from a session of
    /// that user). Idempotent for the same identity; `Ok(None)`: no such user;
    /// [`StoreError::GoogleAccountConflict`] when the user has another Google
    /// identity or the identity belongs to another user.
    async fn link_google(&self, user_id: i64, google_sub: &str)
    -> Result<Option<User>, StoreError>;

    /// A cheap round trip for `/ready`.
    async fn check(&self) -> Result<(), StoreError>;
}

/// `/ready`'s view of the store.
pub struct StoreReadiness(pub Arc<dyn UserStore>);

#[async_trait]
impl ReadinessCheck for StoreReadiness {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}
