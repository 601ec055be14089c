//! The accept loop: a semaphore caps the connections, a broadcast stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast};

use super::ServerConfig;
use super::jetstream::JetStream;
use super::session;
use crate::embedded::EmbeddedBroker;
use crate::{Backoff, BusError};

/// A running listener. Dropping it does not stop it; call [`BrokerListener::shutdown`].
#[derive(Debug)]
pub struct BrokerListener {
    local_addr: SocketAddr,
    stop: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    js: Arc<JetStream>,
}

impl BrokerListener {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection, and waits for the accept loop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.js.close();
    }
}

/// Binds `config.listen` and serves `broker` there until shut down.
pub async fn serve(
    broker: EmbeddedBroker,
    mut config: ServerConfig,
) -> Result<BrokerListener, BusError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| BusError::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
    let local_addr = listener.local_addr()?;
    // The INFO must not promise more than the broker accepts.
    config.max_payload = config
        .max_payload
        .min(crate::Bus::features(&broker).max_payload);
    let (stop, _) = broadcast::channel(1);
    let js = JetStream::new(broker.clone());
    let task = tokio::spawn(accept_loop(
        listener,
        broker,
        js.clone(),
        Arc::new(config),
        stop.clone(),
    ));
    Ok(BrokerListener {
        local_addr,
        stop,
        task,
        js,
    })
}

async fn accept_loop(
    listener: TcpListener,
    broker: EmbeddedBroker,
    js: Arc<JetStream>,
    config: Arc<ServerConfig>,
    stop: broadcast::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut stopped = stop.subscribe();
    // A local accept loop has no herd of clients to spread: exact waits.
    let mut backoff =
        Backoff::new(Duration::from_millis(5), Duration::from_secs(1)).without_jitter();
    // Shutdown waits for the connections: they serve what clients already sent.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped.recv() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.recv() => break,
        };
        let socket = match accepted {
            Ok((socket, _)) => {
                backoff.reset();
                socket
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let (broker, js, config, shutdown) =
            (broker.clone(), js.clone(), config.clone(), stop.subscribe());
        conns.spawn(async move {
            session::run(socket, broker, js, config, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
