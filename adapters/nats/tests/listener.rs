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
