//! `orderly broker`: the embedded broker alone, serving NATS clients over TCP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) struct BrokerProcess {
    child: Child,
    pub(crate) url: String,
    _data_dir: tempfile::TempDir,
}

impl BrokerProcess {
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `orderly broker` on a free port (it prints `broker: nats://…`); `Ok(None)` when this build has no such command.
pub(crate) async fn start(bin: &Path) -> Result<Option<BrokerProcess>> {
    start_with_sync(bin, None).await
}

/// [`start`] with `ORDERLY_BROKER_SYNC=sync` (the broker's default when `None`).
pub(crate) async fn start_with_sync(
    bin: &Path,
    sync: Option<&str>,
) -> Result<Option<BrokerProcess>> {
    let bin = bin.to_path_buf();
    let sync = sync.map(str::to_string);
    tokio::task::spawn_blocking(move || start_blocking(&bin, sync.as_deref()))
        .await
        .context("broker start task")?
}

fn start_blocking(bin: &Path, sync: Option<&str>) -> Result<Option<BrokerProcess>> {
    let help = Command::new(bin)
        .args(["broker", "--help"])
        .env_clear()
        .output()
        .context("run orderly broker --help")?;
    if !help.status.success() {
        return Ok(None);
    }
    let data_dir = tempfile::Builder::new()
        .prefix("orderly-bench-broker-")
        .tempdir()?;
    let mut cmd = Command::new(bin);
    cmd.arg("broker").env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("ORDERLY_DATA_DIR", data_dir.path())
        .env("ORDERLY_BROKER_LISTEN", "127.0.0.1:0")
        .env("ORDERLY_BROKER_SYNC", sync.unwrap_or("interval:50"))
        .current_dir(data_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context("start orderly broker")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("orderly broker printed no nats:// URL within 30 s");
        };
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("nats://")) {
            return Ok(Some(BrokerProcess {
                child,
                url: url.trim_end_matches([',', ')']).to_string(),
                _data_dir: data_dir,
            }));
        }
    }
}
