//! Where the roles without an HTTP API (consumer, worker) serve `/health`,
//! `/ready` and `/metrics`.

use super::ConfigError;
use super::env::{Env, bind_addr};

/// `ORDERLY_OPS_BIND`, when set (unset: nowhere).
pub(super) fn ops_bind(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get(&["ORDERLY_OPS_BIND"]) {
        Some(_) => bind_addr(env, "ORDERLY_OPS_BIND", "0.0.0.0:9090").map(Some),
        None => Ok(None),
    }
}
