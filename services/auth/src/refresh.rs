//! Sessions: an access token plus a refresh token. Refresh tokens are 32 random
//! bytes, stored only as their SHA-256, single use; each refresh rotates to a new
//! token of the same family, and presenting a used one revokes the family (a
//! stolen token and its legitimate twin cannot both keep a session alive).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::store::{StoreError, User};
use crate::tokens::{TokenError, TokenIssuer, TokenResponse};

/// What consuming a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Live and now marked used: the caller may issue its successor.
    Fresh { user_id: i64, family_id: String },
    /// Already used before: a replay.
    Replayed { family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Refresh-token families, plus the account look-ups sessions and the CLI need.
/// A separate port from [`crate::store::UserStore`] so either can evolve alone;
/// every store backend implements both.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Add a live token to the family, unless a token of the family is revoked
    /// (a logout or a replay got there first): then nothing is added and the
    /// answer is `false`.
    async fn insert_refresh_token(
        &self,
        token_hash: &str,
        family_id: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// Atomically mark the token used if it is live (unused, unexpired at `now`,
    /// and no token of its family revoked); of two concurrent calls exactly one
    /// sees [`Consumed::Fresh`].
    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Consumed, StoreError>;

    /// The family of a stored token, whatever its state.
    async fn refresh_family(&self, token_hash: &str) -> Result<Option<String>, StoreError>;

    /// Revoke every token of the family, its access tokens included (idempotent).
    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> Result<(), StoreError>;

    /// Revoke every refresh and access token of the user, all families
    /// (idempotent); returns how many refresh tokens were still live.
    async fn revoke_user_sessions(&self, user_id: i64, now: i64) -> Result<u64, StoreError>;

    /// Remember an access token issued to the user (of a session's family, if
    /// any), so that it can be revoked before it expires. Also forgets
    /// access tokens that expired before `now`.
    async fn record_access_token(
        &self,
        jti: &str,
        user_id: i64,
        family_id: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The revoked access tokens that have not expired at `now`: (jti, exp),
    /// at most `limit`, the latest revocations first.
    async fn revoked_access_tokens(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;

    /// Set the role of the user with this (lowercased) e-mail; `None` if there is none.
    async fn set_role(&self, email: &str, role: &str) -> Result<Option<User>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, expired, revoked, or replayed (the family is now revoked).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Issues and rotates sessions.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    issuer: TokenIssuer,
    refresh_ttl: Duration,
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, issuer: TokenIssuer, refresh_ttl: Duration) -> Self {
        Self {
            store,
            issuer,
            refresh_ttl,
        }
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// A new session (new family) after a login.
    pub async fn start(&self, user: &User) -> Result<TokenResponse, SessionError> {
        let family_id = uuid::Uuid::new_v4().to_string();
        self.issue(user, &family_id).await
    }

    /// Trade a refresh token for a new access token and a new refresh token.
    pub async fn refresh(&self, presented: &str) -> Result<TokenResponse, SessionError> {
        let now = now();
        match self
            .store
            .consume_refresh_token(&hash(presented), now)
            .await?
        {
            Consumed::Fresh { user_id, family_id } => {
                let Some(user) = self.store.find_by_id(user_id).await? else {
                    return Err(SessionError::InvalidRefreshToken);
                };
                self.issue(&user, &family_id).await
            }
            Consumed::Replayed { family_id } => {
                self.store.revoke_refresh_family(&family_id, now).await?;
                tracing::warn!(
                    family_id,
                    "a used refresh token was presented again: its family is revoked"
                );
                Err(SessionError::InvalidRefreshToken)
            }
            Consumed::Invalid => Err(SessionError::InvalidRefreshToken),
        }
    }

    /// Revoke the session the token belongs to. Unknown tokens are ignored, so
    /// the answer reveals nothing about which tokens exist.
    pub async fn logout(&self, presented: &str) -> Result<(), SessionError> {
        if let Some(family_id) = self.store.refresh_family(&hash(presented)).await? {
            self.store.revoke_refresh_family(&family_id, now()).await?;
            tracing::info!(family_id, "session revoked (logout)");
        }
        Ok(())
    }

    async fn issue(&self, user: &User, family_id: &str) -> Result<TokenResponse, SessionError> {
        let issued = self.issuer.issue(user)?;
        let now = now();
        self.store
            .record_access_token(
                &issued.jti,
                user.id,
                Some(family_id),
                issued.expires_at,
                now,
            )
            .await?;
        let mut response = issued.response;
        let token = new_token();
        let ttl = i64::try_from(self.refresh_ttl.as_secs()).unwrap_or(i64::MAX);
        let inserted = self
            .store
            .insert_refresh_token(
                &hash(&token),
                family_id,
                user.id,
                now,
                now.saturating_add(ttl),
            )
            .await?;
        if !inserted {
            // The family was revoked while this refresh was under way.
            return Err(SessionError::InvalidRefreshToken);
        }
        response.refresh_token = Some(token);
        Ok(response)
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// 32 bytes from the OS-seeded CSPRNG, base64url without padding.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex SHA-256: what the store keeps instead of the token.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_hashes_are_sha256_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
