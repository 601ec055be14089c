//! `orderly broker`: the embedded broker on the data directory, served over
//! TCP to NATS clients until Ctrl-C; and the broker's storage settings and
//! flags, which `orderly all` shares.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use orderly_bus::Bus;
use orderly_bus::embedded::{BrokerConfig, SyncPolicy};
use orderly_bus::wire::{Authorization, ServerConfig};
use orderly_core::Shutdown;
use orderly_core::config::{BrokerSecurity, BrokerSync, Settings};

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
    let listen = settings
        .broker_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let security = &settings.broker_security;
    refuse_open_listener(&listen, security)?;
    let auth = authorization(security)?;
    let tls = match &security.tls {
        Some((cert, key)) => Some(
            orderly_bus::wire::tls::server_config(cert, key, security.tls_client_ca.as_deref())
                .context("broker TLS (ORDERLY_BROKER_TLS_CERT, ORDERLY_BROKER_TLS_KEY)")?,
        ),
        None => None,
    };
    let broker = queue::open_broker(settings).await?;
    let limits = &settings.broker_limits;
    let listener = orderly_bus::wire::serve(
        broker.clone(),
        ServerConfig {
            listen,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            max_subscriptions: limits.max_subscriptions,
            max_pending: limits.max_pending_bytes,
            max_pending_total: limits.max_pending_total_bytes,
            tls: tls.clone(),
            auth: auth.clone(),
            ..Default::default()
        },
    )
    .await
    .context("broker listener")?;
    let scheme = if tls.is_some() { "tls" } else { "nats" };
    let url = format!("{scheme}://{}", listener.local_addr());
    let auth_kind = match &auth {
        Some(a) if a.has_users() => "users",
        Some(_) => "token",
        None => "none",
    };
    tracing::info!(%url, auth = auth_kind, tls = tls.is_some(), sync = %settings.broker_storage.sync, "broker listening");
    println!("broker: {url}");
    shutdown.wait().await;
    listener.shutdown().await;
    broker.close().await;
    Ok(())
}

/// Anyone who reaches an unauthenticated listener reads and forges every
/// event: only the loopback interface may have one.
fn refuse_open_listener(listen: &str, security: &BrokerSecurity) -> Result<()> {
    if security.authenticates() {
        return Ok(());
    }
    let loopback = listen
        .parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    if !loopback {
        bail!(
            "ORDERLY_BROKER_LISTEN={listen} is not a loopback address and the broker has no \
             authentication: set ORDERLY_BROKER_TOKEN or ORDERLY_BROKER_AUTH_FILE \
             (docs/broker-security.md), or listen on 127.0.0.1"
        );
    }
    Ok(())
}

fn authorization(security: &BrokerSecurity) -> Result<Option<Arc<Authorization>>> {
    let token = security.token.as_ref().map(|t| t.expose());
    let auth = match (&security.auth_file, token) {
        (Some(file), token) => Authorization::from_file(file, token)?,
        (None, Some(token)) => Authorization::with_token(token)
            .map_err(|e| anyhow::anyhow!("ORDERLY_BROKER_TOKEN: {e}"))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(Arc::new(auth)))
}

#[cfg(test)]
mod tests {
    use orderly_core::config::Secret;

    use super::*;

    #[test]
    fn only_loopback_listens_without_authentication() {
        let open = BrokerSecurity::default();
        assert!(refuse_open_listener("127.0.0.1:4223", &open).is_ok());
        assert!(refuse_open_listener("[::1]:4223", &open).is_ok());
        let e = refuse_open_listener("0.0.0.0:4223", &open).unwrap_err();
        assert!(e.to_string().contains("ORDERLY_BROKER_TOKEN"), "{e}");
        let token = BrokerSecurity {
            token: Some(Secret::new("t")),
            ..Default::default()
        };
        assert!(refuse_open_listener("0.0.0.0:4223", &token).is_ok());
    }
}
