//! The worker on the embedded queue: thousands of jobs in flight at once,
//! each order PAID once; a database outage spends no attempt; a stop hands
//! unfinished jobs back for another worker at once.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_bus::{JobQueue, QueueStats, RetryPolicy};
use tokio::time::Instant;

use support::{Ledger, assert_paid_once, config, enqueue_orders, run, wait_until};

/// No retries: a job whose attempt is spent goes straight to the dead letters.
fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    }
}

async fn queue(policy: RetryPolicy) -> Arc<dyn JobQueue> {
    let broker = EmbeddedBroker::open(BrokerConfig::default())
        .await
        .expect("in-memory broker");
    Arc::new(EmbeddedQueue::open(&broker, policy).await.expect("queue"))
}

async fn stats(q: &dyn JobQueue) -> QueueStats {
    q.stats(PROCESS_ORDER).await.expect("stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_jobs_are_in_flight_at_once_and_each_order_is_paid_once() {
    const JOBS: usize = 3_000;
    let q = queue(no_retries()).await;
    let ids = enqueue_orders(&*q, JOBS).await;
    let ledger = Ledger::new();
    // Every payment waits at the gate until all of them are in flight.
    ledger.set_gate_open(false);
    let visibility = Duration::from_secs(3);
    let w = run(q.clone(), ledger.clone(), config(10, 4_000, visibility));
    wait_until(
        Duration::from_secs(60),
        "all jobs in flight at once",
        || {
            let n = ledger.waiting.load(Ordering::SeqCst);
            assert!(
                n <= JOBS,
                "{n} payments for {JOBS} jobs: reservations expired and were taken again"
            );
            (n == JOBS)
                .then_some(())
                .ok_or(format!("{n} of {JOBS} in flight"))
        },
    )
    .await;
    // Held past several visibility timeouts: only the keep-alive keeps them.
    tokio::time::sleep(visibility * 3).await;
    assert_eq!(
        stats(&*q).await.running,
        JOBS as u64,
        "reservations lost while held"
    );
    ledger.set_gate_open(true);
    wait_until(Duration::from_secs(60), "every order PAID", || {
        let n = ledger.paid_count();
        (n == JOBS)
            .then_some(())
            .ok_or(format!("{n} of {JOBS} paid"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats(&*q).await != QueueStats::default() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stats(&*q).await,
        QueueStats::default(),
        "jobs left in the queue"
    );
    assert_paid_once(&ledger, &ids);
    assert_eq!(
        ledger.calls.load(Ordering::SeqCst),
        JOBS,
        "a job ran twice: its reservation expired while it ran"
    );
    w.shutdown.trigger();
    w.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_pauses_the_worker_and_spends_no_attempt() {
    const JOBS: usize = 40;
    let q = queue(no_retries()).await;
    let ledger = Ledger::new();
    ledger.set_down(true);
    let ids = enqueue_orders(&*q, JOBS).await;
    let w = run(
        q.clone(),
        ledger.clone(),
        config(10, 100, Duration::from_secs(30)),
    );
    wait_until(Duration::from_secs(30), "the worker paused", || {
        w.worker
            .is_paused()
            .then_some(())
            .ok_or("not paused".into())
    })
    .await;
    // Long enough for many reserve and probe rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = stats(&*q).await;
    assert_eq!(during.dead, 0, "an outage dead-lettered jobs: {during:?}");
    assert_eq!(during.retrying, 0, "an outage spent attempts: {during:?}");
    assert!(w.worker.is_paused(), "resumed while the database is down");
    ledger.set_down(false);
    wait_until(
        Duration::from_secs(60),
        "every order PAID after the outage",
        || {
            let n = ledger.paid_count();
            (n == JOBS)
                .then_some(())
                .ok_or(format!("{n} of {JOBS} paid"))
        },
    )
    .await;
    assert!(
        !w.worker.is_paused(),
        "still paused once the database answers"
    );
    assert_paid_once(&ledger, &ids);
    let after = stats(&*q).await;
    assert_eq!(after.dead, 0, "{after:?}");
    w.shutdown.trigger();
    w.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_past_its_grace_hands_jobs_back_and_another_worker_takes_them_at_once() {
    const JOBS: usize = 5;
    let q = queue(no_retries()).await;
    let ids = enqueue_orders(&*q, JOBS).await;
    let ledger = Ledger::new();
    // A payment far longer than the grace, and a visibility timeout far
    // longer than the test: only a hand-back lets another worker have them.
    let visibility = Duration::from_secs(120);
    let mut slow = config(600_000, 16, visibility);
    slow.stop_grace = Duration::from_millis(300);
    let first = run(q.clone(), ledger.clone(), slow);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats(&*q).await.running < JOBS as u64 {
        assert!(
            Instant::now() < deadline,
            "the first worker never took every job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown.trigger();
    // Ends after the grace, not after the payment.
    tokio::time::timeout(Duration::from_secs(20), first.task)
        .await
        .expect("the stopped worker did not end within its grace (and some slack)")
        .unwrap();
    let back = stats(&*q).await;
    assert_eq!(
        (back.running, back.waiting),
        (0, JOBS as u64),
        "every unfinished job is waiting again"
    );
    let second = run(q.clone(), ledger.clone(), config(10, 16, visibility));
    wait_until(
        Duration::from_secs(20),
        "the second worker paid every order",
        || {
            let n = ledger.paid_count();
            (n == JOBS)
                .then_some(())
                .ok_or(format!("{n} of {JOBS} paid"))
        },
    )
    .await;
    assert_paid_once(&ledger, &ids);
    assert_eq!(stats(&*q).await.dead, 0);
    second.shutdown.trigger();
    second.task.await.unwrap();
}
