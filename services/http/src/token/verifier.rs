//! The verifier: which keys are trusted, and checking a token against them
//! (the signature, then `exp`/`nbf`, `iss` and `aud`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use jsonwebtoken::{Validation, decode, decode_header};

use super::cache::VerifiedCache;
use super::jwks::JwksSource;
use super::paseto::paseto_by_kid;
use super::revoked::RevokedTokens;
use super::{
    ALGORITHM, AccessClaims, KeyError, LEEWAY_SECS, PASETO_PREFIX, PasetoKey, VerifierConfig,
    VerifyError, VerifyingKey, keys_from_pem_text,
};

/// Verifies access tokens against a set of keys by kid.
pub struct TokenVerifier {
    pub(super) keys: RwLock<HashMap<String, VerifyingKey>>,
    /// Ed25519 keys for PASETO v4.public tokens, by the kid in the token's footer.
    pub(super) paseto: RwLock<HashMap<String, PasetoKey>>,
    pub(super) jwks: Option<JwksSource>,
    pub(super) validation: Validation,
    pub(super) verified: VerifiedCache,
    /// Tokens auth revoked before their expiry; none when not set.
    pub(super) revoked: OnceLock<Arc<RevokedTokens>>,
}

impl TokenVerifier {
    /// Trust exactly these keys.
    pub fn new(keys: Vec<VerifyingKey>, config: &VerifierConfig) -> Self {
        Self {
            keys: RwLock::new(by_kid(keys)),
            paseto: RwLock::new(HashMap::new()),
            jwks: None,
            validation: validation(config),
            verified: VerifiedCache::new(),
            revoked: OnceLock::new(),
        }
    }

    /// From now on also refuse tokens whose `jti` is on this list (the first
    /// list set stays).
    pub fn refuse_revoked(&self, revoked: Arc<RevokedTokens>) {
        let _ = self.revoked.set(revoked);
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

    /// Trust exactly these keys from now on: orders started before auth wrote
    /// its public key file takes the key once the file is there.
    pub fn trust(&self, keys: Vec<VerifyingKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = by_kid(keys);
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

    /// The claims of `token` when a trusted key signed it and it is valid now.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let claims = self.verify_unrevoked(token).await?;
        let revoked = match (self.revoked.get(), &claims.jti) {
            (Some(list), Some(jti)) => list.contains(jti),
            _ => false,
        };
        if revoked {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    async fn verify_unrevoked(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        if let Some(claims) = self.verified.live(token, self.leeway()) {
            return Ok(claims);
        }
        let claims = if token.starts_with(PASETO_PREFIX) {
            self.verify_paseto(token).await?
        } else {
            self.verify_signature(token).await?
        };
        self.verified.insert(token, claims.clone());
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

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub(super) fn leeway(&self) -> i64 {
        self.validation.leeway as i64
    }

    pub(super) fn read_paseto(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PasetoKey>> {
        self.paseto.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn read_keys(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, VerifyingKey>> {
        // A writer that panicked left a complete map behind (it swaps whole maps).
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn by_kid(keys: Vec<VerifyingKey>) -> HashMap<String, VerifyingKey> {
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
