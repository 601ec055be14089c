//! The authenticated caller of a request, from its `Authorization: Bearer`
//! token (FastAPI's OAuth2PasswordBearer answers, for old clients).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use super::TokenVerifier;
use crate::ApiError;

/// The 401 detail when no bearer token was sent.
pub const NOT_AUTHENTICATED: &str = "Not authenticated";
/// The 401 detail when the token does not verify.
pub const BAD_CREDENTIALS: &str = "Could not validate credentials";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The user's id (the token's `sub`).
    pub id: i64,
    /// The user's email.
    pub email: String,
    /// `user` or `admin`; `None` in tokens of the old system.
    pub role: Option<String>,
}

impl CurrentUser {
    /// Whether the caller has the `admin` role.
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
        let claims = verifier.verify(token.trim()).await.map_err(|reason| {
            tracing::debug!(%reason, "token refused");
            ApiError::unauthorized(BAD_CREDENTIALS)
        })?;
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
