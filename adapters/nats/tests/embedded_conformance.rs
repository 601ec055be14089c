//! The bus conformance kit against the NATS adapter and the embedded broker's
//! listener (`orderly_bus::wire::serve`): core NATS and the JetStream subset
//! the adapter uses, backed by the broker's file log in a temp directory.
//!
//! The broker runs in a child process (this test binary again, running only
//! [`broker_child`]), and the factory restarts it by crashing it: SIGKILL,
//! then a new child on the same directory and port (the same for a restart
//! and a crash: the child has no graceful stop). Before the kill the
//! clients flush, so the acks given before the restart reached the broker
//! (an ack lost in a crash is a redelivery, which the restart cases would
//! take for a lost ack); nothing is closed or synced gracefully. async-nats
//! reconnects by itself.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orderly_bus::conformance::{BusCaps, BusFactory};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{ServerConfig, serve};
use orderly_bus::{Bus, BusError, Features};
use orderly_nats::{NatsBus, NatsConfig};

/// Set in a child's environment: the data directory it serves.
const CHILD_DIR_ENV: &str = "ORDERLY_TEST_BROKER_CHILD_DIR";
/// Set in a child's environment: the address it listens on.
const CHILD_LISTEN_ENV: &str = "ORDERLY_TEST_BROKER_CHILD_LISTEN";
/// How long a restart lets the adapter's ack tasks queue their acks.
const ACKS_SENT: Duration = Duration::from_millis(300);

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
    .broker_crash(true)
    .clients_survive_restart(true)
}

/// The broker process of a factory: runs the embedded broker and its
/// listener until it is killed. In an ordinary test run (no child
/// environment) it has nothing to do and returns at once.
#[test]
fn broker_child() {
    let (Ok(dir), Ok(listen)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_LISTEN_ENV),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let broker = EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.into()),
            ..BrokerConfig::default()
        })
        .await
        .expect("open the broker");
        let _listener = serve(
            broker,
            ServerConfig {
                listen,
                ..ServerConfig::default()
            },
        )
        .await
        .expect("listen");
        std::future::pending::<()>().await;
    });
}

fn spawn_child(dir: &Path, addr: SocketAddr) -> Result<Child, BusError> {
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["broker_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_LISTEN_ENV, addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(child)
}

/// Starts a child and waits until it accepts connections (a crashed
/// predecessor's port and directory lock may take a moment to free).
fn start_child(dir: &Path, addr: SocketAddr) -> Result<Child, BusError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = spawn_child(dir, addr)?;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            // Exited (the port or the lock was not free yet): try again.
            if Instant::now() >= deadline {
                return Err(BusError::Other(format!(
                    "the broker child exited with {status}"
                )));
            }
            child = spawn_child(dir, addr)?;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BusError::Other(format!(
                "the broker child did not listen on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Factory {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Mutex<Option<Child>>,
    clients: Mutex<Vec<NatsBus>>,
}

impl Factory {
    fn new() -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            addr,
            child: Mutex::new(None),
            clients: Mutex::new(Vec::new()),
        }
    }

    fn ensure_child(&self) -> Result<(), BusError> {
        let mut child = self.child.lock().expect("child lock");
        if child.is_none() {
            *child = Some(start_child(self.dir.path(), self.addr)?);
        }
        Ok(())
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        self.ensure_child()?;
        let bus = NatsBus::connect(NatsConfig::new(format!("nats://{}", self.addr))).await?;
        self.clients.lock().expect("clients lock").push(bus.clone());
        Ok(Arc::new(bus))
    }

    async fn restart_broker(&self) -> Result<(), BusError> {
        self.crash_broker().await
    }

    async fn crash_broker(&self) -> Result<(), BusError> {
        // Acks leave on tasks of their own: let those run, then flush, so
        // every ack given before the restart reached the broker.
        tokio::time::sleep(ACKS_SENT).await;
        let clients = self.clients.lock().expect("clients lock").clone();
        for c in clients {
            // A closed client has nothing in flight; a flush that fails is
            // the crash's business.
            let _ = tokio::time::timeout(Duration::from_secs(5), c.client().flush()).await;
        }
        let old = self.child.lock().expect("child lock").take();
        if let Some(mut old) = old {
            // SIGKILL: no close, no final fsync.
            old.kill()?;
            old.wait()?;
        }
        let (dir, addr) = (self.dir.path().to_path_buf(), self.addr);
        let child = tokio::task::spawn_blocking(move || start_child(&dir, addr))
            .await
            .map_err(|e| BusError::Other(format!("restart task failed: {e}")))??;
        *self.child.lock().expect("child lock") = Some(child);
        Ok(())
    }
}

orderly_bus::bus_conformance!(Factory::new(), caps());
