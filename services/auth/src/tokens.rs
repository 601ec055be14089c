//! Access tokens: RS256 JWTs (or, with `AUTH_TOKEN_FORMAT=paseto`, PASETO
//! v4.public) with the claims every service verifies
//! ([`orderly_http::token::AccessClaims`]), the signing key named by `kid`.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use orderly_http::token::{ALGORITHM, AccessClaims, PasetoSigner, VerifierConfig};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::User;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing the access token failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("signing the PASETO access token failed: {0}")]
    Paseto(#[from] orderly_http::token::KeyError),
}

/// A freshly signed access token and what revoking it later needs.
#[derive(Debug, Clone)]
pub struct IssuedAccess {
    /// What the client receives.
    pub response: TokenResponse,
    /// The token's `jti`.
    pub jti: String,
    /// Its `exp` (Unix seconds): after it, no revocation list needs to name it.
    pub expires_at: i64,
}

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
    /// Set: tokens are PASETO v4.public instead of JWTs.
    paseto: Option<PasetoSigner>,
}

impl TokenIssuer {
    /// `claims`: the `iss`/`aud` to put in every token (when set).
    pub fn new(key: EncodingKey, kid: String, ttl: Duration, claims: VerifierConfig) -> Self {
        Self {
            key,
            kid,
            ttl,
            claims,
            paseto: None,
        }
    }

    pub fn with_paseto(mut self, signer: Option<PasetoSigner>) -> Self {
        self.paseto = signer;
        self
    }

    pub fn issue(&self, user: &User) -> Result<IssuedAccess, TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = self.ttl.as_secs();
        let jti = uuid::Uuid::new_v4().to_string();
        let expires_at = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let claims = AccessClaims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            exp: expires_at,
            iat: Some(now),
            nbf: Some(now),
            jti: Some(jti.clone()),
            // Orders decides admin rights from this claim.
            role: Some(user.role.clone()),
            iss: self.claims.issuer.clone(),
            aud: self.claims.audience.clone(),
        };
        let access_token = match &self.paseto {
            Some(signer) => signer.sign(&claims)?,
            None => {
                let mut header = Header::new(ALGORITHM);
                header.kid = Some(self.kid.clone());
                jsonwebtoken::encode(&header, &claims, &self.key)?
            }
        };
        Ok(IssuedAccess {
            response: TokenResponse {
                access_token,
                token_type: "bearer",
                expires_in: ttl,
                refresh_token: None,
            },
            jti,
            expires_at,
        })
    }
}
