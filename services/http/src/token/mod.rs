//! Access tokens: the claims auth signs and every service verifies. RS256 JWTs
//! whose `kid` header names the signing key (its RFC 7638 thumbprint), or
//! PASETO v4.public tokens; verifiers hold several keys by kid, from PEM files
//! or from the auth service's JWKS.
//!
//! One file per job: `rs256` keys, `jwks` refetching, the `cache` of
//! verified tokens, `paseto` keys and signer, the `revoked` list, the `verifier` itself, and the
//! `current_user` extractor.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

mod cache;
mod current_user;
mod jwks;
mod paseto;
mod revoked;
mod rs256;
mod verifier;

pub use current_user::{BAD_CREDENTIALS, CurrentUser, NOT_AUTHENTICATED};
pub use jwks::JWKS_MAX_AGE;
pub use orderly_core::config::VerifierConfig;
pub use paseto::{PASETO_PREFIX, PasetoKey, PasetoSigner};
pub use revoked::{RevokedListError, RevokedTokens};
pub use rs256::{VerifyingKey, jwk_set, keys_from_pem_text};
pub use verifier::TokenVerifier;

/// The only algorithm accepted: `alg: none`, HS256 keyed with the public key and
/// every other substitution fail before any signature check.
pub const ALGORITHM: Algorithm = Algorithm::RS256;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 10;

/// The access token's claims. `sub` is the user id as a string (compat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `user` or `admin`; absent in tokens of the old system (treated as `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The issuer, when `AUTH_ISSUER` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience, when `AUTH_AUDIENCE` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read key file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not one this crate can use.
    #[error("key file {path} is not an RSA PEM key: {reason}")]
    Parse {
        /// Where the key came from.
        path: String,
        /// Why.
        reason: String,
    },
    /// The JWKS cannot be fetched or holds no usable key.
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Why a token was refused. For logs only: clients always get the same 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a JWT or PASETO token at all.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// A JWT signed with another algorithm than RS256.
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// No trusted key has the token's kid.
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    /// The signature or a claim does not check out.
    #[error("the token was rejected: {0}")]
    Rejected(String),
    /// Auth revoked the token before its expiry.
    #[error("the token was revoked")]
    Revoked,
}

/// `exp` and `nbf` against the clock, with `leeway` seconds of skew.
fn check_times(claims: &AccessClaims, leeway: i64) -> Result<(), VerifyError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if claims.exp + leeway <= now {
        return Err(VerifyError::Rejected("ExpiredSignature".into()));
    }
    if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
        return Err(VerifyError::Rejected("ImmatureSignature".into()));
    }
    Ok(())
}
