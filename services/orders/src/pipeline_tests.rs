//! The batched write path, proven correct (not fast): payments batched into
//! one transaction pay every order exactly once; outbox retention never
//! deletes an unsent row; the relay's claim, commit, publish, mark-sent loses
//! no event and repeats one only with its own event id. Each rule runs on
//! SQLite and on PostgreSQL (a fresh database each).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::{Bus, BusError, Features, GroupOptions, Message, StreamConfig, Subscription};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::cache::MemoryCache;
use crate::domain::{Order, OrderCreate, OrderItem, OrderStatus};
use crate::events::OutboxEvent;
use crate::relay::OutboxRelay;
use crate::service::{Caller, CreateOutcome, OrderService, PayOutcome};
use crate::sql_store::SqlOrderStore;
use crate::store::{OrderStore, StatusChange};

type Guard = Box<dyn std::any::Any + Send>;

async fn sqlite(lease: Duration) -> Option<(Guard, Arc<dyn OrderStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orders.db").display()
    );
    let store = SqlOrderStore::connect(&url)
        .await
        .unwrap()
        .with_claim_lease(lease);
    Some((Box::new(dir), Arc::new(store)))
}

async fn postgres(lease: Duration) -> Option<(Guard, Arc<dyn OrderStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = SqlOrderStore::connect(&db.url)
        .await
        .unwrap()
        .with_claim_lease(lease);
    Some((Box::new(db), Arc::new(store)))
}

const LEASE: Duration = Duration::from_secs(60);

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (_guard, store) = super::sqlite(super::LEASE).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some((_guard, store)) = super::postgres(super::LEASE).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_both!(
    concurrent_payments_pay_every_order_exactly_once,
    a_batched_change_answers_each_id_and_changes_each_order_once,
    retention_deletes_only_rows_sent_before_the_cut,
    the_relay_sends_every_event_once_despite_failed_publishes,
);

struct User(i64);

impl Caller for User {
    fn user_id(&self) -> i64 {
        self.0
    }
    fn is_admin(&self) -> bool {
        false
    }
}

fn service(store: Arc<dyn OrderStore>) -> Arc<OrderService> {
    Arc::new(OrderService::new(
        store,
        Arc::new(MemoryCache::new(Duration::from_secs(300), 10_000)),
        orderly_core::config::StatusPolicy::Strict,
        Arc::new(Notify::new()),
    ))
}

fn one_item() -> OrderCreate {
    OrderCreate {
        items: vec![OrderItem {
            name: "Test Item".into(),
            price: 100.0,
            quantity: 1,
        }],
        total_price: 100.0,
    }
}

async fn create_orders(service: &OrderService, n: usize) -> Vec<Order> {
    let mut orders = Vec::with_capacity(n);
    for _ in 0..n {
        match service
            .create(&User(1), one_item(), None, None)
            .await
            .unwrap()
        {
            CreateOutcome::New(order) => orders.push(order),
            other => panic!("expected a new order, got {other:?}"),
        }
    }
    orders
}

/// Every order paid five times at once, from many tasks: each becomes PAID
/// once, with one status-change event; the other payments find it done.
async fn concurrent_payments_pay_every_order_exactly_once(store: Arc<dyn OrderStore>) {
    const ORDERS: usize = 150;
    const TIMES: usize = 5;
    let service = service(store.clone());
    let orders = create_orders(&service, ORDERS).await;
    let mut payments = tokio::task::JoinSet::new();
    for _ in 0..TIMES {
        for order in &orders {
            let (service, id) = (service.clone(), order.id);
            payments.spawn(async move { service.pay(id, None).await.unwrap() });
        }
    }
    let mut paid: HashMap<Uuid, usize> = HashMap::new();
    let mut already = 0;
    while let Some(outcome) = payments.join_next().await {
        match outcome.unwrap() {
            PayOutcome::Paid(order) => {
                assert_eq!(order.status, OrderStatus::Paid);
                *paid.entry(order.id).or_default() += 1;
            }
            PayOutcome::AlreadyDone(order) => {
                assert_eq!(order.status, OrderStatus::Paid);
                already += 1;
            }
        }
    }
    assert_eq!(paid.len(), ORDERS, "every order paid");
    assert!(paid.values().all(|&n| n == 1), "none paid twice: {paid:?}");
    assert_eq!(already, ORDERS * (TIMES - 1));
    for order in &orders {
        let read = store.get(order.id).await.unwrap().unwrap();
        assert_eq!(read.status, OrderStatus::Paid);
    }
    // One new_order and one order_status_changed event per order.
    assert_eq!(store.outbox_rows().await.unwrap(), 2 * ORDERS as i64);
}

