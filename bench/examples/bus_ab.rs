//! A/B of NATS-protocol brokers with the bench's own bus harness, interleaved
//! round by round so that a noisy machine hits every target alike:
//!
//! ```text
//! cargo run --release -p orderly-bench --example bus_ab -- \
//!     --rounds 5 --seconds 2 nats=nats://127.0.0.1:4222 new=nats://127.0.0.1:4223
//! ```
//!
//! Per target: msgs/s with 1024 in flight, and p50/p99 of publish → deliver
//! with one in flight, over all rounds (histograms merged). A target's URL
//! may also be `inproc` (the embedded broker in this process, through the
//! `Bus` port) or `channel` (the harness alone).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use orderly_bench::bus::{BusSpec, run_bus, run_channel, run_nats};
use orderly_bench::report::micros_histogram;
use orderly_bus::Bus;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};

#[tokio::main]
async fn main() -> Result<()> {
    let mut rounds = 3usize;
    let mut seconds = 2.0f64;
    let mut only = None::<String>;
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            "--only" => only = Some(args.next().context("--only latency|throughput")?),
            t => match t.split_once('=') {
                Some((name, url)) => targets.push((name.into(), url.into())),
                None => bail!("usage: bus_ab [--rounds N] [--seconds S] name=nats://… …"),
            },
        }
    }
    let kinds: Vec<(&str, usize)> = [("throughput", 1024), ("latency", 1)]
        .into_iter()
        .filter(|(k, _)| only.as_deref().is_none_or(|o| o == *k))
        .collect();
    // Per target and kind: delivered count, seconds, histogram.
    let mut acc: Vec<Vec<(u64, f64, hdrhistogram::Histogram<u64>)>> = targets
        .iter()
        .map(|_| kinds.iter().map(|_| (0, 0.0, micros_histogram())).collect())
        .collect();
    for round in 0..rounds {
        for (ti, (name, url)) in targets.iter().enumerate() {
            for (ki, (kind, window)) in kinds.iter().enumerate() {
                let spec = BusSpec {
                    warmup: Duration::from_millis(300),
                    duration: Duration::from_secs_f64(seconds),
                    window: *window,
                    payload: 128,
                };
                let done = Arc::new(AtomicU64::new(0));
                let r = match url.as_str() {
                    "channel" => run_channel(spec, done).await,
                    "inproc" => {
                        let broker: Arc<dyn Bus> =
                            Arc::new(EmbeddedBroker::open(BrokerConfig::default()).await?);
                        let r = run_bus(broker.clone(), spec, done).await;
                        broker.close().await;
                        r
                    }
                    _ => run_nats(url, spec, done).await,
                }
                .with_context(|| format!("{name} {kind}"))?;
                eprintln!(
                    "round {round} {name:>8} {kind:>10}: {:>9.0} msgs/s p50 {} µs p99 {} µs",
                    r.count as f64 / r.seconds,
                    r.latency_us.value_at_quantile(0.5),
                    r.latency_us.value_at_quantile(0.99)
                );
                let a = &mut acc[ti][ki];
                a.0 += r.count;
                a.1 += r.seconds;
                a.2.add(&r.latency_us)?;
            }
        }
    }
    println!("| target | kind | msgs/s | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|--:|--:|--:|--:|");
    for (ti, (name, _)) in targets.iter().enumerate() {
        for (ki, (kind, _)) in kinds.iter().enumerate() {
            let (count, secs, h) = &acc[ti][ki];
            println!(
                "| {name} | {kind} | {:.0} | {} | {} | {} |",
                *count as f64 / secs,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99)
            );
        }
    }
    Ok(())
}
