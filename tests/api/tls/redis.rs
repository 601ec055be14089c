//! orderly on a Redis that takes TLS connections only (`--port 0`,
//! `--tls-port`): the job queue, the order cache and the limiter all through
//! `rediss://` with the test CA. The old E2E script ends PAID; a server that
//! requires client certificates gets orderly's; a server certificate from
//! another CA, or no client certificate where one is required, stops the
//! start with the reason in the log.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orderly_redis::{RedisTls, open_client};
use orderly_testkit::{free_port, missing};

use crate::e2e::run_old_script;
use crate::helpers::{one_item_order, spawn_app_with};

use super::certs::Certs;
use super::exit_of;

/// A `redis-server` of the test's own with TLS only. Killed (by PID) on drop.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    /// `auth_clients`: `optional` or `yes` (`--tls-auth-clients`).
    fn start(certs: &Certs, auth_clients: &str) -> Option<Self> {
        let port = free_port();
        let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &path(certs.server_cert())])
            .args(["--tls-key-file", &path(certs.server_key())])
            .args(["--tls-ca-cert-file", &path(certs.ca())])
            .args(["--tls-auth-clients", auth_clients])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return missing("redis-server", e),
        };
        let mut redis = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                let mut out = String::new();
                if let Some(mut stdout) = redis.child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
                }
                return missing(
                    "redis-server with TLS",
                    format!("exited at start ({status}): {out}"),
                );
            }
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_on_a_tls_only_redis() {
    let Some(certs) = Certs::make() else { return };
    let Some(redis) = TlsRedis::start(&certs, "optional") else {
        return;
    };
    let (url, ca) = (redis.url(), certs.ca().to_string_lossy().into_owned());
    let limiter_prefix = unique_prefix();
    let app = spawn_app_with(&[
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", &url),
        ("REDIS_CA_FILE", &ca),
        ("ORDERS_RATE_LIMIT_KEY_PREFIX", &limiter_prefix),
        // The real 2 s payment and the real limit: the defaults the script meets.
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
    assert!(!app.logs().contains("Redis is failing"), "{}", app.logs());

    // The cache (DB 0) and the limiter (DB 2) wrote through the same TLS server.
    let tls = RedisTls {
        ca_file: Some(certs.ca()),
        ..RedisTls::default()
    };
    let mut cache = open_client(&format!("{url}/0"), &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let orders: Vec<String> = redis::cmd("KEYS")
        .arg("order:*")
        .query_async(&mut cache)
        .await
        .unwrap();
    assert!(!orders.is_empty(), "no order:* key in the cache");
    let mut limiter = open_client(&format!("{url}/2"), &tls)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let counted: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{limiter_prefix}*"))
        .query_async(&mut limiter)
        .await
        .unwrap();
    assert!(!counted.is_empty(), "no limiter key under {limiter_prefix}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_presented_where_the_server_requires_one() {
    let Some(certs) = Certs::make() else { return };
    let Some(redis) = TlsRedis::start(&certs, "yes") else {
        return;
    };
    let url = redis.url();
    let [ca, cert, key] = [certs.ca(), certs.client_cert(), certs.client_key()]
        .map(|p| p.to_string_lossy().into_owned());
    let app = spawn_app_with(&[
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", &url),
        ("REDIS_CA_FILE", &ca),
        ("REDIS_CLIENT_CERT_FILE", &cert),
        ("REDIS_CLIENT_KEY_FILE", &key),
    ])
    .await;
    let (_, token) = app.user("mtls@example.com").await;
    let created = app.create_order(&token, one_item_order()).await;
    assert!(created.status().is_success(), "{}", app.logs());
    let order: serde_json::Value = created.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    app.wait_for_status(&token, id, "PAID", Duration::from_secs(30))
        .await;
    assert!(!app.logs().contains("Redis is failing"), "{}", app.logs());

    // Without it the server hangs up and the worker does not start.
    let (status, log) = exit_of(
        "worker",
        &[
            ("JOB_QUEUE", "redis"),
            ("REDIS_URL", &url),
            ("REDIS_CA_FILE", &ca),
        ],
    );
    assert!(!status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("Redis job queue"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_certificate_from_another_ca_is_refused() {
    let Some(certs) = Certs::make() else { return };
    let Some(redis) = TlsRedis::start(&certs, "optional") else {
        return;
    };
    let other = certs.other_ca().to_string_lossy().into_owned();
    let (status, log) = exit_of(
        "worker",
        &[
            ("JOB_QUEUE", "redis"),
            ("REDIS_URL", &redis.url()),
            ("REDIS_CA_FILE", &other),
        ],
    );
    assert!(!status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
}
