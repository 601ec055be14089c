//! The cases of the [`JobQueue`] suite, one `pub async fn`
//! each; the doc of each says what an adapter must do to pass it.
//!
//! Every case works on its own queue (`conf_<uuid>`), with small retry
//! delays (base 50 ms) so that retries and dead letters happen quickly.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{QueueCx, Verdict};
use crate::{Job, JobQueue, NewJob, QueueStats, RetryOutcome, RetryPolicy};

/// Visibility of cases that do not test reclaiming: never reached.
const LONG_MS: u64 = 30_000;
/// How long a case waits for a job it expects.
const DEADLINE_MS: u64 = 10_000;
/// How long a case waits to be sure there is no job.
const EMPTY_MS: u64 = 200;

fn quick(cx: &QueueCx, max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        base: cx.ms(50),
        factor: 2.0,
        cap: cx.ms(200),
        max_retries,
    }
}

fn new_job(queue: &str, id: &str, payload: &str) -> NewJob {
    NewJob {
        queue: queue.to_string(),
        id: id.to_string(),
        payload: payload.to_string().into(),
    }
}

async fn enqueue(q: &dyn JobQueue, queue: &str, id: &str, payload: &str) -> bool {
    q.enqueue(new_job(queue, id, payload))
        .await
        .unwrap_or_else(|e| panic!("enqueue {id} failed: {e}"))
}

async fn reserve(cx: &QueueCx, q: &dyn JobQueue, visibility: Duration, what: &str) -> Job {
    q.reserve(cx.queue(), visibility, cx.ms(DEADLINE_MS))
        .await
        .unwrap_or_else(|e| panic!("reserve failed while waiting for {what}: {e}"))
        .unwrap_or_else(|| panic!("no job within {:?}: {what}", cx.ms(DEADLINE_MS)))
}

async fn assert_empty(cx: &QueueCx, q: &dyn JobQueue, queue: &str, why: &str) {
    let job = q
        .reserve(queue, cx.ms(LONG_MS), cx.ms(EMPTY_MS))
        .await
        .unwrap_or_else(|e| panic!("reserve failed: {e}"));
    if let Some(j) = job {
        panic!(
            "{why}, but job {} (attempt {}) was reserved",
            j.id, j.attempt
        );
    }
}

async fn stats(q: &dyn JobQueue, queue: &str) -> QueueStats {
    q.stats(queue)
        .await
        .unwrap_or_else(|e| panic!("stats failed: {e}"))
}

async fn ack(q: &dyn JobQueue, job: &Job) {
    q.ack(job)
        .await
        .unwrap_or_else(|e| panic!("ack of {} failed: {e}", job.id));
}

/// A job is reserved with its id and payload as attempt 1, acked, and gone;
/// an empty queue answers `None` after the wait; stats end at zero.
pub async fn enqueue_reserve_ack(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    q.check().await.expect("a fresh queue is ready");
    assert!(enqueue(&*q, cx.queue(), "a", "payload of a").await);
    let j = reserve(&cx, &*q, cx.ms(LONG_MS), "the enqueued job").await;
    assert_eq!(j.queue, cx.queue());
    assert_eq!(j.id, "a");
    assert_eq!(j.payload, "payload of a");
    assert_eq!(j.attempt, 1);
    assert!(j.errors.is_empty(), "a first attempt has no errors");
    ack(&*q, &j).await;
    assert_empty(&cx, &*q, cx.queue(), "the only job was acked").await;
    assert_eq!(stats(&*q, cx.queue()).await, QueueStats::default());
    Verdict::Pass
}

/// A worker waiting in `reserve` gets a job enqueued meanwhile by another client.
pub async fn reserve_waits_for_a_job(cx: Arc<QueueCx>) -> Verdict {
    let worker = cx.connect(quick(&cx, 3)).await;
    let producer = cx.connect(quick(&cx, 3)).await;
    let waiting = {
        let cx = cx.clone();
        tokio::spawn(async move { reserve(&cx, &*worker, cx.ms(LONG_MS), "the late job").await })
    };
    tokio::time::sleep(cx.ms(100)).await;
    assert!(enqueue(&*producer, cx.queue(), "late", "x").await);
    let j = waiting.await.expect("the waiting worker failed");
    assert_eq!(j.id, "late");
    ack(&*producer, &j).await;
    Verdict::Pass
}

