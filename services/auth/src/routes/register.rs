//! `POST /auth/register/`.

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::HeaderMap;
use orderly_http::extract::Json;
use orderly_http::{ApiError, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::AuthError;
use crate::password;
use crate::state::AuthState;
use crate::throttle::client_ip;

use super::token::Peer;

/// RFC 5321's practical limit on an address.
const MAX_EMAIL_LEN: usize = 254;
/// Long enough for any passphrase, short enough that hashing cannot be abused.
const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Deserialize, ToSchema)]
pub(crate) struct RegisterRequest {
    #[schema(example = "user@example.com")]
    email: String,
    #[schema(example = "s3cret", min_length = 1, max_length = 1024)]
    password: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RegisterResponse {
    #[schema(example = "User created")]
    msg: &'static str,
    #[schema(example = 1)]
    user_id: i64,
}

#[utoipa::path(
    post,
    path = "/auth/register/",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "User created", body = RegisterResponse),
        (status = 400, description = "Email already registered", body = super::ErrorBody),
        (status = 413, description = "Request body larger than 256 KiB", body = super::ErrorBody),
        (status = 422, description = "Invalid e-mail or password, or the body is not JSON of this shape", body = super::ValidationErrorBody),
        (status = 429, description = "Too many registrations from this address (`AUTH_REGISTER_RATE_LIMIT`)",
            body = super::ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn register(
    State(state): State<AuthState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<RegisterRequest>,
) -> Result<JsonResponse<RegisterResponse>, ApiError> {
    let (email, password) = validate(body)?;
    // Counted before the hash: each registration costs an Argon2 run and makes
    // an account, the two things a flood from one address is after.
    if let Some(ip) = client_ip(peer, &headers, state.trusted_proxies())
        && let Err(wait) = state.registrations().take(&ip.to_string())
    {
        tracing::info!(ip = %ip, "registration refused: too many from this address");
        return Err(AuthError::TooManyRegistrations(wait).into());
    }
    let hash = password::hash(password).await.map_err(AuthError::from)?;
    let user_id = state
        .store()
        .create_user(&email, &hash)
        .await
        .map_err(AuthError::from)?;
    tracing::info!(user_id, "user registered");
    Ok(JsonResponse(RegisterResponse {
        msg: "User created",
        user_id,
    }))
}

/// All field errors at once, as FastAPI reports them. Returns the lowercased e-mail.
fn validate(body: RegisterRequest) -> Result<(String, String), AuthError> {
    let mut errors = Vec::new();
    if let Err(reason) = check_email(&body.email) {
        errors.push(FieldError::body(
            &["email".into()],
            format!("value is not a valid email address: {reason}"),
            "value_error",
        ));
    }
    if body.password.is_empty() {
        errors.push(FieldError::body(
            &["password".into()],
            "String should have at least 1 character",
            "string_too_short",
        ));
    } else if body.password.chars().count() > MAX_PASSWORD_LEN {
        errors.push(FieldError::body(
            &["password".into()],
            format!("String should have at most {MAX_PASSWORD_LEN} characters"),
            "string_too_long",
        ));
    }
    if errors.is_empty() {
        Ok((body.email.to_lowercase(), body.password))
    } else {
        Err(AuthError::Validation(errors))
    }
}

/// A deliberately simple check: full RFC 5322 parsing accepts addresses no mail
/// system delivers to, and the only real proof is a message arriving.
fn check_email(email: &str) -> Result<(), &'static str> {
    if email.len() > MAX_EMAIL_LEN {
        return Err("The email address is too long.");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("The email address must not contain spaces.");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("An email address must have an @-sign.");
    };
    if domain.contains('@') {
        return Err("An email address must have exactly one @-sign.");
    }
    if local.is_empty() {
        return Err("There must be something before the @-sign.");
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err("The part after the @-sign is not a valid domain name.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_email;

    #[test]
    fn sane_addresses_pass() {
        for ok in [
            "a@b.co",
            "first.last+tag@mail.example.org",
            "Ünï@exämple.de",
        ] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn broken_addresses_fail() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "", "plain", "@b.co", "a@b", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b.co ", "a@.b.co",
            "a@b.co.", "a@b..co", &long,
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} passed");
        }
    }
}
