//! The listener's authentication, permissions and limits over raw sockets:
//! who may connect, what a user may publish and subscribe to (the JetStream
//! API included), the CONNECT deadline, and the cap on everyone's queued
//! output. Every test has its own broker on an OS-chosen port.

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{Authorization, BrokerListener, ServerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

async fn listener(config: ServerConfig) -> BrokerListener {
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    serve(
        broker,
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..config
        },
    )
    .await
    .unwrap()
}

/// A file with a token, a service user that may do what the services do,
/// and a `reader` limited to `orders.*` and its inbox.
fn users() -> Arc<Authorization> {
    // Cost 4: the lowest bcrypt allows, so the tests stay fast.
    let service = bcrypt::hash("service-pw", 4).unwrap();
    let reader = bcrypt::hash("reader-pw", 4).unwrap();
    let json = format!(
        r#"{{
        "token": "tok",
        "users": [
            {{"user": "service", "password": "{service}"}},
            {{"user": "reader", "password": "{reader}",
              "permissions": {{
                "publish": {{"allow": ["orders.*"], "deny": ["orders.secret"]}},
                "subscribe": {{"allow": ["orders.*", "_INBOX.>"], "deny": ["orders.hidden"]}}
              }}}}
        ]}}"#
    );
    Arc::new(Authorization::from_json(&json, None).unwrap())
}

async fn with_users() -> BrokerListener {
    listener(ServerConfig {
        auth: Some(users()),
        ..ServerConfig::default()
    })
    .await
}

/// Connects and reads the INFO line.
async fn client(l: &BrokerListener) -> (TcpStream, serde_json::Value) {
    let mut s = TcpStream::connect(l.local_addr()).await.unwrap();
    let info = read_until(&mut s, b"\r\n").await;
    let json = serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
    (s, json)
}