/// The same id twice makes one job (the first payload), also after it ran.
pub async fn dedup_by_id(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    assert!(enqueue(&*q, cx.queue(), "once", "first").await);
    assert!(
        !enqueue(&*q, cx.queue(), "once", "second").await,
        "a second job with the same id was enqueued"
    );
    let j = reserve(&cx, &*q, cx.ms(LONG_MS), "the deduplicated job").await;
    assert_eq!(j.payload, "first");
    assert_empty(&cx, &*q, cx.queue(), "one id makes one job").await;
    ack(&*q, &j).await;
    assert!(
        !enqueue(&*q, cx.queue(), "once", "third").await,
        "the id of a job that ran was enqueued again"
    );
    assert_empty(&cx, &*q, cx.queue(), "the job ran already").await;
    Verdict::Pass
}

/// Queues do not mix, and one id in two queues is two jobs.
pub async fn queues_are_isolated(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    let other = format!("{}_b", cx.queue());
    assert!(enqueue(&*q, cx.queue(), "x", "in main").await);
    assert!(
        enqueue(&*q, &other, "x", "in other").await,
        "the same id in another queue is another job"
    );
    let o = q
        .reserve(&other, cx.ms(LONG_MS), cx.ms(DEADLINE_MS))
        .await
        .expect("reserve on the other queue")
        .expect("the other queue's job");
    assert_eq!(
        (o.queue.as_str(), o.payload.as_ref()),
        (other.as_str(), &b"in other"[..])
    );
    let m = reserve(&cx, &*q, cx.ms(LONG_MS), "the main queue's job").await;
    assert_eq!(m.payload, "in main");
    ack(&*q, &o).await;
    ack(&*q, &m).await;
    assert_empty(&cx, &*q, &other, "the other queue is done").await;
    Verdict::Pass
}

/// A reserved job neither acked nor failed within its visibility timeout is
/// reserved again as attempt 2; the first holder can no longer extend or fail it.
pub async fn visibility_timeout_reclaims(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    let visibility = cx.ms(300);
    assert!(enqueue(&*q, cx.queue(), "slow", "x").await);
    let reserved_at = Instant::now();
    let stale = reserve(&cx, &*q, visibility, "the job").await;
    let again = reserve(&cx, &*q, cx.ms(LONG_MS), "the reclaimed job").await;
    assert!(
        reserved_at.elapsed() >= visibility,
        "reclaimed after {:?}, within the visibility of {visibility:?}",
        reserved_at.elapsed()
    );
    assert_eq!((again.id.as_str(), again.attempt), ("slow", 2));
    assert!(
        q.extend(&stale, cx.ms(LONG_MS)).await.is_err(),
        "the first holder extended a job another worker holds now"
    );
    assert!(
        q.fail(&stale, "late failure").await.is_err(),
        "the first holder failed a job another worker holds now"
    );
    ack(&*q, &again).await;
    assert_empty(&cx, &*q, cx.queue(), "the job was acked").await;
    Verdict::Pass
}

/// `extend` keeps a job reserved past its first visibility timeout.
pub async fn extend_keeps_it_reserved(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    let visibility = cx.ms(600);
    assert!(enqueue(&*q, cx.queue(), "long", "x").await);
    let j = reserve(&cx, &*q, visibility, "the job").await;
    for _ in 0..6 {
        tokio::time::sleep(cx.ms(150)).await;
        q.extend(&j, visibility)
            .await
            .unwrap_or_else(|e| panic!("extend failed: {e}"));
        let stolen = q
            .reserve(cx.queue(), cx.ms(LONG_MS), Duration::ZERO)
            .await
            .expect("reserve");
        assert!(stolen.is_none(), "an extended job was reserved again");
    }
    ack(&*q, &j).await;
    assert_empty(&cx, &*q, cx.queue(), "the job was acked").await;
    Verdict::Pass
}

