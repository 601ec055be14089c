//! The bus section: publish → deliver, throughput and latency, through the
//! harness alone, the embedded broker in process and over its NATS listener,
//! nats-server, and the Kafka adapter; then the durable path: publish to a
//! file-backed stream with a PubAck, a durable group with explicit acks,
//! 1 KiB messages, each target named with its fsync policy.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result};
use orderly_bus::Bus;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, SyncPolicy};
use orderly_kafka::{KafkaBus, KafkaConfig};

use crate::bus::{self, BusSpec};
use crate::ids::{BusRun, BusTarget, DurableTarget, MeasurementId};
use crate::progress::Progress;
use crate::report::{Counted, Measurement, Report, micros_histogram};
use crate::sections::{Config, skip_reason_no_bin, summary};

/// The Kafka adapter's `fetch.wait.max.ms` in its second run: tansu holds
/// each fetch that long, so the default mostly measures the wait.
const SHORT_FETCH_WAIT: Duration = Duration::from_millis(10);

/// Bytes per message of the durable runs.
const DURABLE_PAYLOAD: usize = 1024;

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    run_pair(
        cfg,
        r,
        BusTarget::Harness,
        "harness only (tokio channel, no broker)",
        bus::run_channel,
    )
    .await;
    bus_inprocess(cfg, r).await;
    nats_server(cfg, r).await;
    embedded_tcp(cfg, r).await;
    match &cfg.kafka {
        None => {
            let why =
                "no Kafka broker given (ORDERLY_BENCH_KAFKA=host:port; scripts/bench starts tansu)";
            skip(r, BusTarget::Kafka, "Kafka adapter", why);
            skip(r, BusTarget::KafkaShortFetch, "Kafka adapter", why);
        }
        Some(addr) => {
            kafka(cfg, r, addr, BusTarget::Kafka).await;
            kafka(cfg, r, addr, BusTarget::KafkaShortFetch).await;
        }
    }
    for target in DurableTarget::ALL {
        durable(cfg, r, target).await;
    }
}

/// The settings of a bus run.
fn spec(cfg: &Config, run: BusRun) -> BusSpec {
    BusSpec {
        warmup: cfg.warmup,
        duration: match run {
            BusRun::Throughput => cfg.duration,
            BusRun::Latency => cfg.duration / 2,
        },
        window: run.window(),
        payload: 128,
    }
}

fn measurement(target: BusTarget, name: &str, run: BusRun, res: Result<Counted>) -> Measurement {
    let what = match run {
        BusRun::Latency => "publish→deliver latency (1 in flight, 128 B)".to_string(),
        BusRun::Throughput => format!(
            "publish→deliver throughput ({} in flight, 128 B)",
            run.window()
        ),
    };
    Measurement::new(MeasurementId::Bus { target, run }, &what, name)
        .counted(res, "no message delivered in the measured window")
}

