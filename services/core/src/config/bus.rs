//! The event bus: which one (`BUS`), the Kafka cluster, the NATS server, and
//! where the embedded broker listens.

use std::path::PathBuf;
use std::time::Duration;

use super::env::{Env, bind_addr, invalid, millis, positive};
use super::tls::{existing_file, pair};
use super::{ConfigError, Secret};

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
    /// TLS and SASL towards the brokers.
    pub security: KafkaSecuritySettings,
}

/// `KAFKA_SECURITY_PROTOCOL` and what it needs, checked: a SASL protocol has a
/// mechanism and credentials, and no SASL or TLS setting is set for a
/// protocol that would ignore it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecuritySettings {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, upper case.
    pub protocol: String,
    /// With a SASL protocol: the mechanism and credentials.
    pub sasl: Option<KafkaSasl>,
    /// `KAFKA_SSL_CA_LOCATION`: PEM CAs trusted instead of the system's.
    pub ssl_ca_location: Option<PathBuf>,
    /// `KAFKA_SSL_CERTIFICATE_LOCATION`: the client's PEM certificate.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `KAFKA_SSL_KEY_LOCATION`: its PEM key.
    pub ssl_key_location: Option<PathBuf>,
    /// `KAFKA_SSL_KEY_PASSWORD`: the key's passphrase.
    pub ssl_key_password: Option<Secret>,
}

/// SASL towards the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    /// `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, upper case.
    pub mechanism: String,
    /// `KAFKA_SASL_USERNAME`.
    pub username: String,
    /// `KAFKA_SASL_PASSWORD`.
    pub password: Secret,
}

/// The protocols librdkafka knows.
const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// The SASL mechanisms built into librdkafka (GSSAPI needs libsasl2).
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const SASL_VARS: &[&str] = &[
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
];
const SSL_VARS: &[&str] = &[
    "KAFKA_SSL_CA_LOCATION",
    "KAFKA_SSL_CERTIFICATE_LOCATION",
    "KAFKA_SSL_KEY_LOCATION",
    "KAFKA_SSL_KEY_PASSWORD",
];

fn kafka_security(env: &Env) -> Result<KafkaSecuritySettings, ConfigError> {
    let protocol = match env.get(&["KAFKA_SECURITY_PROTOCOL"]) {
        None => "PLAINTEXT".to_string(),
        Some((name, value)) => {
            let upper = value.to_ascii_uppercase();
            if !PROTOCOLS.contains(&upper.as_str()) {
                return Err(invalid(
                    &name,
                    &value,
                    format!("expected one of {}", PROTOCOLS.join(", ")),
                ));
            }
            upper
        }
    };
    let uses_sasl = protocol.starts_with("SASL_");
    let uses_tls = protocol.ends_with("SSL");
    // A setting the protocol would ignore means TLS or SASL was intended.
    let ignored = |vars: &[&str], needs: &str| match vars.iter().find_map(|v| env.get(&[*v])) {
        Some((name, value)) => {
            let shown = if name.ends_with("PASSWORD") {
                "***".into()
            } else {
                value
            };
            Err(invalid(
                &name,
                &shown,
                format!("KAFKA_SECURITY_PROTOCOL={protocol} ignores it; {needs}"),
            ))
        }
        None => Ok(()),
    };
    let sasl = if uses_sasl {
        let mechanism = match env.get(&["KAFKA_SASL_MECHANISM"]) {
            None => {
                return Err(invalid(
                    "KAFKA_SASL_MECHANISM",
                    "",
                    format!("{protocol} needs one of {}", MECHANISMS.join(", ")),
                ));
            }
            Some((name, value)) => {
                let upper = value.to_ascii_uppercase();
                if !MECHANISMS.contains(&upper.as_str()) {
                    return Err(invalid(
                        &name,
                        &value,
                        format!("unsupported; expected one of {}", MECHANISMS.join(", ")),
                    ));
                }
                upper
            }
        };
        let required = |name: &str| {
            env.value(&[name])
                .ok_or_else(|| invalid(name, "", format!("{protocol} needs it")))
        };
        Some(KafkaSasl {
            mechanism,
            username: required("KAFKA_SASL_USERNAME")?,
            password: Secret::new(required("KAFKA_SASL_PASSWORD")?),
        })
    } else {
        ignored(SASL_VARS, "use SASL_SSL (or SASL_PLAINTEXT) for SASL")?;
        None
    };
    if !uses_tls {
        ignored(SSL_VARS, "use SSL or SASL_SSL for TLS")?;
    }
    let ssl_certificate_location = existing_file(env, "KAFKA_SSL_CERTIFICATE_LOCATION")?;
    let ssl_key_location = existing_file(env, "KAFKA_SSL_KEY_LOCATION")?;
    pair(
        env,
        ("KAFKA_SSL_CERTIFICATE_LOCATION", &ssl_certificate_location),
        ("KAFKA_SSL_KEY_LOCATION", &ssl_key_location),
    )?;
    Ok(KafkaSecuritySettings {
        protocol,
        sasl,
        ssl_ca_location: existing_file(env, "KAFKA_SSL_CA_LOCATION")?,
        ssl_certificate_location,
        ssl_key_location,
        ssl_key_password: env.value(&["KAFKA_SSL_KEY_PASSWORD"]).map(Secret::new),
    })
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
        security: kafka_security(env)?,
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
    /// `ORDERLY_BROKER_MAX_PENDING_TOTAL_BYTES` (512 MiB): output queued for
    /// all clients together; past it, clients with over 1 MiB queued are cut off.
    pub max_pending_total_bytes: usize,
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
        max_pending_total_bytes: limit(
            "ORDERLY_BROKER_MAX_PENDING_TOTAL_BYTES",
            512 * 1024 * 1024,
        )?,
    })
}

