//! What access tokens must carry beyond a valid signature (`AUTH_ISSUER`,
//! `AUTH_AUDIENCE`): auth puts it into tokens, orders requires it.

use super::env::Env;

/// What a verifier requires beyond the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifierConfig {
    /// When set, tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
}

/// Shared by auth (puts them in tokens) and orders (requires them).
pub(super) fn verifier_config(env: &Env) -> VerifierConfig {
    VerifierConfig {
        issuer: env.value(&["AUTH_ISSUER"]),
        audience: env.value(&["AUTH_AUDIENCE"]),
    }
}
