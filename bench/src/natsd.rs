//! A nats-server of the bench's own, with JetStream on a fresh store
//! directory and a free port, so the durable run neither sees nor leaves
//! streams on a shared server.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// nats-server 2.9's file store fsyncs on its own schedule (every 2 minutes);
/// 2.10 added `sync_interval`, which this one refuses.
pub(crate) const NATS_FSYNC: &str = "fsync every 2 min (nats-server 2.9 default, not settable)";

pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    _store: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nats-server -js` on a free loopback port; an error if there is no
/// nats-server on PATH or it does not answer within 10 s.
pub(crate) async fn start() -> Result<NatsServer> {
    tokio::task::spawn_blocking(start_blocking)
        .await
        .context("nats-server start task")?
}

fn start_blocking() -> Result<NatsServer> {
    let store = tempfile::Builder::new()
        .prefix("orderly-bench-nats-")
        .tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start nats-server (is it on PATH?)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited at start ({status})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("nats-server did not listen on port {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(NatsServer {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    })
}
