//! The store contract, one body per rule, run against SQLite and PostgreSQL
//! (each on a fresh database, dropped afterwards).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Order, OrderCreate, OrderItem, OrderStatus, ValidOrder};
use crate::events::OutboxEvent;
use crate::sql_store::SqlOrderStore;
use crate::store::{Created, IdempotencyKey, OrderStore, StatusChange};

/// Keeps the database alive for the test's duration (a temp dir or a PG database).
type Guard = Box<dyn std::any::Any + Send>;

async fn sqlite() -> Option<(Guard, Arc<dyn OrderStore>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sub/orders.db").display()
    );
    let store = SqlOrderStore::connect(&url).await.unwrap();
    Some((Box::new(dir), Arc::new(store)))
}

async fn postgres() -> Option<(Guard, Arc<dyn OrderStore>)> {
    let db = orderly_testkit::TestDatabase::create().await?;
    let store = SqlOrderStore::connect(&db.url).await.unwrap();
    Some((Box::new(db), Arc::new(store)))
}

macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_guard, store) = super::sqlite().await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((_guard, store)) = super::postgres().await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

for_each_backend!(
    a_created_order_reads_back_exactly,
    money_is_exact_to_the_cent,
    a_users_orders_list_newest_first_and_page,
    an_idempotency_key_replays_its_order_and_refuses_another_body,
    concurrent_creates_with_one_key_make_one_order,
    a_status_change_is_conditional_on_the_current_status,
    every_write_leaves_one_event_with_its_headers_and_payload,
    an_unfinished_claim_hands_its_events_back,
    concurrent_claims_never_share_an_event,
    the_outbox_backlog_counts_unsent_rows_and_dates_the_oldest,
    stale_pending_orders_come_oldest_first_in_pages_with_their_new_order_event,
);

fn valid(items: Vec<(&str, f64, i64)>) -> ValidOrder {
    let items: Vec<OrderItem> = items
        .into_iter()
        .map(|(name, price, quantity)| OrderItem {
            name: name.into(),
            price,
            quantity,
        })
        .collect();
    let total = items.iter().map(|i| i.price * i.quantity as f64).sum();
    OrderCreate {
        items,
        total_price: total,
    }
    .validate()
    .unwrap()
}

fn new_order(user_id: i64, valid: &ValidOrder) -> (Order, OutboxEvent) {
    let now = OffsetDateTime::now_utc();
    let order = Order {
        id: Uuid::now_v7(),
        user_id,
        items: valid.items.clone(),
        total_price: crate::domain::from_cents(valid.total_cents),
        status: OrderStatus::Pending,
        created_at: now,
    };
    let event = OutboxEvent::new_order(order.id, user_id, now, Some("00-trace-01"));
    (order, event)
}

/// A PENDING order created `age` ago.
async fn create_aged(store: &Arc<dyn OrderStore>, age: Duration) -> (Order, OutboxEvent) {
    let v = valid(vec![("Test Item", 100.0, 1)]);
    let (mut order, _) = new_order(1, &v);
    order.created_at -= age;
    let event = OutboxEvent::new_order(order.id, 1, order.created_at, Some("00-trace-01"));
    match store.create(&order, &v, &event, None).await.unwrap() {
        Created::New(o) => (o, event),
        other => panic!("expected a new order, got {other:?}"),
    }
}

async fn create(store: &Arc<dyn OrderStore>, user_id: i64) -> Order {
    let v = valid(vec![("Test Item", 100.0, 1)]);
    let (order, event) = new_order(user_id, &v);
    match store.create(&order, &v, &event, None).await.unwrap() {
        Created::New(o) => o,
        other => panic!("expected a new order, got {other:?}"),
    }
}

async fn a_created_order_reads_back_exactly(store: Arc<dyn OrderStore>) {
    let v = valid(vec![("Widget «ünïcode»", 12.5, 2), ("Bolt", 0.1, 3)]);
    let (order, event) = new_order(7, &v);
    let Created::New(created) = store.create(&order, &v, &event, None).await.unwrap() else {
        panic!("expected a new order")
    };
    assert_eq!(created.id, order.id);
    assert_eq!(created.status, OrderStatus::Pending);
    let read = store.get(order.id).await.unwrap().unwrap();
    assert_eq!(read, created, "what create returns is what a read returns");
    assert!(store.get(Uuid::now_v7()).await.unwrap().is_none());
}

