//! The bus conformance kit against the NATS adapter and the real nats-server
//! (`ORDERLY_TEST_NATS_URL`, default nats://127.0.0.1:4222).
//!
//! Every case works on its own `conf_<uuid>` stream; the factory deletes the
//! streams its clients created when the case ends (also when it fails).
//! Without a reachable server every case fails with the reason: the kit has
//! no way to skip a case for a missing backend.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderly_bus::conformance::{BusCaps, BusFactory};
use orderly_bus::{
    Bus, BusError, DeadLetter, Features, GroupOptions, Message, StreamConfig, Subscription,
};
use orderly_nats::{NatsBus, NatsConfig};

const URL_ENV: &str = "ORDERLY_TEST_NATS_URL";

fn url() -> String {
    std::env::var(URL_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| orderly_nats::DEFAULT_URL.to_string())
}

fn caps() -> BusCaps {
    BusCaps::new(
        "nats",
        Features {
            durable: true,
            ordered_per_key: false,
            consumer_groups: true,
            redelivery_delay: true,
            headers: true,
            // nats-server's default; the features case checks it is what INFO says.
            max_payload: 1024 * 1024,
        },
    )
    .wildcards(true)
    .dead_letters(true)
}

/// One case's clients; remembers their streams to delete them afterwards.
struct Factory {
    url: String,
    streams: Arc<Mutex<Vec<String>>>,
}

impl Factory {
    fn new() -> Self {
        Self {
            url: url(),
            streams: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        let bus = NatsBus::connect(NatsConfig::new(&self.url))
            .await
            .map_err(|e| {
                BusError::Unavailable(format!(
                    "{e} (start nats-server with -js, or point {URL_ENV} at one)"
                ))
            })?;
        Ok(Arc::new(Tracked {
            bus,
            streams: self.streams.clone(),
        }))
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.streams.lock().unwrap());
        if names.is_empty() {
            return;
        }
        let url = self.url.clone();
        // Drop may run inside the case's runtime: clean up on a thread of our own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                let Ok(client) = async_nats::connect(url.as_str()).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                for name in names {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        js.delete_stream(&name),
                    )
                    .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The adapter, plus a note of each stream it ensured.
struct Tracked {
    bus: NatsBus,
    streams: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Bus for Tracked {
    fn features(&self) -> Features {
        self.bus.features()
    }
    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        {
            let mut streams = self.streams.lock().unwrap();
            if !streams.contains(&config.name) {
                streams.push(config.name.clone());
                streams.push(orderly_nats::dead_letter_stream(&config.name));
            }
        }
        self.bus.ensure_stream(config).await
    }
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.bus.publish(message).await
    }
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.bus.subscribe(subject).await
    }
    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        self.bus.subscribe_group(subject, group, options).await
    }
    async fn check(&self) -> Result<(), BusError> {
        self.bus.check().await
    }
    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.bus.dead_letters(stream, limit).await
    }
    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.bus.replay_dead(stream, id).await
    }
    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.bus.purge_dead(stream, id).await
    }
    async fn close(&self) {
        self.bus.close().await
    }
}

orderly_bus::bus_conformance!(Factory::new(), caps());
