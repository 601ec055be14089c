//! Google sign-in (OpenID Connect authorization-code flow with PKCE and a nonce):
//! the authorize URL, the code exchange and the id_token check. HTTP-free of our
//! own routes; those live in `routes/google.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use orderly_core::config::GoogleSettings;
use orderly_http::token::{LEEWAY_SECS, VerifyingKey};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Upstream calls give up after this long (the user is waiting on the callback).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Google rotates its signing keys about weekly and publishes the next one well
/// ahead, so an hour-old copy of the JWKS is still good.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An id_token with an unknown kid refetches the JWKS at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The provider failed or answered something unusable. The text is for logs only.
    #[error("{0}")]
    Provider(String),
    /// The id_token failed a check (signature, iss, aud, exp, nonce). For logs only.
    #[error("the Google id_token was rejected: {0}")]
    InvalidIdToken(String),
    #[error("the Google account's e-mail is not verified")]
    EmailNotVerified,
}

/// Who Google says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdentity {
    pub sub: String,
    /// Lowercased.
    pub email: String,
}

/// Google's signing keys by kid, and when they were last fetched.
#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
}

pub struct GoogleClient {
    settings: GoogleSettings,
    http: reqwest::Client,
    jwks: tokio::sync::Mutex<JwksCache>,
}

#[derive(Deserialize)]
struct TokenReply {
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    email: Option<String>,
    /// OIDC says boolean; some Google endpoints have sent the string "true".
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    nonce: Option<String>,
}

impl GoogleClient {
    pub fn new(settings: GoogleSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self {
            settings,
            http,
            jwks: tokio::sync::Mutex::new(JwksCache::default()),
        })
    }

    /// Where to send the browser. `state` is echoed back to the callback, `nonce`
    /// comes back inside the id_token, and only the holder of `code_verifier` can
    /// redeem the code (PKCE, S256).
    pub fn login_url(&self, state: &str, nonce: &str, code_verifier: &str) -> String {
        let s = &self.settings;
        let separator = if s.auth_url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope=openid%20email%20profile&state={}\
             &nonce={}&code_challenge={}&code_challenge_method=S256",
            s.auth_url,
            percent_encode(&s.client_id),
            percent_encode(&s.redirect_uri),
            percent_encode(state),
            percent_encode(nonce),
            code_challenge(code_verifier),
        )
    }

    /// Exchange the authorization code and verify the id_token it yields.
    pub async fn identify(
        &self,
        code: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<GoogleIdentity, GoogleError> {
        let s = &self.settings;
        let form = [
            ("code", code),
            ("client_id", s.client_id.as_str()),
            ("client_secret", s.client_secret.expose()),
            ("redirect_uri", s.redirect_uri.as_str()),
            ("grant_type", "authorization_code"),
            ("code_verifier", code_verifier),
        ];
        let response = self
            .http
            .post(&s.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| GoogleError::Provider(format!("token request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            // Google's error body (`{"error":"invalid_grant",…}`) names no secrets; it
            // is the useful part of the log line.
            let body = response.text().await.unwrap_or_default();
            return Err(GoogleError::Provider(format!(
                "token endpoint answered {status}: {}",
                truncate(&body, 300)
            )));
        }
        let token: TokenReply = response
            .json()
            .await
            .map_err(|e| GoogleError::Provider(format!("unreadable token response: {e}")))?;
        let id_token = token.id_token.ok_or_else(|| {
            GoogleError::Provider("token response has no id_token (scope openid missing?)".into())
        })?;
        self.verify_id_token(&id_token, nonce).await
    }

    /// Signature (Google's JWKS, RS256 only), `iss`, `aud` = our client id, `exp`,
    /// `nonce` = the one this browser's login started with, then `email_verified`.
    async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<GoogleIdentity, GoogleError> {
        let invalid = |reason: String| GoogleError::InvalidIdToken(reason);
        let header = decode_header(id_token).map_err(|e| invalid(format!("malformed: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!("algorithm {:?}", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("no kid".into()))?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&self.settings.issuers);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<IdClaims>(id_token, key.decoding_key(), &validation)
            .map_err(|e| invalid(format!("{:?}", e.kind())))?
            .claims;

        let nonce_ok = claims
            .nonce
            .as_deref()
            .is_some_and(|n| constant_time_eq(n.as_bytes(), nonce.as_bytes()));
        if !nonce_ok {
            return Err(invalid("nonce mismatch".into()));
        }
        if claims.sub.is_empty() {
            return Err(invalid("empty sub".into()));
        }
        let email = claims
            .email
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid("no e-mail (scope email missing?)".into()))?;
        let verified = matches!(claims.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        if !verified {
            return Err(GoogleError::EmailNotVerified);
        }
        Ok(GoogleIdentity {
            sub: claims.sub,
            email: email.to_lowercase(),
        })
    }

    /// Google's key `kid`, from the cached JWKS; refetched when older than
    /// [`JWKS_MAX_AGE`] or on an unknown kid (at most every [`JWKS_MIN_REFETCH`], so
    /// forged kids cannot make us hammer Google).
    async fn key(&self, kid: &str) -> Result<VerifyingKey, GoogleError> {
        let mut cache = self.jwks.lock().await;
        let age = cache.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > JWKS_MAX_AGE);
        let unknown = !cache.keys.contains_key(kid) && age.is_none_or(|a| a > JWKS_MIN_REFETCH);
        if stale || unknown {
            cache.fetched = Some(Instant::now());
            match self.fetch_jwks().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "Google JWKS fetched");
                    cache.keys = keys;
                }
                Err(e) if cache.keys.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "Google JWKS refetch failed; keeping the cached keys")
                }
            }
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| GoogleError::InvalidIdToken(format!("unknown kid {kid:?}")))
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, VerifyingKey>, GoogleError> {
        let error = |reason: String| GoogleError::Provider(format!("JWKS: {reason}"));
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(error(format!("answered {}", response.status())));
        }
        let set: jsonwebtoken::jwk::JwkSet =
            response.json().await.map_err(|e| error(e.to_string()))?;
        let keys: HashMap<String, VerifyingKey> = set
            .keys
            .iter()
            // Entries we cannot use (other key types) are skipped, not fatal.
            .filter_map(|jwk| VerifyingKey::from_jwk(jwk).ok())
            .map(|k| (k.kid.clone(), k))
            .collect();
        if keys.is_empty() {
            return Err(error("no usable RS256 key in the set".into()));
        }
        Ok(keys)
    }
}

/// PKCE S256: base64url(SHA-256(verifier)).
pub fn code_challenge(code_verifier: &str) -> String {
    base64url(&Sha256::digest(code_verifier.as_bytes()))
}

/// 32 random bytes, base64url without padding (like Python's `secrets.token_urlsafe(32)`):
/// used for the state, the nonce and the PKCE code verifier (43 characters, within
/// RFC 7636's 43..=128).
pub fn new_state() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64url(&bytes)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 3986 percent-encoding of everything but unreserved characters, so the
/// scope reads `openid%20email%20profile` as the old service produced.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Equal-time comparison for the CSRF state: the time taken must not reveal how
/// much of a guessed value was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_4648_vectors_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_state_is_43_url_safe_characters_and_never_repeats() {
        let (a, b) = (new_state(), new_state());
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(
            percent_encode("http://localhost:8001/a b"),
            "http%3A%2F%2Flocalhost%3A8001%2Fa%20b"
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn the_pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
