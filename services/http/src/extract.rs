//! Body extractors whose rejections are FastAPI-shaped 422s, so old clients
//! parsing `detail[].loc` keep working.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, FieldError};

/// A JSON body. Rejections: 422 with `loc: ["body", …path]`.
pub struct Json<T>(pub T);

/// An `application/x-www-form-urlencoded` body (OAuth2 password form). A
/// repeated field takes its last value, as in FastAPI. Rejections: 422.
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
fn field_error(loc: Vec<Value>, message: &str) -> FieldError {
    field_error_in("body", loc, message)
}

/// [`field_error`] for another part of the request (`"query"`, `"path"`).
fn field_error_in(part: &str, mut loc: Vec<Value>, message: &str) -> FieldError {
    let at = |loc: &[Value], msg: &str, kind: &str| {
        let mut full = vec![json!(part)];
        full.extend_from_slice(loc);
        FieldError::new(full, msg, kind)
    };
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        loc.push(json!(name));
        return at(&loc, "Field required", "missing");
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
    at(&loc, msg, kind)
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
        let normalised = last_value_wins(&bytes);
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(normalised.as_bytes()));
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

/// The pairs of an urlencoded string with each key once, holding its last
/// value (Starlette's rule for a repeated field), re-encoded. Invalid UTF-8
/// decodes to U+FFFD.
fn last_value_wins(raw: &[u8]) -> String {
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw) {
        match position.get(key.as_ref()) {
            Some(&i) => pairs[i].1 = value.into_owned(),
            None => {
                position.insert(key.to_string(), pairs.len());
                pairs.push((key.into_owned(), value.into_owned()));
            }
        }
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish()
}

/// The query string. Like FastAPI (Starlette): a repeated parameter takes its
/// last value, and invalid percent-encoded UTF-8 (`%FF`) decodes to U+FFFD
/// instead of failing. Rejections: 422 with `loc: ["query", …]`.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let normalised = last_value_wins(raw.as_bytes());
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(normalised.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let loc = path_loc(err.path());
                ApiError::Validation(vec![field_error_in("query", loc, &err.inner().to_string())])
            })
    }
}

/// Path parameters. Rejections (e.g. `%FF`, not UTF-8 once decoded, or a value
/// that does not parse): 422 with `loc: ["path", name]`, never axum's plain-text 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let rejection = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => return Ok(Path(value)),
            Err(rejection) => rejection,
        };
        let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
            // No parameters matched: a routing mistake in this program, not the client's.
            return Err(ApiError::internal(rejection.body_text()));
        };
        let at = |key: Option<&str>, msg: String, kind: &str| {
            let mut loc = vec![json!("path")];
            loc.extend(key.map(|k| json!(k)));
            ApiError::Validation(vec![FieldError::new(loc, msg, kind)])
        };
        Err(match failed.into_kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => at(
                Some(&key),
                "Input should be a valid UTF-8 string".into(),
                "string_unicode",
            ),
            ErrorKind::ParseErrorAtKey {
                key, expected_type, ..
            } => at(
                Some(&key),
                format!("Input should be a valid {expected_type}"),
                "value_error",
            ),
            ErrorKind::ParseError { expected_type, .. }
            | ErrorKind::ParseErrorAtIndex { expected_type, .. } => at(
                None,
                format!("Input should be a valid {expected_type}"),
                "value_error",
            ),
            ErrorKind::DeserializeError { key, message, .. } => {
                at(Some(&key), message, "value_error")
            }
            ErrorKind::Message(message) => at(None, message, "value_error"),
            // Wrong arity or an unsupported target type: a bug in this program.
            other => ApiError::internal(other),
        })
    }
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

    #[derive(Deserialize, serde::Serialize)]
    struct Page {
        limit: Option<String>,
        offset: Option<String>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Numbers {
        n: i64,
    }

    async fn get(app: Router, uri: &str) -> (u16, Value) {
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
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

    fn query_app() -> Router {
        Router::new()
            .route(
                "/page",
                axum::routing::get(|Query(p): Query<Page>| async move { axum::Json(p) }),
            )
            .route(
                "/n",
                axum::routing::get(|Query(q): Query<Numbers>| async move { q.n.to_string() }),
            )
    }

    #[tokio::test]
    async fn a_repeated_query_parameter_takes_its_last_value_and_bad_utf8_is_replaced() {
        let (status, body) = get(query_app(), "/page?limit=1&offset=%FF&limit=abc").await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"limit": "abc", "offset": "\u{fffd}"}));
    }

    #[tokio::test]
    async fn a_repeated_form_field_takes_its_last_value() {
        let app = Router::new().route(
            "/",
            post(|Form(p): Form<Page>| async move { axum::Json(p) }),
        );
        // Many distinct keys too: deduplication is linear, not quadratic.
        let junk: Vec<String> = (0..50_000).map(|i| format!("k{i}=")).collect();
        let body = format!("limit=1&{}&limit=2&offset=%FF", junk.join("&"));
        let res = app
            .oneshot(
                Request::post("/")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(page, json!({"limit": "2", "offset": "\u{fffd}"}));
    }

    #[tokio::test]
    async fn an_unparsable_query_parameter_is_a_422_naming_it() {
        for uri in ["/n?n=x", "/n?n=9223372036854775808", "/n"] {
            let (status, body) = get(query_app(), uri).await;
            assert_eq!(status, 422, "{uri}");
            assert_eq!(body["detail"][0]["loc"], json!(["query", "n"]), "{uri}");
        }
    }

    #[tokio::test]
    async fn a_path_parameter_that_is_not_utf8_or_does_not_parse_is_a_422() {
        let app = Router::new()
            .route(
                "/s/{id}",
                axum::routing::get(|Path(id): Path<String>| async move { id }),
            )
            .route(
                "/n/{id}",
                axum::routing::get(|Path(id): Path<i64>| async move { id.to_string() }),
            );
        for uri in ["/s/%FF", "/s/%C3%28", "/n/x", "/n/9223372036854775808"] {
            let (status, body) = get(app.clone(), uri).await;
            assert_eq!(status, 422, "{uri}");
            assert_eq!(body["detail"][0]["loc"][0], "path", "{uri}: {body}");
        }
        assert_eq!(
            get(app.clone(), "/s/%FF").await.1["detail"][0]["loc"],
            json!(["path", "id"])
        );
        let (status, _) = get(app, "/s/%00..%2F").await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn broken_json_is_a_422_not_a_400() {
        let (status, body) = post_json(r#"{"email":"#).await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["type"], "json_invalid");
    }
}
