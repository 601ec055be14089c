//! The pipeline section: orders created at the API's full rate (50
//! connections) with orderly's defaults (a 2 s payment), and what became of
//! them, from the orders' own status history: create and PAID rates,
//! created → PAID latency, the backlog when the load stops and how long it
//! takes to drain, the server's RSS. Beside each setup the same load with the
//! worker idle (the created half of an order's life alone), and on PostgreSQL
//! pgbench running one order's whole life on the same database (the ceiling).
//! The soak mode runs the load for minutes and reports each minute, after a
//! warm-up whose minutes are reported too but not compared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};
use time::OffsetDateTime;

use crate::api;
use crate::cpu;
use crate::disk;
use crate::http::{LoadResult, LoadSpec, RequestTemplate, run_load};
use crate::ids::{MeasurementId, PipelineRun, PipelineSetup};
use crate::lifetimes::{Life, OrdersDb};
use crate::nats_server::NatsServer;
use crate::postgres::{self, Databases};
use crate::progress::Progress;
use crate::report::{Field, Goal, Latency, Measurement, Report, micros_histogram};
use crate::sections::{Config, api_targets, skip_reason_no_bin, summary};
use crate::spawn::{OrderlyProcess, SpawnOptions};

/// The load: 50 connections creating orders back to back.
const CONNECTIONS: usize = 50;
/// orderly's default payment (`WORKER_PAYMENT_DELAY_MS`), which the runs keep.
const DEFAULT_PAYMENT: Duration = Duration::from_secs(2);
/// The longest wait for the backlog to drain once the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The idle-worker and pgbench runs last at most this (a rate, not a life).
const SIDE_RUN_LIMIT: Duration = Duration::from_secs(20);
/// A soak reports per this much time.
const SOAK_ROW: Duration = Duration::from_secs(60);
const PGBENCH_ORDER_LIFE: &str = include_str!("../../pgbench/order-life.sql");

fn id(setup: PipelineSetup, run: PipelineRun) -> MeasurementId {
    MeasurementId::Pipeline { setup, run }
}

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    let Some(bin) = cfg.orderly_bin.clone() else {
        for &setup in &cfg.pipeline_setups {
            let m = Measurement::new(id(setup, PipelineRun::Full), "pipeline", setup.name());
            r.measurements.push(m.skipped(skip_reason_no_bin()));
        }
        return;
    };
    for &setup in &cfg.pipeline_setups {
        run_setup(cfg, r, &bin, setup).await;
    }
    if let Some(length) = cfg.soak {
        soak(cfg, r, &bin, cfg.soak_setup, warmup_minutes(cfg), length).await;
    }
}

/// The full run and the idle-worker run of one setup (and the ceiling on PostgreSQL).
async fn run_setup(cfg: &Config, r: &mut Report, bin: &std::path::Path, setup: PipelineSetup) {
    let full = Measurement::new(
        id(setup, PipelineRun::Full),
        "orders created at full rate → PAID (2 s payment)",
        setup.name(),
    )
    .with_connections(CONNECTIONS);
    let idle = Measurement::new(
        id(setup, PipelineRun::IdleWorker),
        "orders created at full rate, worker idle",
        setup.name(),
    )
    .with_connections(CONNECTIONS);
    let mut env = match Environment::prepare(cfg, setup).await {
        Ok(env) => env,
        Err(Unavailable::Skip(why)) => {
            r.measurements.push(full.skipped(why.clone()));
            r.measurements.push(idle.skipped(why));
            return;
        }
        Err(Unavailable::Fail(why)) => {
            r.measurements.push(full.failed(why.clone()));
            r.measurements.push(idle.failed(why));
            return;
        }
    };
    let duration = cfg.pipeline_duration;
    let m = match run_once(cfg, bin, &env, RunKind::Full, duration).await {
        Ok(run) => run.full_measurement(full, duration),
        Err(e) => full.failed(format!("{e:#}")),
    };
    r.measurements.push(m);
    if setup != PipelineSetup::Embedded {
        ceiling(cfg, r, &env).await;
    }
    let side = duration.min(SIDE_RUN_LIMIT);
    // A fresh database for the idle run: the full run's orders would weigh on it.
    let m = match env.refresh().await {
        Ok(()) => match run_once(cfg, bin, &env, RunKind::IdleWorker, side).await {
            Ok(run) => run.idle_measurement(idle, side),
            Err(e) => idle.failed(format!("{e:#}")),
        },
        Err(e) => idle.failed(format!("{e:#}")),
    };
    r.measurements.push(m);
    env.finish().await;
}

