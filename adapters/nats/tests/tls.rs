//! TLS and credentials end to end, with certificates the test makes with
//! openssl: stock async-nats and the adapter against the embedded broker's
//! listener (TLS and a token), and the adapter against a nats-server of the
//! test's own with a TLS block, trusting the test CA through `ca_file`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{Authorization, BrokerListener, ServerConfig, serve, tls};
use orderly_bus::{Bus, Message};
use orderly_nats::{NatsBus, NatsConfig};

const WAIT: Duration = Duration::from_secs(10);

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(&[
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=orderly test CA",
            ][..],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem"][..],
        ]
        .concat());
        run(&[
            &["req", "-nodes", "-subj", "/CN=localhost"][..],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr"][..],
        ]
        .concat());
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn tls_listener(certs: &Certs, token: &str) -> BrokerListener {
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let tls =
        tls::server_config(&certs.path("server.pem"), &certs.path("server.key"), None).unwrap();
    serve(
        broker,
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            auth: Some(Arc::new(Authorization::with_token(token).unwrap())),
            tls: Some(tls),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap()
}

/// Publishes through `bus` and receives it back through a subscription.
async fn round_trip(bus: &NatsBus, subject: &str) {
    let mut sub = bus.subscribe(subject).await.unwrap();
    bus.client().flush().await.unwrap();
    let sent = Message::new(subject, "over tls").with_key("k");
    bus.publish(sent.clone()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("the message comes back")
        .unwrap();
    assert_eq!(got.message, sent);
}

#[tokio::test]
async fn async_nats_with_tls_and_a_token_works_through_the_listener() {
    let certs = Certs::new();
    let l = tls_listener(&certs, "s3cret").await;
    let url = format!("tls://127.0.0.1:{}", l.local_addr().port());
    // Stock async-nats, its own TLS set-up, trusting the test CA.
    let client = async_nats::ConnectOptions::new()
        .token("s3cret".into())
        .add_root_certificates(certs.path("ca.pem"))
        .connect(url.as_str())
        .await
        .expect("async-nats connects over TLS with the token");
    let mut sub = client.subscribe("tls.raw").await.unwrap();
    client.flush().await.unwrap();
    client.publish("tls.raw", "hi".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hi");
    // The adapter, JetStream included, with the CA file on top of the system store.
    let mut config = NatsConfig::new(&url);
    config.token = Some("s3cret".into());
    config.ca_file = Some(certs.path("ca.pem"));
    let bus = NatsBus::connect(config.clone()).await.unwrap();
    assert!(bus.features().consumer_groups);
    bus.ensure_stream(orderly_bus::StreamConfig::new("tlsstream", &["tlsjs.>"]))
        .await
        .unwrap();
    round_trip(&bus, "tlsjs.created").await;
    bus.close().await;
    // A wrong token, and a CA that did not sign the server's certificate, are refused.
    let mut wrong = config.clone();
    wrong.token = Some("nope".into());
    assert!(NatsBus::connect(wrong).await.is_err());
    let mut untrusted = config;
    untrusted.ca_file = Some(certs.path("server.pem"));
    assert!(NatsBus::connect(untrusted).await.is_err());
    l.shutdown().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server of the test's own; killed by PID on drop.
struct NatsServer(Child);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nats_server(certs: &Certs, dir: &Path) -> (NatsServer, u16) {
    let port = free_port();
    let conf = format!(
        "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n}}\n\
         authorization {{\n  user: orderly\n  password: \"pw\"\n}}\n\
         tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
        dir.join("js"),
        certs.path("server.pem"),
        certs.path("server.key"),
    );
    let conf_path = dir.join("nats.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("nats.log")).unwrap(),
        ))
        .spawn()
        .expect("nats-server is installed");
    let server = NatsServer(child);
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start: {}",
            std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

#[tokio::test]
async fn the_adapter_reaches_a_tls_nats_server_with_a_ca_file_and_credentials_in_the_url() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nats_server(&certs, dir.path());
    let mut config = NatsConfig::new(format!("tls://orderly:pw@127.0.0.1:{port}"));
    config.ca_file = Some(certs.path("ca.pem"));
    let bus = NatsBus::connect(config.clone())
        .await
        .expect("connects over TLS with the CA file");
    bus.ensure_stream(orderly_bus::StreamConfig::new(
        "tlsorders",
        &["tlsorders.>"],
    ))
    .await
    .unwrap();
    round_trip(&bus, "tlsorders.created").await;
    bus.close().await;
    // Without the CA the server's certificate is not trusted.
    let mut untrusted = config.clone();
    untrusted.ca_file = None;
    assert!(NatsBus::connect(untrusted).await.is_err());
    // Without the password the server refuses.
    let mut anonymous = config;
    anonymous.url = format!("tls://127.0.0.1:{port}");
    assert!(NatsBus::connect(anonymous).await.is_err());
}

#[tokio::test]
async fn a_bus_started_before_its_server_connects_once_the_server_is_up() {
    let port = free_port();
    let mut config = NatsConfig::new(format!("nats://127.0.0.1:{port}"));
    config.token = Some("late".into());
    let bus = NatsBus::connect_in_background(config)
        .await
        .expect("returns at once although nothing listens yet");
    assert!(bus.check().await.is_err());
    assert!(bus.publish(Message::new("late.x", "p")).await.is_err());
    // Stream set-up waits for the connection (up to connect_timeout, 5 s),
    // then fails as unavailable, which callers retry.
    let e = bus
        .ensure_stream(orderly_bus::StreamConfig::new("late", &["late.>"]))
        .await
        .unwrap_err();
    assert!(matches!(e, orderly_bus::BusError::Unavailable(_)), "{e}");
    let waiting = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.ensure_stream(orderly_bus::StreamConfig::new("late", &["late.>"]))
                .await
        })
    };
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let l = serve(
        broker,
        ServerConfig {
            listen: format!("127.0.0.1:{port}"),
            auth: Some(Arc::new(Authorization::with_token("late").unwrap())),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    // Set up while the server came up: made within its wait, or on a retry.
    let first = waiting.await.unwrap();
    if first.is_err() {
        bus.ensure_stream(orderly_bus::StreamConfig::new("late", &["late.>"]))
            .await
            .expect("the stream is made once the server is up");
    }
    round_trip(&bus, "late.created").await;
    bus.close().await;
    l.shutdown().await;
}
