//! `GET /auth/login/google`, `GET /auth/callback/google` and
//! `POST /auth/link/google`. Without Google settings all three answer 404 and
//! are left out of the served OpenAPI document.

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use orderly_http::ApiError;
use orderly_http::extract::{Json, Query};
use orderly_http::token::CurrentUser;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::AuthError;
use crate::google::{GoogleClient, GoogleIdentity, constant_time_eq, new_state};
use crate::state::AuthState;
use crate::store::StoreError;
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

/// What Google sent back to the redirect URI, passed on by a signed-in client.
#[derive(Deserialize, ToSchema)]
pub(crate) struct LinkRequest {
    /// The authorization code from Google.
    code: Option<String>,
    /// Must equal the `oauth_state` cookie set by `GET /auth/login/google`.
    state: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LinkResponse {
    #[schema(example = "Google account linked")]
    msg: &'static str,
    #[schema(example = 1)]
    user_id: i64,
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
        (status = 404, description = "Google login is not configured", body = super::ErrorBody),
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
        (status = 400, description = "Missing or mismatched state, missing flow cookies, missing code, the Google e-mail is not verified, or the e-mail's account is linked to a different Google account",
            body = super::ErrorBody),
        (status = 401, description = "The id_token failed verification (signature, iss, aud, exp or nonce)",
            body = super::ErrorBody),
        (status = 404, description = "Google login is not configured", body = super::ErrorBody),
        (status = 409, description = "A password account has this e-mail and is not linked to Google: sign in to it and link at `POST /auth/link/google`",
            body = super::ErrorBody),
        (status = 502, description = "Google failed or answered something unusable", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn callback(
    State(state): State<AuthState>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let google = google(&state)?;
    if query.code.as_deref().is_none_or(str::is_empty)
        && let Some(error) = &query.error
    {
        tracing::info!(error = %error, "Google returned no code");
    }
    let identity = identify(
        google,
        query.state.as_deref(),
        query.code.as_deref(),
        &headers,
    )
    .await?;
    let user = match state
        .store()
        .find_or_create_google(&identity.sub, &identity.email)
        .await
    {
        Ok(user) => user,
        Err(StoreError::GoogleAccountConflict) => return Err(conflict(&state, &identity).await),
        Err(err) => return Err(AuthError::from(err).into()),
    };
    let token: TokenResponse = state
        .sessions()
        .start(&user)
        .await
        .map_err(AuthError::from)?;
    tracing::info!(user_id = user.id, "signed in with Google");
    Ok((clear_flow_cookies(&state)?, JsonResponse(token)).into_response())
}

#[utoipa::path(
    post,
    path = "/auth/link/google",
    tag = "auth",
    request_body = LinkRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The Google identity is linked to the signed-in account; clears the `oauth_state` and `oauth_pkce` cookies",
            body = LinkResponse),
        (status = 400, description = "Missing or mismatched state, missing flow cookies, missing code, or the Google e-mail is not verified",
            body = super::ErrorBody),
        (status = 401, description = "No or an invalid access token, or the id_token failed verification",
            body = super::ErrorBody),
        (status = 404, description = "Google login is not configured", body = super::ErrorBody),
        (status = 409, description = "The account is linked to a different Google account, or this Google account to a different account",
            body = super::ErrorBody),
        (status = 413, description = "Request body larger than 256 KiB", body = super::ErrorBody),
        (status = 422, description = "The body is not JSON of this shape", body = super::ValidationErrorBody),
        (status = 502, description = "Google failed or answered something unusable", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn link(
    State(state): State<AuthState>,
    headers: HeaderMap,
    user: Result<CurrentUser, ApiError>,
    body: Result<Json<LinkRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Unconfigured comes first: the route then does not exist, whatever was sent.
    let google = google(&state)?;
    let user = user?;
    let Json(body) = body?;
    let identity = identify(
        google,
        body.state.as_deref(),
        body.code.as_deref(),
        &headers,
    )
    .await?;
    let linked = match state.store().link_google(user.id, &identity.sub).await {
        Ok(Some(linked)) => linked,
        Ok(None) => return Err(ApiError::unauthorized(orderly_http::token::BAD_CREDENTIALS)),
        Err(StoreError::GoogleAccountConflict) => {
            tracing::info!(
                user_id = user.id,
                "Google link refused: already linked elsewhere"
            );
            return Err(AuthError::GoogleLinkConflict.into());
        }
        Err(err) => return Err(AuthError::from(err).into()),
    };
    tracing::info!(user_id = linked.id, "Google account linked");
    let body = LinkResponse {
        msg: "Google account linked",
        user_id: linked.id,
    };
    Ok((clear_flow_cookies(&state)?, JsonResponse(body)).into_response())
}

/// Check the returned state against this browser's flow cookies (CSRF), then
/// redeem the code with the PKCE verifier and verify the id_token's nonce.
async fn identify(
    google: &GoogleClient,
    returned_state: Option<&str>,
    code: Option<&str>,
    headers: &HeaderMap,
) -> Result<GoogleIdentity, ApiError> {
    let returned = returned_state
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::MissingState)?;
    let flow = cookie(headers, STATE_COOKIE).and_then(|v| v.split_once('.'));
    let verifier = cookie(headers, PKCE_COOKIE);
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
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or(AuthError::MissingCode)?;
    Ok(google
        .identify(code, verifier, nonce)
        .await
        .map_err(AuthError::from)?)
}

/// The Google login found the e-mail taken: by an account without Google (409,
/// saying how to link it) or by one linked to another Google account (400).
async fn conflict(state: &AuthState, identity: &GoogleIdentity) -> ApiError {
    match state.store().find_by_email(&identity.email).await {
        Ok(Some(user)) if user.google_sub.is_none() => {
            tracing::info!(
                user_id = user.id,
                "Google login refused: the e-mail's account is not linked to Google"
            );
            AuthError::GoogleNotLinked.into()
        }
        Ok(_) => AuthError::Store(StoreError::GoogleAccountConflict).into(),
        Err(err) => AuthError::from(err).into(),
    }
}

/// The state is single-use: a replayed callback URL fails the CSRF check.
fn clear_flow_cookies(
    state: &AuthState,
) -> Result<AppendHeaders<[(header::HeaderName, HeaderValue); 2]>, ApiError> {
    let secure = state.cookie_secure();
    Ok(AppendHeaders([
        (
            header::SET_COOKIE,
            flow_cookie(STATE_COOKIE, "", 0, secure)?,
        ),
        (header::SET_COOKIE, flow_cookie(PKCE_COOKIE, "", 0, secure)?),
    ]))
}
