//! What the Redis queue does beyond the conformance kit: the retry schedule
//! end to end, poison jobs, trimming, results, leases, purging. Each test
//! works under its own key prefix on the shared Redis and deletes its keys.
//! Without Redis: a failure with CI=true, a loud skip otherwise.

mod common;

use std::time::Duration;

use orderly_bus::{JobQueue, Lease, NewJob, RetryOutcome, RetryPolicy};
use orderly_redis::RedisQueue;
use tokio::time::Instant;

use common::Cleanup;

const Q: &str = "process_order";

async fn setup(
    policy: RetryPolicy,
) -> Option<(RedisQueue, Cleanup, redis::aio::MultiplexedConnection)> {
    let client = orderly_testkit::shared_redis().await?;
    let cleanup = Cleanup {
        base_url: common::shared_url(),
        prefix: common::unique_prefix(),
    };
    let q = common::connect(&cleanup.base_url, &cleanup.prefix, policy).await;
    let raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection");
    Some((q, cleanup, raw))
}

fn job(id: &str, payload: &str) -> NewJob {
    NewJob {
        queue: Q.into(),
        id: id.into(),
        payload: payload.to_string().into(),
    }
}

/// A job that always fails runs exactly 1 + 3 times, each retry
/// after a jittered wait under a growing ceiling, then sits in the dead letters
/// with all its errors; `requeue_dead` runs it again.
#[tokio::test(flavor = "multi_thread")]
async fn an_always_failing_job_runs_four_times_then_is_dead_and_requeue_runs_it_again() {
    let policy = RetryPolicy {
        base: Duration::from_millis(200),
        factor: 2.0,
        cap: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    assert_eq!(
        policy.max_retries, 3,
        "the default is the old system's 3 retries"
    );
    let Some((q, cleanup, _raw)) = setup(policy).await else {
        return;
    };
    assert!(q.enqueue(job("doomed", "{}")).await.unwrap());

    let mut runs = 0;
    let mut failed_at: Option<(Instant, Duration)> = None;
    let mut errors = Vec::new();
    // A worker loop: run everything it gets until the queue stays empty.
    while let Some(j) = q
        .reserve(Q, Duration::from_secs(30), Duration::from_secs(3))
        .await
        .unwrap()
    {
        runs += 1;
        assert_eq!(j.attempt, runs);
        assert_eq!(j.errors, errors);
        if let Some((at, delay)) = failed_at {
            let gap = at.elapsed();
            let ceiling = policy.ceiling(runs - 1);
            println!(
                "retry {}: ran {gap:?} after the failure (drawn delay {delay:?}, ceiling {ceiling:?})",
                runs - 1
            );
            assert!(
                gap >= delay,
                "ran {gap:?} after failing, before its delay {delay:?}"
            );
            assert!(
                delay <= ceiling,
                "delay {delay:?} over the ceiling {ceiling:?}"
            );
        }
        let error = format!("payment gateway down (run {runs})");
        let outcome = q.fail(&j, &error).await.unwrap();
        errors.push(error);
        failed_at = match outcome {
            RetryOutcome::Retry(delay) => Some((Instant::now(), delay)),
            RetryOutcome::Dead => None,
        };
    }
    assert_eq!(runs, 1 + 3, "runs of an always failing job");
    let ceilings: Vec<_> = (1..=3).map(|r| policy.ceiling(r)).collect();
    assert!(ceilings.windows(2).all(|w| w[0] < w[1]), "{ceilings:?}");

    let dead = q.dead_letters(Q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), ("doomed", 4));
    assert_eq!(dead[0].errors, errors);
    let result = q.result("doomed").await.unwrap().expect("a FAILURE result");
    assert!(result.contains(r#""status":"FAILURE""#), "{result}");

    assert!(q.requeue_dead(Q, "doomed").await.unwrap());
    let again = q
        .reserve(Q, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the requeued job runs again");
    assert_eq!((again.id.as_str(), again.attempt), ("doomed", 1));
    q.ack(&again).await.unwrap();
    let result = q.result("doomed").await.unwrap().expect("a SUCCESS result");
    assert!(result.contains(r#""status":"SUCCESS""#), "{result}");
    assert!(q.dead_letters(Q, 10).await.unwrap().is_empty());
    drop(cleanup);
}

/// A job that never comes back from its worker (reserved, lease expired, again
/// and again) is poison after `max_deliveries` deliveries: dead, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_kills_its_worker_every_time_ends_in_the_dead_letters() {
    let Some((q, cleanup, _raw)) = setup(RetryPolicy::default()).await else {
        return;
    };
    let max = q.config().max_deliveries;
    assert_eq!(max, orderly_redis::DEFAULT_MAX_DELIVERIES);
    assert!(q.enqueue(job("pill", "x")).await.unwrap());
    let visibility = Duration::from_millis(100);
    for delivery in 1..=max {
        let j = q
            .reserve(Q, visibility, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("delivery {delivery} of {max}"));
        assert_eq!(j.attempt, delivery);
        // The worker "dies": no ack, no fail.
    }
    tokio::time::sleep(visibility * 2).await;
    let report = q.sweep_expired(Q).await.unwrap();
    assert_eq!(report.poisoned, 1, "{report:?}");
    assert!(
        q.reserve(Q, visibility, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "a poison job was delivered again"
    );
    let dead = q.dead_letters(Q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, max);
    assert!(
        dead[0].errors[0].starts_with("poison:"),
        "{:?}",
        dead[0].errors
    );
    let s = q.stats(Q).await.unwrap();
    assert_eq!((s.waiting, s.running, s.dead), (0, 0, 1));
    assert_eq!(q.purge_dead(Q).await.unwrap(), 1);
    assert_eq!(q.stats(Q).await.unwrap().dead, 0);
    assert!(
        !q.requeue_dead(Q, "pill").await.unwrap(),
        "purged means gone"
    );
    drop(cleanup);
}

/// Trimming drops acked entries only: a reserved (pending) entry and every
/// entry after it stay, and the pending job can still be acked.
#[tokio::test(flavor = "multi_thread")]
async fn trimming_keeps_pending_and_undelivered_entries() {
    let Some((q, cleanup, _raw)) = setup(RetryPolicy::default()).await else {
        return;
    };
    for id in ["a", "b", "c", "d"] {
        assert!(q.enqueue(job(id, id)).await.unwrap());
    }
    let long = Duration::from_secs(30);
    let wait = Duration::from_secs(5);
    let a = q.reserve(Q, long, wait).await.unwrap().unwrap();
    let b = q.reserve(Q, long, wait).await.unwrap().unwrap();
    let c = q.reserve(Q, long, wait).await.unwrap().unwrap();
    assert_eq!(
        (a.id.as_str(), b.id.as_str(), c.id.as_str()),
        ("a", "b", "c")
    );
    q.ack(&a).await.unwrap();
    q.ack(&c).await.unwrap();
    assert_eq!(q.stream_len(Q).await.unwrap(), 4);

    let report = q.trim(Q, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(
        report.trimmed, 1,
        "only a, acked and older than the pending b"
    );
    assert_eq!(
        q.stream_len(Q).await.unwrap(),
        3,
        "b (pending), c, d (undelivered)"
    );

    q.ack(&b).await.unwrap();
    q.trim(Q, Duration::from_secs(3600)).await.unwrap();
    // Nothing pending: everything below the last delivered entry (c) goes; d was never read.
    assert_eq!(q.stream_len(Q).await.unwrap(), 2);
    let d = q
        .reserve(Q, long, wait)
        .await
        .unwrap()
        .expect("d survived the trims");
    assert_eq!(d.id, "d");
    q.ack(&d).await.unwrap();
    assert_eq!(q.stats(Q).await.unwrap(), Default::default());
    drop(cleanup);
}

/// Results in DB 1 for 24 h; job ids remembered for 7 days.
#[tokio::test(flavor = "multi_thread")]
async fn results_and_dedup_markers_expire() {
    let Some((q, cleanup, mut raw)) = setup(RetryPolicy::default()).await else {
        return;
    };
    assert!(q.enqueue(job("j1", "x")).await.unwrap());
    let j = q
        .reserve(Q, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    q.ack(&j).await.unwrap();
    let dedup_ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}:{Q}:id:j1", cleanup.prefix))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        (7 * 24 * 3600 - 60..=7 * 24 * 3600).contains(&dedup_ttl),
        "{dedup_ttl}"
    );
    let _: () = redis::cmd("SELECT")
        .arg(1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let result_key = format!("{}:result:j1", cleanup.prefix);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&result_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((24 * 3600 - 60..=24 * 3600).contains(&ttl), "{ttl}");
    let record: String = redis::cmd("GET")
        .arg(&result_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["status"], "SUCCESS");
    assert!(record["finished_at"].is_string());
    drop(cleanup);
}

/// One holder per lease name; only the holder's token releases it; a lease
/// whose holder died frees itself after its TTL.
#[tokio::test(flavor = "multi_thread")]
async fn redis_leases_have_one_holder() {
    let Some((q, cleanup, _raw)) = setup(RetryPolicy::default()).await else {
        return;
    };
    let other = common::connect(&cleanup.base_url, &cleanup.prefix, RetryPolicy::default()).await;
    let (mine, theirs) = (q.lease(), other.lease());
    let token = mine
        .try_acquire("trim", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("a free lease");
    assert!(
        theirs
            .try_acquire("trim", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!theirs.release("trim", "forged").await.unwrap());
    assert!(mine.release("trim", &token).await.unwrap());
    let held = theirs
        .try_acquire("trim", Duration::from_millis(100))
        .await
        .unwrap()
        .expect("released, free again");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after = mine
        .try_acquire("trim", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a dead holder's lease expires");
    assert!(
        !theirs.release("trim", &held).await.unwrap(),
        "expired holder released its successor's lease"
    );
    assert!(mine.release("trim", &after).await.unwrap());
    drop(cleanup);
}
