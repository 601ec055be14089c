//! The bus conformance kit against the NATS adapter and the embedded broker's
//! listener (`orderly_bus::wire::serve`): core NATS and the JetStream subset
//! the adapter uses, backed by the broker's file log in a temp directory.
//! The factory restarts the broker for real: close it, stop the listener,
//! reopen the same directory and listen on the same port; async-nats
//! reconnects by itself. Each case runs on its own runtime, whose end stops
//! the listener.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::conformance::{BusCaps, BusFactory};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{BrokerListener, ServerConfig, serve};
use orderly_bus::{Bus, BusError, Features};
use orderly_nats::{NatsBus, NatsConfig};
use tokio::sync::Mutex;

fn caps() -> BusCaps {
    BusCaps::new(
        "nats-embedded",
        Features {
            durable: true,
            ordered_per_key: false,
            consumer_groups: true,
            redelivery_delay: true,
            headers: true,
            max_payload: 1024 * 1024,
        },
    )
    .wildcards(true)
    .broker_restart(true)
    .clients_survive_restart(true)
}

struct Running {
    broker: EmbeddedBroker,
    listener: BrokerListener,
}

struct Factory {
    dir: tempfile::TempDir,
    /// Started by the first `connect` (the factory is built outside async code).
    running: Mutex<Option<Running>>,
    addr: Mutex<Option<std::net::SocketAddr>>,
}

async fn start(dir: &std::path::Path, listen: String) -> Result<Running, BusError> {
    let broker = EmbeddedBroker::open(BrokerConfig {
        data_dir: Some(dir.to_path_buf()),
        ..BrokerConfig::default()
    })
    .await?;
    let listener = serve(
        broker.clone(),
        ServerConfig {
            listen,
            ..ServerConfig::default()
        },
    )
    .await?;
    Ok(Running { broker, listener })
}

impl Factory {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            running: Mutex::new(None),
            addr: Mutex::new(None),
        }
    }

    async fn addr(&self) -> Result<std::net::SocketAddr, BusError> {
        let mut addr = self.addr.lock().await;
        if let Some(a) = *addr {
            return Ok(a);
        }
        let r = start(self.dir.path(), "127.0.0.1:0".into()).await?;
        let a = r.listener.local_addr();
        *self.running.lock().await = Some(r);
        *addr = Some(a);
        Ok(a)
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        let addr = self.addr().await?;
        let bus = NatsBus::connect(NatsConfig::new(format!("nats://{addr}"))).await?;
        Ok(Arc::new(bus))
    }

    async fn restart_broker(&self) -> Result<(), BusError> {
        let addr = self.addr().await?;
        let mut running = self.running.lock().await;
        if let Some(r) = running.take() {
            // The listener first: it serves what clients already sent (acks) before closing.
            r.listener.shutdown().await;
            r.broker.close().await;
        }
        // The port is free again once the listener is gone; retry briefly in
        // case the OS has not released it yet.
        let mut last = None;
        for _ in 0..50 {
            match start(self.dir.path(), addr.to_string()).await {
                Ok(r) => {
                    *running = Some(r);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| BusError::Other("restart failed".into())))
    }
}

orderly_bus::bus_conformance!(Factory::new(), caps());
