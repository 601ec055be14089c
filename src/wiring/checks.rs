//! The readiness checks the wiring adds to a service's own: the ports the
//! services do not open themselves (bus, job queue) and the JWKS the orders
//! verifier fetches. Orders is ready when its database is: the bus is
//! reported but does not make it unready (see [`BusCheck`]).

use std::sync::Arc;

use orderly_bus::{Bus, JobQueue};
use orderly_http::health::ReadinessCheck;
use orderly_http::token::TokenVerifier;

pub struct QueueCheck(pub Arc<dyn JobQueue>);

#[async_trait::async_trait]
impl ReadinessCheck for QueueCheck {
    fn name(&self) -> &'static str {
        "job_queue"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// Orders verifying tokens with the keys at `ORDERS_JWKS_URL`.
pub struct JwksCheck(pub Arc<TokenVerifier>);

#[async_trait::async_trait]
impl ReadinessCheck for JwksCheck {
    fn name(&self) -> &'static str {
        "jwks"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.jwks_ready().await
    }
}

/// The event bus. The consumer cannot work without it; orders can: its
/// outbox keeps every event while the bus is away and the relay sends them
/// once it is back, so taking orders out of the load balancer would turn a
/// bus outage into an API outage. For orders a bus that does not answer is
/// `"degraded: …"` with `/ready` at 200; the relay's lag
/// (`outbox_oldest_unsent_seconds`) is a metric and an alert instead.
pub struct BusCheck {
    bus: Arc<dyn Bus>,
    critical: bool,
}

impl BusCheck {
    /// A bus the role cannot work without (the consumer).
    pub fn required(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus,
            critical: true,
        }
    }

    /// A bus the outbox stands in for while it is away (orders).
    pub fn behind_outbox(bus: Arc<dyn Bus>) -> Self {
        Self {
            bus,
            critical: false,
        }
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for BusCheck {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn check(&self) -> Result<(), String> {
        self.bus.check().await.map_err(|e| e.to_string())
    }
    fn critical(&self) -> bool {
        self.critical
    }
}
