//! The contract's error body (`{"detail": …}`), checked on any answer a test
//! reads.

/// Whether `body` is the contract's error body for `status`: a JSON object
/// whose `detail` is a string, or (422 only) a non-empty list of
/// `{"loc": [...], "msg": "...", "type": "..."}`. `Err` says what is wrong.
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
    use axum::response::IntoResponse;
    use orderly_http::{ApiError, FieldError};
    use serde_json::json;

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
