//! TLS to the backing services, against servers the tests start with
//! certificates they make: PostgreSQL and Redis. Kafka's TLS and SASL settings
//! are checked against librdkafka's own validation in the adapter's tests:
//! tansu 0.6 puts `--cert` and `--key` in one exclusive argument group, so its
//! TLS listener cannot be switched on, and librdkafka's SASL handshake with
//! `tansu broker --authentication` fails ("broker's supported mechanisms: (n/a)").

mod certs;
mod postgres;
mod private_postgres;
mod redis;

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Past this a role that should have given up is taken to hang.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(90);

/// Runs `orderly <role>` on a fresh data directory with `env` (and ports
/// chosen by the OS) until it exits by itself: its status and log.
pub fn exit_of(role: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("orderly.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg(role)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", dir.path().join("data"))
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("ORDERS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start orderly");
    let deadline = Instant::now() + GIVE_UP_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for orderly") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "orderly {role} still ran after {GIVE_UP_WITHIN:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status,
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}
