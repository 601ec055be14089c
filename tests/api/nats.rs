//! `BUS=nats`: the old E2E script against a nats-server with
//! JetStream. Each test starts its own nats-server (the `nats-server` binary,
//! on a probed free port, with a temp store) so its `orders` stream is its
//! own; the server is killed by PID at the end. Without the binary the tests
//! fail when CI=true and are skipped with a reason otherwise.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::e2e::run_old_script;
use crate::helpers::{logs_when, spawn_app_with};

/// A private nats-server, killed on drop.
pub struct NatsServer {
    pub url: String,
    child: Child,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// `None` (after saying why) when the binary is missing and CI is not set.
    pub fn start() -> Option<Self> {
        let binary = std::env::var("ORDERLY_TEST_NATS_SERVER").unwrap_or("nats-server".into());
        let found = Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{binary} not found and CI=true: install nats-server to test BUS=nats");
            }
            eprintln!("SKIPPED: {binary} not found; install nats-server to test BUS=nats");
            return None;
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a free port");
            probe.local_addr().expect("probe address").port()
        };
        let store = tempfile::tempdir().expect("JetStream store dir");
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let server = Self {
            url: format!("nats://127.0.0.1:{port}"),
            child,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_with_bus_nats() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let app = spawn_app_with(&[
        ("BUS", "nats"),
        ("NATS_URL", nats.url.as_str()),
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ])
    .await;
    let (auth, orders) = (app.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth, &orders))
        .await
        .unwrap();
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        app.logs()
    );
    let logs = logs_when(
        || app.logs(),
        |l| l.contains("successfully updated to PAID status"),
    )
    .await;
    assert!(
        logs.contains("successfully updated to PAID status"),
        "{logs}"
    );
}

/// Kills the child on drop (by its PID, through `Child`).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn orderly_broker_serves_the_nats_protocol_on_its_listen_address() {
    use std::io::{BufRead, BufReader, Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("broker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", tmp.path().join("data"))
        .env("ORDERLY_BROKER_LISTEN", "127.0.0.1:0")
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orderly broker");
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("broker: nats://") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("orderly broker announces its address");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"PONG\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("INFO {") && text.contains("\"proto\":1"),
        "{text}"
    );
}
