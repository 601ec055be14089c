//! The one place where errors become HTTP responses.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// One entry of a FastAPI-style 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: Vec<serde_json::Value>, msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind: kind.to_string(),
        }
    }

    /// An error on a field of the JSON body: `body_field(&["items".into(), 0.into()], …)`.
    pub fn body(path: &[serde_json::Value], msg: impl Into<String>, kind: &str) -> Self {
        let mut loc = vec![json!("body")];
        loc.extend_from_slice(path);
        Self::new(loc, msg, kind)
    }
}

/// Every error a handler can return. Client mistakes carry the contract's text;
/// internal failures are logged here and answered with a generic 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// 401; `bearer` adds `WWW-Authenticate: Bearer` (OAuth2 convention).
    #[error("{detail}")]
    Unauthorized { detail: String, bearer: bool },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a plain string detail (a rule over the whole request).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{detail}")]
    TooManyRequests { detail: String, headers: HeaderMap },
    #[error("{0}")]
    Unavailable(String),
    /// 502: an upstream (e.g. an OAuth provider) failed. The detail is the public
    /// text; log the cause where it happens, it is never sent to the client.
    #[error("{0}")]
    BadGateway(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn unauthorized(detail: &str) -> Self {
        Self::Unauthorized {
            detail: detail.to_string(),
            bearer: true,
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }

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
