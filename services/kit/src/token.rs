//! Access tokens: the claims auth signs and every service verifies. RS256 JWTs
//! whose `kid` header names the signing key (its RFC 7638 thumbprint); verifiers
//! hold several keys by kid, from PEM files or from the auth service's JWKS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};

use crate::ApiError;

pub const NOT_AUTHENTICATED: &str = "Not authenticated";
pub const BAD_CREDENTIALS: &str = "Could not validate credentials";

/// The only algorithm accepted: `alg: none`, HS256 keyed with the public key and
/// every other substitution fail before any signature check.
pub const ALGORITHM: Algorithm = Algorithm::RS256;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 10;
/// An unknown kid refetches the JWKS at most this often, so a stream of forged
/// kids cannot turn orders into a load generator against auth.
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Cached JWKS keys are refreshed after this long even without an unknown kid,
/// so a retired key stops verifying without a restart.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The access token's claims. `sub` is the user id as a string (compat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub email: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `user` or `admin`; absent in tokens of the old system (treated as `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not an RSA PEM key: {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Jwks { url: String, reason: String },
}

/// Why a token was refused. For logs only: clients always get the same 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("the token was rejected: {0}")]
    Rejected(String),
}

/// A public key that verifies tokens, identified by its kid.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    /// Public parameters with `kid`, `alg`, `use`: one entry of the JWKS.
    pub jwk: Jwk,
    decoding: Arc<DecodingKey>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The kid is the RFC 7638 SHA-256 thumbprint, so every holder of the same
    /// public key derives the same kid without coordination.
    pub fn from_rsa(key: &RsaPublicKey) -> Result<Self, KeyError> {
        let params = RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        };
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::RSA(params),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Parse {
                path: "<rsa key>".into(),
                reason: e.to_string(),
            })?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::RS256),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        Self::from_jwk(&jwk)
    }

    /// One PEM public key (SPKI `BEGIN PUBLIC KEY` or PKCS#1 `BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let key = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|e| KeyError::Parse {
                path: origin.to_string(),
                reason: e.to_string(),
            })?;
        Self::from_rsa(&key)
    }

    /// A JWKS entry. Keys without a kid get their thumbprint.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let parse_error = |reason: String| KeyError::Parse {
            path: "<jwk>".into(),
            reason,
        };
        if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
            return Err(parse_error("not an RSA key".into()));
        }
        if let Some(alg) = jwk.common.key_algorithm
            && alg != KeyAlgorithm::RS256
        {
            return Err(parse_error(format!("algorithm {alg:?} is not RS256")));
        }
        let kid = match &jwk.common.key_id {
            Some(kid) => kid.clone(),
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| parse_error(e.to_string()))?,
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| parse_error(e.to_string()))?;
        Ok(Self {
            kid,
            jwk: jwk.clone(),
            decoding: Arc::new(decoding),
        })
    }
}

/// Every PEM public key in `text` (a file may hold the current and the previous
/// key during a rotation: `cat new.pem old.pem`).
pub fn keys_from_pem_text(text: &str, origin: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        // The END line's own dashes close the block.
        let Some(end_marker) = block.find("-----END ") else {
            break;
        };
        let after_end = &block[end_marker + 9..];
        let Some(close) = after_end.find("-----") else {
            break;
        };
        let len = end_marker + 9 + close + 5;
        keys.push(VerifyingKey::from_pem(&block[..len], origin)?);
        rest = &block[len..];
    }
    if keys.is_empty() {
        return Err(KeyError::Parse {
            path: origin.to_string(),
            reason: "no PEM public key found".into(),
        });
    }
    Ok(keys)
}

/// The JWKS document listing `keys`.
pub fn jwk_set(keys: &[VerifyingKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    }
}

/// What a verifier requires beyond the signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifierConfig {
    /// When set, tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
}

struct JwksSource {
    url: String,
    http: reqwest::Client,
    min_refetch: Duration,
    /// When the keys were last fetched (successfully or not).
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Verifies access tokens against a set of keys by kid.
pub struct TokenVerifier {
    keys: RwLock<HashMap<String, VerifyingKey>>,
    jwks: Option<JwksSource>,
    validation: Validation,
    /// Tokens whose signature already checked out. An RSA-2048 verification
    /// costs ~100 µs — most of a cached GET's CPU — and a client repeats the
    /// same token on every request. A hit is re-checked for `exp`/`nbf`; a
    /// changed token is a different key, so tampering always takes the full path.
    verified: moka::sync::Cache<String, AccessClaims>,
}

/// How many verified tokens are remembered, and for how long at most (a key
/// withdrawn from the trusted set stops working within this time).
const VERIFIED_CAPACITY: u64 = 10_000;
const VERIFIED_TTL: Duration = Duration::from_secs(300);

fn verified_cache() -> moka::sync::Cache<String, AccessClaims> {
    moka::sync::Cache::builder()
        .max_capacity(VERIFIED_CAPACITY)
        .time_to_live(VERIFIED_TTL)
        .build()
}

impl TokenVerifier {
    pub fn new(keys: Vec<VerifyingKey>, config: &VerifierConfig) -> Self {
        Self {
            keys: RwLock::new(by_kid(keys)),
            jwks: None,
            validation: validation(config),
            verified: verified_cache(),
        }
    }