async fn money_is_exact_to_the_cent(store: Arc<dyn OrderStore>) {
    let v = valid(vec![("a", 0.1, 1), ("b", 0.2, 1), ("c", 19.99, 3)]);
    assert_eq!(v.total_cents, 10 + 20 + 5997);
    let (order, event) = new_order(1, &v);
    store.create(&order, &v, &event, None).await.unwrap();
    let read = store.get(order.id).await.unwrap().unwrap();
    assert_eq!(read.total_price, 60.27);
    assert_eq!(read.items[2].price, 19.99);
}

async fn a_users_orders_list_newest_first_and_page(store: Arc<dyn OrderStore>) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create(&store, 1).await.id);
    }
    create(&store, 2).await;
    ids.reverse();
    let all: Vec<Uuid> = store
        .list_by_user(1, 100, 0)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(all, ids);
    let page: Vec<Uuid> = store
        .list_by_user(1, 2, 1)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(page, ids[1..3]);
    assert!(store.list_by_user(3, 100, 0).await.unwrap().is_empty());
}

async fn an_idempotency_key_replays_its_order_and_refuses_another_body(store: Arc<dyn OrderStore>) {
    let v = valid(vec![("x", 1.0, 1)]);
    let key = IdempotencyKey {
        key: "k-1".into(),
        request: "{body-1}".into(),
    };
    let (first, event) = new_order(1, &v);
    let Created::New(first) = store
        .create(&first, &v, &event, Some((&key, 1)))
        .await
        .unwrap()
    else {
        panic!("expected a new order")
    };
    let (second, event) = new_order(1, &v);
    assert_eq!(
        store
            .create(&second, &v, &event, Some((&key, 1)))
            .await
            .unwrap(),
        Created::Replayed(first.clone())
    );
    let other_body = IdempotencyKey {
        key: "k-1".into(),
        request: "{body-2}".into(),
    };
    let (third, event) = new_order(1, &v);
    assert_eq!(
        store
            .create(&third, &v, &event, Some((&other_body, 1)))
            .await
            .unwrap(),
        Created::KeyReused
    );
    // Keys are per user.
    let (fourth, event) = new_order(2, &v);
    assert!(matches!(
        store
            .create(&fourth, &v, &event, Some((&key, 2)))
            .await
            .unwrap(),
        Created::New(_)
    ));
    assert_eq!(store.list_by_user(1, 100, 0).await.unwrap().len(), 1);
}

async fn concurrent_creates_with_one_key_make_one_order(store: Arc<dyn OrderStore>) {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let v = valid(vec![("x", 1.0, 1)]);
                let key = IdempotencyKey {
                    key: "same".into(),
                    request: "{same}".into(),
                };
                let (order, event) = new_order(1, &v);
                store
                    .create(&order, &v, &event, Some((&key, 1)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut new = Vec::new();
    let mut replayed = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Created::New(o) => new.push(o.id),
            Created::Replayed(o) => replayed.push(o.id),
            Created::KeyReused => panic!("same body must replay, not be refused"),
        }
    }
    assert_eq!(new.len(), 1, "exactly one order is created");
    assert!(replayed.iter().all(|id| *id == new[0]));
    assert_eq!(store.unsent_count().await.unwrap(), 1, "and one event");
}

async fn a_status_change_is_conditional_on_the_current_status(store: Arc<dyn OrderStore>) {
    let order = create(&store, 1).await;
    let at = OffsetDateTime::now_utc();
    let event = |from, to| OutboxEvent::status_changed(order.id, 1, from, to, at, None);
    use OrderStatus::*;
    let changed = store
        .change_status(order.id, Pending, Paid, &event(Pending, Paid), at)
        .await
        .unwrap();
    let StatusChange::Changed(paid) = changed else {
        panic!("expected a change, got {changed:?}")
    };
    assert_eq!(paid.status, Paid);
    assert_eq!(paid.created_at, order.created_at);
    assert_eq!(store.get(order.id).await.unwrap().unwrap(), paid);
    // A second PENDING->PAID (a retried job) changes nothing and says why.
    let again = store
        .change_status(order.id, Pending, Paid, &event(Pending, Paid), at)
        .await
        .unwrap();
    assert_eq!(again, StatusChange::Conflict(paid));
    let missing = store
        .change_status(Uuid::now_v7(), Pending, Paid, &event(Pending, Paid), at)
        .await
        .unwrap();
    assert_eq!(missing, StatusChange::NotFound);
    // One new_order and one status change: the refused attempts wrote no event.
    assert_eq!(store.unsent_count().await.unwrap(), 2);
}

