//! The embedded broker's NATS listener over raw sockets (mini-redis style):
//! exact bytes in, exact replies out. Every test has its own broker and an
//! OS-chosen port; every wait is bounded.

use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{Authorization, BrokerListener, ServerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

async fn listener(config: ServerConfig) -> (EmbeddedBroker, BrokerListener) {
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    let l = serve(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..config
        },
    )
    .await
    .unwrap();
    (broker, l)
}

async fn start() -> (EmbeddedBroker, BrokerListener) {
    listener(ServerConfig::default()).await
}

/// Connects and reads the INFO line.
async fn client(l: &BrokerListener) -> TcpStream {
    let mut s = TcpStream::connect(l.local_addr()).await.unwrap();
    let info = read_until(&mut s, b"\r\n").await;
    assert!(info.starts_with("INFO {"), "{info}");
    s
}

/// Reads until `end` has been seen (bounded).
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

/// Reads everything until the server closes the connection (bounded).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn info_names_the_protocol_limits() {
    let (_b, l) = start().await;
    let mut s = TcpStream::connect(l.local_addr()).await.unwrap();
    let info = read_until(&mut s, b"\r\n").await;
    let json: serde_json::Value =
        serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
    assert_eq!(json["proto"], 1);
    assert_eq!(json["headers"], true);
    assert_eq!(json["max_payload"], 1024 * 1024);
    assert!(json["server_id"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn ping_pong_and_verbose_ok() {
    let (_b, l) = start().await;
    let mut s = client(&l).await;
    s.write_all(b"CONNECT {\"verbose\":true}\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(read_until(&mut s, b"PONG\r\n").await, "+OK\r\nPONG\r\n");
    s.write_all(b"SUB a 1\r\n").await.unwrap();
    assert_eq!(read_until(&mut s, b"\r\n").await, "+OK\r\n");
}

#[tokio::test]
async fn pub_reaches_sub_with_wildcards_and_reply_and_unsub_max() {
    let (_b, l) = start().await;
    let mut sub = client(&l).await;
    sub.write_all(b"CONNECT {}\r\nSUB orders.* 7\r\nUNSUB 7 2\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut sub, b"PONG\r\n").await;
    let mut publ = client(&l).await;
    publ.write_all(
        b"CONNECT {}\r\nPUB orders.new INBOX.1 5\r\nhello\r\nPUB orders.x 0\r\n\r\nPUB orders.y 1\r\nz\r\nPING\r\n",
    )
    .await
    .unwrap();
    read_until(&mut publ, b"PONG\r\n").await;
    let got = read_until(&mut sub, b"MSG orders.x 7 0\r\n\r\n").await;
    assert_eq!(
        got,
        "MSG orders.new 7 INBOX.1 5\r\nhello\r\nMSG orders.x 7 0\r\n\r\n"
    );
    // The third message is past UNSUB's max.
    sub.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_until(&mut sub, b"PONG\r\n").await, "PONG\r\n");
}

#[tokio::test]
async fn headers_travel_as_hmsg_and_no_responders_answer_503() {
    let (_b, l) = start().await;
    let mut s = client(&l).await;
    s.write_all(
        b"CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.* 1\r\nSUB h 2\r\n",
    )
    .await
    .unwrap();
    s.write_all(b"HPUB h 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nhi\r\n")
        .await
        .unwrap();
    // Deliveries are asynchronous to the reply path: read until the message.
    let got = read_until(&mut s, b"hi\r\n").await;
    assert_eq!(got, "HMSG h 2 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nhi\r\n");
    s.write_all(b"PUB nobody.home _INBOX.r1 0\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut s, b"503\r\n\r\n\r\n").await;
    assert_eq!(got, "HMSG _INBOX.r1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
}

#[tokio::test]
async fn queue_groups_give_each_message_to_one_member() {
    let (_b, l) = start().await;
    let mut a = client(&l).await;
    let mut b = client(&l).await;
    for s in [&mut a, &mut b] {
        s.write_all(b"CONNECT {}\r\nSUB work g 1\r\nPING\r\n")
            .await
            .unwrap();
        read_until(s, b"PONG\r\n").await;
    }
    let mut p = client(&l).await;
    let mut input = Vec::new();
    for i in 0..20 {
        input.extend_from_slice(format!("PUB work 2\r\n{i:02}\r\n").as_bytes());
    }
    input.extend_from_slice(b"PING\r\n");
    p.write_all(&input).await.unwrap();
    read_until(&mut p, b"PONG\r\n").await;
    // Deliveries are asynchronous: read both members until all 20 are in.
    let (mut got_a, mut got_b) = (String::new(), String::new());
    let count =
        |a: &str, b: &str| a.matches("MSG work 1 2").count() + b.matches("MSG work 1 2").count();
    let (mut buf_a, mut buf_b) = ([0u8; 4096], [0u8; 4096]);
    tokio::time::timeout(WAIT, async {
        while count(&got_a, &got_b) < 20 {
            tokio::select! {
                n = a.read(&mut buf_a) => got_a.push_str(&String::from_utf8_lossy(&buf_a[..n.unwrap()])),
                n = b.read(&mut buf_b) => got_b.push_str(&String::from_utf8_lossy(&buf_b[..n.unwrap()])),
            }
        }
    })
    .await
    .expect("all 20 messages arrive");
    assert_eq!(count(&got_a, &got_b), 20, "each message exactly once");
}

#[tokio::test]
async fn each_bad_input_gets_its_error_and_the_connection_closes() {
    let cases: &[(&[u8], &str)] = &[
        (b"FOO\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PUB a b c d\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PING extra\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (b"SUB a\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (b"CONNECT nope\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (
            b"MSG a 1 0\r\n\r\n",
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (b"PUB a 2000000\r\n", "-ERR 'Maximum Payload Violation'\r\n"),
        (
            b"HPUB a 0 9000000000000000000\r\n",
            "-ERR 'Maximum Payload Violation'\r\n",
        ),
        (b"INFO {}\r\n", "-ERR 'Unknown Protocol Operation'\r\n"),
        (
            b"PUB a 99999999999999999999\r\n",
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
        (
            b"PUB a 2\r\nabc\r\n",
            "-ERR 'Unknown Protocol Operation'\r\n",
        ),
    ];
    let (_b, l) = start().await;
    for (input, want) in cases {
        let mut s = client(&l).await;
        s.write_all(input).await.unwrap();
        assert_eq!(
            &read_to_close(&mut s).await,
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A control line over the limit, before its end arrives.
    let mut s = client(&l).await;
    let mut long = b"SUB ".to_vec();
    long.extend(vec![b'a'; 5000]);
    s.write_all(&long).await.unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        "-ERR 'Maximum Control Line Exceeded'\r\n"
    );
}

/// Writes `line`, then up to `total` zero bytes; returns how many of them
/// the connection accepted before the server closed it.
async fn bytes_accepted_after(s: &mut TcpStream, line: &[u8], total: usize) -> usize {
    s.write_all(line).await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match tokio::time::timeout(WAIT, s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            // Closed (reset, broken pipe) or no longer read at all.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    sent
}

#[tokio::test]
async fn a_huge_declared_size_is_refused_before_its_payload_is_read() {
    const STREAM: usize = 64 * 1024 * 1024;
    // Socket buffers on both sides take some bytes before the close lands;
    // the broker itself must not take the stream.
    const BOUND: usize = 16 * 1024 * 1024;
    let (_b, l) = start().await;
    for line in [
        &b"MSG a 1 9000000000000000000\r\n"[..],
        b"HMSG a 1 0 9000000000000000000\r\n",
        b"PUB a 9000000000000000000\r\n",
    ] {
        let mut s = client(&l).await;
        let accepted = bytes_accepted_after(&mut s, line, STREAM).await;
        assert!(
            accepted < BOUND,
            "{:?}: {accepted} bytes accepted",
            String::from_utf8_lossy(line)
        );
    }
    // The broker still serves.
    let mut s = client(&l).await;
    s.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_until(&mut s, b"PONG\r\n").await, "PONG\r\n");
}

#[tokio::test]
async fn subscriptions_past_the_limit_are_refused_and_the_connection_stays() {
    let (_b, l) = listener(ServerConfig {
        max_subscriptions: 3,
        ..ServerConfig::default()
    })
    .await;
    let mut s = client(&l).await;
    s.write_all(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB c 3\r\nSUB d 4\r\nPING\r\n")
        .await
        .unwrap();
    // Replacing sid 3 is no new subscription; sid 4 is one too many.
    assert_eq!(
        read_until(&mut s, b"PONG\r\n").await,
        "-ERR 'Maximum Subscriptions Exceeded'\r\nPONG\r\n"
    );
    // Room again after an UNSUB.
    s.write_all(b"UNSUB 1\r\nSUB d 4\r\nPUB d 2\r\nhi\r\n")
        .await
        .unwrap();
    assert_eq!(read_until(&mut s, b"hi\r\n").await, "MSG d 4 2\r\nhi\r\n");
}

#[tokio::test]
async fn connections_past_the_per_address_limit_are_refused() {
    let (_b, l) = listener(ServerConfig {
        max_connections_per_ip: 2,
        ..ServerConfig::default()
    })
    .await;
    let a = client(&l).await;
    let _b2 = client(&l).await;
    let mut third = TcpStream::connect(l.local_addr()).await.unwrap();
    assert_eq!(
        read_to_close(&mut third).await,
        "-ERR 'maximum connections exceeded'\r\n"
    );
    // A closed connection gives its place back.
    drop(a);
    tokio::time::timeout(WAIT, async {
        loop {
            let mut s = TcpStream::connect(l.local_addr()).await.unwrap();
            let mut first = [0u8; 4];
            if s.read_exact(&mut first).await.is_ok() && &first == b"INFO" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a place frees up once a connection closes");
}

#[tokio::test]
async fn an_invalid_subject_is_refused_but_the_connection_stays() {
    let (_b, l) = start().await;
    let mut s = client(&l).await;
    s.write_all(b"SUB a..b 1\r\nPUB a.* 0\r\n\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_until(&mut s, b"PONG\r\n").await,
        "-ERR 'Invalid Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_an_authorization_violation() {
    let (_b, l) = listener(ServerConfig {
        auth: Some(std::sync::Arc::new(
            Authorization::with_token("s3cret").unwrap(),
        )),
        ..ServerConfig::default()
    })
    .await;
    let mut s = client(&l).await;
    s.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let mut s = client(&l).await;
    s.write_all(b"CONNECT {\"auth_token\":\"nope\"}\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let mut s = client(&l).await;
    s.write_all(b"CONNECT {\"auth_token\":\"s3cret\"}\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(read_until(&mut s, b"PONG\r\n").await, "PONG\r\n");
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_as_stale() {
    let (_b, l) = listener(ServerConfig {
        ping_interval: Duration::from_millis(50),
        max_pings_out: 2,
        ..ServerConfig::default()
    })
    .await;
    let mut s = client(&l).await;
    assert_eq!(
        read_to_close(&mut s).await,
        "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
    );
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_and_others_keep_receiving() {
    let (_b, l) = listener(ServerConfig {
        max_pending: 4 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await;
    // Subscribes and never reads.
    let mut slow = client(&l).await;
    slow.write_all(b"CONNECT {}\r\nSUB flood 1\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut slow, b"PONG\r\n").await;
    let mut fast = client(&l).await;
    fast.write_all(b"CONNECT {}\r\nSUB flood 1\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut fast, b"PONG\r\n").await;
    let mut p = client(&l).await;
    let payload = vec![b'x'; 32 * 1024];
    let mut frame = format!("PUB flood {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(b"\r\n");
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = received.clone();
    let size = payload.len();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while seen.load(std::sync::atomic::Ordering::Acquire) < 600 * size {
            let n = fast.read(&mut buf).await.unwrap();
            assert!(n > 0, "the fast client was closed");
            seen.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
        }
    });
    // Paced by the fast reader, so only the one that never reads falls behind.
    for batch in 1..=60 {
        for _ in 0..10 {
            p.write_all(&frame).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while received.load(std::sync::atomic::Ordering::Acquire) < batch * 10 * size {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the fast client keeps receiving");
    }
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the fast client got everything in time")
        .unwrap();
    // The slow one was cut off: its socket ends (after whatever was sent).
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut sink))
        .await
        .expect("the slow consumer is disconnected")
        .ok();
}

#[tokio::test]
async fn a_thousand_malformed_connections_do_not_stop_a_good_client() {
    let (_b, l) = start().await;
    let mut good = client(&l).await;
    good.write_all(b"CONNECT {}\r\nSUB ok 1\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut good, b"PONG\r\n").await;
    let addr = l.local_addr();
    let mut bad = Vec::new();
    for i in 0..1000 {
        bad.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return;
            };
            let junk: &[u8] = match i % 4 {
                0 => b"GARBAGE\r\n",
                1 => b"PUB a 99999999\r\n",
                2 => b"\x00\xff\xfe\r\n",
                _ => b"SUB\r\n",
            };
            let _ = s.write_all(junk).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut sink)).await;
        }));
    }
    for t in bad {
        t.await.unwrap();
    }
    let mut p = client(&l).await;
    p.write_all(b"PUB ok 2\r\nhi\r\n").await.unwrap();
    assert_eq!(
        read_until(&mut good, b"hi\r\n").await,
        "MSG ok 1 2\r\nhi\r\n"
    );
}

#[tokio::test]
async fn unsub_max_holds_against_concurrent_publishers_and_then_the_subject_has_no_responders() {
    let (_b, l) = start().await;
    let mut sub = client(&l).await;
    sub.write_all(b"CONNECT {}\r\nSUB race 1\r\nUNSUB 1 50\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut sub, b"PONG\r\n").await;
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let mut p = client(&l).await;
        publishers.push(tokio::spawn(async move {
            let mut input = b"CONNECT {}\r\n".to_vec();
            for i in 0..100 {
                input.extend_from_slice(format!("PUB race 3\r\n{i:03}\r\n").as_bytes());
            }
            input.extend_from_slice(b"PING\r\n");
            p.write_all(&input).await.unwrap();
            read_until(&mut p, b"PONG\r\n").await;
        }));
    }
    for p in publishers {
        tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
    }
    // Every publish is handled: whatever was delivered is ahead of our PONG.
    sub.write_all(b"PING\r\n").await.unwrap();
    let got = read_until(&mut sub, b"PONG\r\n").await;
    assert_eq!(got.matches("MSG race 1 3\r\n").count(), 50, "{got}");
    // The subscription left the broker with its last message, not later.
    let mut req = client(&l).await;
    req.write_all(
        b"CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.q 9\r\nPUB race _INBOX.q 0\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_until(&mut req, b"503\r\n\r\n\r\n").await;
    assert_eq!(got, "HMSG _INBOX.q 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
}

#[tokio::test]
async fn one_publishers_messages_arrive_in_order_across_full_socket_buffers() {
    let (_b, l) = start().await;
    let mut sub = client(&l).await;
    sub.write_all(b"CONNECT {}\r\nSUB seq 1\r\nPING\r\n")
        .await
        .unwrap();
    read_until(&mut sub, b"PONG\r\n").await;
    // 16 MiB in 4 KiB messages, all published before the subscriber reads a
    // byte: more than its socket buffers hold, so the writes to it block
    // part way and go on from its write task while more messages queue.
    const N: usize = 4096;
    let body = vec![b'.'; 4090];
    let mut input = b"CONNECT {}\r\n".to_vec();
    for i in 0..N {
        input.extend_from_slice(format!("PUB seq {}\r\n{i:06}", 6 + body.len()).as_bytes());
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"PING\r\n");
    let mut p = client(&l).await;
    p.write_all(&input).await.unwrap();
    read_until(&mut p, b"PONG\r\n").await;
    let frame_len = format!("MSG seq 1 {}\r\n", 6 + body.len()).len() + 6 + body.len() + 2;
    let mut got = vec![0u8; N * frame_len];
    tokio::time::timeout(Duration::from_secs(20), sub.read_exact(&mut got))
        .await
        .expect("every message arrives")
        .unwrap();
    for (i, frame) in got.chunks(frame_len).enumerate() {
        let head = format!("MSG seq 1 {}\r\n{i:06}", 6 + body.len());
        assert!(
            frame.starts_with(head.as_bytes()),
            "message {i}: {:?}",
            String::from_utf8_lossy(&frame[..head.len().min(frame.len())])
        );
    }
}
