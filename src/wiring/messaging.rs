//! Which bus (`BUS=embedded|kafka|nats`) and which job queue (`JOB_QUEUE`,
//! independent of `BUS`) a process talks through, each measured whatever its
//! adapter (`bus_*` and `jobs_*` metrics, README "Observability").

use std::sync::Arc;

use anyhow::{Context, Result};

use orderly_bus::Bus;
use orderly_bus::metered::{MeteredBus, MeteredQueue};
use orderly_core::config::{
    BusKind, KafkaSecuritySettings, KafkaSettings, NatsClientSettings, Settings,
};
use orderly_kafka::{KafkaBus, KafkaConfig, KafkaSecurity, KafkaTls, SaslLogin};
use orderly_nats::{NatsBus, NatsConfig};

use super::queue::{self, QueueParts};

/// The bus and the job queue of one process.
pub struct Messaging {
    pub bus: Arc<dyn Bus>,
    pub jobs: QueueParts,
}

/// Opens both, metered.
pub async fn open(settings: &Settings) -> Result<Messaging> {
    let (bus, mut jobs) = open_transports(settings).await?;
    jobs.queue = MeteredQueue::wrap(jobs.queue);
    Ok(Messaging {
        bus: MeteredBus::wrap(bus),
        jobs,
    })
}

async fn open_transports(settings: &Settings) -> Result<(Arc<dyn Bus>, QueueParts)> {
    match settings.bus {
        BusKind::Embedded => {
            let broker = queue::open_broker(settings).await?;
            let jobs = queue::open_queue(settings, Some(&broker)).await?;
            Ok((Arc::new(broker), jobs))
        }
        // Only events go through Kafka or NATS (JetStream for the groups).
        BusKind::Kafka | BusKind::Nats => {
            let jobs = queue::open_queue(settings, None).await?;
            Ok((open_remote_bus(settings).await?, jobs))
        }
    }
}

/// The bus alone, for `orderly events …`, which inspects it through the port.
pub async fn open_bus_for_inspection(settings: &Settings) -> Result<Arc<dyn Bus>> {
    match settings.bus {
        BusKind::Embedded => {
            let broker = queue::open_broker(settings).await.with_context(|| {
                format!(
                    "the embedded broker lives in the data directory {}; stop the orderly process using it (e.g. `orderly all`) first",
                    settings.data_dir.display()
                )
            })?;
            Ok(Arc::new(broker))
        }
        BusKind::Kafka | BusKind::Nats => open_remote_bus(settings).await,
    }
}

async fn open_remote_bus(settings: &Settings) -> Result<Arc<dyn Bus>> {
    match settings.bus {
        BusKind::Kafka => {
            let bus = KafkaBus::new(kafka_config(&settings.kafka)?).context("Kafka bus")?;
            Ok(Arc::new(bus))
        }
        BusKind::Embedded => anyhow::bail!("the embedded broker is opened in process"),
        BusKind::Nats => {
            // A broker not up yet is waited for in the background, as with Kafka.
            let config = nats_config(&settings.nats_url, &settings.nats_client);
            let bus = NatsBus::connect_in_background(config)
                .await
                .context("NATS bus (NATS_URL, NATS_CA_FILE, NATS_CLIENT_CERT)")?;
            Ok(Arc::new(bus))
        }
    }
}

fn nats_config(url: &str, s: &NatsClientSettings) -> NatsConfig {
    let mut c = NatsConfig::new(url);
    c.client_name = "orderly".into();
    c.token = s.token.as_ref().map(|t| t.expose().to_string());
    c.user = s.user.clone().map(|u| {
        let pass = s.password.as_ref().map(|p| p.expose().to_string());
        (u, pass.unwrap_or_default())
    });
    c.ca_file = s.ca_file.clone();
    c.client_cert = s.client_cert.clone();
    c
}

fn kafka_config(s: &KafkaSettings) -> Result<KafkaConfig> {
    let mut c = KafkaConfig::new(&s.bootstrap_servers);
    c.topic_partitions = s.topic_partitions;
    c.replication_factor = s.replication_factor;
    c.max_payload = s.max_payload_bytes;
    c.message_timeout = s.message_timeout;
    c.fetch_wait_max = s.fetch_wait_max;
    c.topic_prefix = s.topic_prefix.clone();
    c.group_instance_id = s.group_instance_id.clone();
    c.security = kafka_security(&s.security)?;
    Ok(c)
}

/// The settings (checked when read) as the adapter takes them.
fn kafka_security(s: &KafkaSecuritySettings) -> Result<KafkaSecurity> {
    let tls = || KafkaTls {
        ca_location: s.ssl_ca_location.clone(),
        certificate_location: s.ssl_certificate_location.clone(),
        key_location: s.ssl_key_location.clone(),
        key_password: s.ssl_key_password.as_ref().map(|p| p.expose().to_string()),
    };
    let login = || -> Result<SaslLogin> {
        let sasl = s.sasl.as_ref().with_context(|| {
            format!("KAFKA_SECURITY_PROTOCOL={} needs SASL settings", s.protocol)
        })?;
        Ok(SaslLogin {
            mechanism: sasl.mechanism.parse().context("KAFKA_SASL_MECHANISM")?,
            username: sasl.username.clone(),
            password: sasl.password.expose().to_string(),
        })
    };
    Ok(match s.protocol.as_str() {
        "SSL" => KafkaSecurity::Ssl(tls()),
        "SASL_PLAINTEXT" => KafkaSecurity::SaslPlaintext(login()?),
        "SASL_SSL" => KafkaSecurity::SaslSsl(login()?, tls()),
        _ => KafkaSecurity::Plaintext,
    })
}
