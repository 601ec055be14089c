//! The reconciler on a real orders store (SQLite in a temp dir) and the
//! embedded job queue: a stranded order gets its job back under the
//! consumer's id, once; a dead job is reported, not requeued; a page of
//! orders with dead jobs does not hide the orders after it; two instances
//! sharing a lease never both run.

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder};
use orderly_bus::{JobQueue, Lease, LocalLease, NewJob, RetryOutcome, RetryPolicy};
use orderly_orders::domain::{Order, OrderCreate, OrderItem, OrderStatus};
use orderly_orders::events::OutboxEvent;
use orderly_orders::sql_store::SqlOrderStore;
use orderly_orders::store::{Created, OrderStore};
use orderly_worker::maintenance;
use orderly_worker::reconciler::{Reconciled, Reconciler, ReconcilerConfig};
use time::OffsetDateTime;
use uuid::Uuid;

const AFTER: Duration = Duration::from_secs(60);

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn OrderStore>,
    queue: Arc<dyn JobQueue>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orders.db").display()
    );
    let store: Arc<dyn OrderStore> = Arc::new(SqlOrderStore::connect(&url).await.unwrap());
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let policy = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let queue: Arc<dyn JobQueue> = Arc::new(EmbeddedQueue::open(&broker, policy).await.unwrap());
    Fixture {
        _dir: dir,
        store,
        queue,
    }
}

/// A PENDING order created `age` ago, with its `new_order` outbox row.
async fn order_aged(store: &Arc<dyn OrderStore>, age: Duration) -> (Order, OutboxEvent) {
    let valid = OrderCreate {
        items: vec![OrderItem {
            name: "Test Item".into(),
            price: 10.0,
            quantity: 1,
        }],
        total_price: 10.0,
    }
    .validate()
    .unwrap();
    let at = OffsetDateTime::now_utc() - age;
    let order = Order {
        id: Uuid::now_v7(),
        user_id: 1,
        items: valid.items.clone(),
        total_price: 10.0,
        status: OrderStatus::Pending,
        created_at: at,
    };
    let event = OutboxEvent::new_order(
        order.id,
        1,
        at,
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    match store.create(&order, &valid, &event, None).await.unwrap() {
        Created::New(o) => (o, event),
        other => panic!("expected a new order, got {other:?}"),
    }
}

fn reconciler(f: &Fixture, batch: u32) -> Reconciler {
    Reconciler::new(
        f.store.clone(),
        f.queue.clone(),
        ReconcilerConfig {
            after: AFTER,
            batch,
        },
    )
}

#[tokio::test]
async fn a_stranded_order_gets_its_job_once_and_a_fresh_order_is_left_alone() {
    let f = fixture().await;
    let (stranded, event) = order_aged(&f.store, AFTER * 2).await;
    order_aged(&f.store, Duration::ZERO).await;
    let r = reconciler(&f, 100);

    let first = r.run_once().await.unwrap();
    assert_eq!(
        first,
        Reconciled {
            pages: 1,
            looked_at: 1,
            requeued: 1,
            in_queue: 0,
            dead: 0
        }
    );
    let second = r.run_once().await.unwrap();
    assert_eq!((second.requeued, second.in_queue), (0, 1), "{second:?}");
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 1);

    let job = f
        .queue
        .reserve(
            PROCESS_ORDER,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .expect("the requeued job");
    assert_eq!(job.id, format!("process_order:{}", event.event_id));
    let payload: ProcessOrder = serde_json::from_slice(&job.payload).unwrap();
    assert_eq!(payload.order_id, stranded.id);
    assert_eq!(
        payload.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "the job continues the order's trace"
    );
}

#[tokio::test]
async fn a_job_the_consumer_already_enqueued_is_not_made_twice() {
    let f = fixture().await;
    let (order, event) = order_aged(&f.store, AFTER * 2).await;
    let created = f
        .queue
        .enqueue(NewJob {
            queue: PROCESS_ORDER.into(),
            id: format!("process_order:{}", event.event_id),
            payload: serde_json::to_vec(&ProcessOrder {
                order_id: order.id,
                traceparent: None,
            })
            .unwrap()
            .into(),
        })
        .await
        .unwrap();
    assert!(created);
    let done = reconciler(&f, 100).run_once().await.unwrap();
    assert_eq!((done.requeued, done.in_queue), (0, 1), "{done:?}");
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 1);
}