    /// Every PEM public key in the file.
    pub fn from_file(path: &std::path::Path, config: &VerifierConfig) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let keys = keys_from_pem_text(&text, &path.display().to_string())?;
        Ok(Self::new(keys, config))
    }

    /// Keys from the auth service's JWKS, refetched on an unknown kid (at most
    /// once per `min_refetch`) and when older than [`JWKS_MAX_AGE`]. A failed
    /// first fetch is not fatal (auth may start after orders): it is logged and
    /// retried on the first token.
    pub async fn from_jwks_url(
        url: &str,
        config: &VerifierConfig,
        min_refetch: Duration,
    ) -> Result<Self, KeyError> {
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| KeyError::Jwks {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let verifier = Self {
            keys: RwLock::new(HashMap::new()),
            jwks: Some(JwksSource {
                url: url.to_string(),
                http,
                min_refetch,
                last_fetch: tokio::sync::Mutex::new(None),
            }),
            validation: validation(config),
            verified: verified_cache(),
        };
        verifier.refetch(true).await;
        Ok(verifier)
    }

    /// The kids currently trusted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.read_keys().keys().cloned().collect();
        kids.sort();
        kids
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        if let Some(claims) = self.verified.get(token) {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let leeway = self.validation.leeway as i64;
            let live =
                claims.exp + leeway > now && claims.nbf.is_none_or(|nbf| nbf - leeway <= now);
            if live {
                return Ok(claims);
            }
            self.verified.invalidate(token);
        }
        let claims = self.verify_signature(token).await?;
        self.verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let header = decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        if let Some(source) = &self.jwks {
            let stale = source
                .last_fetch
                .try_lock()
                .is_ok_and(|last| last.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE));
            let unknown = header
                .kid
                .as_ref()
                .is_some_and(|kid| !self.read_keys().contains_key(kid));
            if stale || unknown {
                self.refetch(false).await;
            }
        }
        let candidates: Vec<VerifyingKey> = {
            let keys = self.read_keys();
            match &header.kid {
                Some(kid) => match keys.get(kid) {
                    Some(key) => vec![key.clone()],
                    None => return Err(VerifyError::UnknownKid(kid.clone())),
                },
                // Tokens issued before kids existed: any trusted key may have signed them.
                None => keys.values().cloned().collect(),
            }
        };
        let mut last = VerifyError::UnknownKid(String::new());
        for key in candidates {
            match decode::<AccessClaims>(token, &key.decoding, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = VerifyError::Rejected(format!("{:?}", e.kind())),
            }
        }
        Err(last)
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, VerifyingKey>> {
        // A writer that panicked left a complete map behind (it swaps whole maps).
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetch the JWKS unless the last attempt was under `min_refetch` ago
    /// (`force` skips that floor: the first fetch). Keeps the old keys on failure.
    async fn refetch(&self, force: bool) {
        let Some(source) = &self.jwks else { return };
        let mut last = source.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < source.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        match fetch_jwks(source).await {
            Ok(keys) => {
                tracing::info!(url = %source.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = by_kid(keys);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the cached keys"),
        }
    }
}

async fn fetch_jwks(source: &JwksSource) -> Result<Vec<VerifyingKey>, KeyError> {
    let error = |reason: String| KeyError::Jwks {
        url: source.url.clone(),
        reason,
    };
    let response = source
        .http
        .get(&source.url)
        .send()
        .await
        .map_err(|e| error(e.to_string()))?;
    if !response.status().is_success() {
        return Err(error(format!("answered {}", response.status())));
    }
    let set: JwkSet = response.json().await.map_err(|e| error(e.to_string()))?;
    let keys: Vec<VerifyingKey> = set
        .keys
        .iter()
        // Entries we cannot use (other key types) are skipped, not fatal.
        .filter_map(|jwk| VerifyingKey::from_jwk(jwk).ok())
        .collect();
    if keys.is_empty() {
        return Err(error("no usable RS256 key in the set".into()));
    }
    Ok(keys)
}

fn by_kid(keys: Vec<VerifyingKey>) -> HashMap<String, VerifyingKey> {
    keys.into_iter().map(|k| (k.kid.clone(), k)).collect()
}

fn validation(config: &VerifierConfig) -> Validation {
    let mut validation = Validation::new(ALGORITHM);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub role: Option<String>,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(NOT_AUTHENTICATED))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        // FastAPI's OAuth2PasswordBearer: a non-Bearer scheme counts as no credentials.
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized(NOT_AUTHENTICATED));
        }
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let claims = verifier.verify(token.trim()).await.map_err(|reason| {
            tracing::debug!(%reason, "token refused");
            ApiError::unauthorized(BAD_CREDENTIALS)
        })?;
        let id = claims
            .sub
            .parse::<i64>()
            .map_err(|_| ApiError::unauthorized(BAD_CREDENTIALS))?;
        Ok(CurrentUser {
            id,
            email: claims.email,
            role: claims.role,
        })
    }
}

#[cfg(test)]
mod verified_cache_tests {
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
        verifier.verified.insert("live".into(), claims(600));
        verifier.verified.insert("expired".into(), claims(-3600));
        assert!(verifier.verify("live").await.is_ok());
        assert!(verifier.verify("expired").await.is_err());
        assert!(
            verifier.verified.get("expired").is_none(),
            "dropped from the cache"
        );
    }
}
