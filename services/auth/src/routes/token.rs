//! `POST /auth/token/`: the OAuth2 password flow.

use axum::Json as JsonResponse;
use axum::extract::State;
use orderly_kit::extract::Form;
use orderly_kit::{ApiError, FieldError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::AuthError;
use crate::password;
use crate::state::AuthState;
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
        (status = 422, description = "A form field is missing", body = super::ValidationErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn token(
    State(state): State<AuthState>,
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
    let user = state
        .store()
        .find_by_email(&form.username.to_lowercase())
        .await
        .map_err(AuthError::from)?;
    let stored_hash = user.as_ref().and_then(|u| u.hashed_password.clone());
    // Always a full Argon2 verification (against a dummy hash when there is no
    // user or no password), so timing does not reveal which e-mails exist.
    let matches = password::verify(form.password, stored_hash)
        .await
        .map_err(AuthError::from)?;
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
    let response = state.issuer().issue(&user).map_err(AuthError::from)?;
    tracing::info!(user_id = user.id, "token issued");
    Ok(JsonResponse(response))
}
