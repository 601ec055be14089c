//! async-nats (core mode) and the NATS adapter's plain subjects against the
//! embedded broker's listener: the broker speaks enough of the protocol for
//! a stock client. (The durable part, JetStream over the listener, is the
//! conformance kit in `embedded_conformance.rs`.)

use std::time::Duration;

use futures::StreamExt;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::wire::{BrokerListener, ServerConfig, serve};
use orderly_bus::{Bus, BusError, Message, StreamConfig};
use orderly_nats::{NatsBus, NatsConfig};

const WAIT: Duration = Duration::from_secs(5);

async fn listener() -> BrokerListener {
    let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
    serve(
        broker,
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap()
}

fn url(l: &BrokerListener) -> String {
    format!("nats://{}", l.local_addr())
}

#[tokio::test]
async fn the_adapter_publishes_and_subscribes_with_headers_and_key_through_the_listener() {
    let l = listener().await;
    let bus = NatsBus::connect(NatsConfig::new(url(&l))).await.unwrap();
    let f = bus.features();
    assert!(
        f.durable && f.consumer_groups,
        "the listener announces JetStream"
    );
    assert_eq!(f.max_payload, 1024 * 1024);
    bus.check().await.unwrap();
    let mut sub = bus.subscribe("orders.*").await.unwrap();
    bus.client().flush().await.unwrap();
    let sent = Message::new("orders.created", "hello")
        .with_key("order-1")
        .with_header("event-type", "new_order")
        .with_header("x-unicode", "grüße ✓");
    bus.publish(sent.clone()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.message, sent);
    assert!(matches!(
        bus.publish(Message::new("big", vec![0u8; 1024 * 1024 + 1]))
            .await,
        Err(BusError::PayloadTooLarge { .. })
    ));
    bus.ensure_stream(StreamConfig::new("s", &["s.>"]))
        .await
        .expect("streams are served over the listener");
    bus.close().await;
    l.shutdown().await;
}

#[tokio::test]
async fn async_nats_request_reply_queue_groups_and_no_responders_work() {
    let l = listener().await;
    let server = async_nats::connect(url(&l)).await.unwrap();
    let client = async_nats::connect(url(&l)).await.unwrap();
    let mut service = server
        .queue_subscribe("svc.echo", "workers".into())
        .await
        .unwrap();
    let responder = server.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                responder.publish(reply, m.payload).await.unwrap();
            }
        }
    });
    server.flush().await.unwrap();
    let answer = tokio::time::timeout(WAIT, client.request("svc.echo", "ping".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer.payload[..], b"ping");
    let err = tokio::time::timeout(WAIT, client.request("nobody.here", "x".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    l.shutdown().await;
}

/// A client that asked a pull consumer for messages and then vanished (a
/// SIGKILLed service) must not be handed the next messages: they would sit
/// unacknowledged until the ack wait. The broker drops a request whose
/// inbox has no subscriber, as nats-server does, and the live client gets
/// the message at once.
#[tokio::test]
async fn a_pull_request_of_a_vanished_client_does_not_swallow_messages() {
    use async_nats::jetstream::{self, consumer::pull};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let l = listener().await;
    let client = async_nats::connect(url(&l)).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "VANISH".into(),
            subjects: vec!["vanish.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let ack_wait = Duration::from_secs(30);
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            filter_subject: "vanish.>".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        })
        .await
        .unwrap();

    // The doomed client, byte by byte: subscribe an inbox, ask for 10
    // messages for 60 s, and disappear without a word.
    let mut raw = tokio::net::TcpStream::connect(l.local_addr())
        .await
        .unwrap();
    let mut info = [0u8; 1024];
    let _ = raw.read(&mut info).await.unwrap();
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"headers\":true}\r\n\
          SUB _INBOX.doomed.* 1\r\n\
          PUB $JS.API.CONSUMER.MSG.NEXT.VANISH.workers _INBOX.doomed.1 34\r\n\
          {\"batch\":10,\"expires\":60000000000}\r\nPING\r\n",
    )
    .await
    .unwrap();
    let mut pong = [0u8; 64];
    let _ = tokio::time::timeout(WAIT, raw.read(&mut pong)).await;
    drop(raw);
    // Let the broker see the connection end before the message arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;

    js.publish("vanish.1", "hello".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), batch.next())
        .await
        .expect("the fetch ends")
        .expect("a message, not the end of the batch: it went to the vanished client")
        .unwrap();
    assert_eq!(&got.payload[..], b"hello");
    got.ack().await.unwrap();
}