async fn read_until(s: &mut TcpStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !got.windows(end.len()).any(|w| w == end) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; got {:?}", String::from_utf8_lossy(&got)));
    String::from_utf8_lossy(&got).into_owned()
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// What the server answers `lines` with, up to and including the PONG of a
/// trailing PING.
async fn exchange(s: &mut TcpStream, lines: &str) -> String {
    s.write_all(format!("{lines}PING\r\n").as_bytes())
        .await
        .unwrap();
    read_until(s, b"PONG\r\n").await
}

#[tokio::test]
async fn clients_without_the_right_credentials_cannot_connect() {
    let l = with_users().await;
    let (_, info) = client(&l).await;
    assert_eq!(info["auth_required"], true);
    let refused = [
        "PING\r\n",
        "SUB > 1\r\n",
        "CONNECT {}\r\n",
        "CONNECT {\"auth_token\":\"nope\"}\r\n",
        "CONNECT {\"user\":\"service\",\"pass\":\"wrong\"}\r\n",
        "CONNECT {\"user\":\"service\"}\r\n",
        "CONNECT {\"user\":\"nobody\",\"pass\":\"service-pw\"}\r\n",
        // Another user's password.
        "CONNECT {\"user\":\"reader\",\"pass\":\"service-pw\"}\r\n",
    ];
    for attempt in refused {
        let (mut s, _) = client(&l).await;
        s.write_all(format!("{attempt}SUB > 1\r\nPING\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_to_close(&mut s).await,
            "-ERR 'Authorization Violation'\r\n",
            "{attempt}"
        );
    }
    for good in [
        "CONNECT {\"auth_token\":\"tok\"}\r\n",
        "CONNECT {\"user\":\"service\",\"pass\":\"service-pw\"}\r\n",
    ] {
        let (mut s, _) = client(&l).await;
        assert_eq!(exchange(&mut s, good).await, "PONG\r\n", "{good}");
    }
}

#[tokio::test]
async fn a_user_without_permission_cannot_subscribe_to_everything_nor_drive_jetstream() {
    let l = with_users().await;
    let (mut s, _) = client(&l).await;
    let connect = "CONNECT {\"user\":\"reader\",\"pass\":\"reader-pw\"}\r\n";
    assert_eq!(exchange(&mut s, connect).await, "PONG\r\n");
    assert_eq!(
        exchange(&mut s, "SUB > 1\r\n").await,
        "-ERR 'Permissions Violation for Subscription to \">\"'\r\nPONG\r\n"
    );
    assert_eq!(
        exchange(&mut s, "SUB $JS.API.> 2\r\n").await,
        "-ERR 'Permissions Violation for Subscription to \"$JS.API.>\"'\r\nPONG\r\n"
    );
    assert_eq!(
        exchange(&mut s, "SUB orders.> q 3\r\n").await,
        "-ERR 'Permissions Violation for Subscription to \"orders.>\" using queue \"q\"'\r\nPONG\r\n"
    );
    // The JetStream API answers nothing: the request never reaches it.
    assert_eq!(
        exchange(
            &mut s,
            "SUB _INBOX.r 4\r\nPUB $JS.API.STREAM.NAMES _INBOX.r 0\r\n\r\n"
        )
        .await,
        "-ERR 'Permissions Violation for Publish to \"$JS.API.STREAM.NAMES\"'\r\nPONG\r\n"
    );
    assert_eq!(
        exchange(
            &mut s,
            "PUB $JS.API.STREAM.DELETE.orders _INBOX.r 0\r\n\r\n"
        )
        .await,
        "-ERR 'Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.orders\"'\r\nPONG\r\n"
    );
    assert_eq!(
        exchange(&mut s, "PUB payments.done 2\r\nhi\r\n").await,
        "-ERR 'Permissions Violation for Publish to \"payments.done\"'\r\nPONG\r\n"
    );
    assert_eq!(
        exchange(&mut s, "PUB orders.secret 2\r\nhi\r\n").await,
        "-ERR 'Permissions Violation for Publish to \"orders.secret\"'\r\nPONG\r\n"
    );
    // What is allowed still works, on the same connection.
    assert_eq!(
        exchange(&mut s, "SUB orders.* 5\r\nPUB orders.created 2\r\nhi\r\n").await,
        "MSG orders.created 5 2\r\nhi\r\nPONG\r\n"
    );
    // The service user, by contrast, may use the JetStream API.
    let (mut svc, _) = client(&l).await;
    let connect = "CONNECT {\"user\":\"service\",\"pass\":\"service-pw\"}\r\n";
    svc.write_all(
        format!("{connect}SUB _INBOX.s 1\r\nPUB $JS.API.STREAM.NAMES _INBOX.s 0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let reply = read_until(&mut svc, b"}\r\n").await;
    assert!(reply.starts_with("MSG _INBOX.s 1 "), "{reply}");
}

#[tokio::test]
async fn a_denied_subject_inside_an_allowed_filter_is_not_delivered() {
    let l = with_users().await;
    let (mut reader, _) = client(&l).await;
    let connect = "CONNECT {\"user\":\"reader\",\"pass\":\"reader-pw\"}\r\n";
    assert_eq!(
        exchange(&mut reader, &format!("{connect}SUB orders.* 1\r\n")).await,
        "PONG\r\n"
    );
    let (mut svc, _) = client(&l).await;
    let connect = "CONNECT {\"auth_token\":\"tok\"}\r\n";
    assert_eq!(
        exchange(
            &mut svc,
            &format!("{connect}PUB orders.hidden 1\r\nx\r\nPUB orders.shown 1\r\ny\r\n")
        )
        .await,
        "PONG\r\n"
    );
    assert_eq!(
        read_until(&mut reader, b"y\r\n").await,
        "MSG orders.shown 1 1\r\ny\r\n"
    );
}

#[tokio::test]
async fn a_client_that_does_not_connect_in_time_is_closed() {
    let l = listener(ServerConfig {
        connect_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    let (mut idle, _) = client(&l).await;
    assert_eq!(
        read_to_close(&mut idle).await,
        "-ERR 'Authentication Timeout'\r\n"
    );
    // One that connected stays past the deadline.
    let (mut s, _) = client(&l).await;
    assert_eq!(exchange(&mut s, "CONNECT {}\r\n").await, "PONG\r\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(exchange(&mut s, "").await, "PONG\r\n");
}

#[tokio::test]
async fn clients_that_never_read_are_cut_off_once_everyone_s_output_is_over_its_cap() {
    // Each client alone is far under its own limit; together they are not.
    let l = listener(ServerConfig {
        max_pending: 256 * 1024 * 1024,
        max_pending_total: 4 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = client(&l).await;
        assert_eq!(
            exchange(&mut s, "CONNECT {}\r\nSUB flood 1\r\n").await,
            "PONG\r\n"
        );
        sleepers.push(s);
    }
    let (mut p, _) = client(&l).await;
    assert_eq!(exchange(&mut p, "CONNECT {}\r\n").await, "PONG\r\n");
    let payload = vec![b'x'; 64 * 1024];
    let mut frame = format!("PUB flood {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    // 32 MiB to each sleeper: far past the total cap, far under each limit.
    for _ in 0..512 {
        p.write_all(&frame).await.unwrap();
    }
    assert_eq!(exchange(&mut p, "").await, "PONG\r\n");
    for mut s in sleepers {
        // What the socket buffers held, then the end: it was cut off.
        let mut sink = vec![0u8; 1024 * 1024];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match s.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a client over the shared cap was not cut off"
        );
    }
}
