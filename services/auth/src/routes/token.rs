//! `POST /auth/token/`: the OAuth2 password flow.

use std::net::SocketAddr;

use axum::Json as JsonResponse;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use orderly_http::extract::Form;
use orderly_http::{ApiError, FieldError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::AuthError;
use crate::password;
use crate::state::AuthState;
use crate::throttle::client_ip;
use crate::tokens::TokenResponse;

/// FastAPI's `OAuth2PasswordRequestForm`; `scope`, `client_id` and
/// `client_secret` are accepted and ignored, as there.
#[derive(Deserialize, ToSchema)]
pub(crate) struct TokenForm {
    /// The e-mail address.
    #[schema(example = "user@example.com")]
    username: String,
    password: String,
    /// If sent, must be `password`.
    #[serde(default)]
    grant_type: Option<String>,
}

#[utoipa::path(
    post,
    path = "/auth/token/",
    tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Incorrect email or password", body = super::ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 413, description = "Request body larger than 256 KiB", body = super::ErrorBody),
        (status = 422, description = "A form field is missing", body = super::ValidationErrorBody),
        (status = 429, description = "Too many login attempts for this account or from this address",
            body = super::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn token(
    State(state): State<AuthState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<JsonResponse<TokenResponse>, ApiError> {
    if let Some(grant_type) = form.grant_type.as_deref()
        && !grant_type.is_empty()
        && grant_type != "password"
    {
        return Err(ApiError::Validation(vec![FieldError::body(
            &["grant_type".into()],
            "String should match pattern '^password$'",
            "string_pattern_mismatch",
        )]));
    }
    let account = form.username.to_lowercase();
    let ip = client_ip(peer, &headers, state.trusted_proxies());
    // One attempt is reserved before the password is checked, and the check and
    // the count are one step: parallel guesses cannot all slip past the limit, and
    // once locked even the right password waits, so guessing on cannot tell a hit
    // from a miss.
    if let Err(wait) = state.throttle().reserve(ip, &account).await {
        tracing::info!(ip = ?ip, "login refused: too many attempts");
        return Err(AuthError::TooManyAttempts(wait).into());
    }
    let user = state
        .store()
        .find_by_email(&account)
        .await
        .map_err(AuthError::from)?;
    let stored_hash = user.as_ref().and_then(|u| u.hashed_password.clone());
    // Always a full Argon2 verification (against a dummy hash when there is no
    // user or no password), so timing does not reveal which e-mails exist.
    let matches = password::verify(form.password, stored_hash)
        .await
        .map_err(AuthError::from)?;
    // A failure keeps its reserved attempt; unknown e-mails count too, so a
    // lockout does not reveal which exist.
    let user = match user {
        Some(user) if matches => user,
        Some(user) => {
            let reason = if user.hashed_password.is_some() {
                "wrong password"
            } else {
                "account has no password (Google sign-in only)"
            };
            tracing::info!(user_id = user.id, reason, "login failed");
            return Err(AuthError::BadLogin.into());
        }
        None => {
            tracing::info!(reason = "unknown e-mail", "login failed");
            return Err(AuthError::BadLogin.into());
        }
    };
    state.throttle().succeeded(ip, &account).await;
    let response = state
        .sessions()
        .start(&user)
        .await
        .map_err(AuthError::from)?;
    tracing::info!(user_id = user.id, "token issued");
    Ok(JsonResponse(response))
}

/// The TCP peer when the server recorded it (`into_make_service_with_connect_info`);
/// `None` for a router driven without a socket.
pub(crate) struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}
