//! `purge_dead` on the embedded queue (not part of the conformance kit).

use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{JobQueue, NewJob, RetryOutcome, RetryPolicy};

#[tokio::test]
async fn purge_dead_deletes_every_dead_job_and_nothing_else() {
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let policy = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let q = EmbeddedQueue::open(&broker, policy).await.unwrap();
    for id in ["a", "b", "alive"] {
        let job = NewJob {
            queue: "q".into(),
            id: id.into(),
            payload: id.to_string().into(),
        };
        assert!(q.enqueue(job).await.unwrap());
    }
    for _ in 0..2 {
        let j = q
            .reserve("q", Duration::from_secs(30), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.fail(&j, "boom").await.unwrap(), RetryOutcome::Dead);
    }
    assert_eq!(q.stats("q").await.unwrap().dead, 2);
    assert_eq!(q.purge_dead("q").await.unwrap(), 2);
    assert!(q.dead_letters("q", 10).await.unwrap().is_empty());
    assert!(
        !q.requeue_dead("q", "a").await.unwrap(),
        "purged means gone"
    );
    let s = q.stats("q").await.unwrap();
    assert_eq!((s.waiting, s.dead), (1, 0), "the waiting job is untouched");
    assert_eq!(q.purge_dead("q").await.unwrap(), 0);
}
