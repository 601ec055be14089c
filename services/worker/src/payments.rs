//! The step a job performs, behind a port: the orders service in production,
//! a stand-in in tests (which need a database that fails on demand).

use async_trait::async_trait;
use orderly_orders::{OrderService, OrdersError, PayOutcome};
use uuid::Uuid;

/// Moves an order from PENDING to PAID, and says whether that can work now.
#[async_trait]
pub trait Payments: Send + Sync + 'static {
    /// PENDING→PAID once, however often it is called for one order.
    async fn pay(
        &self,
        order_id: Uuid,
        traceparent: Option<&str>,
    ) -> Result<PayOutcome, OrdersError>;

    /// Whether the orders database answers (the probe that ends a pause).
    async fn check(&self) -> Result<(), String>;
}

#[async_trait]
impl Payments for OrderService {
    async fn pay(
        &self,
        order_id: Uuid,
        traceparent: Option<&str>,
    ) -> Result<PayOutcome, OrdersError> {
        OrderService::pay(self, order_id, traceparent).await
    }

    async fn check(&self) -> Result<(), String> {
        self.store().check().await.map_err(|e| e.to_string())
    }
}
