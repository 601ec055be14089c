//! orderly's [`Bus`] on Kafka, through rdkafka (librdkafka).
//!
//! How the port maps onto Kafka:
//! - A subject is a topic of the same name (`new_order`), so plain Kafka clients
//!   read the contract's JSON values, keyed by order id, with the event headers.
//!   Kafka has no subject wildcards: `*` and `>` are refused with
//!   [`BusError::InvalidSubject`].
//! - [`Bus::ensure_stream`] creates the stream's topics through the admin API
//!   with the configured partitions and replication factor; `max_age` becomes
//!   `retention.ms`. Topics that exist already are left as they are. A
//!   wildcard subject creates nothing: topics under it are created (with the
//!   stream's retention) when first published or subscribed to, as Kafka
//!   keeps every topic anyway.
//! - [`Bus::publish`] goes through one idempotent producer (`acks=all`) and
//!   returns after the broker's delivery report. Its queue is bounded
//!   (`queue.buffering.max.messages`); a full queue or a delivery not confirmed
//!   within `message.timeout.ms` is a [`BusError::Unavailable`] that says which.
//! - [`Bus::subscribe`] (fan-out) assigns every partition of the topic at its
//!   current end, so each subscriber sees everything published after the call
//!   returned and nothing older; it commits nothing.
//! - [`Bus::subscribe_group`] joins the Kafka consumer group of that name with
//!   manual offsets: see [`group`] for acks, redelivery and rebalances.

#![warn(missing_docs, unreachable_pub)]

mod config;
mod context;
mod dead_letters;
mod fanout;
mod group;
mod security;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use orderly_bus::{
    Bus, BusError, DeadLetter, Features, GroupOptions, Message, StreamConfig, Subscription, subject,
};

use crate::context::LogContext;

pub use config::{DEFAULT_MAX_PAYLOAD, KafkaConfig};
pub use security::{KafkaSecurity, KafkaTls, SaslLogin, SaslMechanism, UnknownMechanism};

/// Topic names: Kafka's own limit.
const MAX_TOPIC_LEN: usize = 249;
/// Suffix of the topic that receives messages a group gave up on.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The Kafka bus. Cheap to clone; all clones share the producer.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: KafkaConfig,
    producer: FutureProducer<LogContext>,
    admin: AdminClient<LogContext>,
    /// Topics known to exist, so `publish` asks the broker only once per topic.
    known_topics: Mutex<HashSet<String>>,
    /// Wildcard subjects of the streams ensured through this client, with
    /// their `max_age`: topics created later under them get that retention.
    patterns: Mutex<Vec<(String, Duration)>>,
    closed: AtomicBool,
    /// Flips to `true` on close; every subscription task watches it.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Kafka topic names: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
pub fn validate_topic(subject: &str) -> Result<(), BusError> {
    let bad = |why| Err(BusError::InvalidSubject(subject.to_string(), why));
    if subject.is_empty() {
        return bad("empty");
    }
    if subject.contains(['*', '>']) {
        return bad("Kafka has no subject wildcards; name one topic");
    }
    if subject.len() > MAX_TOPIC_LEN {
        return bad("longer than Kafka's 249 characters");
    }
    if subject == "." || subject == ".." {
        return bad("not a Kafka topic name");
    }
    if !subject
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("Kafka topics allow only A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("Kafka {what}: {e}"))
}

fn publish_error(inner: &Inner, topic: &str, size: usize, e: &KafkaError) -> BusError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => BusError::Unavailable(format!(
            "Kafka producer queue is full ({} messages await delivery reports); retry later",
            inner.config.max_queued_messages
        )),
        Some(RDKafkaErrorCode::MessageTimedOut) => BusError::Unavailable(format!(
            "Kafka did not confirm delivery to {topic} within {} ms (message.timeout.ms): {e}",
            inner.config.message_timeout.as_millis()
        )),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => BusError::PayloadTooLarge {
            size,
            max: inner.config.max_payload,
        },
        _ => unavailable(&format!("publish to {topic}"), e),
    }
}

