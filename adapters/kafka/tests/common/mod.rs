//! What the Kafka tests share: the test broker's address and fresh names.

#![allow(dead_code)]

use std::time::Duration;

use orderly_bus::{Delivery, Subscription};
use orderly_kafka::KafkaConfig;

/// Set by `scripts/with-tansu` (or by hand) to a Kafka-compatible broker.
pub const KAFKA_ENV: &str = "ORDERLY_TEST_KAFKA";

/// The broker's bootstrap address; `None` (after a loud note) when it is not
/// configured, a failure when `CI=true`.
pub fn bootstrap() -> Option<String> {
    match std::env::var(KAFKA_ENV) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{KAFKA_ENV} is not set and CI=true: run the tests through scripts/with-tansu (or scripts/test)"
        ),
        _ => {
            eprintln!(
                "SKIPPED: {KAFKA_ENV} is not set; run through scripts/with-tansu to test against tansu"
            );
            None
        }
    }
}

pub fn config(bootstrap: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.client_id = "orderly-kafka-tests".into();
    c
}

/// A subject (topic) no other test or run uses.
pub fn unique(name: &str) -> String {
    format!("test.{}.{name}", uuid::Uuid::new_v4().simple())
}

pub async fn next(sub: &mut Subscription, within: Duration, what: &str) -> Delivery {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("subscription ended while waiting for {what}"),
        Err(_) => panic!("nothing within {within:?} while waiting for {what}"),
    }
}

pub fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message.payload).into_owned()
}