/// A failing job is retried after a delay within the policy's ceiling (never
/// sooner than the delay `fail` names), carries the errors of its earlier
/// attempts in order, and after `max_retries` retries it is dead with all of them.
pub async fn fail_retries_then_dead(cx: Arc<QueueCx>) -> Verdict {
    let policy = quick(&cx, 3);
    let q = cx.connect(policy).await;
    assert!(enqueue(&*q, cx.queue(), "doomed", "payload").await);
    let mut errors: Vec<String> = Vec::new();
    let mut retry_due: Option<(Instant, Duration)> = None;
    for attempt in 1..=policy.max_retries + 1 {
        let j = reserve(&cx, &*q, cx.ms(LONG_MS), "the failing job").await;
        if let Some((failed_at, delay)) = retry_due {
            assert!(
                failed_at.elapsed() >= delay,
                "retried after {:?}, before its delay of {delay:?}",
                failed_at.elapsed()
            );
        }
        assert_eq!((j.id.as_str(), j.attempt), ("doomed", attempt));
        assert_eq!(j.errors, errors, "errors of the earlier attempts, in order");
        let error = format!("boom {attempt}");
        let failed_at = Instant::now();
        let outcome = q
            .fail(&j, &error)
            .await
            .unwrap_or_else(|e| panic!("fail failed: {e}"));
        errors.push(error);
        if attempt <= policy.max_retries {
            let RetryOutcome::Retry(delay) = outcome else {
                panic!(
                    "attempt {attempt} of {} was not retried",
                    policy.max_retries + 1
                );
            };
            assert!(
                delay <= policy.ceiling(attempt),
                "retry delay {delay:?} over the ceiling {:?}",
                policy.ceiling(attempt)
            );
            retry_due = Some((failed_at, delay));
        } else {
            assert_eq!(outcome, RetryOutcome::Dead, "retries were used up");
        }
    }
    assert_empty(&cx, &*q, cx.queue(), "the job is dead").await;
    let dead = q.dead_letters(cx.queue(), 10).await.expect("dead_letters");
    assert_eq!(dead.len(), 1, "dead letters: {dead:?}");
    let d = &dead[0];
    assert_eq!((d.queue.as_str(), d.id.as_str()), (cx.queue(), "doomed"));
    assert_eq!(d.payload, "payload");
    assert_eq!(d.attempts, policy.max_retries + 1);
    assert_eq!(d.errors, errors, "every error, oldest first");
    let s = stats(&*q, cx.queue()).await;
    assert_eq!((s.waiting, s.running, s.retrying, s.dead), (0, 0, 0, 1));
    Verdict::Pass
}

/// `requeue_dead` puts a dead job back as attempt 1 with its id and payload;
/// it is gone from the dead letters, and unknown ids are refused.
pub async fn requeue_dead_runs_again(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 0)).await;
    assert!(enqueue(&*q, cx.queue(), "phoenix", "ashes").await);
    let j = reserve(&cx, &*q, cx.ms(LONG_MS), "the job").await;
    assert_eq!(
        q.fail(&j, "burnt").await.expect("fail"),
        RetryOutcome::Dead,
        "max_retries 0: the first failure is final"
    );
    assert_empty(&cx, &*q, cx.queue(), "the job is dead").await;
    assert!(
        q.requeue_dead(cx.queue(), "phoenix")
            .await
            .expect("requeue")
    );
    let again = reserve(&cx, &*q, cx.ms(LONG_MS), "the requeued job").await;
    assert_eq!(again.id, "phoenix");
    assert_eq!(again.payload, "ashes");
    assert_eq!(
        again.attempt, 1,
        "a requeued job starts a fresh attempt count"
    );
    let dead = q.dead_letters(cx.queue(), 10).await.expect("dead_letters");
    assert!(
        dead.is_empty(),
        "a requeued job left the dead letters: {dead:?}"
    );
    ack(&*q, &again).await;
    assert!(
        !q.requeue_dead(cx.queue(), "phoenix")
            .await
            .expect("requeue"),
        "a job that is not dead was requeued"
    );
    assert!(!q.requeue_dead(cx.queue(), "nobody").await.expect("requeue"));
    let s = stats(&*q, cx.queue()).await;
    assert_eq!(s, QueueStats::default());
    Verdict::Pass
}