/// pgbench running one order's whole life on the setup's orders database.
async fn ceiling(cfg: &Config, r: &mut Report, env: &Environment) {
    if r.get(MeasurementId::PipelineCeiling).is_some() {
        return;
    }
    let m = Measurement::new(
        MeasurementId::PipelineCeiling,
        "one order's whole life (create, relay, PAID, relay) by pgbench",
        "pgbench (PostgreSQL)",
    )
    .with_connections(CONNECTIONS);
    let Some(db_url) = env.orders_db_url.clone() else {
        return;
    };
    if !postgres::pgbench_available() {
        r.measurements.push(m.skipped("pgbench is not installed"));
        return;
    }
    let p = Progress::start(
        "pipeline ceiling (pgbench)",
        cfg.pipeline_duration.min(SIDE_RUN_LIMIT),
        cfg.quiet,
    );
    let scratch = std::env::temp_dir();
    let run = postgres::pgbench_script(
        &db_url,
        PGBENCH_ORDER_LIFE,
        CONNECTIONS,
        cfg.pipeline_duration.min(SIDE_RUN_LIMIT),
        &scratch,
    )
    .await;
    let mut m = m;
    match run {
        Ok(res) => {
            m.throughput = Some(res.tps);
            m.count = res.count;
            m.errors = res.errors;
            m.seconds = cfg.pipeline_duration.min(SIDE_RUN_LIMIT).as_secs_f64();
            if let Some(avg) = res.latency_avg_ms {
                m.extra.insert("latency_avg_ms".into(), avg);
            }
        }
        Err(e) => m = m.failed(format!("{e:#}")),
    }
    p.finish(&summary(&m));
    r.measurements.push(m);
}

/// Why a setup cannot run here.
enum Unavailable {
    /// Not configured (no Kafka given, PostgreSQL disabled …).
    Skip(String),
    /// Configured, and broken.
    Fail(String),
}

/// The services one setup's `orderly all` runs on.
struct Environment {
    setup: PipelineSetup,
    env: Vec<(String, String)>,
    databases: Option<Databases>,
    orders_db_url: Option<String>,
    nats: Option<NatsServer>,
}

