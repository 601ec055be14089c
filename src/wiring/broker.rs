//! `orderly broker`: the embedded broker on the data directory, served over
//! TCP to NATS clients until Ctrl-C.

use anyhow::{Context, Result};

use orderly_bus::Bus;
use orderly_core::Shutdown;
use orderly_core::config::Settings;

use super::queue;

/// Where the broker listens without `ORDERLY_BROKER_LISTEN` (4222 is usually
/// a real nats-server).
const DEFAULT_LISTEN: &str = "127.0.0.1:4223";

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
    tracing::info!(%url, "broker listening");
    println!("broker: {url}");
    shutdown.wait().await;
    listener.shutdown().await;
    broker.close().await;
    Ok(())
}
