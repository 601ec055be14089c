//! Google sign-in (OAuth2 authorization-code flow): the authorize URL, the code
//! exchange and the userinfo call. HTTP-free of our own routes; those live in
//! `routes/google.rs`.

use std::time::Duration;

use orderly_kit::config::GoogleSettings;
use rand::RngCore;
use serde::Deserialize;

/// Upstream calls give up after this long (the user is waiting on the callback).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The provider failed or answered something unusable. The text is for logs only.
    #[error("{0}")]
    Provider(String),
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

pub struct GoogleClient {
    settings: GoogleSettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    email: Option<String>,
    /// OIDC says boolean; some Google endpoints have sent the string "true".
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

impl GoogleClient {
    pub fn new(settings: GoogleSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self { settings, http })
    }

    /// Where to send the browser. `state` is echoed back to the callback.
    pub fn login_url(&self, state: &str) -> String {
        let s = &self.settings;
        let separator = if s.auth_url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope=openid%20email%20profile&state={}",
            s.auth_url,
            percent_encode(&s.client_id),
            percent_encode(&s.redirect_uri),
            percent_encode(state),
        )
    }

    /// Exchange the authorization code and fetch the verified identity.
    pub async fn identify(&self, code: &str) -> Result<GoogleIdentity, GoogleError> {
        let s = &self.settings;
        let form = [
            ("code", code),
            ("client_id", s.client_id.as_str()),
            ("client_secret", s.client_secret.expose()),
            ("redirect_uri", s.redirect_uri.as_str()),
            ("grant_type", "authorization_code"),
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

        let response = self
            .http
            .get(&s.userinfo_url)
            .bearer_auth(&token.access_token)
            .send()
            .await
            .map_err(|e| GoogleError::Provider(format!("userinfo request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(GoogleError::Provider(format!(
                "userinfo endpoint answered {status}"
            )));
        }
        let info: UserInfo = response
            .json()
            .await
            .map_err(|e| GoogleError::Provider(format!("unreadable userinfo response: {e}")))?;

        let verified = matches!(info.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&info.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        let email = info.email.filter(|e| !e.is_empty()).ok_or_else(|| {
            GoogleError::Provider("userinfo has no e-mail (scope missing?)".into())
        })?;
        if !verified {
            return Err(GoogleError::EmailNotVerified);
        }
        if info.sub.is_empty() {
            return Err(GoogleError::Provider("userinfo has an empty sub".into()));
        }
        Ok(GoogleIdentity {
            sub: info.sub,
            email: email.to_lowercase(),
        })
    }
}

/// 32 random bytes, base64url without padding (like Python's `secrets.token_urlsafe(32)`).
pub fn new_state() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64url(&bytes)
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // A chunk of k bytes yields k + 1 characters (no padding).
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
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
}
