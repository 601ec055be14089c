//! The reconciler, black-box: an order whose `new_order` event was taken
//! and acked by a consumer that then made no job (here: the test itself, in
//! the consumers' group, with no `orderly consumer` running) is PENDING with
//! no job anywhere. `orderly worker` finds it once it is older than
//! `RECONCILE_AFTER_SECONDS`, enqueues its job under the consumer's id, and
//! the order ends PAID, paid once; the runs while that job waits or runs make
//! no second job.

use std::time::Duration;

use orderly_bus::schema::events;
use orderly_bus::{Bus, GroupOptions, JobQueue};
use orderly_nats::{NatsBus, NatsConfig};
use orderly_redis::{RedisQueue, RedisQueueConfig};
use serde_json::Value;

use crate::faults::{RedisKeys, start_orderly_broker};
use crate::helpers::{logs_when, one_item_order, start_role};

#[tokio::test(flavor = "multi_thread")]
async fn an_order_whose_event_was_acked_away_is_paid_once_by_the_reconciler() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, nats_url) = start_orderly_broker(&tmp.path().join("broker"), "127.0.0.1:0");
    let db = format!(
        "sqlite://{}?mode=rwc",
        tmp.path().join("orders.db").display()
    );
    let keys = RedisKeys::new();
    let (prefix, redis) = (keys.prefix.clone(), keys.queue_url());
    let public_key = tmp
        .path()
        .join("auth/keys/public.pem")
        .to_string_lossy()
        .into_owned();
    let common: Vec<(&str, &str)> = vec![
        ("BUS", "nats"),
        ("NATS_URL", nats_url.as_str()),
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", redis.as_str()),
        ("JOB_QUEUE_PREFIX", prefix.as_str()),
        ("ORDERS_DATABASE_URL", db.as_str()),
        ("ORDERS_PUBLIC_KEY_PATH", public_key.as_str()),
        // Several reconciler runs happen while the job waits and runs.
        ("WORKER_PAYMENT_DELAY_MS", "3000"),
        ("RECONCILE_SCHEDULE", "* * * * * *"),
        ("RECONCILE_AFTER_SECONDS", "2"),
    ];
    let auth = start_role("auth", &tmp.path().join("auth"), &common, 0).await;
    let mut orders = start_role("orders", &tmp.path().join("orders"), &common, 0).await;
    orders.auth_url = auth.auth_url.clone();

    // The consumers' group, joined by the test: the event is delivered here.
    let bus = NatsBus::connect(NatsConfig::new(nats_url.clone()))
        .await
        .expect("a NATS client of the test");
    bus.ensure_stream(events::stream()).await.unwrap();
    let mut group = bus
        .subscribe_group(
            events::NEW_ORDER,
            orderly_consumer::GROUP,
            GroupOptions {
                ack_wait: Duration::from_secs(30),
                max_deliveries: 20,
                max_in_flight: 64,
            },
        )
        .await
        .unwrap();

    let (_, token) = orders.user("stranded@example.com").await;
    let r = orders.create_order(&token, one_item_order()).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let delivery = tokio::time::timeout(Duration::from_secs(30), group.next())
        .await
        .expect("the new_order event within 30 s")
        .expect("an open subscription");
    let event_id = delivery
        .message
        .header(orderly_bus::header::EVENT_ID)
        .expect("an event id")
        .to_string();
    assert!(delivery.ack(), "acked away");
    drop(group);
    bus.close().await;

    let mut config = RedisQueueConfig::new(redis.clone());
    config.prefix = prefix.clone();
    let queue = RedisQueue::connect(config).await.unwrap();
    let stats = queue.stats("process_order").await.unwrap();
    assert_eq!(
        (stats.waiting, stats.running),
        (0, 0),
        "no job before the reconciler"
    );

    let worker = start_role("worker", &tmp.path().join("worker"), &common, 0).await;
    orders
        .wait_for_status(&token, &id, "PAID", Duration::from_secs(60))
        .await;
    // A few more runs after the payment: they find nothing to do.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logs = logs_when(
        || worker.logs(),
        |l| l.contains("successfully updated to PAID"),
    )
    .await;
    let requeued: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("PENDING without a job"))
        .collect();
    assert_eq!(requeued.len(), 1, "one requeue:\n{}", requeued.join("\n"));
    assert!(
        requeued[0].contains(&format!("process_order:{event_id}")),
        "the consumer's job id, process_order:{event_id}: {}",
        requeued[0]
    );
    let runs = logs
        .matches(&format!("Starting to process order {id}"))
        .count();
    assert_eq!(runs, 1, "one job run; worker log:\n{logs}");
    let stats = queue.stats("process_order").await.unwrap();
    assert_eq!(
        (stats.waiting, stats.running, stats.retrying, stats.dead),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    drop((auth, orders, worker));
}
