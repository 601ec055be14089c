//! Orders databases (SQLite in a temp dir, or a fresh PostgreSQL database)
//! written through the orders store, for the console to read.

#![allow(dead_code)]

use std::sync::Arc;

use orderly_orders::domain::{Order, OrderCreate, OrderItem, OrderStatus};
use orderly_orders::events::OutboxEvent;
use orderly_orders::sql_store::SqlOrderStore;
use orderly_orders::store::{Created, OrderStore, StatusChange};
use time::OffsetDateTime;
use uuid::Uuid;

/// Keeps the database alive for the test's duration.
pub type Guard = Box<dyn std::any::Any + Send>;

pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub async fn sqlite() -> (Guard, Arc<SqlOrderStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orders.db").display()
    );
    let store = SqlOrderStore::connect(&url).await.unwrap();
    (Box::new(dir), Arc::new(store))
}

pub async fn postgres() -> Option<(Guard, Arc<SqlOrderStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = SqlOrderStore::connect(&db.url).await.unwrap();
    Some((Box::new(db), Arc::new(store)))
}

/// A PENDING order of `user_id` created at `at`, with one item named `item`.
pub async fn create(store: &SqlOrderStore, user_id: i64, at: OffsetDateTime, item: &str) -> Order {
    let valid = OrderCreate {
        items: vec![OrderItem {
            name: item.into(),
            price: 12.5,
            quantity: 2,
        }],
        total_price: 25.0,
    }
    .validate()
    .unwrap();
    let order = Order {
        id: Uuid::now_v7(),
        user_id,
        items: valid.items.clone(),
        total_price: 25.0,
        status: OrderStatus::Pending,
        created_at: at,
    };
    let event = OutboxEvent::new_order(order.id, user_id, at, Some(TRACEPARENT));
    match store.create(&order, &valid, &event, None).await.unwrap() {
        Created::New(o) => o,
        other => panic!("expected a new order, got {other:?}"),
    }
}

/// PENDING → PAID at `at`.
pub async fn pay(store: &SqlOrderStore, order: &Order, at: OffsetDateTime) {
    let event = OutboxEvent::status_changed(
        order.id,
        order.user_id,
        OrderStatus::Pending,
        OrderStatus::Paid,
        at,
        Some(TRACEPARENT),
    );
    let changed = store
        .change_status(
            order.id,
            OrderStatus::Pending,
            OrderStatus::Paid,
            &event,
            at,
        )
        .await
        .unwrap();
    assert!(matches!(changed, StatusChange::Changed(_)), "{changed:?}");
}