impl Environment {
    async fn prepare(cfg: &Config, setup: PipelineSetup) -> Result<Self, Unavailable> {
        let mut this = Self {
            setup,
            env: Vec::new(),
            databases: None,
            orders_db_url: None,
            nats: None,
        };
        if setup == PipelineSetup::Embedded {
            return Ok(this);
        }
        let pg = cfg
            .postgres_url
            .clone()
            .ok_or_else(|| Unavailable::Skip("PostgreSQL disabled (--no-postgres)".into()))?;
        let redis = cfg
            .redis_url
            .clone()
            .ok_or_else(|| Unavailable::Skip("no Redis given".into()))?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        this.env.extend([
            ("JOB_QUEUE".to_string(), "redis".to_string()),
            ("REDIS_URL".to_string(), redis),
            (
                "JOB_QUEUE_PREFIX".to_string(),
                format!("orderly-bench-{run}"),
            ),
            (
                "ORDERS_RATE_LIMIT_KEY_PREFIX".to_string(),
                format!("orderly-bench-{run}:rate_limit:"),
            ),
        ]);
        match setup {
            PipelineSetup::Kafka => {
                let kafka = cfg.kafka.clone().ok_or_else(|| {
                    Unavailable::Skip("no Kafka broker given (ORDERLY_BENCH_KAFKA)".into())
                })?;
                this.env.extend([
                    ("BUS".to_string(), "kafka".to_string()),
                    ("KAFKA_BOOTSTRAP_SERVERS".to_string(), kafka),
                    ("KAFKA_TOPIC_PREFIX".to_string(), format!("bench-{run}-")),
                ]);
            }
            PipelineSetup::Nats => {
                let server =
                    NatsServer::start().map_err(|e| Unavailable::Skip(format!("{e:#}")))?;
                this.env.extend([
                    ("BUS".to_string(), "nats".to_string()),
                    ("NATS_URL".to_string(), server.url.clone()),
                ]);
                this.nats = Some(server);
            }
            PipelineSetup::Embedded | PipelineSetup::Postgres => {}
        }
        let databases = Databases::connect(&pg)
            .await
            .map_err(|e| Unavailable::Skip(format!("PostgreSQL: {e:#}")))?;
        this.databases = Some(databases);
        this.refresh()
            .await
            .map_err(|e| Unavailable::Fail(format!("{e:#}")))?;
        Ok(this)
    }

    /// Fresh PostgreSQL databases for the next run (nothing on SQLite: every
    /// run has a data directory of its own).
    async fn refresh(&mut self) -> Result<()> {
        let Some(dbs) = self.databases.as_mut() else {
            return Ok(());
        };
        let auth = dbs.create("pipeline_auth").await?;
        let orders = dbs.create("pipeline_orders").await?;
        self.env
            .retain(|(k, _)| k != "AUTH_DATABASE_URL" && k != "ORDERS_DATABASE_URL");
        self.env.push(("AUTH_DATABASE_URL".into(), auth));
        self.env
            .push(("ORDERS_DATABASE_URL".into(), orders.clone()));
        self.orders_db_url = Some(orders);
        Ok(())
    }

    async fn finish(&mut self) {
        if let Some(dbs) = self.databases.as_mut()
            && let Err(e) = dbs.drop_all().await
        {
            eprintln!("pipeline: could not drop the bench's databases: {e:#}");
        }
        self.nats = None;
    }

