//! Access tokens: RS256 JWTs with the claims every service verifies
//! ([`orderly_kit::token::AccessClaims`]).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orderly_kit::token::AccessClaims;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::User;

#[derive(Debug, thiserror::Error)]
#[error("signing the access token failed: {0}")]
pub struct TokenError(#[from] jsonwebtoken::errors::Error);

/// The OAuth2 token response (compat: `access_token` and `token_type`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    #[schema(example = 1800)]
    pub expires_in: u64,
}

pub struct TokenIssuer {
    key: EncodingKey,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(key: EncodingKey, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    pub fn issue(&self, user: &User) -> Result<TokenResponse, TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = self.ttl.as_secs();
        let claims = AccessClaims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            // Orders decides admin rights from this claim.
            role: Some(user.role.clone()),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)?;
        Ok(TokenResponse {
            access_token,
            token_type: "bearer",
            expires_in: ttl,
        })
    }
}
