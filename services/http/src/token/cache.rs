//! Tokens whose signature already checked out. An RSA-2048 verification
//! costs ~100 µs — most of a cached GET's CPU — and a client repeats the
//! same token on every request. A hit is re-checked for `exp`/`nbf`; a
//! changed token is a different key, so tampering always takes the full path.

use std::time::Duration;

use super::{AccessClaims, check_times};

/// How many verified tokens are remembered, and for how long at most (a key
/// withdrawn from the trusted set stops working within this time).
const VERIFIED_CAPACITY: u64 = 10_000;
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Verified tokens and their claims, bounded in number and age.
pub(super) struct VerifiedCache(moka::sync::Cache<String, AccessClaims>);

impl VerifiedCache {
    pub(super) fn new() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        )
    }

    /// The claims of `token` if it was verified and is still within its
    /// lifetime (`leeway` seconds of skew); an expired one is dropped.
    pub(super) fn live(&self, token: &str, leeway: i64) -> Option<AccessClaims> {
        let claims = self.0.get(token)?;
        if check_times(&claims, leeway).is_ok() {
            return Some(claims);
        }
        self.0.invalidate(token);
        None
    }

    pub(super) fn insert(&self, token: &str, claims: AccessClaims) {
        self.0.insert(token.to_string(), claims);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TokenVerifier, VerifierConfig};
    use super::*;

    fn claims(exp_from_now: i64) -> AccessClaims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        AccessClaims {
            sub: "1".into(),
            email: "a@example.com".into(),
            exp: now + exp_from_now,
            iat: Some(now),
            jti: None,
            role: None,
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        // No trusted keys: anything not answered from the cache is refused.
        let verifier = TokenVerifier::new(vec![], &VerifierConfig::default());
        verifier.verified.insert("live", claims(600));
        verifier.verified.insert("expired", claims(-3600));
        assert!(verifier.verify("live").await.is_ok());
        assert!(verifier.verify("expired").await.is_err());
        assert!(
            verifier.verified.0.get("expired").is_none(),
            "dropped from the cache"
        );
    }
}
