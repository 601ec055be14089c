//! `orderly events …`: the dead letters of the event bus, through the port,
//! so the same for the embedded broker, Kafka (`<topic>.dlq`) and NATS.

use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use orderly_bus::{Bus, DeadLetter, header, schema::events};
use orderly_core::config::Settings;

use crate::wiring;

#[derive(Subcommand, Clone, PartialEq, Eq)]
pub enum EventsAction {
    /// Dead-lettered events, oldest first: group, subject, key, reason,
    /// deliveries, time and headers
    Dead {
        /// Show at most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON array instead of text
        #[arg(long)]
        json: bool,
    },
    /// Give dead-lettered events back to their consumer group, then drop
    /// them from the dead letters
    Replay(Target),
    /// Delete dead-lettered events for good
    Purge(Target),
}

/// One dead letter by id, or all of them.
#[derive(Args, Clone, PartialEq, Eq)]
pub struct Target {
    /// The dead letter's id, as `orderly events dead` shows it
    #[arg(required_unless_present = "all")]
    id: Option<String>,
    /// Every dead letter of the events stream (needs --yes)
    #[arg(long, conflicts_with = "id")]
    all: bool,
    /// Confirms --all
    #[arg(long)]
    yes: bool,
}

pub async fn run(settings: &Settings, action: &EventsAction) -> Result<()> {
    let bus = wiring::open_bus_for_inspection(settings).await?;
    let outcome = act(bus.as_ref(), action).await;
    bus.close().await;
    outcome
}

async fn act(bus: &dyn Bus, action: &EventsAction) -> Result<()> {
    let stream = events::stream();
    match action {
        EventsAction::Dead { limit, json } => {
            let dead = bus.dead_letters(&stream, *limit).await?;
            if *json {
                let rows: Vec<_> = dead.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if dead.is_empty() {
                println!("no dead letters in stream {}", stream.name);
            } else {
                for d in &dead {
                    print_text(d);
                }
            }
        }
        EventsAction::Replay(target) | EventsAction::Purge(target) => {
            let replay = matches!(action, EventsAction::Replay(_));
            let verb = if replay { "replayed" } else { "purged" };
            let ids = match (&target.id, target.all) {
                (Some(id), _) => vec![id.clone()],
                (None, true) if !target.yes => {
                    bail!(
                        "--all {} every dead letter: add --yes to confirm",
                        if replay { "replays" } else { "deletes" }
                    )
                }
                (None, _) => bus
                    .dead_letters(&stream, usize::MAX)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect(),
            };
            let mut done = 0;
            for id in &ids {
                let found = if replay {
                    bus.replay_dead(&stream, id).await?
                } else {
                    bus.purge_dead(&stream, id).await?
                };
                match (found, &target.id) {
                    (true, _) => done += 1,
                    (false, Some(_)) => bail!("no dead letter {id:?} in stream {}", stream.name),
                    // Gone meanwhile (another operator): nothing left to do.
                    (false, None) => {}
                }
            }
            match &target.id {
                Some(id) => println!("{verb} {id}"),
                None => println!("{verb} {done} dead letters of stream {}", stream.name),
            }
        }
    }
    Ok(())
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.and_then(|t| OffsetDateTime::from(t).format(&Rfc3339).ok())
}

/// The order a dead letter concerns: its key, or the payload's `order_id`.
fn order_id(d: &DeadLetter) -> Option<String> {
    d.message.key.clone().or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&d.message.payload)
            .ok()?
            .get("order_id")?
            .as_str()
            .map(str::to_string)
    })
}

fn to_json(d: &DeadLetter) -> serde_json::Value {
    json!({
        "id": d.id,
        "group": d.group,
        "subject": d.message.subject,
        "key": d.message.key,
        "order_id": order_id(d),
        "event_id": d.message.header(header::EVENT_ID),
        "reason": d.reason,
        "deliveries": d.deliveries,
        "dead_at": rfc3339(d.dead_at),
        "headers": d.message.headers,
        "payload": String::from_utf8_lossy(&d.message.payload),
    })
}

fn print_text(d: &DeadLetter) {
    println!(
        "{}  group {}  subject {}  deliveries {}  at {}",
        d.id,
        d.group,
        d.message.subject,
        d.deliveries,
        rfc3339(d.dead_at).as_deref().unwrap_or("unknown")
    );
    println!("  reason: {}", d.reason);
    if let Some(order) = order_id(d) {
        println!("  order: {order}");
    }
    for (name, value) in &d.message.headers {
        println!("  header {name}: {value}");
    }
    println!("  payload: {}", String::from_utf8_lossy(&d.message.payload));
}
