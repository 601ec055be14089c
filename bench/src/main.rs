//! `orderly-bench`: runs the benchmark and writes JSON, Markdown and SVG.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use orderly_bench::default_orderly_bin;
use orderly_bench::ids::PipelineSetup;
use orderly_bench::sections::{Config, Section, parse_length, parse_length_or_zero, run_all};

/// Benchmarks orderly side by side with its peers (docs/performance.md).
///
/// Starts `orderly all` itself (embedded, then on fresh PostgreSQL databases),
/// a bare axum server as the HTTP ceiling, and talks to nats-server, Redis and
/// (with ORDERLY_BENCH_KAFKA) a Kafka-compatible broker on this machine.
#[derive(Parser, Debug)]
#[command(name = "orderly-bench", version)]
struct Cli {
    /// Seconds measured per run (after the warm-up)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up per run (not measured)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// HTTP connection counts, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    connections: Vec<usize>,
    /// Smoke run: 1 s per run after 0.3 s of warm-up
    #[arg(long)]
    quick: bool,
    /// Sections to run, comma-separated: http, bus, queue, paid, pipeline, footprint, console (default: all)
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// The orderly binary to start (default: `orderly` next to this binary)
    #[arg(long, env = "ORDERLY_BIN")]
    orderly_bin: Option<PathBuf>,
    /// Also measure another implementation of the API: its auth base URL
    #[arg(long, requires = "base_url_orders")]
    base_url_auth: Option<String>,
    /// … and its orders base URL
    #[arg(long, requires = "base_url_auth")]
    base_url_orders: Option<String>,
    /// PostgreSQL maintenance database; the bench creates and drops its own databases there
    #[arg(
        long,
        env = "ORDERLY_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres_url: String,
    /// Skip the PostgreSQL runs
    #[arg(long)]
    no_postgres: bool,
    #[arg(
        long,
        env = "ORDERLY_BENCH_NATS",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    #[arg(
        long,
        env = "ORDERLY_BENCH_REDIS",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    redis_url: String,
    /// A Kafka-compatible broker (host:port) for the Kafka adapter's run
    #[arg(long, env = "ORDERLY_BENCH_KAFKA")]
    kafka: Option<String>,
    /// Simulated payment of the order → PAID run, in ms
    #[arg(long, default_value_t = 100)]
    payment_delay_ms: u64,
    /// Seconds of load of each pipeline run (the figure: 60; --quick: 5)
    #[arg(long, default_value_t = 60.0)]
    pipeline_seconds: f64,
    /// Pipeline setups, comma-separated: embedded, postgres, kafka, nats (default: all,
    /// or none with --soak; those whose services are missing are skipped)
    #[arg(long, value_delimiter = ',')]
    pipeline_setups: Vec<PipelineSetup>,
    /// Also soak the pipeline for this long (e.g. 10m), reported per minute
    #[arg(long, value_parser = parse_length)]
    soak: Option<Duration>,
    /// The setup the soak runs on
    #[arg(long, default_value = "embedded")]
    soak_setup: PipelineSetup,
    /// Load before the soak's first measured minute (reported, not compared): the
    /// broker's dedup window (120 s) and the caches fill while the tables are small
    #[arg(long, value_parser = parse_length_or_zero, default_value = "2m")]
    soak_warmup: Duration,
    /// Write the results as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as a Markdown table
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write an SVG bar chart of the ratios
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress line
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{what} must be a number of seconds ≥ 0");
    }
    Ok(Duration::from_secs_f64(v))
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let (warmup, duration) = if cli.quick {
        (Duration::from_millis(300), Duration::from_secs(1))
    } else {
        (secs(cli.warmup, "warmup")?, secs(cli.duration, "duration")?)
    };
    if duration.is_zero() {
        bail!("--duration must be above 0");
    }
    if cli.connections.is_empty() || cli.connections.contains(&0) {
        bail!("--connections needs counts above 0");
    }
    let orderly_bin = match cli.orderly_bin {
        Some(p) if p.is_file() => Some(p),
        Some(p) => bail!("--orderly-bin {} does not exist", p.display()),
        None => default_orderly_bin(),
    };
    let mut sections: BTreeSet<Section> = if cli.only.is_empty() {
        Section::ALL.into_iter().collect()
    } else {
        cli.only.into_iter().collect()
    };
    if cli.soak.is_some() {
        sections.insert(Section::Pipeline);
    }
    let pipeline_duration = if cli.quick {
        Duration::from_secs(5)
    } else {
        secs(cli.pipeline_seconds, "pipeline-seconds")?
    };
    if pipeline_duration.is_zero() {
        bail!("--pipeline-seconds must be above 0");
    }
    let pipeline_setups = if cli.pipeline_setups.is_empty() && cli.soak.is_some() {
        Vec::new()
    } else if cli.pipeline_setups.is_empty() {
        PipelineSetup::ALL.to_vec()
    } else {
        cli.pipeline_setups
    };
    let config = Config {
        warmup,
        duration,
        connections: cli.connections,
        sections,
        orderly_bin,
        external: cli.base_url_auth.zip(cli.base_url_orders),
        postgres_url: (!cli.no_postgres).then_some(cli.postgres_url),
        nats_url: cli.nats_url,
        redis_url: Some(cli.redis_url),
        kafka: cli.kafka.filter(|k| !k.trim().is_empty()),
        payment_delay: Duration::from_millis(cli.payment_delay_ms),
        pipeline_duration,
        pipeline_setups,
        soak: cli.soak,
        soak_setup: cli.soak_setup,
        soak_warmup: cli.soak_warmup,
        quiet: cli.quiet,
    };
    match &config.orderly_bin {
        Some(b) => eprintln!("orderly binary: {}", b.display()),
        None => eprintln!("no orderly binary found: the sections that start it are skipped"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    let report = runtime.block_on(run_all(&config));
    let markdown = report.to_markdown();
    println!("{markdown}");
    if let Some(p) = &cli.json {
        write(p, &report.to_json())?;
    }
    if let Some(p) = &cli.markdown {
        write(p, &markdown)?;
    }
    if let Some(p) = &cli.svg {
        write(p, &report.to_svg())?;
    }
    Ok(())
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