fn paid_event(order: &Order) -> OutboxEvent {
    OutboxEvent::status_changed(
        order.id,
        order.user_id,
        OrderStatus::Pending,
        OrderStatus::Paid,
        OffsetDateTime::now_utc(),
        None,
    )
}

async fn a_batched_change_answers_each_id_and_changes_each_order_once(store: Arc<dyn OrderStore>) {
    let service = service(store.clone());
    let orders = create_orders(&service, 3).await;
    let (a, b, c) = (orders[0].id, orders[1].id, orders[2].id);
    let canceled = OutboxEvent::status_changed(
        c,
        1,
        OrderStatus::Pending,
        OrderStatus::Canceled,
        OffsetDateTime::now_utc(),
        None,
    );
    store
        .change_status(
            c,
            OrderStatus::Pending,
            OrderStatus::Canceled,
            &canceled,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let missing = Uuid::now_v7();
    let outcomes = store
        .change_statuses(
            &[a, b, a, missing, c],
            OrderStatus::Pending,
            OrderStatus::Paid,
            OffsetDateTime::now_utc(),
            &paid_event,
        )
        .await
        .unwrap();
    let kinds: Vec<(&str, Option<OrderStatus>)> = outcomes
        .iter()
        .map(|o| match o {
            StatusChange::Changed(order) => ("changed", Some(order.status)),
            StatusChange::Conflict(order) => ("conflict", Some(order.status)),
            StatusChange::NotFound => ("not found", None),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("changed", Some(OrderStatus::Paid)),
            ("changed", Some(OrderStatus::Paid)),
            ("conflict", Some(OrderStatus::Paid)),
            ("not found", None),
            ("conflict", Some(OrderStatus::Canceled)),
        ]
    );
    // 3 creates + 1 cancel + 2 payments: the id asked twice wrote one event.
    assert_eq!(store.outbox_rows().await.unwrap(), 6);
    let again = store
        .change_statuses(
            &[a, b],
            OrderStatus::Pending,
            OrderStatus::Paid,
            OffsetDateTime::now_utc(),
            &paid_event,
        )
        .await
        .unwrap();
    assert!(
        again.iter().all(
            |o| matches!(o, StatusChange::Conflict(order) if order.status == OrderStatus::Paid)
        )
    );
    assert_eq!(store.outbox_rows().await.unwrap(), 6);
}

/// Publishes all it can, the way a relay does.
async fn send_some(store: &Arc<dyn OrderStore>, how_many: usize) -> Vec<i64> {
    let claim = store.claim_unsent(how_many as i64).await.unwrap();
    let ids: Vec<i64> = claim.events().iter().map(|e| e.id).collect();
    claim.finish(&ids).await.unwrap();
    ids
}

async fn retention_deletes_only_rows_sent_before_the_cut(store: Arc<dyn OrderStore>) {
    let service = service(store.clone());
    create_orders(&service, 10).await;
    assert_eq!(send_some(&store, 6).await.len(), 6);
    // Nothing is old enough yet.
    let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert_eq!(store.delete_sent_before(an_hour_ago, 100).await.unwrap(), 0);
    assert_eq!(store.outbox_rows().await.unwrap(), 10);
    // A cut after every row: the sent ones go, in batches; the unsent stay.
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    assert_eq!(store.delete_sent_before(later, 4).await.unwrap(), 4);
    assert_eq!(store.delete_sent_before(later, 4).await.unwrap(), 2);
    assert_eq!(store.delete_sent_before(later, 4).await.unwrap(), 0);
    assert_eq!(store.outbox_rows().await.unwrap(), 4);
    assert_eq!(store.unsent_count().await.unwrap(), 4);
    // Sent later, they go too; and nothing unsent ever does.
    create_orders(&service, 3).await;
    send_some(&store, 4).await;
    assert_eq!(store.delete_sent_before(later, 100).await.unwrap(), 4);
    assert_eq!(store.unsent_count().await.unwrap(), 3);
    assert_eq!(store.outbox_rows().await.unwrap(), 3);
}

/// A bus that records what it accepted and refuses every `fail_every`-th publish.
struct RecordingBus {
    accepted: Mutex<Vec<String>>,
    attempts: Mutex<usize>,
    fail_every: usize,
}

impl RecordingBus {
    fn new(fail_every: usize) -> Arc<Self> {
        Arc::new(Self {
            accepted: Mutex::new(Vec::new()),
            attempts: Mutex::new(0),
            fail_every,
        })
    }

    /// How often each event id was accepted.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for id in self.accepted.lock().unwrap().iter() {
            *counts.entry(id.clone()).or_default() += 1;
        }
        counts
    }
}

