//! `GET /auth/login/google` and `GET /auth/callback/google`.

use axum::Json as JsonResponse;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use orderly_kit::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::AuthError;
use crate::google::{GoogleClient, constant_time_eq, new_state};
use crate::state::AuthState;
use crate::tokens::TokenResponse;

const STATE_COOKIE: &str = "oauth_state";
/// The user has ten minutes to finish signing in at Google.
const STATE_MAX_AGE_SECS: u32 = 600;

#[derive(Serialize, ToSchema)]
pub(crate) struct LoginUrl {
    /// Google's authorize URL to send the browser to.
    login_url: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    /// The authorization code from Google.
    code: Option<String>,
    /// Must equal the `oauth_state` cookie set by the login route.
    state: Option<String>,
    /// Set by Google when the user declined or the request was invalid.
    error: Option<String>,
}

fn google(state: &AuthState) -> Result<&GoogleClient, AuthError> {
    state.google().ok_or(AuthError::GoogleNotConfigured)
}

fn state_cookie(value: &str, max_age: u32, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; HttpOnly; SameSite=Lax; Max-Age={max_age}; Path=/{secure}"
    ))
    .map_err(ApiError::internal)
}

/// The `oauth_state` cookie's value, from any `Cookie` header.
fn cookie_state(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == STATE_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

#[utoipa::path(
    get,
    path = "/auth/login/google",
    tag = "auth",
    responses(
        (status = 200, description = "Where to send the browser; sets the `oauth_state` cookie",
            body = LoginUrl, headers(("Set-Cookie" = String, description = "oauth_state=…; HttpOnly; SameSite=Lax; Max-Age=600; Path=/"))),
        (status = 503, description = "Google login is not configured", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn login(State(state): State<AuthState>) -> Result<Response, ApiError> {
    let google = google(&state)?;
    let csrf_state = new_state();
    let cookie = state_cookie(&csrf_state, STATE_MAX_AGE_SECS, state.cookie_secure())?;
    let body = LoginUrl {
        login_url: google.login_url(&csrf_state),
    };
    Ok(([(header::SET_COOKIE, cookie)], JsonResponse(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/auth/callback/google",
    tag = "auth",
    params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in; clears the `oauth_state` cookie", body = TokenResponse),
        (status = 400, description = "Missing or mismatched state, missing code, or the Google e-mail is not verified",
            body = super::ErrorBody),
        (status = 502, description = "Google failed or answered something unusable", body = super::ErrorBody),
        (status = 503, description = "Google login is not configured", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn callback(
    State(state): State<AuthState>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let google = google(&state)?;
    let returned = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::MissingState)?;
    let expected = cookie_state(&headers).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(returned.as_bytes(), expected.as_bytes()) {
        tracing::info!(
            has_cookie = !expected.is_empty(),
            "Google callback state mismatch"
        );
        return Err(AuthError::InvalidState.into());
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        if let Some(error) = &query.error {
            tracing::info!(error = %error, "Google returned no code");
        }
        return Err(AuthError::MissingCode.into());
    };

    let identity = google.identify(code).await.map_err(AuthError::from)?;
    let user = state
        .store()
        .find_or_create_google(&identity.sub, &identity.email)
        .await
        .map_err(AuthError::from)?;
    let token: TokenResponse = state
        .sessions()
        .start(&user)
        .await
        .map_err(AuthError::from)?;
    tracing::info!(user_id = user.id, "signed in with Google");
    // The state is single-use: a replayed callback URL fails the CSRF check.
    let clear = state_cookie("", 0, state.cookie_secure())?;
    Ok(([(header::SET_COOKIE, clear)], JsonResponse(token)).into_response())
}
