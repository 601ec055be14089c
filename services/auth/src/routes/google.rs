//! `GET /auth/login/google` and `GET /auth/callback/google`.

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use orderly_http::ApiError;
use orderly_http::extract::Query;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::AuthError;
use crate::google::{GoogleClient, constant_time_eq, new_state};
use crate::state::AuthState;
use crate::tokens::TokenResponse;

/// `{state}.{nonce}`: the CSRF state and the nonce the id_token must echo.
const STATE_COOKIE: &str = "oauth_state";
/// The PKCE code verifier. A cookie rather than server-side storage keeps the
/// service stateless; HttpOnly keeps it from scripts, and it is useless without
/// the code, which only reaches our redirect URI.
const PKCE_COOKIE: &str = "oauth_pkce";
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

fn flow_cookie(
    name: &str,
    value: &str,
    max_age: u32,
    secure: bool,
) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Lax; Max-Age={max_age}; Path=/{secure}"
    ))
    .map_err(ApiError::internal)
}

/// A cookie's value, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

#[utoipa::path(
    get,
    path = "/auth/login/google",
    tag = "auth",
    responses(
        (status = 200, description = "Where to send the browser; sets the `oauth_state` (state and nonce) and `oauth_pkce` (code verifier) cookies",
            body = LoginUrl, headers(("Set-Cookie" = String, description = "oauth_state=…; HttpOnly; SameSite=Lax; Max-Age=600; Path=/"))),
        (status = 503, description = "Google login is not configured", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn login(State(state): State<AuthState>) -> Result<Response, ApiError> {
    let google = google(&state)?;
    // All three are base64url, so '.' cannot occur inside them.
    let (csrf_state, nonce, verifier) = (new_state(), new_state(), new_state());
    let secure = state.cookie_secure();
    let cookies = AppendHeaders([
        (
            header::SET_COOKIE,
            flow_cookie(
                STATE_COOKIE,
                &format!("{csrf_state}.{nonce}"),
                STATE_MAX_AGE_SECS,
                secure,
            )?,
        ),
        (
            header::SET_COOKIE,
            flow_cookie(PKCE_COOKIE, &verifier, STATE_MAX_AGE_SECS, secure)?,
        ),
    ]);
    let body = LoginUrl {
        login_url: google.login_url(&csrf_state, &nonce, &verifier),
    };
    Ok((cookies, JsonResponse(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/auth/callback/google",
    tag = "auth",
    params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in; clears the `oauth_state` and `oauth_pkce` cookies", body = TokenResponse),
        (status = 400, description = "Missing or mismatched state, missing flow cookies, missing code, or the Google e-mail is not verified",
            body = super::ErrorBody),
        (status = 401, description = "The id_token failed verification (signature, iss, aud, exp or nonce)",
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
    let flow = cookie(&headers, STATE_COOKIE).and_then(|v| v.split_once('.'));
    let verifier = cookie(&headers, PKCE_COOKIE);
    let (Some((expected, nonce)), Some(verifier)) = (flow, verifier) else {
        tracing::info!(
            has_state_cookie = flow.is_some(),
            has_pkce_cookie = verifier.is_some(),
            "Google callback without the flow cookies"
        );
        return Err(AuthError::InvalidState.into());
    };
    if !constant_time_eq(returned.as_bytes(), expected.as_bytes()) {
        tracing::info!("Google callback state mismatch");
        return Err(AuthError::InvalidState.into());
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        if let Some(error) = &query.error {
            tracing::info!(error = %error, "Google returned no code");
        }
        return Err(AuthError::MissingCode.into());
    };

    let identity = google
        .identify(code, verifier, nonce)
        .await
        .map_err(AuthError::from)?;
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
    let secure = state.cookie_secure();
    let clear = AppendHeaders([
        (
            header::SET_COOKIE,
            flow_cookie(STATE_COOKIE, "", 0, secure)?,
        ),
        (header::SET_COOKIE, flow_cookie(PKCE_COOKIE, "", 0, secure)?),
    ]);
    Ok((clear, JsonResponse(token)).into_response())
}