    /// Bytes of the broker's files: nats-server's store, or the embedded
    /// broker's files in the data directory (everything but the databases).
    fn broker_bytes(&self, proc_: &OrderlyProcess) -> Option<u64> {
        if let Some(nats) = &self.nats {
            return Some(nats.store_bytes());
        }
        if self.setup == PipelineSetup::Kafka {
            return None;
        }
        let dir = proc_.data_path()?;
        Some(disk::files_bytes(dir, &|name: &str| {
            !name.contains(".db") && !name.ends_with(".pem") && !name.ends_with(".lock")
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Full,
    IdleWorker,
}

/// What the server looked like at one moment of a run.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_mb: Option<f64>,
    outbox_rows: Option<i64>,
    broker_mb: Option<f64>,
}

/// What one run measured.
struct RunResult {
    load: LoadResult,
    started: OffsetDateTime,
    stopped: OffsetDateTime,
    lives: Vec<Life>,
    /// Orders still PENDING when the drain wait gave up.
    never_paid: i64,
    at_stop: Sample,
    rss_peak_mb: Option<f64>,
    /// One per [`SOAK_ROW`] of the load (soak runs only).
    samples: Vec<Sample>,
}

async fn run_once(
    cfg: &Config,
    bin: &std::path::Path,
    env: &Environment,
    kind: RunKind,
    duration: Duration,
) -> Result<RunResult> {
    let mut vars = env.env.clone();
    if kind == RunKind::IdleWorker {
        // One job taken and held for an hour: the worker does nothing else.
        vars.push(("WORKER_CONCURRENCY".into(), "1".into()));
        vars.push(("WORKER_PAYMENT_DELAY_MS".into(), "3600000".into()));
    }
    let proc_ = OrderlyProcess::spawn(SpawnOptions {
        bin,
        env: vars,
        data_dir: None,
        args: vec![],
    })
    .context("start orderly")?;
    let outcome = measure(cfg, env, &proc_, kind, duration).await;
    proc_.stop(Duration::from_secs(10));
    outcome
}

async fn measure(
    cfg: &Config,
    env: &Environment,
    proc_: &OrderlyProcess,
    kind: RunKind,
    duration: Duration,
) -> Result<RunResult> {
    let (auth, orders) = api_targets(proc_).await?;
    let user = api::new_user(&auth).await?;
    let db = match &env.orders_db_url {
        Some(url) => OrdersDb::postgres(url).await?,
        None => {
            let dir = proc_
                .data_path()
                .ok_or_else(|| anyhow!("orderly's data directory is gone"))?;
            OrdersDb::sqlite(&dir.join("orders.db")).await?
        }
    };
    let template = Arc::new(
        RequestTemplate {
            method: Method::POST,
            paths: vec!["/orders/".into()],
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(api::order_body().to_string()),
            expect: StatusCode::OK,
        }
        .bearer(&user.token)?,
    );
    let label = match kind {
        RunKind::Full => format!("pipeline {}", env.setup.key()),
        RunKind::IdleWorker => format!("pipeline {} (worker idle)", env.setup.key()),
    };
    let p = Progress::start(label, duration, cfg.quiet);
    let spec = LoadSpec {
        connections: CONNECTIONS,
        warmup: Duration::ZERO,
        duration,
    };
    let started = OffsetDateTime::now_utc();
    let load = {
        let (orders, done) = (orders.clone(), p.done.clone());
        tokio::spawn(async move { run_load(&orders, template, spec, done).await })
    };
    // Per-minute samples while the load runs (a soak's rows).
    let mut samples = Vec::new();
    let mut rss_peak_mb: Option<f64> = None;
    // One instant for both, or the last row (due as the load ends) falls
    // just past it and a 10-minute soak reports 9 minutes.
    let load_start = Instant::now();
    let load_end = load_start + duration;
    let mut next_row = load_start + SOAK_ROW;
    while next_row <= load_end {
        tokio::time::sleep_until(next_row.into()).await;
        samples.push(sample(env, proc_, &db).await);
        next_row += SOAK_ROW;
    }
    let load = load.await.context("load task")?;
    let stopped = OffsetDateTime::now_utc();
    let at_stop = sample(env, proc_, &db).await;
    p.finish(&format!(
        "{} creates/s, p99 {} ms",
        crate::report::fmt_num(load.throughput()),
        Latency::from_micros(&load.latency_us)
            .map(|l| crate::report::fmt_num(l.p99_ms))
            .unwrap_or_default()
    ));
    let mut never_paid = 0;
    if kind == RunKind::Full {
        let give_up = Instant::now() + DRAIN_LIMIT;
        loop {
            never_paid = db.pending().await?;
            if let Some(mb) = cpu::rss_mb(proc_.pid, "VmHWM:") {
                rss_peak_mb = Some(mb);
            }
            if never_paid == 0 || Instant::now() > give_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let lives = db.lives().await?;
    db.close().await;
    Ok(RunResult {
        load,
        started,
        stopped,
        lives,
        never_paid,
        at_stop,
        rss_peak_mb,
        samples,
    })
}

async fn sample(env: &Environment, proc_: &OrderlyProcess, db: &OrdersDb) -> Sample {
    Sample {
        rss_mb: cpu::rss_mb(proc_.pid, "VmRSS:"),
        outbox_rows: db.outbox_rows().await.ok(),
        broker_mb: env
            .broker_bytes(proc_)
            .map(|b| b as f64 / (1024.0 * 1024.0)),
    }
}

fn seconds_between(a: OffsetDateTime, b: OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64()
}

impl RunResult {
    /// Create and PAID rates over the load's window, created → PAID latency
    /// of every order, the backlog at the stop and the drain.
    fn full_measurement(self, mut m: Measurement, duration: Duration) -> Measurement {
        let window = duration.as_secs_f64();
        let mut latency = micros_histogram();
        let mut paid_in_window = 0u64;
        let mut backlog = 0u64;
        let mut last_paid = None::<OffsetDateTime>;
        for life in &self.lives {
            match life.paid {
                Some(paid) => {
                    let us = (paid - life.created).whole_microseconds().max(1) as u64;
                    let _ = latency.record(us.min(latency.high()));
                    if paid <= self.stopped {
                        paid_in_window += 1;
                    } else {
                        backlog += 1;
                    }
                    last_paid = Some(last_paid.map_or(paid, |l| l.max(paid)));
                }
                None => backlog += 1,
            }
        }
        let create_rate = self.load.throughput();
        let paid_rate = paid_in_window as f64 / window;
        m.count = paid_in_window;
        m.seconds = window;
        m.throughput = Some(paid_rate);
        m.latency = Latency::from_micros(&latency);
        m.errors = self.load.errors + self.never_paid.max(0) as u64;
        m.error_kinds = self.load.error_kinds.clone();
        if self.never_paid > 0 {
            m.error_kinds.insert(
                format!("not PAID {} s after the load", DRAIN_LIMIT.as_secs()),
                self.never_paid as u64,
            );
        }
        let extra = &mut m.extra;
        extra.insert("create_rate".into(), create_rate);
        extra.insert("paid_rate".into(), paid_rate);
        extra.insert(
            "paid_over_created".into(),
            if create_rate > 0.0 {
                paid_rate / create_rate
            } else {
                0.0
            },
        );
        extra.insert("orders".into(), self.lives.len() as f64);
        extra.insert("backlog_at_stop".into(), backlog as f64);
        if self.never_paid == 0 {
            let drain = last_paid
                .map(|l| seconds_between(self.stopped, l).max(0.0))
                .unwrap_or(0.0);
            extra.insert("drain_s".into(), drain);
        }
        extra.insert("payment_ms".into(), DEFAULT_PAYMENT.as_millis() as f64);
        insert_create_latency(extra, &self.load);
        if let Some(v) = self.at_stop.rss_mb {
            extra.insert("rss_mb".into(), v);
        }
        if let Some(v) = self.rss_peak_mb {
            extra.insert("rss_peak_mb".into(), v);
        }
        if let Some(v) = self.at_stop.outbox_rows {
            extra.insert("outbox_rows".into(), v as f64);
        }
        if let Some(v) = self.at_stop.broker_mb {
            extra.insert("broker_mb".into(), v);
        }
        if m.count == 0 {
            return m.failed(format!(
                "no order PAID during the load ({} created)",
                self.lives.len()
            ));
        }
        m
    }

    /// The create rate with the worker idle.
    fn idle_measurement(self, mut m: Measurement, duration: Duration) -> Measurement {
        m.count = self.load.count;
        m.seconds = duration.as_secs_f64();
        m.throughput = Some(self.load.throughput());
        m.latency = Latency::from_micros(&self.load.latency_us);
        m.errors = self.load.errors;
        m.error_kinds = self.load.error_kinds.clone();
        if let Some(v) = self.at_stop.rss_mb {
            m.extra.insert("rss_mb".into(), v);
        }
        if m.count == 0 {
            return m.failed("no order created");
        }
        m
    }

    /// One measurement per minute of the load: that minute's create and PAID
    /// rates, the latency of the orders created in it, and the samples taken
    /// at its end. The first `warmup` minutes are labelled as the warm-up.
    fn soak_rows(&self, setup: PipelineSetup, warmup: u32) -> Vec<Measurement> {
        let minutes = self.samples.len();
        let row_s = SOAK_ROW.as_secs_f64();
        let mut created = vec![0u64; minutes];
        let mut paid = vec![0u64; minutes];
        let mut latency: Vec<_> = (0..minutes).map(|_| micros_histogram()).collect();
        let minute_of = |t: OffsetDateTime| {
            let s = seconds_between(self.started, t);
            (s >= 0.0).then(|| (s / row_s) as usize)
        };
        for life in &self.lives {
            let born = minute_of(life.created).filter(|&m| m < minutes);
            if let Some(b) = born {
                created[b] += 1;
            }
            if let Some(p) = life.paid {
                if let Some(pm) = minute_of(p).filter(|&m| m < minutes) {
                    paid[pm] += 1;
                }
                if let Some(b) = born {
                    let us = (p - life.created).whole_microseconds().max(1) as u64;
                    let high = latency[b].high();
                    let _ = latency[b].record(us.min(high));
                }
            }
        }
        (0..minutes)
            .map(|i| {
                let minute = i as u32 + 1;
                let label = if minute <= warmup {
                    format!("soak, warm-up minute {minute}")
                } else {
                    format!("soak, minute {} (of the run: {minute})", minute - warmup)
                };
                let mut m = Measurement::new(
                    id(setup, PipelineRun::SoakMinute(minute)),
                    &label,
                    setup.name(),
                )
                .with_connections(CONNECTIONS);
                m.count = paid[i];
                m.seconds = row_s;
                m.throughput = Some(paid[i] as f64 / row_s);
                m.latency = Latency::from_micros(&latency[i]);
                m.extra
                    .insert("create_rate".into(), created[i] as f64 / row_s);
                m.extra.insert("paid_rate".into(), paid[i] as f64 / row_s);
                let s = self.samples[i];
                if let Some(v) = s.rss_mb {
                    m.extra.insert("rss_mb".into(), v);
                }
                if let Some(v) = s.outbox_rows {
                    m.extra.insert("outbox_rows".into(), v as f64);
                }
                if let Some(v) = s.broker_mb {
                    m.extra.insert("broker_mb".into(), v);
                }
                m
            })
            .collect()
    }
}

fn insert_create_latency(extra: &mut std::collections::BTreeMap<String, f64>, load: &LoadResult) {
    if let Some(l) = Latency::from_micros(&load.latency_us) {
        extra.insert("create_p50_ms".into(), l.p50_ms);
        extra.insert("create_p99_ms".into(), l.p99_ms);
    }
}

/// The soak's warm-up in whole minutes (rows).
fn warmup_minutes(cfg: &Config) -> u32 {
    (cfg.soak_warmup.as_secs() / SOAK_ROW.as_secs()) as u32
}

/// The full run for `warmup` minutes and then `length`, reported per minute
/// (and as a whole).
async fn soak(
    cfg: &Config,
    r: &mut Report,
    bin: &std::path::Path,
    setup: PipelineSetup,
    warmup: u32,
    length: Duration,
) {
    let whole = Measurement::new(
        id(setup, PipelineRun::SoakMinute(0)),
        &format!(
            "soak for {} min after {warmup} min of warm-up, whole run",
            length.as_secs() / 60
        ),
        setup.name(),
    )
    .with_connections(CONNECTIONS);
    let mut env = match Environment::prepare(cfg, setup).await {
        Ok(env) => env,
        Err(Unavailable::Skip(why)) => {
            r.measurements.push(whole.skipped(why));
            return;
        }
        Err(Unavailable::Fail(why)) => {
            r.measurements.push(whole.failed(why));
            return;
        }
    };
    let total = length + SOAK_ROW * warmup;
    match run_once(cfg, bin, &env, RunKind::Full, total).await {
        Ok(run) => {
            let rows = run.soak_rows(setup, warmup);
            r.measurements.push(run.full_measurement(whole, total));
            r.measurements.extend(rows);
        }
        Err(e) => r.measurements.push(whole.failed(format!("{e:#}"))),
    }
    env.finish().await;
}

/// The targets, from the pipeline's measurements.
pub(super) fn checks(cfg: &Config, r: &mut Report) {
    let payment_s = DEFAULT_PAYMENT.as_secs_f64();
    for &setup in &cfg.pipeline_setups {
        let full = id(setup, PipelineRun::Full);
        let key = setup.key();
        r.absolute(
            &format!("pipeline {key}: PAID rate / create rate"),
            full,
            Field::Extra("paid_over_created"),
            "×",
            Goal::AtLeast,
            0.9,
        );
        r.absolute(
            &format!("pipeline {key}: created → PAID p99"),
            full,
            Field::P99,
            "ms",
            Goal::AtMost,
            (payment_s + 1.0) * 1000.0,
        );
        r.absolute(
            &format!("pipeline {key}: backlog drained after the load"),
            full,
            Field::Extra("drain_s"),
            "s",
            Goal::AtMost,
            payment_s + 2.0,
        );
        r.ratio(
            &format!("pipeline {key}: PAID rate / create rate with the worker idle"),
            full,
            id(setup, PipelineRun::IdleWorker),
            Field::Throughput,
            Some((Goal::AtLeast, 0.6)),
        );
    }
    if cfg.pipeline_setups.contains(&PipelineSetup::Postgres) {
        r.ratio(
            "pipeline postgres / pgbench whole-life ceiling (orders/s)",
            id(PipelineSetup::Postgres, PipelineRun::Full),
            MeasurementId::PipelineCeiling,
            Field::Throughput,
            Some((Goal::AtLeast, 0.5)),
        );
    }
    if cfg.pipeline_setups.contains(&PipelineSetup::Embedded) {
        r.absolute(
            "pipeline embedded: POST /orders/ p99 at c=50",
            id(PipelineSetup::Embedded, PipelineRun::Full),
            Field::Extra("create_p99_ms"),
            "ms",
            Goal::AtMost,
            50.0,
        );
    }
    if let Some(length) = cfg.soak {
        let minutes = (length.as_secs() / SOAK_ROW.as_secs()) as u32;
        let warmup = warmup_minutes(cfg);
        if minutes >= 2 {
            let setup = cfg.soak_setup;
            let (first, last) = (
                id(setup, PipelineRun::SoakMinute(warmup + 1)),
                id(setup, PipelineRun::SoakMinute(warmup + minutes)),
            );
            for (what, field, goal, target) in [
                (
                    "create rate",
                    Field::Extra("create_rate"),
                    Goal::AtLeast,
                    0.9,
                ),
                ("PAID rate", Field::Extra("paid_rate"), Goal::AtLeast, 0.9),
                ("created → PAID p99", Field::P99, Goal::AtMost, 1.1),
                ("RSS", Field::Extra("rss_mb"), Goal::AtMost, 1.1),
            ] {
                r.ratio(
                    &format!("soak {}: last minute / first, {what}", setup.key()),
                    last,
                    first,
                    field,
                    Some((goal, target)),
                );
                // Shown beside it, without a goal: the same against the
                // warm-up's first minute, when the tables were empty.
                if warmup > 0 {
                    r.ratio(
                        &format!(
                            "soak {}: last minute / warm-up's first, {what}",
                            setup.key()
                        ),
                        last,
                        id(setup, PipelineRun::SoakMinute(1)),
                        field,
                        None,
                    );
                }
            }
        }
    }
}

/// As [`parse_length`], and `0` for none.
pub fn parse_length_or_zero(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" | "0s" | "0m" | "0h" => Ok(Duration::ZERO),
        other => parse_length(other),
    }
}

/// `10m`, `90s`, `1h` or plain seconds.
pub fn parse_length(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 10m, 90s or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: the unit is s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?}: must be above 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_with_their_units() {
        assert_eq!(parse_length("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_length("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_length("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_length("45"), Ok(Duration::from_secs(45)));
        assert!(parse_length("10 parsecs").is_err());
        assert!(parse_length("0m").is_err());
        assert_eq!(parse_length_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_length_or_zero("2m"), Ok(Duration::from_secs(120)));
    }
}
