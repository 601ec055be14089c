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
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, RSAKeyParameters, RSAKeyType,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
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

    /// For verifying other RS256 JWTs with this key (Google's id_tokens).
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
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
    /// Ed25519 keys for PASETO v4.public tokens, by the kid in the token's footer.
    paseto: RwLock<HashMap<String, PasetoKey>>,
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
            paseto: RwLock::new(HashMap::new()),
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
            paseto: RwLock::new(HashMap::new()),
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

    /// Also accept PASETO v4.public tokens signed by these keys (JWKS verifiers
    /// pick them up from the set's Ed25519 entries by themselves).
    pub fn with_paseto_keys(self, keys: Vec<PasetoKey>) -> Self {
        *self.paseto.write().unwrap_or_else(|e| e.into_inner()) = paseto_by_kid(keys);
        self
    }

    /// The kids currently trusted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.read_keys().keys().cloned().collect();
        kids.extend(self.read_paseto().keys().cloned());
        kids.sort();
        kids
    }

    /// For `/ready` when the keys come from a JWKS URL: fine while keys are
    /// known; with none yet (auth was down when orders started) it fetches
    /// again, at most once per `min_refetch`, so readiness recovers by itself.
    pub async fn jwks_ready(&self) -> Result<(), String> {
        let Some(source) = &self.jwks else {
            return Ok(());
        };
        if self.kids().is_empty() {
            self.refetch(false).await;
        }
        if self.kids().is_empty() {
            return Err(format!("no usable key fetched from {} yet", source.url));
        }
        Ok(())
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
        let claims = if token.starts_with(PASETO_PREFIX) {
            self.verify_paseto(token).await?
        } else {
            self.verify_signature(token).await?
        };
        self.verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let header = decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let unknown = header
            .kid
            .as_ref()
            .is_some_and(|kid| !self.read_keys().contains_key(kid));
        self.refresh_keys(unknown).await;
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

    /// Refetch the JWKS when it is stale or the token names a kid we lack.
    async fn refresh_keys(&self, unknown_kid: bool) {
        if let Some(source) = &self.jwks {
            let stale = source
                .last_fetch
                .try_lock()
                .is_ok_and(|last| last.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE));
            if stale || unknown_kid {
                self.refetch(false).await;
            }
        }
    }

    /// A v4.public token: the footer (`{"kid":…}`) picks the key, the signature
    /// covers payload and footer, then `exp`/`nbf` (with leeway) and `iss`/`aud`
    /// are checked as for JWTs.
    async fn verify_paseto(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let untrusted = UntrustedToken::<pasetors::Public, V4>::try_from(token)
            .map_err(|_| VerifyError::Malformed)?;
        let footer: PasetoFooter = serde_json::from_slice(untrusted.untrusted_footer())
            .map_err(|_| VerifyError::Rejected("the footer is not {\"kid\":…}".into()))?;
        let unknown = !self.read_paseto().contains_key(&footer.kid);
        self.refresh_keys(unknown).await;
        let key = self
            .read_paseto()
            .get(&footer.kid)
            .cloned()
            .ok_or_else(|| VerifyError::UnknownKid(footer.kid.clone()))?;
        let trusted = PublicToken::verify(&key.key, &untrusted, None, None)
            .map_err(|_| VerifyError::Rejected("bad PASETO signature".into()))?;
        let claims: PasetoClaims = serde_json::from_str(trusted.payload())
            .map_err(|e| VerifyError::Rejected(format!("PASETO claims: {e}")))?;
        let claims = claims.into_access();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leeway = self.validation.leeway as i64;
        if claims.exp + leeway <= now {
            return Err(VerifyError::Rejected("ExpiredSignature".into()));
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return Err(VerifyError::Rejected("ImmatureSignature".into()));
        }
        if let Some(issuers) = &self.validation.iss
            && !claims.iss.as_ref().is_some_and(|i| issuers.contains(i))
        {
            return Err(VerifyError::Rejected("InvalidIssuer".into()));
        }
        if self.validation.validate_aud
            && let Some(audiences) = &self.validation.aud
            && !claims.aud.as_ref().is_some_and(|a| audiences.contains(a))
        {
            return Err(VerifyError::Rejected("InvalidAudience".into()));
        }
        Ok(claims)
    }

    fn read_paseto(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PasetoKey>> {
        self.paseto.read().unwrap_or_else(|e| e.into_inner())
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
            Ok((keys, paseto)) => {
                tracing::info!(url = %source.url, keys = keys.len(), paseto_keys = paseto.len(), "JWKS fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = by_kid(keys);
                *self.paseto.write().unwrap_or_else(|e| e.into_inner()) = paseto_by_kid(paseto);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the cached keys"),
        }
    }
}

async fn fetch_jwks(source: &JwksSource) -> Result<(Vec<VerifyingKey>, Vec<PasetoKey>), KeyError> {
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
    let paseto: Vec<PasetoKey> = set
        .keys
        .iter()
        .filter_map(|jwk| PasetoKey::from_jwk(jwk).ok())
        .collect();
    if keys.is_empty() && paseto.is_empty() {
        return Err(error("no usable RS256 or Ed25519 key in the set".into()));
    }
    Ok((keys, paseto))
}

fn paseto_by_kid(keys: Vec<PasetoKey>) -> HashMap<String, PasetoKey> {
    keys.into_iter().map(|k| (k.kid.clone(), k)).collect()
}

/// Every PASETO token this service accepts starts so.
pub const PASETO_PREFIX: &str = "v4.public.";

#[derive(Serialize, Deserialize)]
struct PasetoFooter {
    kid: String,
}

/// [`AccessClaims`] as PASETO wants them: times as RFC 3339 strings.
#[derive(Serialize, Deserialize)]
struct PasetoClaims {
    sub: String,
    email: String,
    #[serde(with = "time::serde::rfc3339")]
    exp: time::OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    iat: Option<time::OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    nbf: Option<time::OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

fn from_unix(secs: i64) -> Result<time::OffsetDateTime, KeyError> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| KeyError::Parse {
        path: "<claims>".into(),
        reason: e.to_string(),
    })
}

