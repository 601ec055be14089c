//! A field-level validation error: what the contract's 422 `detail` lists.
//! Plain data, so a service's domain can validate without any HTTP crate.

use serde::Serialize;
use serde_json::json;

/// One entry of a FastAPI-style 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Where: `body`, `query` or `path`, then the field's path.
    pub loc: Vec<serde_json::Value>,
    /// What is wrong, for people.
    pub msg: String,
    /// What is wrong, for programs (e.g. `missing`).
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// An error at `loc`.
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
