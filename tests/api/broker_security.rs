//! `orderly broker` exposed: it refuses to listen openly without
//! authentication, keeps a hostile client from growing it, refuses clients
//! without credentials and users without permission, and the services reach
//! PAID through it with their credentials, also when they start first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::e2e::run_old_script;
use crate::faults::Killed;
use crate::helpers::{TestApp, start_role};

/// The users file the services and a limited reader use. The service user's
/// permissions are the ones docs/broker-security.md gives for the services.
fn write_auth_file(dir: &Path) -> std::path::PathBuf {
    let service = orderly_hash("service-pw");
    let reader = orderly_hash("reader-pw");
    let json = format!(
        r#"{{"users": [
            {{"user": "services", "password": "{service}",
              "permissions": {{
                "publish": ["new_order", "order_status_changed", "$JS.API.>", "$JS.ACK.>"],
                "subscribe": ["new_order", "order_status_changed", "_INBOX.>"]
              }}}},
            {{"user": "reader", "password": "{reader}",
              "permissions": {{"publish": [], "subscribe": ["order_status_changed"]}}}}
        ]}}"#
    );
    let path = dir.join("broker-users.json");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, json).unwrap();
    path
}

/// A bcrypt hash as an operator makes one: `orderly broker hash-password`.
fn orderly_hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(["broker", "--hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$2b$"), "{hash}");
    hash
}

