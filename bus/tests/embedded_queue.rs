//! The embedded job queue through its public API.

use std::path::Path;
use std::time::{Duration, Instant};

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{Bus, JobQueue, NewJob, QueueError, QueueStats, RetryOutcome, RetryPolicy};

const NO_WAIT: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_secs(30);

fn quick_policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        factor: 1.0,
        cap: Duration::from_millis(20),
        max_retries,
    }
}

async fn broker(dir: Option<&Path>) -> EmbeddedBroker {
    EmbeddedBroker::open(BrokerConfig {
        data_dir: dir.map(Path::to_path_buf),
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

async fn queue(b: &EmbeddedBroker, max_retries: u32) -> EmbeddedQueue {
    EmbeddedQueue::open(b, quick_policy(max_retries))
        .await
        .unwrap()
}

fn job(id: &str) -> NewJob {
    NewJob {
        queue: "process_order".into(),
        id: id.into(),
        payload: format!("payload of {id}").into(),
    }
}

#[tokio::test]
async fn the_same_job_id_is_enqueued_once_even_after_it_ran_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(Some(dir.path())).await;
        let q = queue(&b, 3).await;
        assert!(q.enqueue(job("a")).await.unwrap());
        assert!(!q.enqueue(job("a")).await.unwrap());
        let j = q
            .reserve("process_order", LONG, NO_WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("a", 1));
        assert_eq!(j.payload, "payload of a");
        q.ack(&j).await.unwrap();
        assert!(!q.enqueue(job("a")).await.unwrap(), "already ran");
        // Same id in another queue is another job.
        let mut other = job("a");
        other.queue = "send_mail".into();
        assert!(q.enqueue(other).await.unwrap());
        b.close().await;
    }
    let b = broker(Some(dir.path())).await;
    let q = queue(&b, 3).await;
    assert!(
        !q.enqueue(job("a")).await.unwrap(),
        "remembered across a restart"
    );
    assert!(q.enqueue(job("b")).await.unwrap());
    let j = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.id, "b", "the acked job does not come back");
}

#[tokio::test]
async fn a_reserved_job_is_invisible_until_its_visibility_timeout_passes() {
    let b = broker(None).await;
    let q = queue(&b, 3).await;
    q.enqueue(job("a")).await.unwrap();
    let visibility = Duration::from_millis(100);
    let first = q
        .reserve("process_order", visibility, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert!(
        q.reserve("process_order", visibility, NO_WAIT)
            .await
            .unwrap()
            .is_none()
    );
    let started = Instant::now();
    let again = q
        .reserve("process_order", visibility, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("reclaimed after the visibility timeout");
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!((again.id.as_str(), again.attempt), ("a", 2));
    assert!(
        matches!(q.fail(&first, "late").await, Err(QueueError::UnknownJob(_))),
        "the first worker lost its reservation"
    );
    q.ack(&again).await.unwrap();
    assert_eq!(
        q.stats("process_order").await.unwrap(),
        QueueStats::default()
    );
}

#[tokio::test]
async fn extend_keeps_a_job_reserved() {
    let b = broker(None).await;
    let q = queue(&b, 3).await;
    q.enqueue(job("a")).await.unwrap();
    let j = q
        .reserve("process_order", Duration::from_millis(60), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    q.extend(&j, Duration::from_millis(500)).await.unwrap();
    let none = q
        .reserve("process_order", LONG, Duration::from_millis(150))
        .await
        .unwrap();
    assert!(none.is_none());
    q.ack(&j).await.unwrap();
    assert!(
        q.extend(&j, LONG).await.is_err(),
        "nothing to extend after the ack"
    );
}

#[tokio::test]
async fn a_waiting_reserve_is_woken_by_an_enqueue() {
    let b = broker(None).await;
    let q = queue(&b, 3).await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let j = q
                .reserve("process_order", LONG, Duration::from_secs(5))
                .await;
            (j, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.enqueue(job("a")).await.unwrap();
    let (j, took) = waiter.await.unwrap();
    assert_eq!(j.unwrap().unwrap().id, "a");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let empty = q
        .reserve("process_order", LONG, Duration::from_millis(30))
        .await
        .unwrap();
    assert!(empty.is_none());
}

#[tokio::test]
async fn failures_retry_with_a_delay_and_then_dead_letter_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(Some(dir.path())).await;
    let q = queue(&b, 2).await;
    q.enqueue(job("a")).await.unwrap();
    let wait = Duration::from_secs(2);
    for attempt in 1..=3u32 {
        let j = q
            .reserve("process_order", LONG, wait)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.attempt, attempt);
        let expected: Vec<String> = (1..attempt).map(|i| format!("error {i}")).collect();
        assert_eq!(j.errors, expected);
        let outcome = q.fail(&j, &format!("error {attempt}")).await.unwrap();
        if attempt < 3 {
            assert!(matches!(outcome, RetryOutcome::Retry(d) if d <= Duration::from_millis(20)));
        } else {
            assert_eq!(outcome, RetryOutcome::Dead);
        }
    }
    assert!(
        q.reserve("process_order", LONG, Duration::from_millis(60))
            .await
            .unwrap()
            .is_none()
    );
    let dead = q.dead_letters("process_order", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "a");
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].errors, vec!["error 1", "error 2", "error 3"]);
    assert_eq!(dead[0].payload, "payload of a");
    let stats = q.stats("process_order").await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            dead: 1,
            ..QueueStats::default()
        }
    );
    b.close().await;
    drop((b, q));

    let b = broker(Some(dir.path())).await;
    let q = queue(&b, 2).await;
    let dead = q.dead_letters("process_order", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "dead letters survive a restart");
    assert_eq!(dead[0].errors.len(), 3);
}

