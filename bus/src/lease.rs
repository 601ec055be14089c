//! Leases for periodic maintenance: whoever holds `name` runs that job, so
//! several instances on one queue never run it at the same time. A lease ends
//! when its holder releases it or, if the holder died, when its TTL runs out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::QueueError;

/// A named lock with a time limit, shared by the instances of one deployment.
#[async_trait]
pub trait Lease: Send + Sync + 'static {
    /// Take `name` for `ttl` unless someone holds it: `Some(token)` when taken.
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<String>, QueueError>;

    /// Give `name` back if `token` still holds it; a lease that expired and
    /// was taken by someone else is left alone (`false`).
    async fn release(&self, name: &str, token: &str) -> Result<bool, QueueError>;
}

/// Leases within one process (the embedded mode: one instance owns the data dir).
#[derive(Debug, Default)]
pub struct LocalLease {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

impl LocalLease {
    /// No lease held.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Lease for LocalLease {
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<String>, QueueError> {
        let now = Instant::now();
        let mut held = self.held.lock().expect("lease table lock poisoned");
        if held.get(name).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        held.insert(name.to_string(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool, QueueError> {
        let mut held = self.held.lock().expect("lease table lock poisoned");
        if held.get(name).is_some_and(|(t, _)| t == token) {
            held.remove(name);
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_release_or_expiry() {
        let lease = LocalLease::new();
        let a = lease
            .try_acquire("trim", Duration::from_millis(50))
            .await
            .unwrap()
            .expect("a free lease is taken");
        assert!(
            lease
                .try_acquire("trim", Duration::from_secs(5))
                .await
                .unwrap()
                .is_none(),
            "a held lease was taken twice"
        );
        assert!(
            lease
                .try_acquire("reclaim", Duration::from_secs(5))
                .await
                .unwrap()
                .is_some(),
            "leases of other names are independent"
        );
        assert!(!lease.release("trim", "not-the-token").await.unwrap());
        assert!(lease.release("trim", &a).await.unwrap());
        let b = lease
            .try_acquire("trim", Duration::from_millis(20))
            .await
            .unwrap()
            .expect("a released lease is free");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let c = lease
            .try_acquire("trim", Duration::from_secs(5))
            .await
            .unwrap()
            .expect("an expired lease is free");
        assert!(
            !lease.release("trim", &b).await.unwrap(),
            "the expired holder released its successor's lease"
        );
        assert!(lease.release("trim", &c).await.unwrap());
    }
}
