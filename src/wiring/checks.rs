//! The readiness checks the wiring adds to a service's own: the ports the
//! services do not open themselves (bus, job queue) and the JWKS the orders
//! verifier fetches.

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

pub struct BusCheck(pub Arc<dyn Bus>);

#[async_trait::async_trait]
impl ReadinessCheck for BusCheck {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}
