//! Orders started before auth wrote its public key file (the roles of one
//! directory started at once): orders serves at once, refuses every token and
//! says in `/ready` what it waits for, and trusts the key as soon as the file
//! is there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orderly_bus::Backoff;
use orderly_core::Shutdown;
use orderly_http::health::ReadinessCheck;
use orderly_http::token::{TokenVerifier, keys_from_pem_text};

/// Waits between looks at the file: doubling from the first to the cap.
const LOOK_AGAIN_FIRST: Duration = Duration::from_millis(200);
const LOOK_AGAIN_MAX: Duration = Duration::from_secs(5);

/// `/ready` while the key file is not there yet.
pub struct KeyFileCheck {
    path: PathBuf,
    loaded: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl ReadinessCheck for KeyFileCheck {
    fn name(&self) -> &'static str {
        "public_key"
    }
    async fn check(&self) -> Result<(), String> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(format!(
            "waiting for the auth service's public key at {} (auth writes it when it starts)",
            self.path.display()
        ))
    }
}

/// Whether `path` is missing, the only case worth waiting for: a file that is
/// there but unreadable or not a key is a configuration error.
pub fn is_missing(path: &Path) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Looks at `path` with backoff until it holds a key, then makes `verifier`
/// trust it. Returns the check that keeps `/ready` at 503 until then.
pub fn wait_for_key_file(
    verifier: Arc<TokenVerifier>,
    path: &Path,
    shutdown: Shutdown,
) -> KeyFileCheck {
    tracing::warn!(
        path = %path.display(),
        "waiting for the auth service's public key (auth writes it when it starts; \
         ORDERS_PUBLIC_KEY_PATH names it); tokens are refused and /ready is 503 until then"
    );
    let loaded = Arc::new(AtomicBool::new(false));
    let check = KeyFileCheck {
        path: path.to_path_buf(),
        loaded: loaded.clone(),
    };
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut backoff = Backoff::new(LOOK_AGAIN_FIRST, LOOK_AGAIN_MAX);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait() => return,
            }
            // Auth writes the file in place: an empty or half-written file is
            // read again on the next look.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match keys_from_pem_text(&text, &path.display().to_string()) {
                Ok(keys) if !keys.is_empty() => {
                    verifier.trust(keys);
                    loaded.store(true, Ordering::Release);
                    tracing::info!(path = %path.display(), "public key loaded; orders verifies tokens");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "public key file not complete yet"),
            }
        }
    });
    check
}
