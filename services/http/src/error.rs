//! The one place where errors become HTTP responses.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use orderly_core::FieldError;

/// Every error a handler can return. Client mistakes carry the contract's text;
/// internal failures are logged here and answered with a generic 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401; `bearer` adds `WWW-Authenticate: Bearer` (OAuth2 convention).
    #[error("{detail}")]
    Unauthorized {
        /// The contract's text.
        detail: String,
        /// Whether to add `WWW-Authenticate: Bearer`.
        bearer: bool,
    },
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 422 with FastAPI's list of field errors.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a plain string detail (a rule over the whole request).
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with the rate limit's headers.
    #[error("{detail}")]
    TooManyRequests {
        /// The contract's text.
        detail: String,
        /// `Retry-After` and the `X-RateLimit-*` headers.
        headers: HeaderMap,
    },
    /// 503: a dependency does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 502: an upstream (e.g. an OAuth provider) failed. The detail is the public
    /// text; log the cause where it happens, it is never sent to the client.
    #[error("{0}")]
    BadGateway(String),
    /// 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 500; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: &str) -> Self {
        Self::Unauthorized {
            detail: detail.to_string(),
            bearer: true,
        }
    }

    /// 500 for any failure; `err` is logged, never sent.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Validation(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `{"detail": "..."}` with a status: for responses built outside handlers.
pub fn detail_response(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({ "detail": detail }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Validation(errors) => {
                (status, axum::Json(json!({ "detail": errors }))).into_response()
            }
            Self::Unauthorized { detail, bearer } => {
                let mut response = detail_response(status, &detail);
                if bearer {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                response
            }
            Self::TooManyRequests { detail, headers } => {
                let mut response = detail_response(status, &detail);
                response.headers_mut().extend(headers);
                response
            }
            Self::PayloadTooLarge => detail_response(status, "Request body too large"),
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                detail_response(status, "Internal Server Error")
            }
            Self::BadRequest(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::Unprocessable(d)
            | Self::Unavailable(d)
            | Self::BadGateway(d) => detail_response(status, &d),
        }
    }
}

/// Header helper for [`ApiError::TooManyRequests`] and rate-limit headers.
pub fn header_pair(name: &'static str, value: impl ToString) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&value.to_string()).unwrap_or(HeaderValue::from_static(""));
    (HeaderName::from_static(name), value)
}
