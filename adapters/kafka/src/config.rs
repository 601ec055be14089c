//! The adapter's settings and the librdkafka client configurations built from them.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::security::KafkaSecurity;

/// Kafka's default producer `message.max.bytes`; leaves room under the broker's
/// default limit (1 MiB + 12 bytes) for the key, headers and batch framing.
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;

/// Connection and topic settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` (`KAFKA_BOOTSTRAP_SERVERS`).
    pub bootstrap_servers: String,
    /// Partitions of the topics this adapter creates (`KAFKA_TOPIC_PARTITIONS`).
    pub topic_partitions: i32,
    /// Replication factor of the topics this adapter creates (`KAFKA_REPLICATION_FACTOR`).
    pub replication_factor: i32,
    /// Largest payload `publish` accepts (`KAFKA_MAX_PAYLOAD_BYTES`).
    pub max_payload: usize,
    /// Messages waiting for a delivery report before `publish` refuses more
    /// (`queue.buffering.max.messages`).
    pub max_queued_messages: usize,
    /// How long the producer tries to deliver a message (`message.timeout.ms`,
    /// `KAFKA_MESSAGE_TIMEOUT_MS`).
    pub message_timeout: Duration,
    /// Bound on admin and metadata requests (topic creation, `check`).
    pub request_timeout: Duration,
    /// Longest a fetch waits for data at the broker (`fetch.wait.max.ms`,
    /// `KAFKA_FETCH_WAIT_MAX_MS`). Kafka answers as soon as data arrives, but
    /// some compatible brokers (tansu) hold every fetch this long, so it bounds
    /// delivery latency there; lower costs more idle requests.
    pub fetch_wait_max: Duration,
    /// `client.id` prefix, shown in the broker's logs.
    pub client_id: String,
    /// Put before every topic and group name (`KAFKA_TOPIC_PREFIX`), so that
    /// several deployments or test runs can share one cluster. Empty by
    /// default: subject `new_order` is topic `new_order`.
    pub topic_prefix: String,
    /// Static membership of the durable groups (`group.instance.id`,
    /// `KAFKA_GROUP_INSTANCE_ID`): a process started again under the same id
    /// takes its predecessor's place and partitions at once, instead of the
    /// group waiting out the dead member's session. Unique per live process.
    pub group_instance_id: Option<String>,
    /// TLS and SASL of every client (plaintext by default).
    pub security: KafkaSecurity,
    /// Extra librdkafka properties applied to every client (after ours).
    pub extra: Vec<(String, String)>,
    /// Received, not yet acked records above which a group subscription
    /// pauses its partitions (at least twice its `max_in_flight`); it resumes
    /// at half. A pause drops what librdkafka prefetched and, on tansu,
    /// resumes inside a batch (a gap fetched again), so it is kept for a
    /// subscriber that really falls behind.
    pub pause_above: usize,
}

impl KafkaConfig {
    /// Settings for the cluster at `bootstrap_servers` with the defaults.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic_partitions: 3,
            replication_factor: 1,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_queued_messages: 100_000,
            message_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            fetch_wait_max: Duration::from_millis(100),
            client_id: "orderly".into(),
            topic_prefix: String::new(),
            group_instance_id: None,
            security: KafkaSecurity::Plaintext,
            extra: Vec::new(),
            pause_above: 4_096,
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // librdkafka's own logs go through `LogContext` into tracing.
            .set("log.connection.close", "false");
        self.security.apply(&mut c);
        c
    }

    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// The admin client's configuration: the common settings only.
    pub(crate) fn admin_config(&self) -> ClientConfig {
        self.with_extra(self.base())
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "queue.buffering.max.messages",
                self.max_queued_messages.to_string(),
            )
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            // `publish` waits for each report, so batching only adds latency
            // to a lone publisher; concurrent publishers still share batches.
            .set("linger.ms", "1")
            .set(
                "message.max.bytes",
                (self.max_payload + 64 * 1024).max(1_000_000).to_string(),
            );
        self.with_extra(c)
    }

    pub(crate) fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait_max.as_millis().to_string(),
            )
            .set(
                "fetch.message.max.bytes",
                (self.max_payload + 64 * 1024).max(1_048_576).to_string(),
            )
            // Fan-out consumers create topics themselves; a group on a missing
            // topic is an error the caller sees (`NoStream`).
            .set("allow.auto.create.topics", "false");
        self.with_extra(c)
    }
}
