//! What a message carries: headers, the key, payloads up to and over the limit.

use std::sync::Arc;

use super::{DEADLINE_MS, LONG_MS, group, plain};
use crate::conformance::support::{msg, next, publish, text};
use crate::conformance::{BusCx, Verdict};
use crate::{BusError, Message, header};

/// Headers and the key travel with the message, to groups and plain
/// subscribers: the contract's headers, Unicode and empty values.
pub async fn headers_round_trip(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().headers {
        return Verdict::skip("adapter does not carry headers");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("headers");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    let sent = Message::new(&subject, "with headers")
        .with_key("order-42")
        .with_header(header::EVENT_ID, uuid::Uuid::new_v4().to_string())
        .with_header(header::EVENT_TYPE, "new_order")
        .with_header(
            header::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .with_header("x-unicode", "grüße ✓ 注文")
        .with_header("x-empty", "");
    publish(&*bus, sent.clone()).await;
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        let got = &d.message;
        assert_eq!(got.subject, sent.subject, "{who}: subject");
        assert_eq!(got.payload, sent.payload, "{who}: payload");
        assert_eq!(got.key, sent.key, "{who}: key");
        for (name, value) in &sent.headers {
            assert_eq!(
                got.header(name),
                Some(value.as_str()),
                "{who}: header {name}"
            );
        }
        d.ack();
    }
    Verdict::Pass
}

fn patterned(size: usize) -> bytes::Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A payload 1 KiB under [`Features::max_payload`](crate::Features) arrives intact.
pub async fn payload_near_limit(cx: Arc<BusCx>) -> Verdict {
    let max = cx.features().max_payload;
    let size = max.saturating_sub(1024).max(1);
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("big");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    let payload = patterned(size);
    bus.publish(Message::new(&subject, payload.clone()))
        .await
        .unwrap_or_else(|e| panic!("a payload of {size} bytes (max {max}) was refused: {e}"));
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        assert!(
            d.message.payload == payload,
            "{who}: the payload of {size} bytes changed on the way ({} bytes arrived)",
            d.message.payload.len()
        );
        d.ack();
    }
    Verdict::Pass
}

/// A payload over the limit fails with [`BusError::PayloadTooLarge`], is not
/// delivered, and the bus goes on working.
pub async fn payload_over_limit(cx: Arc<BusCx>) -> Verdict {
    let max = cx.features().max_payload;
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("toobig");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    match bus
        .publish(Message::new(&subject, patterned(max + 1)))
        .await
    {
        Err(BusError::PayloadTooLarge { size, max: limit }) => {
            assert!(
                size > limit,
                "PayloadTooLarge {{ size: {size}, max: {limit} }}"
            );
            assert_eq!(
                limit, max,
                "the error names another limit than the features"
            );
        }
        other => panic!("a payload of {} bytes (max {max}) gave {other:?}", max + 1),
    }
    publish(&*bus, msg(&subject, "after")).await;
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        assert_eq!(text(&d), "after", "{who} got the refused payload");
        d.ack();
    }
    Verdict::Pass
}
