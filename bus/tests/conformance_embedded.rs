//! The conformance kit against the embedded broker: in memory, on disk (with
//! restarts: the broker is closed and opened again on the same directory),
//! and the embedded job queue on both.

use std::sync::Arc;

use async_trait::async_trait;
use orderly_bus::conformance::{BusCaps, BusFactory, QueueCaps, QueueFactory};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{Bus, BusError, Features, JobQueue, QueueError, RetryPolicy};

fn features(durable: bool) -> Features {
    Features {
        durable,
        ordered_per_key: true,
        consumer_groups: true,
        redelivery_delay: true,
        headers: true,
        max_payload: BrokerConfig::default().max_payload,
    }
}

/// One broker per case; every client of the case is that broker (it is in process).
struct Embedded {
    dir: Option<tempfile::TempDir>,
    broker: tokio::sync::Mutex<Option<EmbeddedBroker>>,
}

impl Embedded {
    fn in_memory() -> Self {
        Self {
            dir: None,
            broker: tokio::sync::Mutex::new(None),
        }
    }

    fn on_disk() -> Self {
        Self {
            dir: Some(tempfile::tempdir().expect("a temp dir for the broker")),
            broker: tokio::sync::Mutex::new(None),
        }
    }

    fn config(&self) -> BrokerConfig {
        BrokerConfig {
            data_dir: self.dir.as_ref().map(|d| d.path().to_path_buf()),
            ..BrokerConfig::default()
        }
    }

    async fn broker(&self) -> Result<EmbeddedBroker, BusError> {
        let mut slot = self.broker.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = EmbeddedBroker::open(self.config()).await?;
        *slot = Some(b.clone());
        Ok(b)
    }

    /// Like a process restart: close (which flushes and unlocks the directory)
    /// and open again on the same data.
    async fn restart(&self) -> Result<(), BusError> {
        let mut slot = self.broker.lock().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        *slot = Some(EmbeddedBroker::open(self.config()).await?);
        Ok(())
    }
}

#[async_trait]
impl BusFactory for Embedded {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        Ok(Arc::new(self.broker().await?))
    }

    async fn restart_broker(&self) -> Result<(), BusError> {
        self.restart().await
    }
}

#[async_trait]
impl QueueFactory for Embedded {
    async fn connect(
        &self,
        _queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError> {
        let broker = self.broker().await?;
        Ok(Arc::new(EmbeddedQueue::open(&broker, policy).await?))
    }

    async fn restart(&self) -> Result<(), QueueError> {
        Ok(Embedded::restart(self).await?)
    }
}

mod memory {
    use super::*;

    orderly_bus::bus_conformance!(
        Embedded::in_memory(),
        BusCaps::new("embedded-memory", features(false))
            .wildcards(true)
            .exactly_once(true)
            .dead_letters(true)
    );

    orderly_bus::queue_conformance!(Embedded::in_memory(), QueueCaps::new("embedded-memory"));
}

mod file {
    use super::*;

    orderly_bus::bus_conformance!(
        Embedded::on_disk(),
        BusCaps::new("embedded-file", features(true))
            .wildcards(true)
            .exactly_once(true)
            .dead_letters(true)
            .broker_restart(true)
    );

    orderly_bus::queue_conformance!(
        Embedded::on_disk(),
        QueueCaps::new("embedded-file").durable(true).restart(true)
    );
}
