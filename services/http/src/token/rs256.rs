//! RS256 public keys: from PEM or a JWKS entry, identified by their RFC 7638
//! thumbprint, and the JWKS document auth publishes.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

use super::KeyError;

/// A public key that verifies tokens, identified by its kid.
#[derive(Clone)]
pub struct VerifyingKey {
    /// Its RFC 7638 thumbprint (or the JWKS entry's kid).
    pub kid: String,
    /// Public parameters with `kid`, `alg`, `use`: one entry of the JWKS.
    pub jwk: Jwk,
    pub(super) decoding: Arc<DecodingKey>,
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
