//! Body extractors whose rejections are FastAPI-shaped 422s, so old clients
//! parsing `detail[].loc` keep working.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, FieldError};

/// A JSON body. Rejections: 422 with `loc: ["body", …path]`.
pub struct Json<T>(pub T);

/// An `application/x-www-form-urlencoded` body (OAuth2 password form).
pub struct Form<T>(pub T);

fn path_loc(path: &serde_path_to_error::Path) -> Vec<Value> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(json!(index)),
            serde_path_to_error::Segment::Map { key } => Some(json!(key)),
            serde_path_to_error::Segment::Enum { variant } => Some(json!(variant)),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// Turn serde's message into FastAPI's `type`/`msg`, naming a missing field in `loc`.
fn field_error(mut loc: Vec<Value>, message: &str) -> FieldError {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        loc.push(json!(name));
        return FieldError::body(&loc, "Field required", "missing");
    }
    // serde appends " at line L column C" for JSON syntax positions: keep the text short.
    let msg = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let kind = if msg.starts_with("invalid type") {
        "type_error"
    } else {
        "value_error"
    };
    FieldError::body(&loc, msg, kind)
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct.to_ascii_lowercase();
                ct.starts_with("application/json") || ct.contains("+json")
            })
            // FastAPI parses a body without a content type as JSON too.
            .unwrap_or(true);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("Could not read the request body".into())
            }
        })?;
        if !is_json {
            return Err(ApiError::Validation(vec![FieldError::body(
                &[],
                "Content-Type must be application/json",
                "model_attributes_type",
            )]));
        }
        if bytes.is_empty() {
            return Err(ApiError::Validation(vec![FieldError::body(
                &[],
                "Field required",
                "missing",
            )]));
        }
        let json_invalid = |column: usize| {
            ApiError::Validation(vec![FieldError::body(
                &[json!(column)],
                "JSON decode error",
                "json_invalid",
            )])
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = match serde_path_to_error::deserialize(&mut de) {
            Ok(value) => value,
            Err(err) => {
                let inner = err.inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(json_invalid(inner.column()));
                }
                let loc = path_loc(err.path());
                return Err(ApiError::Validation(vec![field_error(
                    loc,
                    &inner.to_string(),
                )]));
            }
        };
        // Trailing bytes after the JSON value.
        de.end().map_err(|e| json_invalid(e.column()))?;
        Ok(Json(value))
    }
}

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("Could not read the request body".into())
            }
        })?;
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(&bytes));
        serde_path_to_error::deserialize(de)
            .map(Form)
            .map_err(|err| {
                let loc = path_loc(err.path());
                ApiError::Validation(vec![field_error(loc, &err.inner().to_string())])
            })
    }
}

fn form_urlencoded_parse(bytes: &[u8]) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Body1 {
        email: String,
        items: Vec<Item>,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Item {
        price: f64,
    }

    async fn post_json(body: &'static str) -> (u16, Value) {
        let app = Router::new().route("/", post(|Json(_b): Json<Body1>| async { "ok" }));
        let res = app
            .oneshot(
                Request::post("/")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn a_missing_field_is_a_422_naming_the_field() {
        let (status, body) = post_json(r#"{"items":[]}"#).await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));
        assert_eq!(body["detail"][0]["type"], "missing");
    }

    #[tokio::test]
    async fn a_wrong_type_deep_inside_names_its_path() {
        let (status, body) = post_json(r#"{"email":"a","items":[{"price":"x"}]}"#).await;
        assert_eq!(status, 422);
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "items", 0, "price"])
        );
    }

    #[tokio::test]
    async fn broken_json_is_a_422_not_a_400() {
        let (status, body) = post_json(r#"{"email":"#).await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["type"], "json_invalid");
    }
}
