//! The whole benchmark: every section, side by side, into one [`Report`].
//! One module per section; [`checks`] turns their measurements into ratios
//! and targets.

mod bus;
mod checks;
mod console;
mod footprint;
mod http;
mod paid;
mod pipeline;
mod queue;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub use bus::bus_inprocess;
pub use http::bare_http;
pub use pipeline::{parse_length, parse_length_or_zero};
pub use queue::queue_embedded;

use crate::clock::now_rfc3339;
use crate::http::{LoadSpec, Target};
use crate::ids::PipelineSetup;
use crate::report::{Measurement, Outcome, Report, fmt_num};
use crate::spawn::OrderlyProcess;

/// A section of the benchmark, as `--only` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// The API's workloads and the bare axum ceiling (and pgbench).
    Http,
    /// Publish → deliver through every broker.
    Bus,
    /// The job queues.
    Queue,
    /// Order → PAID.
    Paid,
    /// The order pipeline at the API's full rate.
    Pipeline,
    /// Start time and memory.
    Footprint,
    /// The console's overview with 100k orders.
    Console,
}

impl std::str::FromStr for Section {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "bus" => Ok(Self::Bus),
            "queue" => Ok(Self::Queue),
            "paid" => Ok(Self::Paid),
            "pipeline" => Ok(Self::Pipeline),
            "footprint" => Ok(Self::Footprint),
            "console" => Ok(Self::Console),
            _ => Err(format!(
                "unknown section {s:?}: http, bus, queue, paid, pipeline, footprint, console"
            )),
        }
    }
}

impl Section {
    /// Every section, in the order they run.
    pub const ALL: [Section; 7] = [
        Section::Http,
        Section::Bus,
        Section::Queue,
        Section::Paid,
        Section::Pipeline,
        Section::Footprint,
        Section::Console,
    ];
}

/// What to run, against what, for how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// Warm-up of each run, not measured.
    pub warmup: Duration,
    /// Measured window of each run.
    pub duration: Duration,
    /// HTTP connection counts.
    pub connections: Vec<usize>,
    /// The sections to run.
    pub sections: BTreeSet<Section>,
    /// `target/release/orderly`; `None`: the sections that start orderly are skipped.
    pub orderly_bin: Option<PathBuf>,
    /// Another implementation of the API: (auth base URL, orders base URL).
    pub external: Option<(String, String)>,
    /// Maintenance database URL; `None` skips the PostgreSQL runs.
    pub postgres_url: Option<String>,
    /// nats-server's URL.
    pub nats_url: String,
    /// Redis's URL; `None` skips the Redis queue's run.
    pub redis_url: Option<String>,
    /// A Kafka-compatible broker (`host:port`) for the Kafka adapter's run.
    pub kafka: Option<String>,
    /// The worker's simulated payment in the order → PAID run.
    pub payment_delay: Duration,
    /// The load of each pipeline run.
    pub pipeline_duration: Duration,
    /// The pipeline's setups to run (those whose services are missing are skipped).
    pub pipeline_setups: Vec<PipelineSetup>,
    /// A soak run of this length, reported per minute.
    pub soak: Option<Duration>,
    /// The setup of the soak run.
    pub soak_setup: PipelineSetup,
    /// Load before the soak's measured minutes (whole minutes).
    pub soak_warmup: Duration,
    /// No progress line.
    pub quiet: bool,
}

impl Config {
    /// One connection's load with this run's warm-up and duration.
    fn load(&self) -> LoadSpec {
        LoadSpec {
            connections: 1,
            warmup: self.warmup,
            duration: self.duration,
        }
    }

    /// The measured time of a run (warm-up included), for the progress line.
    fn run_time(&self) -> Duration {
        self.warmup + self.duration
    }
}

/// Runs the sections of `cfg` and computes the checks.
pub async fn run_all(cfg: &Config) -> Report {
    let mut r = Report {
        started_at: now_rfc3339(),
        ..Report::default()
    };
    describe_machine(&mut r);
    describe_settings(cfg, &mut r);
    if cfg.sections.contains(&Section::Http) {
        http::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Bus) {
        bus::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Queue) {
        queue::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Paid) {
        paid::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Pipeline) {
        pipeline::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Footprint) {
        footprint::section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Console) {
        console::section(cfg, &mut r).await;
    }
    checks::add(cfg, &mut r);
    r
}

fn describe_machine(r: &mut Report) {
    r.machine.insert(
        "cpus".into(),
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(model) = info.lines().find(|l| l.starts_with("model name"))
    {
        r.machine.insert(
            "cpu".into(),
            model.split(':').nth(1).unwrap_or("").trim().to_string(),
        );
    }
}

fn describe_settings(cfg: &Config, r: &mut Report) {
    r.settings
        .insert("warmup_s".into(), cfg.warmup.as_secs_f64().to_string());
    r.settings
        .insert("duration_s".into(), cfg.duration.as_secs_f64().to_string());
    if cfg.sections.contains(&Section::Pipeline) {
        r.settings.insert(
            "pipeline_duration_s".into(),
            cfg.pipeline_duration.as_secs_f64().to_string(),
        );
        if let Some(soak) = cfg.soak {
            r.settings
                .insert("soak_s".into(), soak.as_secs_f64().to_string());
            r.settings.insert(
                "soak_warmup_s".into(),
                cfg.soak_warmup.as_secs_f64().to_string(),
            );
        }
    }
    r.settings.insert(
        "connections".into(),
        cfg.connections
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
}

/// Why a run that starts orderly is skipped without a binary.
fn skip_reason_no_bin() -> String {
    "no orderly binary (build it: cargo build --release; or --orderly-bin)".into()
}

/// The auth and orders servers of a started `orderly all`.
async fn api_targets(proc_: &OrderlyProcess) -> anyhow::Result<(Target, Target)> {
    let auth = Target::from_url(&proc_.auth_url).await;
    let orders = Target::from_url(&proc_.orders_url).await;
    Ok((auth?, orders?))
}

/// The measurement in one line, for the progress display.
fn summary(m: &Measurement) -> String {
    match (&m.outcome, m.throughput, m.latency) {
        (Outcome::Ok, Some(t), Some(l)) => format!(
            "{} {}, p50 {} ms, p99 {} ms, {} errors",
            fmt_num(t),
            m.unit,
            fmt_num(l.p50_ms),
            fmt_num(l.p99_ms),
            m.errors
        ),
        (Outcome::Ok, _, _) => format!("{:?}", m.extra),
        (Outcome::Skipped { reason }, _, _) => format!("skipped: {reason}"),
        (Outcome::Failed { reason }, _, _) => format!("FAILED: {reason}"),
    }
}