#[tokio::test]
async fn a_dead_job_is_reported_and_left_dead() {
    let f = fixture().await;
    order_aged(&f.store, AFTER * 2).await;
    let r = reconciler(&f, 100);
    assert_eq!(r.run_once().await.unwrap().requeued, 1);
    let job = f
        .queue
        .reserve(
            PROCESS_ORDER,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        f.queue.fail(&job, "payment declined").await.unwrap(),
        RetryOutcome::Dead
    );

    for _ in 0..2 {
        let done = r.run_once().await.unwrap();
        assert_eq!((done.requeued, done.dead), (0, 1), "{done:?}");
    }
    let stats = f.queue.stats(PROCESS_ORDER).await.unwrap();
    assert_eq!((stats.waiting, stats.dead), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn orders_with_dead_jobs_do_not_hide_the_ones_after_them() {
    let f = fixture().await;
    let r = reconciler(&f, 2);
    for _ in 0..2 {
        order_aged(&f.store, AFTER * 3).await;
    }
    assert_eq!(r.run_once().await.unwrap().requeued, 2);
    for _ in 0..2 {
        let job = f
            .queue
            .reserve(
                PROCESS_ORDER,
                Duration::from_secs(30),
                Duration::from_secs(1),
            )
            .await
            .unwrap()
            .unwrap();
        f.queue.fail(&job, "payment declined").await.unwrap();
    }
    // Newer than the two dead ones, and stale too.
    let (later, _) = order_aged(&f.store, AFTER * 2).await;

    let mut requeued = 0;
    for _ in 0..3 {
        requeued += r.run_once().await.unwrap().requeued;
    }
    assert_eq!(requeued, 1, "the third order's job, once");
    let job = f
        .queue
        .reserve(
            PROCESS_ORDER,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .expect("the later order's job");
    let payload: ProcessOrder = serde_json::from_slice(&job.payload).unwrap();
    assert_eq!(payload.order_id, later.id);
}

/// An outage strands far more orders than one page: a scheduled run goes on
/// page after page and enqueues every one of them, not one page per tick.
#[tokio::test]
async fn one_run_repairs_a_backlog_larger_than_a_page() {
    let f = fixture().await;
    let r = reconciler(&f, 10);
    for _ in 0..35 {
        order_aged(&f.store, AFTER * 2).await;
    }
    let done = r.run_pages().await.unwrap();
    assert_eq!((done.requeued, done.pages), (35, 4), "{done:?}");
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 35);
}

/// Two processes' reconcilers on one store and queue, ticking together: the
/// lease lets one of them run, and one job is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_lets_one_of_two_reconcilers_run() {
    let f = fixture().await;
    order_aged(&f.store, AFTER * 2).await;
    let lease: Arc<dyn Lease> = Arc::new(LocalLease::new());
    let (a, b) = (Arc::new(reconciler(&f, 100)), Arc::new(reconciler(&f, 100)));
    let (task_a, task_b) = (a.task(), b.task());
    // The first holder keeps the lease while the other ticks.
    let held = lease
        .try_acquire("maintenance:reconcile", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lease is free");
    assert!(
        !maintenance::run_once(&task_b, &*lease).await,
        "ran under a held lease"
    );
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 0);
    lease.release("maintenance:reconcile", &held).await.unwrap();

    let (ran_a, ran_b) = tokio::join!(
        maintenance::run_once(&task_a, &*lease),
        maintenance::run_once(&task_b, &*lease)
    );
    assert!(ran_a || ran_b, "neither ran");
    assert_eq!(f.queue.stats(PROCESS_ORDER).await.unwrap().waiting, 1);
}