async fn every_write_leaves_one_event_with_its_headers_and_payload(store: Arc<dyn OrderStore>) {
    let v = valid(vec![("x", 1.0, 1)]);
    let (order, event) = new_order(9, &v);
    store.create(&order, &v, &event, None).await.unwrap();
    let at = OffsetDateTime::now_utc();
    let changed = OutboxEvent::status_changed(
        order.id,
        9,
        OrderStatus::Pending,
        OrderStatus::Canceled,
        at,
        None,
    );
    store
        .change_status(
            order.id,
            OrderStatus::Pending,
            OrderStatus::Canceled,
            &changed,
            at,
        )
        .await
        .unwrap();
    let claim = store.claim_unsent(10).await.unwrap();
    let events = claim.events().to_vec();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].subject, "new_order");
    assert_eq!(events[0].payload, event.payload, "published byte for byte");
    assert_eq!(
        events[0].key.as_deref(),
        Some(order.id.to_string().as_str())
    );
    let mut headers = events[0].headers.clone();
    headers.sort();
    let mut expected = event.headers.clone();
    expected.sort();
    assert_eq!(headers, expected);
    assert_eq!(events[1].subject, "order_status_changed");
    assert_eq!(events[1].payload, changed.payload);
    claim.finish(&[events[0].id]).await.unwrap();
    assert_eq!(store.unsent_count().await.unwrap(), 1);
    let rest = store.claim_unsent(10).await.unwrap();
    assert_eq!(rest.events().len(), 1);
    assert_eq!(rest.events()[0].id, events[1].id);
    rest.finish(&[events[1].id]).await.unwrap();
    assert_eq!(store.unsent_count().await.unwrap(), 0);
    assert!(store.claim_unsent(10).await.unwrap().events().is_empty());
}

async fn the_outbox_backlog_counts_unsent_rows_and_dates_the_oldest(store: Arc<dyn OrderStore>) {
    let empty = store.outbox_backlog().await.unwrap();
    assert_eq!(empty.unsent, 0);
    assert_eq!(empty.oldest_created_at, None);
    assert_eq!(empty.oldest_age_seconds(OffsetDateTime::now_utc()), 0.0);

    let first = create(&store, 1).await;
    let second = create(&store, 1).await;
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.unsent, 2);
    // Stored to the microsecond on PostgreSQL: compare at that precision.
    let oldest = backlog.oldest_created_at.expect("an unsent row");
    assert!(
        (oldest - first.created_at).abs() < time::Duration::milliseconds(1),
        "oldest {oldest} is the first order's event ({})",
        first.created_at
    );
    let later = first.created_at + time::Duration::seconds(90);
    let age = backlog.oldest_age_seconds(later);
    assert!((89.99..=90.01).contains(&age), "age {age}");

    // Once the oldest is sent, the next one is the oldest.
    let claim = store.claim_unsent(1).await.unwrap();
    let id = claim.events()[0].id;
    claim.finish(&[id]).await.unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.unsent, 1);
    let oldest = backlog.oldest_created_at.expect("one unsent row");
    assert!((oldest - second.created_at).abs() < time::Duration::milliseconds(1));
}

async fn an_unfinished_claim_hands_its_events_back(store: Arc<dyn OrderStore>) {
    create(&store, 1).await;
    let claim = store.claim_unsent(10).await.unwrap();
    let id = claim.events()[0].id;
    drop(claim);
    // PostgreSQL rolls a dropped claim's transaction back when its connection
    // returns to the pool, a moment later; until then SKIP LOCKED passes the row.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let again = loop {
        let again = store.claim_unsent(10).await.unwrap();
        if !again.events().is_empty() || std::time::Instant::now() > deadline {
            break again;
        }
        drop(again);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(again.events().len(), 1);
    assert_eq!(again.events()[0].id, id);
}

