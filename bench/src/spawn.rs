//! Starting `orderly all` (the release binary) on a temporary data directory
//! with OS-chosen ports, and stopping it by its PID.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Where the `orderly` binary is expected: next to this one (both in target/release).
pub fn default_orderly_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("orderly");
    if candidate.is_file() {
        return Some(candidate);
    }
    // `cargo test` runs from target/<profile>/deps.
    let up = exe.parent()?.parent()?.join("orderly");
    up.is_file().then_some(up)
}

/// `ORDERLY_BENCH_SERVER_LOGS=<dir>`: every started server's log lines are
/// also written to `<dir>/orderly-<pid>.log`, to find out afterwards why a
/// run came out as it did.
fn server_log_file(pid: u32) -> Result<Option<std::io::BufWriter<std::fs::File>>> {
    let Some(dir) = std::env::var_os("ORDERLY_BENCH_SERVER_LOGS") else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(format!("orderly-{pid}.log"));
    std::fs::create_dir_all(&dir).with_context(|| format!("ORDERLY_BENCH_SERVER_LOGS {dir:?}"))?;
    let file = std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
    eprintln!("server log: {}", path.display());
    Ok(Some(std::io::BufWriter::new(file)))
}

/// A running `orderly` child. Dropping it kills the process (by PID) and removes
/// the data directory it owns.
pub(crate) struct OrderlyProcess {
    child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) auth_url: String,
    pub(crate) orders_url: String,
    /// The ops listener's URL, when the options set `ORDERLY_OPS_BIND`.
    pub(crate) ops_url: String,
    /// From spawn to both URLs printed.
    pub(crate) time_to_listen: Duration,
    pub(crate) spawned_at: Instant,
    data_dir: Option<tempfile::TempDir>,
}

pub(crate) struct SpawnOptions<'a> {
    pub(crate) bin: &'a Path,
    /// Extra environment (database URLs, payment delay …).
    pub(crate) env: Vec<(String, String)>,
    /// Reuse a data directory (a warm restart); `None` makes a fresh one.
    pub(crate) data_dir: Option<tempfile::TempDir>,
    pub(crate) args: Vec<String>,
}

impl OrderlyProcess {
    pub(crate) fn spawn(opts: SpawnOptions<'_>) -> Result<Self> {
        let data_dir = match opts.data_dir {
            Some(d) => d,
            None => tempfile::Builder::new()
                .prefix("orderly-bench-")
                .tempdir()
                .context("temporary data directory")?,
        };
        let data_path = data_dir.path().to_path_buf();
        let mut cmd = Command::new(opts.bin);
        cmd.args(if opts.args.is_empty() {
            vec!["all".to_string()]
        } else {
            opts.args.clone()
        });
        // Only what the bench sets: the caller's database or bus settings must not
        // leak in (`RUST_LOG` does, to look into a run).
        cmd.env_clear();
        for key in ["PATH", "HOME", "TMPDIR", "LANG", "RUST_LOG"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("ORDERLY_DATA_DIR", &data_path)
            .env("AUTH_BIND", "127.0.0.1:0")
            .env("ORDERS_BIND", "127.0.0.1:0")
            // The compatible default (10/minute) would turn the load into 429s.
            .env("ORDERS_RATE_LIMIT", "1000000000/second");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        // Its own working directory: no stray `.env` gets read.
        cmd.current_dir(&data_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", opts.bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Both pipes are drained for the child's whole life: a full pipe would block its logging.
        let tx_err = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let tail_w = tail.clone();
        let mut log_copy = server_log_file(pid)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = log_copy.as_mut()
                    && writeln!(f, "{line}").is_err()
                {
                    log_copy = None;
                }
                if let Ok(mut t) = tail_w.lock() {
                    if t.len() >= 20 {
                        t.remove(0);
                    }
                    t.push(line.clone());
                }
                if line.starts_with("error") {
                    let _ = tx_err.send(line);
                }
            }
        });
        let mut this = Self {
            child: Some(child),
            pid,
            auth_url: String::new(),
            orders_url: String::new(),
            ops_url: String::new(),
            time_to_listen: Duration::ZERO,
            spawned_at,
            data_dir: Some(data_dir),
        };
        let deadline = spawned_at + Duration::from_secs(60);
        let mut auth = None;
        let mut orders = None;
        let mut ops = None;
        let wants_ops = opts
            .env
            .iter()
            .any(|(k, v)| k == "ORDERLY_OPS_BIND" && !v.is_empty());
        while auth.is_none() || orders.is_none() || (wants_ops && ops.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let tail = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
                    bail!(
                        "orderly printed no URLs within 60 s (or exited); its last log lines:\n{tail}"
                    );
                }
            };
            if line.starts_with("error") {
                bail!("orderly failed to start: {line}");
            }
            if let Some(url) = url_after(&line, "auth:") {
                auth = Some(url);
            } else if let Some(url) = url_after(&line, "orders:") {
                orders = Some(url);
            } else if let Some(url) = url_after(&line, "ops:") {
                ops = Some(url);
            }
        }
        this.time_to_listen = spawned_at.elapsed();
        this.auth_url = auth.unwrap_or_default();
        this.orders_url = orders.unwrap_or_default();
        this.ops_url = ops.unwrap_or_default();
        Ok(this)
    }

    /// The data directory it runs on.
    pub(crate) fn data_path(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(|d| d.path())
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the data directory for a restart.
    pub(crate) fn stop(mut self, grace: Duration) -> Option<tempfile::TempDir> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.data_dir.take()
    }
}

impl Drop for OrderlyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `"  auth: http://127.0.0.1:PORT  (docs: …)"` → the URL.
fn url_after(line: &str, label: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix(label)?;
    let url = rest.split_whitespace().next()?;
    url.starts_with("http://").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_announce_lines() {
        assert_eq!(
            url_after(
                "  auth: http://127.0.0.1:41234  (docs: http://127.0.0.1:41234/docs)",
                "auth:"
            ),
            Some("http://127.0.0.1:41234".into())
        );
        assert_eq!(
            url_after("orders: http://127.0.0.1:5  (docs: x)", "orders:"),
            Some("http://127.0.0.1:5".into())
        );
        assert_eq!(url_after("{\"auth:\": 1}", "auth:"), None);
    }
}