#[tokio::test]
async fn a_requeued_dead_job_runs_again_from_attempt_one() {
    let b = broker(None).await;
    let q = queue(&b, 0).await;
    q.enqueue(job("a")).await.unwrap();
    let j = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.fail(&j, "boom").await.unwrap(), RetryOutcome::Dead);
    assert!(!q.requeue_dead("process_order", "nope").await.unwrap());
    assert!(q.requeue_dead("process_order", "a").await.unwrap());
    assert!(
        !q.requeue_dead("process_order", "a").await.unwrap(),
        "moved already"
    );
    assert!(
        q.dead_letters("process_order", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let j = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((j.id.as_str(), j.attempt), ("a", 1));
    assert!(j.errors.is_empty(), "errors are cleared on requeue");
    q.ack(&j).await.unwrap();
}

#[tokio::test]
async fn stats_count_waiting_running_retrying_and_dead_jobs() {
    let b = broker(None).await;
    let q = EmbeddedQueue::open(
        &b,
        RetryPolicy {
            base: Duration::from_secs(10),
            factor: 1.0,
            cap: Duration::from_secs(10),
            max_retries: 1,
        },
    )
    .await
    .unwrap();
    for id in ["a", "b", "c", "d"] {
        q.enqueue(job(id)).await.unwrap();
    }
    let a = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    let b_job = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    let c = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.id.as_str(), b_job.id.as_str(), c.id.as_str()),
        ("a", "b", "c")
    );
    q.fail(&a, "later").await.unwrap();
    let b_outcome = q.fail(&b_job, "x").await.unwrap();
    assert!(matches!(b_outcome, RetryOutcome::Retry(_)));
    let stats = q.stats("process_order").await.unwrap();
    // a and b wait for their retry, c runs, d waits.
    assert_eq!(
        stats,
        QueueStats {
            waiting: 3,
            running: 1,
            retrying: 2,
            dead: 0
        }
    );
    assert_eq!(q.stats("other_queue").await.unwrap(), QueueStats::default());
    assert!(q.stats("bad.name").await.is_err());
}

#[tokio::test]
async fn a_job_whose_reservation_keeps_expiring_becomes_poison() {
    let b = broker(None).await;
    let q = queue(&b, 0).await;
    q.enqueue(job("crashy")).await.unwrap();
    let visibility = Duration::from_millis(10);
    let mut attempts = 0;
    while let Some(j) = q
        .reserve("process_order", visibility, Duration::from_millis(200))
        .await
        .unwrap()
    {
        attempts = j.attempt;
        assert!(attempts <= 6, "max_retries 0 + 1 + 5 extra deliveries");
    }
    assert_eq!(attempts, 6);
    let dead = q.dead_letters("process_order", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 6);
}

#[tokio::test]
async fn an_unfinished_job_and_its_errors_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = broker(Some(dir.path())).await;
        let q = queue(&b, 3).await;
        q.enqueue(job("a")).await.unwrap();
        let j = q
            .reserve("process_order", LONG, NO_WAIT)
            .await
            .unwrap()
            .unwrap();
        q.fail(&j, "first").await.unwrap();
        let j = q
            .reserve("process_order", LONG, Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.attempt, 2);
        b.close().await;
        assert!(matches!(
            q.reserve("process_order", LONG, NO_WAIT).await,
            Err(QueueError::Closed)
        ));
    }
    let b = broker(Some(dir.path())).await;
    let q = queue(&b, 3).await;
    let j = q
        .reserve("process_order", LONG, NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((j.id.as_str(), j.attempt), ("a", 3));
    assert_eq!(j.errors, vec!["first"]);
    q.check().await.unwrap();
}
