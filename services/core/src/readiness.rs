//! What `/ready` asks of each dependency. A trait of its own, outside any HTTP
//! crate, so a service that builds its checks needs no web framework.

use async_trait::async_trait;

/// A dependency `/ready` checks (database, cache, bus).
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// The dependency's key in `/ready`'s body.
    fn name(&self) -> &'static str;
    /// `Err` says why the dependency does not answer.
    async fn check(&self) -> Result<(), String>;

    /// Whether the service cannot serve without it. A failing check that is
    /// not critical (e.g. a rate limiter that fails open) is reported as
    /// `"degraded: …"` and leaves `/ready` at 200.
    fn critical(&self) -> bool {
        true
    }
}