#[async_trait]
impl Bus for RecordingBus {
    fn features(&self) -> Features {
        Features {
            durable: true,
            ordered_per_key: true,
            consumer_groups: false,
            redelivery_delay: false,
            headers: true,
            max_payload: 1 << 20,
        }
    }

    async fn ensure_stream(&self, _config: StreamConfig) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        {
            let mut attempts = self.attempts.lock().unwrap();
            *attempts += 1;
            if self.fail_every > 0 && (*attempts).is_multiple_of(self.fail_every) {
                return Err(BusError::Unavailable("refused by the test".into()));
            }
        }
        let id = message
            .headers
            .iter()
            .find(|(k, _)| k.as_str() == orderly_bus::header::EVENT_ID)
            .map(|(_, v)| v.clone())
            .expect("every event carries its id");
        self.accepted.lock().unwrap().push(id);
        Ok(())
    }

    async fn subscribe(&self, _subject: &str) -> Result<Subscription, BusError> {
        Err(BusError::Unavailable("not in this test".into()))
    }

    async fn subscribe_group(
        &self,
        _subject: &str,
        _group: &str,
        _options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        Err(BusError::Unavailable("not in this test".into()))
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn close(&self) {}
}

/// The event ids of every outbox row, through a claim that finishes nothing.
async fn all_event_ids(store: &Arc<dyn OrderStore>, n: usize) -> HashSet<String> {
    store
        .unsent_events(n as i64 + 10)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            e.headers
                .iter()
                .find(|(k, _)| k == orderly_bus::header::EVENT_ID)
                .map(|(_, v)| v.clone())
                .unwrap()
        })
        .collect()
}

async fn the_relay_sends_every_event_once_despite_failed_publishes(store: Arc<dyn OrderStore>) {
    const ORDERS: usize = 700;
    let service = service(store.clone());
    create_orders(&service, ORDERS).await;
    let expected = all_event_ids(&store, ORDERS).await;
    assert_eq!(expected.len(), ORDERS);
    let bus = RecordingBus::new(7);
    let relay = OutboxRelay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    let mut failures = 0;
    for _ in 0..100 {
        match relay.drain_once().await {
            Ok(_) if store.unsent_count().await.unwrap() == 0 => break,
            Ok(_) => {}
            Err(_) => failures += 1,
        }
    }
    assert!(failures > 0, "the bus refused some publishes");
    assert_eq!(store.unsent_count().await.unwrap(), 0);
    let counts = bus.counts();
    let sent: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(sent, expected, "every event went out, and nothing else");
    assert!(
        counts.values().all(|&n| n == 1),
        "a refused publish is retried, an accepted one is not repeated"
    );
}

/// A relay that dies between publishing and marking its batch sent: its
/// claim keeps other relays off the rows until the lease ends, then they go
/// out again with the same event ids (at-least-once), and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_a_relay_that_dies_mid_batch_leaves_its_events_to_the_next() {
    let lease = Duration::from_millis(1500);
    let Some((_guard, store)) = postgres(lease).await else {
        return;
    };
    let service = service(store.clone());
    create_orders(&service, 20).await;
    let expected = all_event_ids(&store, 20).await;
    let bus = RecordingBus::new(0);
    // The dying relay: claims, publishes, never marks (its process is gone,
    // so neither does its claim hand the rows back).
    let claim = store.claim_unsent(100).await.unwrap();
    for event in claim.events() {
        let mut message = Message::new(event.subject.clone(), event.payload.clone());
        message.headers = event.headers.iter().cloned().collect();
        bus.publish(message).await.unwrap();
    }
    std::mem::forget(claim);
    let relay = OutboxRelay::new(store.clone(), bus.clone(), Arc::new(Notify::new()));
    assert_eq!(
        relay.drain_once().await.unwrap(),
        0,
        "the claim still holds"
    );
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert_eq!(relay.drain_once().await.unwrap(), 20, "the lease ended");
    assert_eq!(store.unsent_count().await.unwrap(), 0);
    let counts = bus.counts();
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(counts.values().all(|&n| n == 2), "{counts:?}");
}