impl PasetoClaims {
    fn from_access(c: &AccessClaims) -> Result<Self, KeyError> {
        Ok(Self {
            sub: c.sub.clone(),
            email: c.email.clone(),
            exp: from_unix(c.exp)?,
            iat: c.iat.map(from_unix).transpose()?,
            nbf: c.nbf.map(from_unix).transpose()?,
            jti: c.jti.clone(),
            role: c.role.clone(),
            iss: c.iss.clone(),
            aud: c.aud.clone(),
        })
    }

    fn into_access(self) -> AccessClaims {
        AccessClaims {
            sub: self.sub,
            email: self.email,
            exp: self.exp.unix_timestamp(),
            iat: self.iat.map(|t| t.unix_timestamp()),
            nbf: self.nbf.map(|t| t.unix_timestamp()),
            jti: self.jti,
            role: self.role,
            iss: self.iss,
            aud: self.aud,
        }
    }
}

/// An Ed25519 public key verifying PASETO v4.public tokens, published in the
/// JWKS as an `OKP` entry whose kid is its RFC 7638 thumbprint.
#[derive(Clone)]
pub struct PasetoKey {
    pub kid: String,
    pub jwk: Jwk,
    key: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for PasetoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasetoKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PasetoKey {
    /// The raw 32-byte Ed25519 public key.
    pub fn from_public_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(bytes),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| paseto_error(e.to_string()))?;
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid),
            ..CommonParameters::default()
        };
        Self::from_jwk(&jwk)
    }

    /// A JWKS `OKP`/`Ed25519` entry. Keys without a kid get their thumbprint.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
            return Err(paseto_error("not an OKP key".into()));
        };
        if params.curve != EllipticCurve::Ed25519 {
            return Err(paseto_error("not an Ed25519 key".into()));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&params.x)
            .map_err(|e| paseto_error(e.to_string()))?;
        let key = AsymmetricPublicKey::<V4>::from(&bytes)
            .map_err(|_| paseto_error("not a 32-byte Ed25519 key".into()))?;
        let kid = match &jwk.common.key_id {
            Some(kid) => kid.clone(),
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| paseto_error(e.to_string()))?,
        };
        Ok(Self {
            kid,
            jwk: jwk.clone(),
            key,
        })
    }
}

fn paseto_error(reason: String) -> KeyError {
    KeyError::Parse {
        path: "<ed25519 key>".into(),
        reason,
    }
}

/// Signs PASETO v4.public access tokens; the footer `{"kid":…}` names the key.
pub struct PasetoSigner {
    secret: AsymmetricSecretKey<V4>,
    public: PasetoKey,
}

impl std::fmt::Debug for PasetoSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("PasetoSigner")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl PasetoSigner {
    /// A fresh key: the 64 bytes (seed then public key) to keep secret.
    pub fn generate_secret() -> Result<Vec<u8>, KeyError> {
        let pair = AsymmetricKeyPair::<V4>::generate()
            .map_err(|_| paseto_error("key generation failed".into()))?;
        Ok(pair.secret.as_bytes().to_vec())
    }

    /// From the 64 secret bytes of [`Self::generate_secret`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let secret = AsymmetricSecretKey::<V4>::from(bytes)
            .map_err(|_| paseto_error("not a 64-byte Ed25519 secret key".into()))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| paseto_error("cannot derive the public key".into()))?;
        Ok(Self {
            public: PasetoKey::from_public_bytes(public.as_bytes())?,
            secret,
        })
    }

    pub fn public_key(&self) -> &PasetoKey {
        &self.public
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(&PasetoClaims::from_access(claims)?)
            .map_err(|e| paseto_error(e.to_string()))?;
        let footer = serde_json::to_vec(&PasetoFooter {
            kid: self.public.kid.clone(),
        })
        .map_err(|e| paseto_error(e.to_string()))?;
        PublicToken::sign(&self.secret, &payload, Some(&footer), None)
            .map_err(|e| paseto_error(format!("{e:?}")))
    }
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