/// Who may use `orderly broker`'s NATS listener, and its TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSecurity {
    /// `ORDERLY_BROKER_TOKEN`: a shared token every client presents (plain,
    /// or a bcrypt hash of it), as nats-server's `--auth`.
    pub token: Option<Secret>,
    /// `ORDERLY_BROKER_AUTH_FILE`: users with hashed passwords and their
    /// subject permissions (docs/broker-security.md).
    pub auth_file: Option<PathBuf>,
    /// `ORDERLY_BROKER_TLS_CERT` and `ORDERLY_BROKER_TLS_KEY` (PEM): TLS on
    /// the listener; both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `ORDERLY_BROKER_TLS_CLIENT_CA`: client certificates required, checked
    /// against this CA (needs the certificate and key).
    pub tls_client_ca: Option<PathBuf>,
}

impl BrokerSecurity {
    /// Whether clients must authenticate.
    pub fn authenticates(&self) -> bool {
        self.token.is_some() || self.auth_file.is_some()
    }
}

fn path(env: &Env, name: &str) -> Option<PathBuf> {
    env.value(&[name])
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The `ORDERLY_BROKER_TOKEN`, `_AUTH_FILE` and `_TLS_*` settings.
pub(super) fn broker_security(env: &Env) -> Result<BrokerSecurity, ConfigError> {
    let token = env
        .value(&["ORDERLY_BROKER_TOKEN"])
        .filter(|v| !v.is_empty())
        .map(Secret::new);
    let cert = path(env, "ORDERLY_BROKER_TLS_CERT");
    let key = path(env, "ORDERLY_BROKER_TLS_KEY");
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(c), None) => {
            return Err(invalid(
                "ORDERLY_BROKER_TLS_KEY",
                "",
                format!("ORDERLY_BROKER_TLS_CERT={} needs its key", c.display()),
            ));
        }
        (None, Some(k)) => {
            return Err(invalid(
                "ORDERLY_BROKER_TLS_CERT",
                "",
                format!(
                    "ORDERLY_BROKER_TLS_KEY={} needs its certificate",
                    k.display()
                ),
            ));
        }
    };
    let tls_client_ca = path(env, "ORDERLY_BROKER_TLS_CLIENT_CA");
    if let (Some(ca), None) = (&tls_client_ca, &tls) {
        return Err(invalid(
            "ORDERLY_BROKER_TLS_CLIENT_CA",
            &ca.display().to_string(),
            "client certificates need TLS: set ORDERLY_BROKER_TLS_CERT and ORDERLY_BROKER_TLS_KEY too",
        ));
    }
    Ok(BrokerSecurity {
        token,
        auth_file: path(env, "ORDERLY_BROKER_AUTH_FILE"),
        tls,
        tls_client_ca,
    })
}

/// How a NATS client (`BUS=nats`) proves who it is and checks the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsClientSettings {
    /// `NATS_TOKEN`.
    pub token: Option<Secret>,
    /// `NATS_USER` …
    pub user: Option<String>,
    /// … and `NATS_PASSWORD` (or `user:password@` in `NATS_URL`).
    pub password: Option<Secret>,
    /// `NATS_CA_FILE`: trust this CA for `tls://` (on top of the system's
    /// trust store, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    pub ca_file: Option<PathBuf>,
    /// `NATS_CLIENT_CERT` and `NATS_CLIENT_KEY` (PEM): a client certificate
    /// for servers that require one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The `NATS_*` credentials and TLS settings.
pub(super) fn nats_client(env: &Env) -> Result<NatsClientSettings, ConfigError> {
    let user = env.value(&["NATS_USER"]).filter(|v| !v.is_empty());
    let password = env
        .value(&["NATS_PASSWORD"])
        .filter(|v| !v.is_empty())
        .map(Secret::new);
    if password.is_some() && user.is_none() {
        return Err(invalid(
            "NATS_USER",
            "",
            "NATS_PASSWORD is set: name its user",
        ));
    }
    let client_cert = match (path(env, "NATS_CLIENT_CERT"), path(env, "NATS_CLIENT_KEY")) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "NATS_CLIENT_CERT",
                "",
                "NATS_CLIENT_CERT and NATS_CLIENT_KEY go together",
            ));
        }
    };
    Ok(NatsClientSettings {
        token: env
            .value(&["NATS_TOKEN"])
            .filter(|v| !v.is_empty())
            .map(Secret::new),
        user,
        password,
        ca_file: path(env, "NATS_CA_FILE"),
        client_cert,
    })
}
