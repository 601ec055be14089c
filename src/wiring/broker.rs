//! `orderly broker`: the embedded broker on the data directory, served over
//! TCP to NATS clients until Ctrl-C; and the broker's storage settings and
//! flags, which `orderly all` shares.

use anyhow::{Context, Result};

use orderly_bus::Bus;
use orderly_bus::embedded::{BrokerConfig, SyncPolicy};
use orderly_core::Shutdown;
use orderly_core::config::{BrokerSync, Settings};

use super::queue;

/// Where the broker listens without `ORDERLY_BROKER_LISTEN` (4222 is usually
/// a real nats-server).
const DEFAULT_LISTEN: &str = "127.0.0.1:4223";

/// Flags of the commands that run the embedded broker (`orderly broker`, `orderly all`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerFlags {
    /// When the embedded broker fsyncs its stream and job files: `always`
    /// (before a publish is acknowledged; concurrent publishes share an
    /// fsync) or `interval:<ms>` (default interval:50). See docs/durability.md
    #[arg(
        long = "broker-sync",
        env = "ORDERLY_BROKER_SYNC",
        value_name = "always|interval:<ms>"
    )]
    pub sync: Option<BrokerSync>,
}

impl BrokerFlags {
    /// Puts the flags given over what the environment said.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(sync) = self.sync {
            settings.broker_storage.sync = sync;
        }
    }
}

/// The embedded broker's configuration on the data directory.
pub fn broker_config(settings: &Settings) -> BrokerConfig {
    let storage = &settings.broker_storage;
    BrokerConfig {
        data_dir: Some(settings.data_dir.clone()),
        sync: match storage.sync {
            BrokerSync::Always => SyncPolicy::Always,
            BrokerSync::Interval(every) => SyncPolicy::Interval(every),
        },
        dedup_window: storage.dedup_window,
        ..BrokerConfig::default()
    }
}

pub async fn run(settings: &Settings, shutdown: Shutdown) -> Result<()> {
    let broker = queue::open_broker(settings).await?;
    let listen = settings
        .broker_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listener = orderly_bus::wire::serve(
        broker.clone(),
        orderly_bus::wire::ServerConfig {
            listen,
            max_connections: settings.broker_limits.max_connections,
            max_connections_per_ip: settings.broker_limits.max_connections_per_ip,
            max_subscriptions: settings.broker_limits.max_subscriptions,
            max_pending: settings.broker_limits.max_pending_bytes,
            ..Default::default()
        },
    )
    .await
    .context("broker listener")?;
    let url = format!("nats://{}", listener.local_addr());
    tracing::info!(%url, sync = %settings.broker_storage.sync, "broker listening");
    println!("broker: {url}");
    shutdown.wait().await;
    listener.shutdown().await;
    broker.close().await;
    Ok(())
}
