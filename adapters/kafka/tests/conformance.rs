//! The bus conformance kit against the Kafka adapter.
//!
//! The broker is tansu at `ORDERLY_TEST_KAFKA` (started by `scripts/with-tansu`).
//! Without it the cases fail when `CI=true`; elsewhere they say so loudly and
//! run on librdkafka's in-process mock cluster instead (reported as
//! `kafka-mock`), so a plain `cargo test` still exercises the adapter.

mod common;

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::conformance::{BusCaps, BusFactory};
use orderly_bus::{Bus, BusError, Features};
use orderly_kafka::{KafkaBus, KafkaConfig};

use common::KAFKA_ENV;

fn tansu() -> Option<String> {
    std::env::var(KAFKA_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn config(bootstrap: String) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.client_id = "orderly-kafka-conformance".into();
    // tansu holds every fetch for this long: keep deliveries prompt.
    c.fetch_wait_max = Duration::from_millis(10);
    c
}

fn caps() -> BusCaps {
    let adapter = if tansu().is_some() {
        "kafka"
    } else {
        "kafka-mock"
    };
    BusCaps::new(
        adapter,
        Features {
            durable: true,
            ordered_per_key: true,
            consumer_groups: true,
            redelivery_delay: true,
            headers: true,
            max_payload: orderly_kafka::DEFAULT_MAX_PAYLOAD,
        },
    )
    // Kafka has no subject wildcards; tansu's memory storage does not survive
    // a restart (broker faults are covered on the mock cluster instead).
    .wildcards(false)
    .dead_letters(true)
    .broker_restart(false)
}

/// One case's broker: tansu, or a mock cluster living on its own thread
/// (librdkafka's mock handle is not `Send`) until the factory is dropped.
struct Factory {
    bootstrap: String,
    _mock: Option<std_mpsc::Sender<()>>,
}

impl Factory {
    fn new() -> Self {
        if let Some(bootstrap) = tansu() {
            return Self {
                bootstrap,
                _mock: None,
            };
        }
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{KAFKA_ENV} is not set and CI=true: run the tests through scripts/with-tansu");
        }
        eprintln!(
            "NOTE: {KAFKA_ENV} is not set; this conformance case runs on librdkafka's mock cluster, not on tansu"
        );
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (keep_tx, keep_rx) = std_mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
            let _ = ready_tx.send(mock.bootstrap_servers());
            // Until the factory (the sender) is dropped.
            let _ = keep_rx.recv();
        });
        let bootstrap = ready_rx.recv().expect("mock cluster started");
        Self {
            bootstrap,
            _mock: Some(keep_tx),
        }
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        Ok(Arc::new(KafkaBus::new(config(self.bootstrap.clone()))?))
    }
}

orderly_bus::bus_conformance!(Factory::new(), caps());