/// Runs the throughput and the latency run of one target.
async fn run_pair<F, Fut>(cfg: &Config, r: &mut Report, target: BusTarget, name: &str, run: F)
where
    F: Fn(BusSpec, Arc<AtomicU64>) -> Fut,
    Fut: Future<Output = Result<Counted>>,
{
    for kind in BusRun::ALL {
        let spec = spec(cfg, kind);
        let label = match kind {
            BusRun::Throughput => format!("bus throughput {name}"),
            BusRun::Latency => format!("bus latency {name}"),
        };
        let p = Progress::start(&label, spec.warmup + spec.duration, cfg.quiet);
        let res = tokio::time::timeout(
            spec.warmup + spec.duration + Duration::from_secs(90),
            run(spec, p.done.clone()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        let m = measurement(target, name, kind, res);
        p.finish(&summary(&m));
        r.measurements.push(m);
    }
}

/// Skipped rows for both runs of one target.
fn skip(r: &mut Report, target: BusTarget, name: &str, why: &str) {
    for kind in BusRun::ALL {
        let nothing = Counted {
            count: 0,
            errors: 0,
            latency_us: micros_histogram(),
            seconds: 1.0,
        };
        r.measurements
            .push(measurement(target, name, kind, Ok(nothing)).skipped(why));
    }
}

/// The embedded broker in this process, through the `Bus` port.
pub async fn bus_inprocess(cfg: &Config, r: &mut Report) {
    let (target, name) = (BusTarget::Embedded, "embedded broker (in process)");
    match EmbeddedBroker::open(BrokerConfig::default()).await {
        Ok(broker) => {
            let bus: Arc<dyn Bus> = Arc::new(broker);
            run_pair(cfg, r, target, name, |spec, done| {
                bus::run_bus(bus.clone(), spec, done)
            })
            .await;
            bus.close().await;
        }
        Err(e) => skip(r, target, name, &format!("{e}")),
    }
}

/// The real nats-server with the async-nats client.
async fn nats_server(cfg: &Config, r: &mut Report) {
    let (target, name) = (BusTarget::Nats, "nats-server");
    let nats_url = cfg.nats_url.clone();
    match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats_url.clone())
        .await
    {
        Ok(c) => {
            drop(c);
            run_pair(cfg, r, target, name, |spec, done| {
                let url = nats_url.clone();
                async move { bus::run_nats(&url, spec, done).await }
            })
            .await;
        }
        Err(e) => skip(
            r,
            target,
            name,
            &format!("no nats-server at {nats_url}: {e}"),
        ),
    }
}

/// The embedded broker over its NATS listener (`orderly broker`), with the
/// client nats-server is measured with.
async fn embedded_tcp(cfg: &Config, r: &mut Report) {
    let (target, name) = (BusTarget::EmbeddedTcp, "embedded broker (NATS listener)");
    let Some(bin) = cfg.orderly_bin.clone() else {
        return skip(r, target, name, &skip_reason_no_bin());
    };
    match crate::broker::start(&bin).await {
        Ok(Some(broker)) => {
            let url = broker.url.clone();
            run_pair(cfg, r, target, name, |spec, done| {
                let url = url.clone();
                async move { bus::run_nats(&url, spec, done).await }
            })
            .await;
            broker.stop();
        }
        Ok(None) => skip(
            r,
            target,
            name,
            "this orderly build has no `orderly broker` command (NATS listener not landed)",
        ),
        Err(e) => skip(r, target, name, &format!("{e:#}")),
    }
}

/// Kafka (tansu or any compatible broker) through our adapter, with its
/// default `fetch.wait.max.ms` or [`SHORT_FETCH_WAIT`].
async fn kafka(cfg: &Config, r: &mut Report, addr: &str, target: BusTarget) {
    let mut kc = KafkaConfig::new(addr.to_string());
    kc.topic_prefix = format!("bench-{}-", uuid::Uuid::new_v4().simple());
    kc.topic_partitions = 1;
    let name = match target {
        BusTarget::KafkaShortFetch => {
            kc.fetch_wait_max = SHORT_FETCH_WAIT;
            format!(
                "Kafka adapter (fetch.wait.max.ms={}) → {addr}",
                SHORT_FETCH_WAIT.as_millis()
            )
        }
        _ => format!("Kafka adapter → {addr}"),
    };
    match KafkaBus::new(kc) {
        Ok(kb) => {
            let bus: Arc<dyn Bus> = Arc::new(kb);
            run_pair(cfg, r, target, &name, |spec, done| {
                bus::run_bus(bus.clone(), spec, done)
            })
            .await;
            bus.close().await;
        }
        Err(e) => skip(r, target, "Kafka adapter", &format!("{e}")),
    }
}

/// What a durable target is called in the report, with its fsync policy.
fn durable_name(target: DurableTarget, cfg: &Config) -> String {
    let interval = "fsync every 50 ms (ORDERLY_BROKER_SYNC=interval:50, the default)";
    let always = "fsync before each PubAck (ORDERLY_BROKER_SYNC=always, group commit)";
    match target {
        DurableTarget::EmbeddedInterval => format!("embedded broker (in process), {interval}"),
        DurableTarget::EmbeddedAlways => format!("embedded broker (in process), {always}"),
        DurableTarget::EmbeddedTcpInterval => {
            format!("embedded broker (NATS listener), {interval}")
        }
        DurableTarget::EmbeddedTcpAlways => format!("embedded broker (NATS listener), {always}"),
        DurableTarget::Nats => format!(
            "nats-server JetStream, file storage, {}",
            crate::nats_server::NATS_FSYNC
        ),
        DurableTarget::Kafka => format!(
            "Kafka adapter (acks=all, 3 partitions, fetch.wait.max.ms=10) → {}, tansu memory storage: no fsync",
            cfg.kafka.as_deref().unwrap_or("no broker")
        ),
    }
}

/// One durable run: the target started, measured, stopped.
async fn durable(cfg: &Config, r: &mut Report, target: DurableTarget) {
    let name = durable_name(target, cfg);
    let what = format!(
        "durable publish (PubAck) → group → ack ({} in flight, {} B)",
        BusRun::THROUGHPUT_WINDOW,
        DURABLE_PAYLOAD
    );
    let spec = BusSpec {
        payload: DURABLE_PAYLOAD,
        ..spec(cfg, BusRun::Throughput)
    };
    let p = Progress::start(
        format!("bus durable {name}"),
        spec.warmup + spec.duration,
        cfg.quiet,
    );
    let res = tokio::time::timeout(
        spec.warmup + spec.duration + Duration::from_secs(120),
        durable_run(cfg, target, spec, p.done.clone()),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
    let m = Measurement::new(MeasurementId::Durable(target), &what, &name);
    let m = match res {
        Ok(Some(counted)) => m.counted(Ok(counted), "no message delivered in the measured window"),
        Ok(None) => m.skipped(durable_skip_reason(cfg, target)),
        Err(e) => m.counted(Err(e), ""),
    };
    p.finish(&summary(&m));
    r.measurements.push(m);
}

fn durable_skip_reason(cfg: &Config, target: DurableTarget) -> String {
    match target {
        DurableTarget::Kafka if cfg.kafka.is_none() => {
            "no Kafka broker given (ORDERLY_BENCH_KAFKA=host:port; scripts/bench starts tansu)"
                .into()
        }
        DurableTarget::EmbeddedTcpInterval | DurableTarget::EmbeddedTcpAlways
            if cfg.orderly_bin.is_none() =>
        {
            skip_reason_no_bin()
        }
        _ => "this orderly build has no `orderly broker` command".into(),
    }
}

/// `Ok(None)`: the target is not available (skipped, not failed).
async fn durable_run(
    cfg: &Config,
    target: DurableTarget,
    spec: BusSpec,
    done: Arc<AtomicU64>,
) -> Result<Option<Counted>> {
    match target {
        DurableTarget::EmbeddedInterval | DurableTarget::EmbeddedAlways => {
            let dir = tempfile::Builder::new()
                .prefix("orderly-bench-durable-")
                .tempdir()?;
            let sync = match target {
                DurableTarget::EmbeddedAlways => SyncPolicy::Always,
                _ => SyncPolicy::Interval(Duration::from_millis(50)),
            };
            let broker = EmbeddedBroker::open(BrokerConfig {
                data_dir: Some(dir.path().to_path_buf()),
                sync,
                ..BrokerConfig::default()
            })
            .await?;
            let bus: Arc<dyn Bus> = Arc::new(broker);
            let res = bus::run_bus_durable(bus.clone(), spec, done).await;
            bus.close().await;
            res.map(Some)
        }
        DurableTarget::EmbeddedTcpInterval | DurableTarget::EmbeddedTcpAlways => {
            let Some(bin) = cfg.orderly_bin.clone() else {
                return Ok(None);
            };
            let sync = match target {
                DurableTarget::EmbeddedTcpAlways => "always",
                _ => "interval:50",
            };
            let Some(broker) = crate::broker::start_with_sync(&bin, Some(sync)).await? else {
                return Ok(None);
            };
            let res = bus::run_jetstream_durable(&broker.url, spec, done).await;
            broker.stop();
            res.map(Some)
        }
        DurableTarget::Nats => {
            let server = tokio::task::spawn_blocking(crate::nats_server::NatsServer::start)
                .await
                .context("nats-server start task")??;
            bus::run_jetstream_durable(&server.url, spec, done)
                .await
                .map(Some)
        }
        DurableTarget::Kafka => {
            let Some(addr) = &cfg.kafka else {
                return Ok(None);
            };
            let mut kc = KafkaConfig::new(addr.to_string());
            kc.topic_prefix = format!("bench-{}-", uuid::Uuid::new_v4().simple());
            kc.fetch_wait_max = SHORT_FETCH_WAIT;
            let bus: Arc<dyn Bus> = Arc::new(KafkaBus::new(kc)?);
            let res = bus::run_bus_durable(bus.clone(), spec, done).await;
            bus.close().await;
            res.map(Some)
        }
    }
}
