//! Keys from the auth service's JWKS: the first fetch, refetches on an
//! unknown kid (rate-limited) and when the cached set is old.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::paseto::paseto_by_kid;
use super::verifier::by_kid;
use super::{KeyError, PasetoKey, TokenVerifier, VerifierConfig, VerifyingKey};

/// Cached JWKS keys are refreshed after this long even without an unknown kid,
/// so a retired key stops verifying without a restart.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a verifier's keys come from when they come from a JWKS.
pub(super) struct JwksSource {
    url: String,
    http: reqwest::Client,
    min_refetch: Duration,
    /// When the keys were last fetched (successfully or not).
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl TokenVerifier {
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
        let mut verifier = Self::new(Vec::new(), config);
        verifier.jwks = Some(JwksSource {
            url: url.to_string(),
            http,
            min_refetch,
            last_fetch: tokio::sync::Mutex::new(None),
        });
        verifier.refetch(true).await;
        Ok(verifier)
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

    /// Refetch the JWKS when it is stale or the token names a kid we lack.
    pub(super) async fn refresh_keys(&self, unknown_kid: bool) {
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
