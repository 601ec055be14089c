//! Everything a request can fail with, and the one place it becomes HTTP.

use std::time::Duration;

use orderly_http::error::header_pair;
use orderly_http::{ApiError, FieldError};

use crate::google::GoogleError;
use crate::password::PasswordError;
use crate::refresh::SessionError;
use crate::store::StoreError;
use crate::tokens::TokenError;

pub const EMAIL_TAKEN: &str = "Email already registered";
pub const BAD_LOGIN: &str = "Incorrect email or password";
/// The contract's wording; a 404 (a configuration state is never a 5xx).
pub const GOOGLE_NOT_CONFIGURED: &str = "Google login is not configured";
pub const MISSING_STATE: &str = "Missing state parameter";
pub const INVALID_STATE: &str = "Invalid state parameter (CSRF check failed)";
pub const MISSING_CODE: &str = "Missing code parameter";
pub const EMAIL_NOT_VERIFIED: &str = "Google account e-mail is not verified";
pub const GOOGLE_ACCOUNT_CONFLICT: &str =
    "This e-mail is already linked to a different Google account";
pub const GOOGLE_NOT_LINKED: &str = "An account with this e-mail already exists and is not linked to \
     Google. Sign in to it with its password, then link Google: start a new Google sign-in \
     and POST its code and state to /auth/link/google with the account's access token";
pub const GOOGLE_LINK_CONFLICT: &str =
    "This account or this Google account is already linked to a different one";
pub const GOOGLE_FAILED: &str = "Google login failed";
pub const INVALID_ID_TOKEN: &str = "Invalid Google ID token";
pub const INVALID_REFRESH_TOKEN: &str = "Invalid refresh token";
pub const TOO_MANY_ATTEMPTS: &str = "Too many failed login attempts; try again later";
pub const TOO_MANY_REGISTRATIONS: &str =
    "Too many registrations from this address; try again later";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid request body")]
    Validation(Vec<FieldError>),
    #[error("{EMAIL_TAKEN}")]
    EmailTaken,
    #[error("{BAD_LOGIN}")]
    BadLogin,
    #[error("{GOOGLE_NOT_CONFIGURED}")]
    GoogleNotConfigured,
    #[error("{MISSING_STATE}")]
    MissingState,
    #[error("{INVALID_STATE}")]
    InvalidState,
    #[error("{MISSING_CODE}")]
    MissingCode,
    #[error(transparent)]
    Google(#[from] GoogleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The account or the client IP used up its failed logins; retry after this.
    #[error("{TOO_MANY_ATTEMPTS}")]
    TooManyAttempts(Duration),
    /// The client IP used up its registrations; retry after this.
    #[error("{TOO_MANY_REGISTRATIONS}")]
    TooManyRegistrations(Duration),
    /// A Google login met a password account with the same e-mail: signing in
    /// would hand that account to whoever controls the Google account, so it
    /// must be linked from a session of the account itself.
    #[error("{GOOGLE_NOT_LINKED}")]
    GoogleNotLinked,
    /// Linking: the account has another Google identity, or the identity belongs
    /// to another account.
    #[error("{GOOGLE_LINK_CONFLICT}")]
    GoogleLinkConflict,
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Validation(errors) => ApiError::Validation(errors),
            AuthError::EmailTaken | AuthError::Store(StoreError::DuplicateEmail) => {
                ApiError::BadRequest(EMAIL_TAKEN.into())
            }
            AuthError::BadLogin => ApiError::unauthorized(BAD_LOGIN),
            AuthError::GoogleNotConfigured => ApiError::NotFound(GOOGLE_NOT_CONFIGURED.into()),
            AuthError::GoogleNotLinked => ApiError::Conflict(GOOGLE_NOT_LINKED.into()),
            AuthError::GoogleLinkConflict => ApiError::Conflict(GOOGLE_LINK_CONFLICT.into()),
            AuthError::MissingState => ApiError::BadRequest(MISSING_STATE.into()),
            AuthError::InvalidState => ApiError::BadRequest(INVALID_STATE.into()),
            AuthError::MissingCode => ApiError::BadRequest(MISSING_CODE.into()),
            AuthError::Google(GoogleError::EmailNotVerified) => {
                ApiError::BadRequest(EMAIL_NOT_VERIFIED.into())
            }
            AuthError::Google(GoogleError::InvalidIdToken(cause)) => {
                // Which check failed (signature, nonce, …) is for the log, not the client.
                tracing::info!(error = %cause, "Google id_token rejected");
                ApiError::unauthorized(INVALID_ID_TOKEN)
            }
            AuthError::Store(StoreError::GoogleAccountConflict) => {
                ApiError::BadRequest(GOOGLE_ACCOUNT_CONFLICT.into())
            }
            AuthError::Google(GoogleError::Provider(cause)) => {
                // The cause stays in the log: provider replies are not for clients.
                tracing::warn!(error = %cause, "Google login failed at the provider");
                ApiError::BadGateway(GOOGLE_FAILED.into())
            }
            AuthError::Session(SessionError::InvalidRefreshToken) => {
                ApiError::unauthorized(INVALID_REFRESH_TOKEN)
            }
            AuthError::TooManyAttempts(wait) => too_many(TOO_MANY_ATTEMPTS, wait),
            AuthError::TooManyRegistrations(wait) => too_many(TOO_MANY_REGISTRATIONS, wait),
            // Internal failures: orderly-http logs the cause and answers a generic 500.
            err @ (AuthError::Store(_)
            | AuthError::Password(_)
            | AuthError::Token(_)
            | AuthError::Session(_)) => ApiError::internal(error_chain(&err)),
        }
    }
}

/// 429 with `Retry-After` in whole seconds, rounded up: retrying at the
/// announced time succeeds.
fn too_many(detail: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        detail: detail.into(),
        headers: [header_pair("retry-after", secs.max(1))]
            .into_iter()
            .collect(),
    }
}

/// `outer: inner: innermost`, so a logged 500 says what actually failed.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `transparent` and `{0}` messages often repeat the source.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
