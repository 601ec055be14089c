//! `BUS=kafka` with SASL against a tansu of the test's own started with
//! `--authentication`, which serves no request of an unauthenticated client:
//! an order reaching PAID went through SASL. (tansu 0.6's `--cert` and `--key`
//! are one exclusive argument group, so its TLS listener cannot be switched
//! on; SSL and SASL_SSL are checked against librdkafka's own validation in
//! the adapter's tests. tansu's PLAIN accepts any password and its SCRAM
//! needs credentials stored through an API librdkafka's Rust binding lacks,
//! so PLAIN is what runs here.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orderly_testkit::{free_port, missing};

use crate::helpers::{one_item_order, spawn_app_with};

/// The tansu binary: on PATH, else in ~/.cargo/bin (where scripts/with-tansu puts it).
fn tansu_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
}

/// tansu in memory with SASL required. Killed (by PID) on drop.
struct AuthenticatingTansu {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl AuthenticatingTansu {
    fn start() -> Option<Self> {
        let Some(bin) = tansu_binary() else {
            return missing(
                "tansu",
                "not on PATH nor in ~/.cargo/bin; scripts/with-tansu installs it",
            );
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).expect("log file");
        let child = Command::new(bin)
            .arg("broker")
            .args(["--cluster-id", &format!("orderly-sasl-{port}")])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .arg("--authentication")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let mut tansu = Self { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = tansu.child.try_wait() {
                panic!("tansu exited at start ({status}):\n{}", tansu.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu never listened:\n{}",
                tansu.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(tansu)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for AuthenticatingTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_reaches_paid_over_kafka_with_sasl_plain() {
    let Some(tansu) = AuthenticatingTansu::start() else {
        return;
    };
    let bootstrap = format!("127.0.0.1:{}", tansu.port);
    let app = spawn_app_with(&[
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("KAFKA_SASL_USERNAME", "orderly"),
        ("KAFKA_SASL_PASSWORD", "orderly-secret"),
    ])
    .await;
    let (_, token) = app.user("sasl@example.com").await;
    let created = app.create_order(&token, one_item_order()).await;
    assert_eq!(created.status(), 201, "{}", app.logs());
    let order: serde_json::Value = created.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    app.wait_for_status(&token, id, "PAID", Duration::from_secs(60))
        .await;
    assert!(
        !app.logs().contains("orderly-secret"),
        "the password was logged"
    );
    drop(tansu);
}