/// `orderly broker` with `env`; its URL once it listens.
fn start_broker(data_dir: &Path, env: &[(&str, &str)]) -> (Killed, String) {
    std::fs::create_dir_all(data_dir).unwrap();
    let log = std::fs::File::create(data_dir.join("broker.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
    cmd.arg("broker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("broker: ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "orderly broker did not start; log:\n{}",
                std::fs::read_to_string(data_dir.join("broker.log")).unwrap_or_default()
            )
        });
    (guard, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn addr(url: &str) -> String {
    url.split("://").nth(1).unwrap().to_string()
}

/// A raw client: connects, reads INFO, sends `lines`, returns what the
/// server said until it closed or went quiet.
fn raw(url: &str, lines: &str) -> String {
    let mut s = TcpStream::connect(addr(url)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    s.write_all(lines.as_bytes()).unwrap();
    let mut answer = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"PONG\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_client_declaring_a_huge_msg_cannot_grow_the_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, url) = start_broker(tmp.path(), &[("ORDERLY_BROKER_LISTEN", "127.0.0.1:0")]);
    let pid = broker.0.id();
    for attack in [
        "MSG a 1 9000000000000000000\r\n",
        "PUB a 900000000\r\n",
        "HPUB a 12 900000000\r\n",
    ] {
        let mut s = TcpStream::connect(addr(&url)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        s.write_all(attack.as_bytes()).unwrap();
        let zeros = vec![0u8; 256 * 1024];
        let until = Instant::now() + Duration::from_secs(2);
        // Stream zeros until the broker hangs up (or 2 s of them, ~GBs on loopback).
        while Instant::now() < until && s.write_all(&zeros).is_ok() {}
        let rss = rss_kib(pid);
        assert!(
            rss < 100 * 1024,
            "{attack:?} took the broker to {} MB",
            rss / 1024
        );
    }
}

#[test]
fn the_broker_refuses_to_listen_openly_without_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("broker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", tmp.path())
        .env("ORDERLY_BROKER_LISTEN", "0.0.0.0:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed on drop if it listens instead of refusing.
    let mut broker = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = broker.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "orderly broker listens on 0.0.0.0 without authentication"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr_text = String::new();
    broker
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr_text)
        .unwrap();
    let out = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: stderr_text.into_bytes(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ORDERLY_BROKER_TOKEN") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    // With a token it listens there.
    let (_broker, url) = start_broker(
        tmp.path(),
        &[
            ("ORDERLY_BROKER_LISTEN", "0.0.0.0:0"),
            ("ORDERLY_BROKER_TOKEN", "s3cret"),
        ],
    );
    assert!(url.starts_with("nats://0.0.0.0:"), "{url}");
}

#[test]
fn an_authenticated_broker_refuses_strangers_and_users_without_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_auth_file(tmp.path());
    let (_broker, url) = start_broker(
        &tmp.path().join("broker"),
        &[
            ("ORDERLY_BROKER_LISTEN", "127.0.0.1:0"),
            ("ORDERLY_BROKER_AUTH_FILE", file.to_str().unwrap()),
        ],
    );
    let refused = "-ERR 'Authorization Violation'\r\n";
    assert_eq!(raw(&url, "SUB > 1\r\nPING\r\n"), refused);
    assert_eq!(raw(&url, "CONNECT {}\r\nSUB > 1\r\nPING\r\n"), refused);
    assert_eq!(
        raw(
            &url,
            "CONNECT {\"user\":\"services\",\"pass\":\"nope\"}\r\nSUB > 1\r\nPING\r\n"
        ),
        refused
    );
    let reader = "CONNECT {\"user\":\"reader\",\"pass\":\"reader-pw\"}\r\n";
    assert_eq!(
        raw(
            &url,
            &format!(
                "{reader}SUB > 1\r\nPUB $JS.API.INFO _INBOX.x 0\r\n\r\nPUB new_order 2\r\nhi\r\nSUB order_status_changed 2\r\nPING\r\n"
            )
        ),
        "-ERR 'Permissions Violation for Subscription to \">\"'\r\n\
         -ERR 'Permissions Violation for Publish to \"$JS.API.INFO\"'\r\n\
         -ERR 'Permissions Violation for Publish to \"new_order\"'\r\n\
         PONG\r\n"
    );
}

async fn wait_paid(auth: &TestApp, app: &TestApp, extra_logs: &str) {
    let (auth_url, orders_url) = (auth.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth_url, &orders_url))
        .await
        .unwrap();
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}\n---\n{extra_logs}",
        app.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_reach_paid_through_an_authenticated_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_auth_file(tmp.path());
    let broker_dir = tmp.path().join("broker");
    let (_broker, url) = start_broker(
        &broker_dir,
        &[
            ("ORDERLY_BROKER_LISTEN", "127.0.0.1:0"),
            ("ORDERLY_BROKER_AUTH_FILE", file.to_str().unwrap()),
        ],
    );
    let env = [
        ("BUS", "nats"),
        ("NATS_URL", url.as_str()),
        ("NATS_USER", "services"),
        ("NATS_PASSWORD", "service-pw"),
        ("WORKER_PAYMENT_DELAY_MS", "500"),
    ];
    let app = start_role("all", &tmp.path().join("app"), &env, 0).await;
    let broker_log = std::fs::read_to_string(broker_dir.join("broker.log")).unwrap_or_default();
    wait_paid(&app, &app, &broker_log).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_started_before_the_broker_reach_paid_once_it_is_up() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let env = [
        ("BUS", "nats"),
        ("NATS_URL", url.as_str()),
        ("NATS_TOKEN", "late-token"),
        ("WORKER_PAYMENT_DELAY_MS", "500"),
    ];
    // Nothing listens on the port yet: the process starts and waits.
    let mut app = start_role("all", &tmp.path().join("app"), &env, 0).await;
    std::thread::sleep(Duration::from_secs(2));
    assert!(app.exited().is_none(), "exited:\n{}", app.logs());
    assert!(
        app.logs().contains("NATS not reachable yet"),
        "no log line says what it waits for:\n{}",
        app.logs()
    );
    let listen = format!("127.0.0.1:{port}");
    let (_broker, _) = start_broker(
        &tmp.path().join("broker"),
        &[
            ("ORDERLY_BROKER_LISTEN", listen.as_str()),
            ("ORDERLY_BROKER_TOKEN", "late-token"),
        ],
    );
    // The old script waits a fixed 3 s for payment: start it once the
    // consumer is through (its retries back off up to seconds apart).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app.logs().contains("consumer started") {
        assert!(
            Instant::now() < deadline,
            "the roles never connected once the broker was up:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_paid(&app, &app, "").await;
}
