//! Access tokens revoked before their expiry, as the auth service lists them at
//! `GET /auth/revoked-tokens` (logouts, reused refresh tokens, lowered roles).
//!
//! Verifying stays local: the list is fetched every few seconds in the
//! background and a request only looks its token's `jti` up in memory. The
//! price is a window of up to one poll interval in which a revoked token still
//! works, and a list that stays as it was while auth cannot be reached.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use orderly_core::Shutdown;
use serde::Deserialize;

/// The revoked `jti`s with their `exp`, replaced whole at each poll.
#[derive(Debug, Default)]
pub struct RevokedTokens {
    by_jti: RwLock<HashMap<String, i64>>,
}

#[derive(Deserialize)]
struct RevokedList {
    revoked: Vec<RevokedEntry>,
}

#[derive(Deserialize)]
struct RevokedEntry {
    jti: String,
    exp: i64,
}

/// Why a poll of the revocation list failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokedListError {
    /// Auth did not answer, or not with 200.
    #[error("GET {url}: {reason}")]
    Fetch {
        /// The list's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl RevokedTokens {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the token with this `jti` was revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.read().contains_key(jti)
    }

    /// How many revoked tokens are known.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no revoked token is known.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The list is now exactly these (jti, exp) pairs.
    pub fn replace(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        let fresh: HashMap<String, i64> = entries.into_iter().collect();
        *self.by_jti.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// Fetch the list at `url` once and take it.
    pub async fn fetch(&self, client: &reqwest::Client, url: &str) -> Result<(), RevokedListError> {
        let failed = |reason: String| RevokedListError::Fetch {
            url: url.to_string(),
            reason,
        };
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        let list: RevokedList = response.json().await.map_err(|e| failed(e.to_string()))?;
        self.replace(list.revoked.into_iter().map(|e| (e.jti, e.exp)));
        Ok(())
    }

    /// Fetch the list at `url` every `every` until the shutdown. A failed poll
    /// keeps the last list and is logged once per outage.
    pub async fn poll(&self, url: &str, every: Duration, shutdown: Shutdown) {
        let client = reqwest::Client::builder()
            .timeout(every.max(Duration::from_secs(2)))
            .build()
            .unwrap_or_default();
        let mut failing = false;
        loop {
            match self.fetch(&client, url).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(url, "the revoked-token list can be fetched again");
                    }
                    failing = false;
                }
                Err(error) => {
                    metrics::counter!("token_revocation_poll_failures_total").increment(1);
                    if !failing {
                        tracing::warn!(%error, "cannot fetch the revoked-token list; keeping the last one");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, i64>> {
        self.by_jti.read().unwrap_or_else(|e| e.into_inner())
    }
}