impl KafkaBus {
    /// Creates the clients. Nothing is sent yet: an unreachable cluster shows in
    /// [`Bus::check`] and in the errors of the calls that need it.
    pub fn new(config: KafkaConfig) -> Result<Self, BusError> {
        if config.bootstrap_servers.trim().is_empty() {
            return Err(BusError::Other(
                "KAFKA_BOOTSTRAP_SERVERS is empty: name at least one host:port".into(),
            ));
        }
        if config.topic_partitions < 1 || config.replication_factor < 1 {
            return Err(BusError::Other(
                "topic partitions and replication factor must be at least 1".into(),
            ));
        }
        let producer = config
            .producer_config()
            .create_with_context(LogContext::new("producer"))
            .map_err(|e| BusError::Other(format!("cannot create the Kafka producer: {e}")))?;
        let admin = config
            .admin_config()
            .create_with_context(LogContext::new("admin"))
            .map_err(|e| BusError::Other(format!("cannot create the Kafka admin client: {e}")))?;
        let (stop, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                known_topics: Mutex::new(HashSet::new()),
                patterns: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                stop,
                tasks: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The settings it was created with.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// Partition ids of the topic of `subject`, or `None` when the broker does not know it.
    pub async fn partitions(&self, subject: &str) -> Result<Option<Vec<i32>>, BusError> {
        let topic = self.inner.topic(subject)?;
        self.inner.partitions(&topic).await
    }

    /// The Kafka topic that carries `subject` (the prefix and the subject).
    pub fn topic_of(&self, subject: &str) -> Result<String, BusError> {
        self.inner.topic(subject)
    }
}

impl Inner {
    pub(crate) fn topic(&self, subject: &str) -> Result<String, BusError> {
        validate_topic(subject)?;
        let topic = format!("{}{subject}", self.config.topic_prefix);
        if topic.len() > MAX_TOPIC_LEN {
            return Err(BusError::InvalidSubject(
                subject.to_string(),
                "longer than Kafka's 249 characters with the topic prefix",
            ));
        }
        Ok(topic)
    }

    /// The subject of a record read from `topic`.
    pub(crate) fn subject_of<'t>(&self, topic: &'t str) -> &'t str {
        topic
            .strip_prefix(self.config.topic_prefix.as_str())
            .unwrap_or(topic)
    }

