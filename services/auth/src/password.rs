//! Password hashing: Argon2id with OWASP's baseline parameters, stored as PHC
//! strings. Hashing is CPU-bound (tens of milliseconds), so it runs on the
//! blocking pool instead of stalling the async workers.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

/// Memory cost in KiB, iterations and parallelism (OWASP: m=19 MiB, t=2, p=1).
/// Public so deployments can size memory to it (one hash per core at once).
pub const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the stored password hash is not a valid PHC string: {0}")]
    StoredHash(String),
    #[error("the password hashing task failed: {0}")]
    Task(String),
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    // The salt comes from rand 0.9's CSPRNG; argon2's own salt helper would need
    // the older rand_core's OS RNG feature.
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// A hash of a password nobody knows, with the same parameters as real ones:
/// checking an unknown e-mail's password against it costs what a wrong password
/// costs, so response times do not reveal which e-mails are registered.
fn dummy_hash() -> Result<&'static str, PasswordError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let hash = hash_blocking(&format!("{random:?}"))?;
    Ok(DUMMY.get_or_init(|| hash))
}

fn verify_blocking(password: &str, stored: Option<&str>) -> Result<bool, PasswordError> {
    let (stored, real) = match stored {
        Some(hash) => (hash, true),
        None => (dummy_hash()?, false),
    };
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::StoredHash(e.to_string()))?;
    // `verify_password` takes the cost parameters from the PHC string itself.
    let matches = hasher()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(real && matches)
}

/// At most one hash per core at a time: each Argon2id run holds 19 MiB and a
/// core, so a burst of logins queues here instead of multiplying memory and
/// stretching every login's latency (the benchmark saw 6 GB RSS at 50 at once).
fn hashing_slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

async fn on_a_hashing_slot<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
) -> Result<T, PasswordError> {
    on_a_slot(hashing_slots(), work).await
}

/// Run `work` on the blocking pool once a slot of `slots` is free. The slot
/// travels into the blocking task and is freed when the work ends: a caller
/// that goes away (a client disconnecting mid-login drops the request future)
/// cannot free it while the hash still occupies a core.
async fn on_a_slot<T: Send + 'static>(
    slots: &Arc<Semaphore>,
    work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
) -> Result<T, PasswordError> {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| PasswordError::Task(e.to_string()))?
}

/// Hash a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    on_a_hashing_slot(move || hash_blocking(&password)).await
}

/// Check a password against a stored hash. `None` (unknown user, or a Google-only
/// account) still does a full verification against the dummy hash, and is false.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    on_a_hashing_slot(move || verify_blocking(&password, stored.as_deref())).await
}

/// Compute the dummy hash at startup, so the first failed login is not the one
/// that pays for it (which would itself be a timing signal).
pub async fn warm_up() -> Result<(), PasswordError> {
    tokio::task::spawn_blocking(|| dummy_hash().map(|_| ()))
        .await
        .map_err(|e| PasswordError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_is_argon2id_with_the_chosen_cost_and_verifies_only_its_password() {
        let hash = hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies() {
        assert!(!verify(String::new(), None).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_dropped_caller_leaves_the_slot_held_until_the_work_ends() {
        let slots = Arc::new(Semaphore::new(1));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let caller = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move {
                on_a_slot(&slots, move || {
                    started_tx.send(()).unwrap();
                    // Stands in for a hash that outlives its request.
                    finish_rx.recv().unwrap();
                    let _ = done_tx.send(());
                    Ok(())
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        // The client disconnects: its request future is dropped mid-hash.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(
            slots.available_permits(),
            0,
            "the hash still holds its slot"
        );
        finish_tx.send(()).unwrap();
        done_rx.await.unwrap();
        // The slot is freed as the blocking task ends.
        let slot = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            Arc::clone(&slots).acquire_owned(),
        )
        .await
        .expect("the slot is freed when the work ends")
        .unwrap();
        drop(slot);
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_match() {
        let err = verify("x".into(), Some("plaintext".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, PasswordError::StoredHash(_)));
    }
}
