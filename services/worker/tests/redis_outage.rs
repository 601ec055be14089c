//! The worker on the Redis queue while its redis-server (one of the test's
//! own, with an append-only file) is killed and started again: jobs are
//! neither dead-lettered nor charged a failed attempt, and every order ends
//! PAID once.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_bus::{JobQueue, RetryPolicy};
use orderly_redis::{RedisQueue, RedisQueueConfig};
use orderly_testkit::redis_server::DurableRedis;

use support::{Ledger, assert_all_paid, config, enqueue_orders, run, wait_until};

/// A redis-server that persists every write, killed by its PID and started
/// again on the same directory and port.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_outage_spends_no_attempt_and_every_order_is_paid_once() {
    const JOBS: usize = 60;
    let Some(mut redis_server) = DurableRedis::start() else {
        return;
    };
    let mut settings = RedisQueueConfig::new(format!("{}/0", redis_server.url()));
    settings.results_url = None;
    // No retries: a job charged a failed attempt would be dead at once.
    settings.policy = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let q: Arc<dyn JobQueue> = Arc::new(RedisQueue::connect(settings).await.expect("connect"));
    let ids = enqueue_orders(&*q, JOBS).await;
    let ledger = Ledger::new();
    ledger.set_gate_open(false);
    let w = run(
        q.clone(),
        ledger.clone(),
        config(10, 200, Duration::from_secs(3)),
    );
    wait_until(Duration::from_secs(30), "every job in flight", || {
        let n = ledger.waiting.load(std::sync::atomic::Ordering::SeqCst);
        (n == JOBS).then_some(()).ok_or(format!("{n} of {JOBS}"))
    })
    .await;
    // The queue goes away with every job in hand: acks fail, reserves fail.
    redis_server.kill();
    ledger.set_gate_open(true);
    wait_until(Duration::from_secs(30), "the worker paused", || {
        w.worker
            .is_paused()
            .then_some(())
            .ok_or("not paused".into())
    })
    .await;
    // Past the visibility timeout: the reservations run out meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis_server.restart().expect("redis-server starts again");
    wait_until(Duration::from_secs(60), "the worker resumed", || {
        (!w.worker.is_paused())
            .then_some(())
            .ok_or("still paused".into())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = q.stats(PROCESS_ORDER).await.expect("stats");
        assert_eq!(s.dead, 0, "the outage dead-lettered jobs: {s:?}");
        if s.waiting == 0 && s.running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs left after the outage: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Paid before the outage (its ack lost, so run again) or after it.
    assert_all_paid(&ledger, &ids);
    w.shutdown.trigger();
    w.task.await.unwrap();
}