async fn concurrent_claims_never_share_an_event(store: Arc<dyn OrderStore>) {
    for _ in 0..4 {
        create(&store, 1).await;
    }
    let first = store.claim_unsent(2).await.unwrap();
    let first_ids: HashSet<i64> = first.events().iter().map(|e| e.id).collect();
    assert_eq!(first_ids.len(), 2);
    // Another relay claims while the first still holds its rows: on PostgreSQL it
    // skips them at once; SQLite (one process) makes it wait for the first.
    let other = store.clone();
    let second = tokio::spawn(async move {
        let claim = other.claim_unsent(10).await.unwrap();
        let ids: Vec<i64> = claim.events().iter().map(|e| e.id).collect();
        claim.finish(&ids).await.unwrap();
        ids
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ids: Vec<i64> = first_ids.iter().copied().collect();
    first.finish(&ids).await.unwrap();
    let second_ids: HashSet<i64> = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second claim finishes")
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        first_ids.is_disjoint(&second_ids),
        "{first_ids:?} {second_ids:?}"
    );
    assert_eq!(first_ids.len() + second_ids.len(), 4);
    assert_eq!(store.unsent_count().await.unwrap(), 0);
}

/// LISTEN/NOTIFY: a write through another connection pool (another process)
/// wakes this store's watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_write_elsewhere_wakes_the_outbox_watcher() {
    let Some(db) = orderly_testkit::TestDatabase::create().await else {
        return;
    };
    let store: Arc<dyn OrderStore> = Arc::new(SqlOrderStore::connect(&db.url).await.unwrap());
    let elsewhere: Arc<dyn OrderStore> = Arc::new(SqlOrderStore::connect(&db.url).await.unwrap());
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = orderly_core::Shutdown::new();
    let watcher = {
        let (store, wake, shutdown) = (store.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move { store.watch_outbox(wake, shutdown).await })
    };
    // Keep writing until a wake-up arrives: the watcher may not listen yet.
    let woke = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            create(&elsewhere, 1).await;
            if tokio::time::timeout(Duration::from_millis(200), wake.notified())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await;
    shutdown.trigger();
    watcher.await.unwrap();
    assert!(woke.is_ok(), "no NOTIFY reached the watcher");
}

async fn stale_pending_orders_come_oldest_first_in_pages_with_their_new_order_event(
    store: Arc<dyn OrderStore>,
) {
    let minute = Duration::from_secs(60);
    let (oldest, oldest_event) = create_aged(&store, minute * 5).await;
    let (middle, _) = create_aged(&store, minute * 4).await;
    let (paid, _) = create_aged(&store, minute * 3).await;
    let (newest, _) = create_aged(&store, minute * 2).await;
    create_aged(&store, Duration::ZERO).await;
    let at = OffsetDateTime::now_utc();
    let event = OutboxEvent::status_changed(
        paid.id,
        1,
        OrderStatus::Pending,
        OrderStatus::Paid,
        at,
        None,
    );
    store
        .change_status(paid.id, OrderStatus::Pending, OrderStatus::Paid, &event, at)
        .await
        .unwrap();

    let before = OffsetDateTime::now_utc() - minute;
    let first = store.stale_pending(before, None, 2).await.unwrap();
    let ids: Vec<Uuid> = first.iter().map(|s| s.order_id).collect();
    assert_eq!(
        ids,
        [oldest.id, middle.id],
        "oldest first, PAID and fresh ones left out"
    );
    assert_eq!(first[0].new_order_event, Some(oldest_event.event_id));
    assert_eq!(first[0].traceparent.as_deref(), Some("00-trace-01"));
    assert_eq!(first[0].created_at, oldest.created_at);

    let second = store.stale_pending(before, first.last(), 2).await.unwrap();
    let ids: Vec<Uuid> = second.iter().map(|s| s.order_id).collect();
    assert_eq!(ids, [newest.id], "the page after the last one seen");
    assert!(
        store
            .stale_pending(before, second.last(), 2)
            .await
            .unwrap()
            .is_empty()
    );
}
