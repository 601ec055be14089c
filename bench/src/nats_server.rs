//! A nats-server of the bench's own (JetStream, file storage in a temporary
//! directory, a free port), so a pipeline run's streams and consumer groups
//! never meet those of anything else using the machine's nats-server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// nats-server 2.9's file store fsyncs on its own schedule (every 2 minutes);
/// 2.10 added `sync_interval`, which this one refuses.
pub(crate) const NATS_FSYNC: &str = "fsync every 2 min (nats-server 2.9 default, not settable)";

pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` and waits until it accepts connections.
    pub(crate) fn start() -> Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("orderly-bench-nats-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nats-server (is it installed?)")?;
        let mut server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            store,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("nats-server exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Bytes of its JetStream storage.
    pub(crate) fn store_bytes(&self) -> u64 {
        crate::disk::dir_bytes(self.store.path())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