    fn track(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().expect("task list poisoned");
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    async fn partitions(self: &Arc<Self>, topic: &str) -> Result<Option<Vec<i32>>, BusError> {
        let me = self.clone();
        let name = topic.to_string();
        let timeout = self.config.request_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            me.admin.inner().fetch_metadata(Some(&name), timeout)
        })
        .await
        .map_err(|e| BusError::Other(format!("metadata task failed: {e}")))?
        .map_err(|e| unavailable(&format!("metadata for {topic}"), e))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error().map(RDKafkaErrorCode::from) {
            None => {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                if ids.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(ids))
                }
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                Ok(None)
            }
            Some(code) => Err(unavailable(&format!("metadata for {topic}"), code)),
        }
    }

    /// Creates the topics that are missing; "already exists" is success.
    async fn create_topics(
        &self,
        topics: &[&str],
        retention: Option<Duration>,
    ) -> Result<(), BusError> {
        let retention_ms = retention.map(|d| d.as_millis().min(i64::MAX as u128).to_string());
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                let nt = NewTopic::new(
                    t,
                    self.config.topic_partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                );
                match &retention_ms {
                    Some(ms) => nt.set("retention.ms", ms),
                    None => nt,
                }
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.request_timeout))
            .operation_timeout(Some(self.config.request_timeout));
        let results = self
            .admin
            .create_topics(new.iter(), &options)
            .await
            .map_err(|e| unavailable("create topics", e))?;
        for result in results {
            match result {
                Ok(name) => {
                    tracing::info!(topic = %name, partitions = self.config.topic_partitions, "Kafka topic created");
                    self.known_topics
                        .lock()
                        .expect("topic set poisoned")
                        .insert(name);
                }
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    self.known_topics
                        .lock()
                        .expect("topic set poisoned")
                        .insert(name);
                }
                Err((name, code)) => {
                    return Err(unavailable(&format!("create topic {name}"), code));
                }
            }
        }
        Ok(())
    }

    /// Makes sure the topic of `subject` exists (creating it if not).
    pub(crate) async fn ensure_topic(
        self: &Arc<Self>,
        subject: &str,
    ) -> Result<Vec<i32>, BusError> {
        let topic = &self.topic(subject)?;
        if let Some(ids) = self.partitions(topic).await? {
            self.known_topics
                .lock()
                .expect("topic set poisoned")
                .insert(topic.to_string());
            return Ok(ids);
        }
        let retention = self
            .patterns
            .lock()
            .expect("pattern list poisoned")
            .iter()
            .find(|(p, _)| subject::matches(p, subject))
            .map(|(_, age)| *age);
        self.create_topics(&[topic], retention).await?;
        // Creation is acknowledged before every broker has the metadata.
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            if let Some(ids) = self.partitions(topic).await? {
                return Ok(ids);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::Unavailable(format!(
                    "Kafka topic {topic} was created but has no partitions yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn publish(self: &Arc<Self>, message: Message) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let topic = self.topic(&message.subject)?;
        let size = message.payload.len();
        if size > self.config.max_payload {
            return Err(BusError::PayloadTooLarge {
                size,
                max: self.config.max_payload,
            });
        }
        let known = self
            .known_topics
            .lock()
            .expect("topic set poisoned")
            .contains(&topic);
        if !known {
            self.ensure_topic(&message.subject).await?;
        }
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (name, value) in &message.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic)
            .payload(&message.payload[..])
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_str());
        }
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| publish_error(self, &message.subject, size, &e))?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(publish_error(self, &message.subject, size, &e)),
            // The producer was dropped with the message still queued.
            Err(_) => Err(BusError::Closed),
        }
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn features(&self) -> Features {
        Features {
            durable: true,
            ordered_per_key: true,
            consumer_groups: true,
            redelivery_delay: true,
            headers: true,
            max_payload: self.inner.config.max_payload,
        }
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        self.ensure_open()?;
        config.check()?;
        let (mut topics, mut subjects) = (Vec::new(), Vec::new());
        for s in &config.subjects {
            if s.contains(['*', '>']) {
                // Kafka cannot capture a pattern: its topics are created when
                // first published or subscribed to, with this stream's retention.
                let mut patterns = self.inner.patterns.lock().expect("pattern list poisoned");
                patterns.retain(|(p, _)| p != s);
                patterns.push((s.clone(), config.max_age));
                continue;
            }
            topics.push(self.inner.topic(s)?);
            subjects.push(s.as_str());
        }
        if topics.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner
            .create_topics(&names, Some(config.max_age))
            .await?;
        // Wait until the metadata shows them, so a group subscribing right
        // after this call finds its topic.
        for subject in subjects {
            self.inner.ensure_topic(subject).await?;
        }
        Ok(())
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.inner.publish(message).await
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        fanout::subscribe(self.inner.clone(), subject).await
    }

    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        GroupOptions::check_name(group)?;
        // In Kafka the topic is the stream: a group on a new subject creates it.
        self.inner.ensure_topic(subject).await?;
        group::subscribe(self.inner.clone(), subject, group, options)
    }

    async fn check(&self) -> Result<(), BusError> {
        self.ensure_open()?;
        if let Some((code, reason)) = self.inner.producer.client().fatal_error() {
            return Err(BusError::Unavailable(format!(
                "Kafka producer failed fatally ({code}): {reason}"
            )));
        }
        let inner = self.inner.clone();
        // Readiness probes give each check a few seconds: answer within them.
        let timeout = self
            .inner
            .config
            .request_timeout
            .min(Duration::from_secs(2));
        let brokers = tokio::task::spawn_blocking(move || {
            inner
                .admin
                .inner()
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| BusError::Other(format!("metadata task failed: {e}")))?
        .map_err(|e| unavailable("cluster unreachable", e))?;
        if brokers == 0 {
            return Err(BusError::Unavailable("Kafka reports no brokers".into()));
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.ensure_open()?;
        dead_letters::list(&self.inner, stream, limit).await
    }

    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.ensure_open()?;
        dead_letters::replay(&self.inner, stream, id).await
    }

    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.ensure_open()?;
        dead_letters::purge(&self.inner, stream, id).await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("task list poisoned"));
        // Each task commits what was acked and leaves its group, all at once.
        let stopping = futures::future::join_all(tasks);
        if tokio::time::timeout(self.inner.config.request_timeout, stopping)
            .await
            .is_err()
        {
            tracing::warn!("Kafka subscriptions did not stop in time");
        }
        let inner = self.inner.clone();
        let timeout = self.inner.config.message_timeout;
        let flushed =
            tokio::task::spawn_blocking(move || inner.producer.flush(Timeout::After(timeout)))
                .await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "Kafka producer could not flush everything before close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in [
            "new_order",
            "orders.eu.created",
            "a-b_c.D9",
            &"x".repeat(249),
        ] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "orders.*",
            "orders.>",
            "has space",
            "ümlaut",
            &"x".repeat(250),
        ] {
            assert!(
                matches!(validate_topic(bad), Err(BusError::InvalidSubject(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_refuses_an_empty_bootstrap_list() {
        assert!(KafkaBus::new(KafkaConfig::new(" ")).is_err());
        let mut zero = KafkaConfig::new("127.0.0.1:9");
        zero.topic_partitions = 0;
        assert!(KafkaBus::new(zero).is_err());
    }
}
