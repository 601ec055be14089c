//! The cases of the [`Bus`] suite, one `pub async fn` each; the doc
//! of each says what an adapter must do to pass it.
//!
//! Every case publishes into its own stream (`conf_<uuid>`, capturing
//! `conf.<uuid>.>`), so plain subscriptions, durable groups and publishing work
//! on the same subjects for every adapter. Messages carry their identity in
//! the payload; duplicates are tolerated unless the adapter is exactly-once.

mod basics;
mod groups;
mod lifecycle;
mod payloads;
mod progress;
mod redelivery;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

use super::support::{Got, Reader, opts, spawn_acking_reader};
use crate::{Bus, Subscription};

pub use self::basics::{
    features_match_the_adapter, many_subjects, plain_subscribers_fan_out, publish_subscribe,
    wildcard_subjects,
};
pub use self::groups::{
    balance_within_group, concurrent_publishers_and_subscribers, fan_out_across_groups,
    messages_before_group_first_subscribes, order_per_key,
};
pub use self::lifecycle::{
    broker_restart, close_ends_subscriptions, durable_resume_after_crash,
    durable_resume_after_restart, ensure_stream_is_idempotent,
};
pub use self::payloads::{headers_round_trip, payload_near_limit, payload_over_limit};
pub use self::progress::in_progress_holds_a_delivery;
pub use self::redelivery::{
    ack_after_subscription_closed, close_with_deliveries_in_flight, max_deliveries_ends_redelivery,
    nack_redelivers, nack_with_delay, no_ack_redelivers,
};

/// Ack wait of cases that do not test redelivery: never reached.
const LONG_MS: u64 = 30_000;
/// How long a case waits for messages it expects.
const DEADLINE_MS: u64 = 10_000;

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn group(
    bus: &dyn Bus,
    subject: &str,
    group: &str,
    ack_wait: Duration,
    max_in_flight: usize,
) -> Subscription {
    bus.subscribe_group(subject, group, opts(ack_wait, max_in_flight))
        .await
        .unwrap_or_else(|e| panic!("subscribe_group({subject}, {group}) failed: {e}"))
}

async fn plain(bus: &dyn Bus, subject: &str) -> Subscription {
    bus.subscribe(subject)
        .await
        .unwrap_or_else(|e| panic!("subscribe({subject}) failed: {e}"))
}

fn reader(sub: Subscription, member: usize) -> (Reader, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (spawn_acking_reader(sub, member, Duration::ZERO, tx), rx)
}
