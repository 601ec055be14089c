//! The Kafka consumer behind a group subscription: its poll loop, the
//! rebalance callbacks, and the copies to the dead-letter topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::Instant;

use orderly_bus::{BusError, Delivery, GroupOptions, Subscription};

use super::{DeadLetter, GroupState, Outcome, Settle, lock};
use crate::dead_letters::{self, DeadLetterInfo};
use crate::fanout::{recv_owned, stopped};
use crate::{Inner, context};

/// How often acked progress is committed while records flow.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Upper bound on a wait, so a missed wake-up costs at most this.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// The session of a static member (`group.instance.id`). A restart under the
/// same id takes over at once, so a long session costs nothing there; a short
/// one let tansu 0.6 expire a live static member whose heartbeats paused (a
/// broker stop, a slow start), and when that member led the group, tansu kept
/// naming it leader and no member got partitions again. Kafka's own default.
const STATIC_SESSION_TIMEOUT: &str = "45000";

/// Runs a blocking librdkafka call from inside a consumer poll. The poll runs
/// on a runtime worker; on a multi-threaded runtime the worker's other tasks
/// move elsewhere meanwhile, so a slow coordinator cannot stall the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Runs the rebalance bookkeeping inside librdkafka's poll.
struct GroupContext {
    state: Arc<Mutex<GroupState>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        context::log("group consumer", level, fac, message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        context::error("group consumer", &e, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut st = lock(&self.state);
                let revoked = partitions_of(tpl, &st.topic);
                // A lost assignment already belongs to someone else: committing
                // it could overwrite the new owner's progress.
                if !consumer.assignment_lost()
                    && let Some(offsets) = st.commit_list(Some(&revoked), true)
                    && let Err(e) = blocking(|| consumer.commit(&offsets, CommitMode::Sync))
                {
                    tracing::warn!(topic = %st.topic, group = %st.group, error = %e, "commit on revoke failed; those records will be delivered again");
                }
                st.revoke(&revoked);
                tracing::info!(topic = %st.topic, group = %st.group, partitions = ?revoked, "Kafka partitions revoked");
            }
            Rebalance::Assign(_) | Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut st = lock(&self.state);
                let assigned = partitions_of(tpl, &st.topic);
                st.assign(&assigned);
                // New partitions join the others' state: paused while the
                // subscriber is behind, resumed with them.
                if st.paused
                    && let Err(e) = consumer.pause(tpl)
                {
                    tracing::warn!(topic = %st.topic, error = %e, "cannot pause newly assigned partitions");
                }
                tracing::info!(topic = %st.topic, group = %st.group, partitions = ?assigned, "Kafka partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "Kafka rebalance error");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, offsets = ?offsets, "Kafka offset commit failed; the records will be delivered again");
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

pub(crate) fn subscribe(
    inner: Arc<Inner>,
    subject: &str,
    group: &str,
    options: GroupOptions,
) -> Result<Subscription, BusError> {
    let topic = &inner.topic(subject)?;
    let group = &format!("{}{group}", inner.config.topic_prefix);
    let state = Arc::new(Mutex::new(GroupState {
        topic: topic.to_string(),
        group: group.to_string(),
        options,
        next_epoch: 0,
        partitions: HashMap::new(),
        ready: VecDeque::new(),
        paused: false,
    }));
    let mut config = inner.config.consumer_config(group);
    // A group reads what was published before it first subscribed.
    config.set("auto.offset.reset", "earliest");
    if let Some(id) = &inner.config.group_instance_id {
        config
            .set("group.instance.id", id)
            .set("session.timeout.ms", STATIC_SESSION_TIMEOUT);
    }
    let consumer: GroupConsumer = config
        .create_with_context(GroupContext {
            state: state.clone(),
        })
        .map_err(|e| BusError::Other(format!("cannot create a Kafka consumer: {e}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| BusError::Other(format!("cannot subscribe to {topic}: {e}")))?;
    let (tx, rx) = mpsc::channel(options.max_in_flight.max(1));
    let task = tokio::spawn(run(inner.clone(), consumer, state, tx));
    inner.track(task);
    Ok(Subscription::new(rx, None))
}

async fn run(
    inner: Arc<Inner>,
    consumer: GroupConsumer,
    state: Arc<Mutex<GroupState>>,
    tx: mpsc::Sender<Delivery>,
) {
    let (settle_tx, mut settle_rx) = mpsc::unbounded_channel::<Settle>();
    let mut stop = inner.stop.subscribe();
    let mut last_commit = Instant::now();
    let (topic, max_in_flight) = {
        let st = lock(&state);
        (st.topic.clone(), st.options.max_in_flight.max(1))
    };
    // Pause above this many unsettled records; resume at half of it. Far
    // above `max_in_flight` by default: one fetch brings up to a megabyte per
    // partition, and a pause costs more than the memory of a few thousand
    // records (see `KafkaConfig::pause_above`).
    let high_water = (2 * max_in_flight).max(inner.config.pause_above);
    let low_water = high_water / 2;
    loop {
        // Bookkeeping under the lock; nothing below awaits while holding it.
        let (can_emit, wake_at, dead) = {
            let mut st = lock(&state);
            let now = Instant::now();
            let dead = st.fire_timers(now);
            let unsettled = st.unsettled();
            if !st.paused && unsettled >= high_water {
                if let Ok(assigned) = consumer.assignment()
                    && consumer.pause(&assigned).is_ok()
                {
                    st.paused = true;
                }
            } else if st.paused
                && unsettled <= low_water
                && let Ok(assigned) = consumer.assignment()
                && consumer.resume(&assigned).is_ok()
            {
                st.paused = false;
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                if let Some(offsets) = st.commit_list(None, false)
                    && let Err(e) = consumer.commit(&offsets, CommitMode::Async)
                {
                    tracing::warn!(topic = %st.topic, error = %e, "Kafka offset commit failed");
                }
            }
            let mut wake_at = now + IDLE_TICK;
            if let Some(t) = st.next_timer() {
                wake_at = wake_at.min(t);
            }
            if st.partitions.values().any(|p| p.dirty) {
                wake_at = wake_at.min(last_commit + COMMIT_EVERY);
            }
            (st.can_emit(), wake_at, dead)
        };
        for d in dead {
            spawn_dead_letter(&inner, d, settle_tx.clone());
        }
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = tx.closed() => break,
            Some(s) = settle_rx.recv() => {
                let dead = lock(&state).settle(s);
                if let Some(d) = dead {
                    spawn_dead_letter(&inner, d, settle_tx.clone());
                }
            }
            permit = tx.reserve(), if can_emit => {
                let Ok(permit) = permit else { break };
                if let Some(delivery) = lock(&state).emit(&settle_tx) {
                    permit.send(delivery);
                }
            }
            received = recv_owned(&consumer, &inner) => match received {
                Ok((partition, offset, message)) => {
                    let refetch = lock(&state).receive(partition, offset, message, Instant::now());
                    if let Some(from) = refetch {
                        tracing::debug!(topic = %topic, partition, from, at = offset, "gap in Kafka offsets; fetching again");
                        // Asynchronous (no wait): the next records of the partition start at `from`.
                        if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(from), Duration::ZERO) {
                            tracing::warn!(topic = %topic, partition, from, error = %e, "cannot fetch the gap again");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "Kafka group consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
    // Acks sent before the subscription closed are waiting in the channel: a
    // closed receiver can win the select above while they are still queued.
    {
        let mut st = lock(&state);
        while let Ok(s) = settle_rx.try_recv() {
            // A dead letter needs the loop; it is delivered again instead.
            let _ = st.settle(s);
        }
    }
    // Commit what was acked, then leave the group (a blocking close that also
    // runs the revoke callback, which commits nothing new).
    let _ = tokio::task::spawn_blocking(move || {
        let offsets = lock(&state).commit_list(None, true);
        if let Some(offsets) = offsets
            && let Err(e) = consumer.commit(&offsets, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "final Kafka offset commit failed; acked records may be delivered again");
        }
        drop(consumer);
    })
    .await;
}

fn spawn_dead_letter(inner: &Arc<Inner>, d: DeadLetter, settle: mpsc::UnboundedSender<Settle>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let copy = dead_letters::copy_of(
            &inner,
            &d.message,
            &DeadLetterInfo {
                partition: d.partition,
                offset: d.offset,
                deliveries: d.deliveries,
                reason: d.reason,
                group: &d.group,
            },
        );
        let dlq = copy.subject.clone();
        let kind = match inner.publish(copy).await {
            Ok(()) => {
                tracing::error!(
                    topic = %d.message.subject, partition = d.partition, offset = d.offset,
                    deliveries = d.deliveries, reason = d.reason, dead_letter_topic = %dlq,
                    "message exhausted its deliveries; moved to the dead-letter topic"
                );
                Outcome::DeadLettered
            }
            Err(e) => {
                tracing::error!(
                    topic = %d.message.subject, partition = d.partition, offset = d.offset,
                    deliveries = d.deliveries, dead_letter_topic = %dlq, error = %e,
                    "message exhausted its deliveries but its dead-letter copy failed; kept uncommitted and copied again later"
                );
                Outcome::DeadLetterFailed
            }
        };
        let _ = settle.send(Settle {
            partition: d.partition,
            epoch: d.epoch,
            offset: d.offset,
            delivery: d.deliveries,
            kind,
        });
    });
}
