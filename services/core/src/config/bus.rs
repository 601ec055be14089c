//! The event bus: which one (`BUS`), the Kafka cluster, the NATS server, and
//! where the embedded broker listens.

use std::time::Duration;

use super::ConfigError;
use super::env::{Env, bind_addr, invalid, millis, positive};

/// Which event bus carries the events (`BUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// The broker inside the process, in the data directory (the default).
    Embedded,
    /// `KAFKA_BOOTSTRAP_SERVERS`: a Kafka cluster.
    Kafka,
    /// `NATS_URL`: a NATS server with JetStream (or `orderly broker`).
    Nats,
}

/// `BUS=kafka`: the cluster and how topics are made (defaults when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`; required with `BUS=kafka`.
    pub bootstrap_servers: String,
    /// Partitions of each topic created.
    pub topic_partitions: i32,
    /// Replicas of each topic created.
    pub replication_factor: i32,
    /// Largest message the producer sends.
    pub max_payload_bytes: usize,
    /// How long the producer tries to deliver one message.
    pub message_timeout: Duration,
    /// Longest a consumer's fetch waits at the broker.
    pub fetch_wait_max: Duration,
    /// Before every topic and group name (empty: topic `new_order`).
    pub topic_prefix: String,
    /// Static group membership (`group.instance.id`); unique per process.
    pub group_instance_id: Option<String>,
}

pub(super) fn bus_kind(env: &Env) -> Result<BusKind, ConfigError> {
    match env.get(&["BUS"]) {
        None => Ok(BusKind::Embedded),
        Some((_, v)) if v == "embedded" => Ok(BusKind::Embedded),
        Some((_, v)) if v == "kafka" => Ok(BusKind::Kafka),
        Some((_, v)) if v == "nats" => Ok(BusKind::Nats),
        Some((name, v)) => Err(invalid(&name, &v, "expected embedded, kafka or nats")),
    }
}

pub(super) fn kafka_settings(env: &Env, bus: BusKind) -> Result<KafkaSettings, ConfigError> {
    let bootstrap_servers = env.value(&["KAFKA_BOOTSTRAP_SERVERS"]).unwrap_or_default();
    if bus == BusKind::Kafka && bootstrap_servers.is_empty() {
        return Err(invalid(
            "KAFKA_BOOTSTRAP_SERVERS",
            "",
            "BUS=kafka needs the brokers, e.g. KAFKA_BOOTSTRAP_SERVERS=kafka:9092",
        ));
    }
    let at_least_one = |name: &str, default: i32| -> Result<i32, ConfigError> {
        let n: i32 = env.parse(&[name], default)?;
        if n < 1 {
            return Err(invalid(name, &n.to_string(), "must be at least 1"));
        }
        Ok(n)
    };
    Ok(KafkaSettings {
        bootstrap_servers,
        topic_partitions: at_least_one("KAFKA_TOPIC_PARTITIONS", 3)?,
        replication_factor: at_least_one("KAFKA_REPLICATION_FACTOR", 1)?,
        max_payload_bytes: env.parse(&["KAFKA_MAX_PAYLOAD_BYTES"], 1_000_000)?,
        message_timeout: millis(env, &["KAFKA_MESSAGE_TIMEOUT_MS"], 30_000)?,
        fetch_wait_max: millis(env, &["KAFKA_FETCH_WAIT_MAX_MS"], 100)?,
        topic_prefix: env.value(&["KAFKA_TOPIC_PREFIX"]).unwrap_or_default(),
        group_instance_id: env.value(&["KAFKA_GROUP_INSTANCE_ID"]),
    })
}

/// `NATS_URL`, default nats://127.0.0.1:4222.
pub(super) fn nats_url(env: &Env) -> String {
    env.value(&["NATS_URL"])
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

/// `ORDERLY_BROKER_LISTEN`, when set.
pub(super) fn broker_listen(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get(&["ORDERLY_BROKER_LISTEN"]) {
        Some(_) => bind_addr(env, "ORDERLY_BROKER_LISTEN", "127.0.0.1:4223").map(Some),
        None => Ok(None),
    }
}

/// What one client, one host and all clients together may take of
/// `orderly broker`'s NATS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// `ORDERLY_BROKER_MAX_CONNECTIONS` (1,024): clients at once.
    pub max_connections: usize,
    /// `ORDERLY_BROKER_MAX_CONNECTIONS_PER_IP` (64): clients at once from
    /// one address.
    pub max_connections_per_ip: usize,
    /// `ORDERLY_BROKER_MAX_SUBSCRIPTIONS` (1,024): per connection.
    pub max_subscriptions: usize,
    /// `ORDERLY_BROKER_MAX_PENDING_BYTES` (64 MiB): output queued for one
    /// client before it is cut off as a slow consumer.
    pub max_pending_bytes: usize,
}

/// The `ORDERLY_BROKER_MAX_*` limits; each at least 1.
pub(super) fn broker_limits(env: &Env) -> Result<BrokerLimits, ConfigError> {
    let limit = |name: &str, default: u64| {
        positive(env, name, default).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    Ok(BrokerLimits {
        max_connections: limit("ORDERLY_BROKER_MAX_CONNECTIONS", 1024)?,
        max_connections_per_ip: limit("ORDERLY_BROKER_MAX_CONNECTIONS_PER_IP", 64)?,
        max_subscriptions: limit("ORDERLY_BROKER_MAX_SUBSCRIPTIONS", 1024)?,
        max_pending_bytes: limit("ORDERLY_BROKER_MAX_PENDING_BYTES", 64 * 1024 * 1024)?,
    })
}
