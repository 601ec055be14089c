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

/// Whether `body` is the contract's error body for `status`: a JSON object
/// whose `detail` is a string, or (422 only) a non-empty list of
/// `{"loc": [...], "msg": "...", "type": "..."}`. For tests and clients that
/// check answers; `Err` says what is wrong.
pub fn check_error_body(status: u16, body: &[u8]) -> Result<(), String> {
    let shown = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("{status}: the body is not JSON ({e}): {}", shown()))?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            "{status}: the body is not a JSON object: {}",
            shown()
        ));
    };
    match object.get("detail") {
        Some(serde_json::Value::String(_)) => Ok(()),
        Some(serde_json::Value::Array(items)) if status == 422 && !items.is_empty() => {
            for item in items {
                let well_formed = item["loc"].as_array().is_some_and(|loc| {
                    !loc.is_empty() && loc.iter().all(|l| l.is_string() || l.is_u64())
                }) && item["msg"].is_string()
                    && item["type"].is_string();
                if !well_formed {
                    return Err(format!(
                        "422: a detail entry is not {{loc, msg, type}}: {item}"
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(format!(
            "{status}: `detail` is neither a string nor (for 422) a list of errors: {}",
            shown()
        )),
        None => Err(format!("{status}: no `detail` key: {}", shown())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (u16, Vec<u8>) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    #[tokio::test]
    async fn every_error_kind_has_the_contract_shape() {
        let errors = [
            ApiError::BadRequest("x".into()),
            ApiError::unauthorized("x"),
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::Conflict("x".into()),
            ApiError::Validation(vec![FieldError::body(&[json!("a"), json!(0)], "m", "t")]),
            ApiError::Unprocessable("x".into()),
            ApiError::PayloadTooLarge,
            ApiError::Internal("secret cause".into()),
        ];
        for error in errors {
            let (status, body) = body_of(error).await;
            assert_eq!(check_error_body(status, &body), Ok(()));
        }
    }

    #[test]
    fn bodies_off_the_contract_are_refused() {
        for (status, body) in [
            (400, &b"Failed to deserialize query string"[..]),
            (404, b"[]"),
            (401, br#"{"error":"x"}"#),
            (
                400,
                br#"{"detail":[{"loc":["body"],"msg":"m","type":"t"}]}"#,
            ),
            (422, br#"{"detail":[]}"#),
            (422, br#"{"detail":[{"loc":"body","msg":"m","type":"t"}]}"#),
            (422, br#"{"detail":[{"loc":["body"],"msg":"m"}]}"#),
            (413, br#"{"detail":null}"#),
        ] {
            assert!(
                check_error_body(status, body).is_err(),
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(check_error_body(413, br#"{"detail":"too big"}"#), Ok(()));
    }
}
