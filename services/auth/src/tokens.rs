//! Access tokens: RS256 JWTs with the claims every service verifies
//! ([`orderly_kit::token::AccessClaims`]), the signing key named by `kid`.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use orderly_kit::token::{ALGORITHM, AccessClaims, VerifierConfig};
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
    /// Single use: trade it at `POST /auth/refresh` for a new pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    ttl: Duration,
    claims: VerifierConfig,
}

impl TokenIssuer {
    /// `claims`: the `iss`/`aud` to put in every token (when set).
    pub fn new(key: EncodingKey, kid: String, ttl: Duration, claims: VerifierConfig) -> Self {
        Self {
            key,
            kid,
            ttl,
            claims,
        }
    }

    pub fn issue(&self, user: &User) -> Result<TokenResponse, TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = self.ttl.as_secs();
        let claims = AccessClaims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            iat: Some(now),
            nbf: Some(now),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            // Orders decides admin rights from this claim.
            role: Some(user.role.clone()),
            iss: self.claims.issuer.clone(),
            aud: self.claims.audience.clone(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key)?;
        Ok(TokenResponse {
            access_token,
            token_type: "bearer",
            expires_in: ttl,
            refresh_token: None,
        })
    }
}
