//! The accept loop: a semaphore caps the connections, a count per client IP
//! caps one host's share of them, a broadcast stops them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast};

use super::ServerConfig;
use super::jetstream::JetStream;
use super::outbound::TotalPending;
use super::session::{self, ClientSocket, Shared};
use super::tls;
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
    let shared = Arc::new(Shared {
        broker,
        js: js.clone(),
        total: TotalPending::new(config.max_pending_total),
        config: Arc::new(config),
    });
    let task = tokio::spawn(accept_loop(listener, shared, stop.clone()));
    Ok(BrokerListener {
        local_addr,
        stop,
        task,
        js,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: broadcast::Sender<()>) {
    let config = shared.config.clone();
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_ip = PerIp::new(config.max_connections_per_ip);
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
        let (socket, peer, ip_slot) = match accepted {
            Ok((socket, peer)) => {
                backoff.reset();
                match per_ip.take(peer.ip()) {
                    Some(slot) => (socket, peer, slot),
                    None => {
                        tracing::warn!(ip = %peer.ip(), "wire client refused: too many connections from its address");
                        conns.spawn(refuse(socket));
                        continue;
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let (shared, shutdown) = (shared.clone(), stop.subscribe());
        conns.spawn(async move {
            match shared.config.tls.clone() {
                None => {
                    session::run(ClientSocket::Tcp(socket), peer, false, shared, shutdown).await;
                }
                Some(tls_config) => {
                    let info = shared.config.info_frame();
                    let deadline = shared.config.connect_timeout;
                    match tls::accept(socket, &info, tls_config, deadline).await {
                        Ok(local) => {
                            let socket = ClientSocket::Local(local);
                            session::run(socket, peer, true, shared, shutdown).await;
                        }
                        Err(e) => {
                            tracing::info!(peer = %peer, error = %e, "wire client's TLS handshake failed");
                        }
                    }
                }
            }
            drop(ip_slot);
            drop(permit);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Tells a client over its address's limit why, then closes it (bounded: a
/// client that does not read cannot hold the task).
async fn refuse(mut socket: TcpStream) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.write_all(b"-ERR 'maximum connections exceeded'\r\n"),
    )
    .await;
}

/// Open connections per client IP address.
#[derive(Clone)]
struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    fn take(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One connection's place in its address's count; given back when dropped.
struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