/// `stats` counts waiting, running, retrying (also counted as waiting) and dead jobs.
pub async fn stats_count(cx: Arc<QueueCx>) -> Verdict {
    let slow_retry = RetryPolicy {
        base: cx.ms(10_000),
        factor: 1.0,
        cap: cx.ms(10_000),
        max_retries: 3,
    };
    let q = cx.connect(slow_retry).await;
    for id in ["a", "b", "c"] {
        assert!(enqueue(&*q, cx.queue(), id, id).await);
    }
    let s = stats(&*q, cx.queue()).await;
    assert_eq!((s.waiting, s.running, s.retrying, s.dead), (3, 0, 0, 0));
    let first = reserve(&cx, &*q, cx.ms(LONG_MS), "a job").await;
    let s = stats(&*q, cx.queue()).await;
    assert_eq!((s.waiting, s.running, s.retrying, s.dead), (2, 1, 0, 0));
    let RetryOutcome::Retry(delay) = q.fail(&first, "later").await.expect("fail") else {
        panic!("a first failure with 3 retries left was not retried");
    };
    // Full jitter may pick a delay that is over before we look; only a long
    // one is sure to be counted.
    if delay >= cx.ms(1_000) {
        let s = stats(&*q, cx.queue()).await;
        assert_eq!((s.waiting, s.running, s.retrying, s.dead), (3, 0, 1, 0));
    }
    let second = reserve(&cx, &*q, cx.ms(LONG_MS), "another job").await;
    ack(&*q, &second).await;
    let s = stats(&*q, cx.queue()).await;
    assert_eq!(s.running, 0);
    assert_eq!(s.dead, 0);
    assert_eq!(s.waiting, 2, "one job acked of three");
    Verdict::Pass
}

