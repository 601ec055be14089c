//! `POST /auth/refresh`, `POST /auth/logout` and `GET /.well-known/jwks.json`.

use axum::Json as JsonResponse;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use orderly_http::ApiError;
use orderly_http::extract::{Form, Json};
use orderly_http::token::jwk_set;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::AuthError;
use crate::state::AuthState;
use crate::tokens::TokenResponse;

/// How long clients may cache the key set: short enough that a newly published
/// key is seen well within an access token's lifetime.
const JWKS_MAX_AGE_SECS: u32 = 300;

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    /// The refresh token from the last token response.
    refresh_token: String,
}

/// A JSON body, or a form body when the request says so (OAuth2 clients send
/// `grant_type=refresh_token&refresh_token=…` as a form).
pub(crate) struct JsonOrForm<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            Ok(Self(Form::<T>::from_request(req, state).await?.0))
        } else {
            Ok(Self(Json::<T>::from_request(req, state).await?.0))
        }
    }
}

#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body(content = RefreshRequest, description = "JSON, or the same field as a form"),
    responses(
        (status = 200, description = "A new access token and a new refresh token; the presented one is spent",
            body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or already used (which revokes its whole family)",
            body = super::ErrorBody),
        (status = 413, description = "Request body larger than 256 KiB", body = super::ErrorBody),
        (status = 422, description = "No refresh_token field", body = super::ValidationErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn refresh(
    State(state): State<AuthState>,
    JsonOrForm(body): JsonOrForm<RefreshRequest>,
) -> Result<JsonResponse<TokenResponse>, ApiError> {
    let response = state
        .sessions()
        .refresh(&body.refresh_token)
        .await
        .map_err(AuthError::from)?;
    Ok(JsonResponse(response))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    request_body(content = RefreshRequest, description = "JSON, or the same field as a form"),
    responses(
        (status = 204, description = "The session is revoked (also answered for unknown tokens)"),
        (status = 413, description = "Request body larger than 256 KiB", body = super::ErrorBody),
        (status = 422, description = "No refresh_token field", body = super::ValidationErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn logout(
    State(state): State<AuthState>,
    JsonOrForm(body): JsonOrForm<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .sessions()
        .logout(&body.refresh_token)
        .await
        .map_err(AuthError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses(
        (status = 200, description = "The public keys tokens are signed with (RFC 7517): the current key, then keys still valid from before a rotation, then the Ed25519 (`OKP`) key of PASETO tokens when `AUTH_TOKEN_FORMAT=paseto`",
            body = serde_json::Value),
    )
)]
pub(crate) async fn jwks(State(state): State<AuthState>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
        JsonResponse({
            let mut set = jwk_set(state.published_keys());
            set.keys
                .extend(state.paseto_key().map(|key| key.jwk.clone()));
            set
        }),
    )
        .into_response()
}

/// At most this many entries in one revocation list: the latest revocations,
/// which are the ones whose tokens live longest.
const REVOKED_LIST_LIMIT: usize = 10_000;

/// One revoked access token that has not expired yet.
#[derive(serde::Serialize, ToSchema)]
pub(crate) struct RevokedToken {
    /// The token's `jti`.
    jti: String,
    /// The token's `exp` (Unix seconds); after it the entry is gone.
    exp: i64,
}

/// The access tokens revoked before their expiry.
#[derive(serde::Serialize, ToSchema)]
pub(crate) struct RevokedTokens {
    revoked: Vec<RevokedToken>,
}

#[utoipa::path(
    get,
    path = "/auth/revoked-tokens",
    tag = "auth",
    responses(
        (status = 200, description = "Access tokens revoked before their expiry (by a logout, a reused refresh token or a lowered role), by `jti`; services that verify tokens poll it. A jti is a random id that names nothing else; entries vanish when their token expires",
            body = RevokedTokens),
    )
)]
pub(crate) async fn revoked_tokens(State(state): State<AuthState>) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let revoked = state
        .sessions()
        .store()
        .revoked_access_tokens(now, REVOKED_LIST_LIMIT)
        .await
        .map_err(AuthError::from)?;
    let body = RevokedTokens {
        revoked: revoked
            .into_iter()
            .map(|(jti, exp)| RevokedToken { jti, exp })
            .collect(),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(body)).into_response())
}
