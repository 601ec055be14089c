//! PASETO v4.public (Ed25519) tokens: the public keys (published in the
//! JWKS as `OKP` entries), the signer auth issues them with, and their
//! verification.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::{Deserialize, Serialize};

use super::{AccessClaims, KeyError, TokenVerifier, VerifyError, check_times};

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
    /// Its RFC 7638 thumbprint.
    pub kid: String,
    /// Its JWKS entry.
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

    /// The public key tokens are verified with.
    pub fn public_key(&self) -> &PasetoKey {
        &self.public
    }

    /// A v4.public token carrying `claims`.
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

pub(super) fn paseto_by_kid(keys: Vec<PasetoKey>) -> HashMap<String, PasetoKey> {
    keys.into_iter().map(|k| (k.kid.clone(), k)).collect()
}

impl TokenVerifier {
    /// A v4.public token: the footer (`{"kid":…}`) picks the key, the signature
    /// covers payload and footer, then `exp`/`nbf` (with leeway) and `iss`/`aud`
    /// are checked as for JWTs.
    pub(super) async fn verify_paseto(&self, token: &str) -> Result<AccessClaims, VerifyError> {
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
        check_times(&claims, self.leeway())?;
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
}