/// Several workers, each on its own client, drain a queue: no job is held
/// by two at once, every job runs exactly once.
pub async fn concurrent_workers_never_share_a_job(cx: Arc<QueueCx>) -> Verdict {
    let jobs = cx.count(200, 40);
    let producer = cx.connect(quick(&cx, 3)).await;
    for i in 0..jobs {
        assert!(enqueue(&*producer, cx.queue(), &format!("job-{i}"), "x").await);
    }
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let runs: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let q = cx.connect(quick(&cx, 3)).await;
        let (cx, running, runs, done) = (cx.clone(), running.clone(), runs.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let give_up = Instant::now() + cx.ms(3 * DEADLINE_MS);
            while done.load(Ordering::Acquire) < jobs && Instant::now() < give_up {
                let Some(j) = q
                    .reserve(cx.queue(), cx.ms(LONG_MS), cx.ms(EMPTY_MS))
                    .await
                    .expect("reserve")
                else {
                    continue;
                };
                let fresh = running.lock().expect("lock").insert(j.id.clone());
                assert!(fresh, "job {} reserved by two workers at once", j.id);
                *runs.lock().expect("lock").entry(j.id.clone()).or_default() += 1;
                tokio::task::yield_now().await;
                running.lock().expect("lock").remove(&j.id);
                ack(&*q, &j).await;
                done.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    for w in workers {
        w.await.expect("a worker failed");
    }
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), jobs, "jobs that ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    Verdict::Pass
}

/// After a restart, waiting, reserved-but-unacked and retrying jobs are all
/// there; acked ones are not, and their ids are still remembered.
pub async fn restart_keeps_queued_work(cx: Arc<QueueCx>) -> Verdict {
    if !cx.caps().durable {
        return Verdict::skip("adapter is not durable");
    }
    if !cx.caps().restart {
        return Verdict::skip("the factory cannot restart the queue");
    }
    let policy = quick(&cx, 3);
    let q = cx.connect(policy).await;
    for id in ["done", "crashed", "retrying", "w1", "w2"] {
        assert!(enqueue(&*q, cx.queue(), id, id).await);
    }
    let (mut acked, mut crashed, mut failed) = (false, false, false);
    while !(acked && crashed && failed) {
        let j = reserve(&cx, &*q, cx.ms(300), "a job before the restart").await;
        match j.id.as_str() {
            "done" if !acked => {
                ack(&*q, &j).await;
                acked = true;
            }
            // Held past the restart, as by a worker that died.
            "crashed" if !crashed => crashed = true,
            "retrying" if !failed => {
                q.fail(&j, "first failure").await.expect("fail");
                failed = true;
            }
            // Anything else is left to its visibility timeout.
            _ => {}
        }
    }
    drop(q);
    cx.restart().await;
    let q = cx.connect(policy).await;
    let mut want: BTreeSet<&str> = ["crashed", "retrying", "w1", "w2"].into();
    while !want.is_empty() {
        let j = reserve(&cx, &*q, cx.ms(LONG_MS), "jobs after the restart").await;
        match j.id.as_str() {
            "done" => panic!("an acked job ran again after the restart"),
            "crashed" => assert!(j.attempt >= 2, "the crashed run counts as an attempt"),
            "retrying" => assert_eq!(j.errors, vec!["first failure".to_string()]),
            _ => {}
        }
        want.remove(j.id.as_str());
        ack(&*q, &j).await;
    }
    assert!(
        !enqueue(&*q, cx.queue(), "done", "again").await,
        "the id of a job that ran was forgotten in the restart"
    );
    assert_empty(&cx, &*q, cx.queue(), "every job ran").await;
    Verdict::Pass
}

/// The process that owns the queue is killed (SIGKILL) and starts again on
/// the same data: a process crash loses nothing acknowledged. Waiting jobs
/// run; a job reserved at the crash runs again as a later attempt (when is
/// the adapter's choice: the embedded queue hands it out at once, since its
/// workers die with its process, Redis after the visibility timeout); a
/// retrying job keeps its error; a dead job stays in the dead letters with
/// its errors and does not run; an acked job does not run again and its id
/// is still remembered.
pub async fn jobs_kept_after_crash(cx: Arc<QueueCx>) -> Verdict {
    if !cx.caps().durable {
        return Verdict::skip("adapter is not durable");
    }
    if !cx.caps().crash {
        return Verdict::skip("the factory cannot crash the queue");
    }
    // One retry: a second failure is final.
    let policy = quick(&cx, 1);
    let q = cx.connect(policy).await;
    for id in ["done", "crashed", "retrying", "dead", "w1", "w2"] {
        assert!(enqueue(&*q, cx.queue(), id, id).await);
    }
    let (mut acked, mut held, mut failed, mut dead) = (false, false, false, 0);
    while !(acked && held && failed && dead == 2) {
        let j = reserve(&cx, &*q, cx.ms(1500), "a job before the crash").await;
        match j.id.as_str() {
            "done" if !acked => {
                ack(&*q, &j).await;
                acked = true;
            }
            "retrying" if !failed => {
                q.fail(&j, "first failure").await.expect("fail");
                failed = true;
            }
            "dead" if dead < 2 => {
                dead += 1;
                let outcome = q.fail(&j, &format!("fatal {dead}")).await.expect("fail");
                if dead == 2 {
                    assert_eq!(outcome, RetryOutcome::Dead, "the second failure is final");
                }
            }
            // Held past the crash, as by a worker that died with it.
            "crashed" => held = true,
            _ => {}
        }
    }
    drop(q);
    cx.crash().await;
    let q = cx.connect(policy).await;
    let mut want: BTreeSet<&str> = ["crashed", "retrying", "w1", "w2"].into();
    while !want.is_empty() {
        let j = reserve(&cx, &*q, cx.ms(LONG_MS), "jobs after the crash").await;
        match j.id.as_str() {
            "done" => panic!("an acked job ran again after the crash"),
            "dead" => panic!("a dead job ran again after the crash"),
            "crashed" => assert!(
                j.attempt >= 2,
                "the run cut by the crash counts as an attempt"
            ),
            "retrying" => assert_eq!(
                j.errors,
                vec!["first failure".to_string()],
                "a retrying job keeps its error across the crash"
            ),
            _ => {}
        }
        want.remove(j.id.as_str());
        ack(&*q, &j).await;
    }
    let dead_jobs = q.dead_letters(cx.queue(), 10).await.expect("dead_letters");
    let letter = dead_jobs
        .iter()
        .find(|d| d.id == "dead")
        .unwrap_or_else(|| panic!("the dead job is gone after the crash: {dead_jobs:?}"));
    assert_eq!(
        letter.errors,
        vec!["fatal 1".to_string(), "fatal 2".to_string()],
        "a dead job keeps its errors across the crash"
    );
    assert!(
        !enqueue(&*q, cx.queue(), "done", "again").await,
        "the id of a job that ran was forgotten in the crash"
    );
    assert_empty(&cx, &*q, cx.queue(), "every job ran").await;
    assert_eq!(stats(&*q, cx.queue()).await.dead, 1, "one dead job");
    Verdict::Pass
}

/// `release` hands a reservation back without spending an attempt: the job
/// is reserved again with the same attempt number and errors (after the
/// given delay, at once for zero), the old reservation can no longer be
/// released, and many releases in a row never dead-letter it, whatever the
/// retry budget.
pub async fn release_spends_no_attempt(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 1)).await;
    assert!(enqueue(&*q, cx.queue(), "r", "x").await);
    let first = reserve(&cx, &*q, cx.ms(LONG_MS), "the job").await;
    assert_eq!(first.attempt, 1);
    q.release(&first, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("release failed: {e}"));
    // More releases than the retries and deliveries any adapter allows.
    let mut held = None;
    for round in 0..12 {
        let again = reserve(&cx, &*q, cx.ms(LONG_MS), "the released job").await;
        assert_eq!(
            (again.id.as_str(), again.attempt),
            ("r", 1),
            "release {round} spent an attempt"
        );
        assert!(again.errors.is_empty(), "a release is not an error");
        q.release(&again, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("release {round} failed: {e}"));
        held = Some(again);
    }
    let held = held.expect("twelve rounds ran");
    assert!(
        q.release(&held, Duration::ZERO).await.is_err(),
        "a reservation released already was released again"
    );
    assert_eq!(
        stats(&*q, cx.queue()).await.dead,
        0,
        "released jobs never die"
    );
    // A failed attempt stays counted; a release after it keeps the count.
    let second = reserve(&cx, &*q, cx.ms(LONG_MS), "the job once more").await;
    match q.fail(&second, "boom").await {
        Ok(RetryOutcome::Retry(_)) => {}
        other => panic!("the first failure should retry: {other:?}"),
    }
    let retried = reserve(&cx, &*q, cx.ms(LONG_MS), "the retry").await;
    assert_eq!((retried.attempt, retried.errors.len()), (2, 1));
    q.release(&retried, cx.ms(1_000))
        .await
        .unwrap_or_else(|e| panic!("release with a delay failed: {e}"));
    assert_empty(&cx, &*q, cx.queue(), "released with a delay").await;
    let later = reserve(&cx, &*q, cx.ms(LONG_MS), "the job after the delay").await;
    assert_eq!(
        (later.attempt, later.errors.as_slice()),
        (2, &["boom".to_string()][..]),
        "attempt and errors survive a release"
    );
    ack(&*q, &later).await;
    assert_eq!(stats(&*q, cx.queue()).await, QueueStats::default());
    Verdict::Pass
}

