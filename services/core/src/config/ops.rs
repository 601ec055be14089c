//! Where `/health`, `/ready`, `/metrics` and the operator's console are
//! served beside (or, for consumer and worker, instead of) an HTTP API.

use super::ConfigError;
use super::env::{Env, Secret, bind_addr};

/// Where `orderly all` serves its ops listener (with the console) when
/// `ORDERLY_OPS_BIND` is unset: this machine only. Skipped with a warning
/// when the port is taken, so a second `orderly all` still starts.
pub const DEFAULT_ALL_OPS_BIND: &str = "127.0.0.1:8002";

/// `ORDERLY_OPS_BIND`, when set (unset: the role decides, see
/// [`DEFAULT_ALL_OPS_BIND`]).
pub(super) fn ops_bind(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get(&["ORDERLY_OPS_BIND"]) {
        Some(_) => bind_addr(env, "ORDERLY_OPS_BIND", "0.0.0.0:9090").map(Some),
        None => Ok(None),
    }
}

/// `ORDERLY_CONSOLE_TOKEN`: what signs in to the console on an ops listener
/// that is not on a loopback address (unset: the console is not served there).
pub(super) fn console_token(env: &Env) -> Option<Secret> {
    env.value(&["ORDERLY_CONSOLE_TOKEN"]).map(Secret::new)
}
