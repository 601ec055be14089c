//! Access tokens: the claims auth signs and every service verifies (RS256 JWT).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::{Deserialize, Serialize};

use crate::ApiError;

pub const NOT_AUTHENTICATED: &str = "Not authenticated";
pub const BAD_CREDENTIALS: &str = "Could not validate credentials";

/// The access token's claims. `sub` is the user id as a string (compat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub email: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not an RSA PEM key: {reason}")]
    Parse { path: String, reason: String },
}

/// Verifies access tokens with the auth service's public key; the algorithm is
/// pinned to RS256 so `alg: none` or HS256-with-the-public-key never pass.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError::Parse {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self { key, validation })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        decode::<AccessClaims>(token, &self.key, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub role: Option<String>,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(NOT_AUTHENTICATED))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        // FastAPI's OAuth2PasswordBearer: a non-Bearer scheme counts as no credentials.
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized(NOT_AUTHENTICATED));
        }
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let claims = verifier
            .verify(token.trim())
            .ok_or_else(|| ApiError::unauthorized(BAD_CREDENTIALS))?;
        let id = claims
            .sub
            .parse::<i64>()
            .map_err(|_| ApiError::unauthorized(BAD_CREDENTIALS))?;
        Ok(CurrentUser {
            id,
            email: claims.email,
            role: claims.role,
        })
    }
}