/// `reserve_many` takes up to `max` distinct jobs at once, then what is left,
/// and answers empty after the wait on an empty queue.
pub async fn reserve_many_takes_a_batch(cx: Arc<QueueCx>) -> Verdict {
    let q = cx.connect(quick(&cx, 3)).await;
    for i in 0..5 {
        assert!(enqueue(&*q, cx.queue(), &format!("b{i}"), "x").await);
    }
    let first = q
        .reserve_many(cx.queue(), 3, cx.ms(LONG_MS), cx.ms(DEADLINE_MS))
        .await
        .unwrap_or_else(|e| panic!("reserve_many failed: {e}"));
    assert_eq!(first.len(), 3, "five waiting, three asked for");
    let mut rest = Vec::new();
    let deadline = Instant::now() + cx.ms(DEADLINE_MS);
    while rest.len() < 2 && Instant::now() < deadline {
        rest.extend(
            q.reserve_many(cx.queue(), 10, cx.ms(LONG_MS), cx.ms(DEADLINE_MS))
                .await
                .unwrap_or_else(|e| panic!("reserve_many failed: {e}")),
        );
    }
    let ids: BTreeSet<String> = first.iter().chain(&rest).map(|j| j.id.clone()).collect();
    assert_eq!(
        ids,
        (0..5).map(|i| format!("b{i}")).collect(),
        "each job exactly once"
    );
    assert_eq!(first.len() + rest.len(), 5);
    let none = q
        .reserve_many(cx.queue(), 10, cx.ms(LONG_MS), cx.ms(EMPTY_MS))
        .await
        .unwrap_or_else(|e| panic!("reserve_many failed: {e}"));
    assert!(none.is_empty(), "{} jobs from an empty queue", none.len());
    for j in first.iter().chain(&rest) {
        ack(&*q, j).await;
    }
    Verdict::Pass
}
