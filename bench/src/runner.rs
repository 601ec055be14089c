//! The whole benchmark: every section, side by side, into one [`Report`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{Bus, JobQueue, RetryPolicy};

use crate::api::{self, User};
use crate::bus::{self, BusSpec};
use crate::http::{self, Client, LoadSpec, RequestTemplate, Target};
use crate::postgres::{self, Databases};
use crate::progress::Progress;
use crate::queue::{self, QueueSpec};
use crate::report::{Field, Goal, Latency, Measurement, Report, fmt_num};
use crate::spawn::{OrderlyProcess, SpawnOptions};
use crate::{bare, cpu};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Http,
    Bus,
    Queue,
    Paid,
    Footprint,
}

impl std::str::FromStr for Section {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "bus" => Ok(Self::Bus),
            "queue" => Ok(Self::Queue),
            "paid" => Ok(Self::Paid),
            "footprint" => Ok(Self::Footprint),
            _ => Err(format!(
                "unknown section {s:?}: http, bus, queue, paid, footprint"
            )),
        }
    }
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Http,
        Section::Bus,
        Section::Queue,
        Section::Paid,
        Section::Footprint,
    ];
}

#[derive(Debug, Clone)]
pub struct Config {
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: Vec<usize>,
    pub sections: BTreeSet<Section>,
    /// `target/release/orderly`; `None`: the sections that start orderly are skipped.
    pub orderly_bin: Option<PathBuf>,
    /// Another implementation of the API: (auth base URL, orders base URL).
    pub external: Option<(String, String)>,
    /// Maintenance database URL; `None` skips the PostgreSQL runs.
    pub postgres_url: Option<String>,
    pub nats_url: String,
    pub redis_url: Option<String>,
    /// A Kafka-compatible broker (`host:port`) for the Kafka adapter's run.
    pub kafka: Option<String>,
    pub payment_delay: Duration,
    pub quiet: bool,
}

impl Config {
    fn load(&self) -> LoadSpec {
        LoadSpec {
            connections: 1,
            warmup: self.warmup,
            duration: self.duration,
        }
    }
}

fn skip_reason_no_bin() -> String {
    "no orderly binary (build it: cargo build --release; or --orderly-bin)".into()
}

pub async fn run_all(cfg: &Config) -> Report {
    let mut r = Report {
        started_at: now_rfc3339(),
        ..Report::default()
    };
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
    r.settings
        .insert("warmup_s".into(), cfg.warmup.as_secs_f64().to_string());
    r.settings
        .insert("duration_s".into(), cfg.duration.as_secs_f64().to_string());
    r.settings.insert(
        "connections".into(),
        cfg.connections
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );

    if cfg.sections.contains(&Section::Http) {
        http_section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Bus) {
        bus_section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Queue) {
        queue_section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Paid) {
        paid_section(cfg, &mut r).await;
    }
    if cfg.sections.contains(&Section::Footprint) {
        footprint_section(cfg, &mut r).await;
    }
    checks(cfg, &mut r);
    r
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------- HTTP

/// The bare axum ceiling at each connection count.
pub async fn bare_http(cfg: &Config, r: &mut Report) {
    let server = match bare::BareServer::start(2) {
        Ok(s) => s,
        Err(e) => {
            for &c in &cfg.connections {
                r.measurements.push(
                    Measurement::new(
                        &format!("http.bare.c{c}"),
                        "http",
                        "GET (fixed JSON)",
                        "bare axum",
                        "req/s",
                    )
                    .with_connections(c)
                    .failed(format!("{e:#}")),
                );
            }
            return;
        }
    };
    let target = Target::from_addr(server.addr);
    let template = Arc::new(RequestTemplate::get("/"));
    for &c in &cfg.connections {
        let label = format!("http bare axum c={c}");
        let p = Progress::start(&label, cfg.warmup + cfg.duration, cfg.quiet);
        let before = cpu::own_threads_split(bare::THREAD_NAME);
        let spec = LoadSpec {
            connections: c,
            ..cfg.load()
        };
        let res = http::run_load(&target, template.clone(), spec, p.done.clone()).await;
        let after = cpu::own_threads_split(bare::THREAD_NAME);
        let total = p.done.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
        let mut m = load_measurement(
            &format!("http.bare.c{c}"),
            "GET (fixed JSON)",
            "bare axum",
            c,
            &res,
        );
        if let (Some((s0, c0)), Some((s1, c1))) = (before, after) {
            m.extra.insert(
                "server_cpu_us_per_req".into(),
                (s1 - s0).as_secs_f64() * 1e6 / total,
            );
            m.extra.insert(
                "loadgen_cpu_us_per_req".into(),
                (c1 - c0).as_secs_f64() * 1e6 / total,
            );
        }
        p.finish(&summary(&m));
        r.measurements.push(m);
    }
    drop(server);
}

fn load_measurement(
    id: &str,
    name: &str,
    target: &str,
    c: usize,
    res: &http::LoadResult,
) -> Measurement {
    let mut m = Measurement::new(id, "http", name, target, "req/s").with_connections(c);
    m.throughput = Some(res.throughput());
    m.latency = Latency::from_micros(&res.latency_us);
    m.count = res.count;
    m.errors = res.errors;
    m.error_kinds = res.error_kinds.clone();
    m.seconds = res.seconds;
    if res.count == 0 {
        let why = if res.error_kinds.is_empty() {
            "no request succeeded".to_string()
        } else {
            format!("no request succeeded: {:?}", res.error_kinds)
        };
        m = m.failed(why);
    }
    m
}

fn summary(m: &Measurement) -> String {
    match (&m.outcome, m.throughput, m.latency) {
        (crate::report::Outcome::Ok, Some(t), Some(l)) => format!(
            "{} {}, p50 {} ms, p99 {} ms, {} errors",
            fmt_num(t),
            m.unit,
            fmt_num(l.p50_ms),
            fmt_num(l.p99_ms),
            m.errors
        ),
        (crate::report::Outcome::Ok, _, _) => format!("{:?}", m.extra),
        (crate::report::Outcome::Skipped { reason }, _, _) => format!("skipped: {reason}"),
        (crate::report::Outcome::Failed { reason }, _, _) => format!("FAILED: {reason}"),
    }
}

const WORKLOADS: [(&str, &str); 4] = [
    ("get", "cached GET /orders/{id}/"),
    ("list", "GET /orders/user/{id}/ (10 orders)"),
    ("create", "POST /orders/"),
    ("token", "POST /auth/token/ (Argon2id)"),
];

/// Target name of the cached GET run with the access log filtered out.
const QUIET: &str = "orderly (embedded, access log off)";

/// The cached GET again with the access log line filtered out
/// (`RUST_LOG=info,access=off`): what the line costs, side by side.
async fn cached_get_without_access_log(cfg: &Config, r: &mut Report, bin: &std::path::Path) {
    let only: &[&str] = &["get"];
    let skip = |r: &mut Report, why: &str| skip_http(cfg, r, "quiet", QUIET, why, Some(only));
    let proc_ = match OrderlyProcess::spawn(SpawnOptions {
        bin,
        env: vec![("RUST_LOG".into(), "info,access=off".into())],
        data_dir: None,
        args: vec![],
    }) {
        Ok(p) => p,
        Err(e) => return skip(r, &format!("cannot start orderly: {e:#}")),
    };
    match (
        Target::from_url(&proc_.auth_url).await,
        Target::from_url(&proc_.orders_url).await,
    ) {
        (Ok(a), Ok(o)) => {
            http_api(cfg, r, "quiet", QUIET, &a, &o, Some(proc_.pid), Some(only)).await;
        }
        (Err(e), _) | (_, Err(e)) => skip(r, &format!("{e:#}")),
    }
    proc_.stop(Duration::from_secs(10));
}

fn skip_all_http(cfg: &Config, r: &mut Report, key: &str, target: &str, reason: &str) {
    skip_http(cfg, r, key, target, reason, None);
}

/// Skipped rows for the workloads (all, or those in `only`) of one target.
fn skip_http(
    cfg: &Config,
    r: &mut Report,
    key: &str,
    target: &str,
    reason: &str,
    only: Option<&[&str]>,
) {
    for (w, name) in WORKLOADS {
        if only.is_some_and(|only| !only.contains(&w)) {
            continue;
        }
        for &c in &cfg.connections {
            r.measurements.push(
                Measurement::new(
                    &format!("http.{w}.{key}.c{c}"),
                    "http",
                    name,
                    target,
                    "req/s",
                )
                .with_connections(c)
                .skipped(reason),
            );
        }
    }
}

/// The API's workloads (all four, or those named in `only`) against one
/// running implementation.
#[allow(clippy::too_many_arguments)]
async fn http_api(
    cfg: &Config,
    r: &mut Report,
    key: &str,
    target_name: &str,
    auth: &Target,
    orders: &Target,
    pid: Option<u32>,
    only: Option<&[&str]>,
) {
    let setup = async {
        let a = api::new_user(auth).await.context("user A")?;
        let b = api::new_user(auth).await.context("user B")?;
        let mut c = Client::new(orders.clone());
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(api::create_order(&mut c, &a.token).await?);
        }
        // Fill the cache: the measured GETs are cache hits.
        for id in &ids {
            api::order_status(&mut c, &a.token, id).await?;
        }
        Ok::<(User, User, Vec<String>), anyhow::Error>((a, b, ids))
    };
    let (a, b, ids) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            skip_all_http(cfg, r, key, target_name, &format!("setup failed: {e:#}"));
            return;
        }
    };
    let templates: Vec<(&str, &str, &Target, RequestTemplate)> = {
        let bearer =
            |t: RequestTemplate, tok: &str| t.bearer(tok).expect("a JWT is a valid header");
        let mut get = RequestTemplate::get("");
        get.paths = ids.iter().map(|id| format!("/orders/{id}/")).collect();
        let list = RequestTemplate::get(format!("/orders/user/{}/", a.user_id));
        let create = RequestTemplate {
            method: Method::POST,
            paths: vec!["/orders/".into()],
            headers: vec![(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(api::order_body().to_string()),
            expect: StatusCode::OK,
        };
        let token = RequestTemplate {
            method: Method::POST,
            paths: vec!["/auth/token/".into()],
            headers: vec![(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            body: Bytes::from(api::token_form(&a.email)),
            expect: StatusCode::OK,
        };
        vec![
            ("get", WORKLOADS[0].1, orders, bearer(get, &a.token)),
            ("list", WORKLOADS[1].1, orders, bearer(list, &a.token)),
            ("create", WORKLOADS[2].1, orders, bearer(create, &b.token)),
            ("token", WORKLOADS[3].1, auth, token),
        ]
    };
    for (w, name, target, template) in templates {
        if only.is_some_and(|only| !only.contains(&w)) {
            continue;
        }
        let template = Arc::new(template);
        for &c in &cfg.connections {
            let label = format!("http {w} {target_name} c={c}");
            let p = Progress::start(&label, cfg.warmup + cfg.duration, cfg.quiet);
            let before = pid.and_then(cpu::process);
            let spec = LoadSpec {
                connections: c,
                ..cfg.load()
            };
            let res = http::run_load(target, template.clone(), spec, p.done.clone()).await;
            let after = pid.and_then(cpu::process);
            let mut m =
                load_measurement(&format!("http.{w}.{key}.c{c}"), name, target_name, c, &res);
            if let (Some(b0), Some(b1)) = (before, after) {
                let total = p.done.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
                m.extra.insert(
                    "server_cpu_us_per_req".into(),
                    (b1 - b0).as_secs_f64() * 1e6 / total,
                );
            }
            p.finish(&summary(&m));
            r.measurements.push(m);
        }
    }
}

async fn http_section(cfg: &Config, r: &mut Report) {
    bare_http(cfg, r).await;

    if let Some((auth_url, orders_url)) = &cfg.external {
        r.notes.push(format!(
            "external target {auth_url} / {orders_url}: its rate limit (10/minute in the old system) may cap the results; errors count 429s"
        ));
        match (
            Target::from_url(auth_url).await,
            Target::from_url(orders_url).await,
        ) {
            (Ok(a), Ok(o)) => http_api(cfg, r, "external", "external", &a, &o, None, None).await,
            (Err(e), _) | (_, Err(e)) => {
                skip_all_http(cfg, r, "external", "external", &format!("{e:#}"))
            }
        }
    }

    let Some(bin) = cfg.orderly_bin.clone() else {
        skip_all_http(
            cfg,
            r,
            "embedded",
            "orderly (embedded)",
            &skip_reason_no_bin(),
        );
        skip_all_http(
            cfg,
            r,
            "postgres",
            "orderly (PostgreSQL)",
            &skip_reason_no_bin(),
        );
        pg_inserts_skipped(cfg, r, &skip_reason_no_bin());
        return;
    };

    // Embedded: SQLite files, in-process cache, embedded broker and queue.
    match OrderlyProcess::spawn(SpawnOptions {
        bin: &bin,
        env: vec![],
        data_dir: None,
        args: vec![],
    }) {
        Ok(proc_) => {
            let targets = (
                Target::from_url(&proc_.auth_url).await,
                Target::from_url(&proc_.orders_url).await,
            );
            match targets {
                (Ok(a), Ok(o)) => {
                    http_api(
                        cfg,
                        r,
                        "embedded",
                        "orderly (embedded)",
                        &a,
                        &o,
                        Some(proc_.pid),
                        None,
                    )
                    .await;
                    let mut m = Measurement::new(
                        "footprint.rss.after_load",
                        "footprint",
                        "RSS after the HTTP runs",
                        "orderly (embedded)",
                        "MB",
                    );
                    if let Some(v) = cpu::rss_mb(proc_.pid, "VmRSS:") {
                        m.extra.insert("rss_mb".into(), v);
                    }
                    if let Some(v) = cpu::rss_mb(proc_.pid, "VmHWM:") {
                        m.extra.insert("peak_rss_mb".into(), v);
                    }
                    r.measurements.push(m);
                }
                (Err(e), _) | (_, Err(e)) => {
                    skip_all_http(cfg, r, "embedded", "orderly (embedded)", &format!("{e:#}"))
                }
            }
            proc_.stop(Duration::from_secs(10));
        }
        Err(e) => skip_all_http(
            cfg,
            r,
            "embedded",
            "orderly (embedded)",
            &format!("cannot start orderly: {e:#}"),
        ),
    }

    cached_get_without_access_log(cfg, r, &bin).await;

    // PostgreSQL: two fresh databases, dropped at the end.
    let Some(pg_url) = cfg.postgres_url.clone() else {
        let why = "PostgreSQL disabled (--no-postgres)";
        skip_all_http(cfg, r, "postgres", "orderly (PostgreSQL)", why);
        pg_inserts_skipped(cfg, r, why);
        return;
    };
    let mut dbs = match Databases::connect(&pg_url).await {
        Ok(d) => d,
        Err(e) => {
            let why = format!("no PostgreSQL at {pg_url}: {e:#}");
            skip_all_http(cfg, r, "postgres", "orderly (PostgreSQL)", &why);
            pg_inserts_skipped(cfg, r, &why);
            return;
        }
    };
    let outcome = async {
        let auth_db = dbs.create("auth").await?;
        let orders_db = dbs.create("orders").await?;
        let proc_ = OrderlyProcess::spawn(SpawnOptions {
            bin: &bin,
            env: vec![
                ("AUTH_DATABASE_URL".into(), auth_db),
                ("ORDERS_DATABASE_URL".into(), orders_db.clone()),
            ],
            data_dir: None,
            args: vec![],
        })?;
        let a = Target::from_url(&proc_.auth_url).await?;
        let o = Target::from_url(&proc_.orders_url).await?;
        http_api(
            cfg,
            r,
            "postgres",
            "orderly (PostgreSQL)",
            &a,
            &o,
            Some(proc_.pid),
            None,
        )
        .await;
        // Stopped first: its relay and worker must not share the CPU with pgbench.
        proc_.stop(Duration::from_secs(10));
        pg_inserts(cfg, r, &orders_db).await;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = outcome {
        let why = format!("{e:#}");
        if !r
            .measurements
            .iter()
            .any(|m| m.id.starts_with("http.get.postgres"))
        {
            skip_all_http(cfg, r, "postgres", "orderly (PostgreSQL)", &why);
        }
        if !r
            .measurements
            .iter()
            .any(|m| m.id.starts_with("pg.inserts"))
        {
            pg_inserts_skipped(cfg, r, &why);
        }
    }
    if let Err(e) = dbs.drop_all().await {
        r.notes
            .push(format!("could not drop the bench databases: {e:#}"));
    }
}

fn pg_inserts_skipped(cfg: &Config, r: &mut Report, why: &str) {
    for &c in &cfg.connections {
        r.measurements.push(
            Measurement::new(
                &format!("pg.inserts.c{c}"),
                "postgres",
                "create's 2 INSERTs in 1 transaction",
                "pgbench",
                "tps",
            )
            .with_connections(c)
            .skipped(why),
        );
    }
}

/// The create's two INSERTs at the same connection counts, on the same database.
async fn pg_inserts(cfg: &Config, r: &mut Report, orders_db: &str) {
    let use_pgbench = postgres::pgbench_available();
    let scratch = std::env::temp_dir();
    for &c in &cfg.connections {
        let tool = if use_pgbench { "pgbench" } else { "sqlx" };
        let label = format!("postgres 2 INSERTs ({tool}) c={c}");
        let p = Progress::start(&label, cfg.warmup + cfg.duration, cfg.quiet);
        let res = if use_pgbench {
            postgres::pgbench(orders_db, c, cfg.duration, &scratch).await
        } else {
            postgres::sqlx_inserts(orders_db, c, cfg.warmup, cfg.duration).await
        };
        let mut m = Measurement::new(
            &format!("pg.inserts.c{c}"),
            "postgres",
            "create's 2 INSERTs in 1 transaction",
            tool,
            "tps",
        )
        .with_connections(c);
        match res {
            Ok(x) => {
                m.throughput = Some(x.tps);
                m.count = x.count;
                m.errors = x.errors;
                m.latency = x.latency;
                m.seconds = cfg.duration.as_secs_f64();
                if let Some(avg) = x.latency_avg_ms {
                    m.extra.insert("latency_avg_ms".into(), avg);
                }
            }
            Err(e) => m = m.failed(format!("{e:#}")),
        }
        p.finish(&summary(&m));
        r.measurements.push(m);
    }
}

// ---------------------------------------------------------------- bus

fn bus_spec(cfg: &Config, window: usize) -> BusSpec {
    BusSpec {
        warmup: cfg.warmup,
        duration: if window == 1 {
            cfg.duration / 2
        } else {
            cfg.duration
        },
        window,
        payload: 128,
    }
}

/// Window of the throughput runs (messages in flight).
const BUS_WINDOW: usize = 1024;

fn bus_measurement(
    id: &str,
    target: &str,
    window: usize,
    res: Result<bus::BusResult>,
) -> Measurement {
    let name = if window == 1 {
        "publish→deliver latency (1 in flight, 128 B)".to_string()
    } else {
        format!("publish→deliver throughput ({window} in flight, 128 B)")
    };
    let mut m = Measurement::new(id, "bus", &name, target, "msgs/s");
    match res {
        Ok(x) => {
            m.throughput = Some(x.count as f64 / x.seconds);
            m.latency = Latency::from_micros(&x.latency_us);
            m.count = x.count;
            m.errors = x.errors;
            m.seconds = x.seconds;
            if x.count == 0 {
                m = m.failed("no message delivered in the measured window");
            }
        }
        Err(e) => m = m.failed(format!("{e:#}")),
    }
    m
}

/// Runs the throughput and the latency run of one target.
async fn bus_pair<F, Fut>(cfg: &Config, r: &mut Report, key: &str, target: &str, run: F)
where
    F: Fn(BusSpec, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = Result<bus::BusResult>>,
{
    for (kind, window) in [("throughput", BUS_WINDOW), ("latency", 1)] {
        let spec = bus_spec(cfg, window);
        let label = format!("bus {kind} {target}");
        let p = Progress::start(&label, spec.warmup + spec.duration, cfg.quiet);
        let res = tokio::time::timeout(
            spec.warmup + spec.duration + Duration::from_secs(90),
            run(spec, p.done.clone()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        let m = bus_measurement(&format!("bus.{key}.{kind}"), target, window, res);
        p.finish(&summary(&m));
        r.measurements.push(m);
    }
}

fn bus_skip(r: &mut Report, key: &str, target: &str, why: &str) {
    for (kind, window) in [("throughput", BUS_WINDOW), ("latency", 1)] {
        r.measurements.push(
            bus_measurement(
                &format!("bus.{key}.{kind}"),
                target,
                window,
                Ok(empty_bus()),
            )
            .skipped(why),
        );
    }
}

fn empty_bus() -> bus::BusResult {
    bus::BusResult {
        count: 0,
        errors: 0,
        latency_us: crate::report::micros_histogram(),
        seconds: 1.0,
    }
}

/// The embedded broker in this process, through the `Bus` port.
pub async fn bus_inprocess(cfg: &Config, r: &mut Report) {
    match EmbeddedBroker::open(BrokerConfig::default()).await {
        Ok(broker) => {
            let bus: Arc<dyn Bus> = Arc::new(broker);
            bus_pair(
                cfg,
                r,
                "embedded",
                "embedded broker (in process)",
                |spec, done| bus::run_bus(bus.clone(), spec, done),
            )
            .await;
            bus.close().await;
        }
        Err(e) => bus_skip(
            r,
            "embedded",
            "embedded broker (in process)",
            &format!("{e}"),
        ),
    }
}

async fn bus_section(cfg: &Config, r: &mut Report) {
    bus_pair(
        cfg,
        r,
        "harness",
        "harness only (tokio channel, no broker)",
        bus::run_channel,
    )
    .await;
    bus_inprocess(cfg, r).await;

    // The real nats-server with the async-nats client.
    let nats_url = cfg.nats_url.clone();
    match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats_url.clone())
        .await
    {
        Ok(c) => {
            drop(c);
            bus_pair(cfg, r, "nats", "nats-server", |spec, done| {
                let url = nats_url.clone();
                async move { bus::run_nats(&url, spec, done).await }
            })
            .await;
        }
        Err(e) => bus_skip(
            r,
            "nats",
            "nats-server",
            &format!("no nats-server at {nats_url}: {e}"),
        ),
    }

    // The embedded broker over its NATS listener (`orderly broker`), same client.
    embedded_tcp(cfg, r).await;

    // Kafka (tansu or any compatible broker) through our adapter.
    match &cfg.kafka {
        None => bus_skip(
            r,
            "kafka",
            "Kafka adapter",
            "no Kafka broker given (ORDERLY_BENCH_KAFKA=host:port; scripts/bench starts tansu)",
        ),
        Some(addr) => {
            let mut kc = orderly_kafka::KafkaConfig::new(addr.clone());
            kc.topic_prefix = format!("bench-{}-", uuid::Uuid::new_v4().simple());
            kc.topic_partitions = 1;
            match orderly_kafka::KafkaBus::new(kc) {
                Ok(kb) => {
                    let bus: Arc<dyn Bus> = Arc::new(kb);
                    let target = format!("Kafka adapter → {addr}");
                    bus_pair(cfg, r, "kafka", &target, |spec, done| {
                        bus::run_bus(bus.clone(), spec, done)
                    })
                    .await;
                    bus.close().await;
                }
                Err(e) => bus_skip(r, "kafka", "Kafka adapter", &format!("{e}")),
            }
        }
    }
}

async fn embedded_tcp(cfg: &Config, r: &mut Report) {
    let target = "embedded broker (NATS listener)";
    let Some(bin) = cfg.orderly_bin.clone() else {
        bus_skip(r, "embedded_tcp", target, &skip_reason_no_bin());
        return;
    };
    match crate::broker::start(&bin).await {
        Ok(Some(broker)) => {
            let url = broker.url.clone();
            bus_pair(cfg, r, "embedded_tcp", target, |spec, done| {
                let url = url.clone();
                async move { bus::run_nats(&url, spec, done).await }
            })
            .await;
            broker.stop();
        }
        Ok(None) => bus_skip(
            r,
            "embedded_tcp",
            target,
            "this orderly build has no `orderly broker` command (NATS listener not landed)",
        ),
        Err(e) => bus_skip(r, "embedded_tcp", target, &format!("{e:#}")),
    }
}

// ---------------------------------------------------------------- queue

fn queue_measurement(id: &str, target: &str, res: Result<queue::QueueResult>) -> Measurement {
    let mut m = Measurement::new(
        id,
        "queue",
        "enqueue → reserve → ack (no-op)",
        target,
        "jobs/s",
    );
    match res {
        Ok(x) => {
            m.throughput = Some(x.count as f64 / x.seconds);
            m.latency = Latency::from_micros(&x.latency_us);
            m.count = x.count;
            m.errors = x.errors;
            m.seconds = x.seconds;
            if x.count == 0 {
                m = m.failed("no job completed in the measured window");
            }
        }
        Err(e) => m = m.failed(format!("{e:#}")),
    }
    m
}

pub async fn queue_embedded(cfg: &Config, r: &mut Report) {
    let target = "embedded queue (file log)";
    let run = async {
        let dir = tempfile::tempdir()?;
        let broker = EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..BrokerConfig::default()
        })
        .await?;
        let q: Arc<dyn JobQueue> =
            Arc::new(EmbeddedQueue::open(&broker, RetryPolicy::default()).await?);
        let p = Progress::start(
            format!("queue {target}"),
            cfg.warmup + cfg.duration,
            cfg.quiet,
        );
        let res = queue::run(
            q,
            "bench",
            QueueSpec::new(cfg.warmup, cfg.duration),
            p.done.clone(),
        )
        .await;
        broker.close().await;
        Ok::<_, anyhow::Error>((p, res))
    };
    let m = match run.await {
        Ok((p, res)) => {
            let m = queue_measurement("queue.embedded", target, res);
            p.finish(&summary(&m));
            m
        }
        Err(e) => queue_measurement("queue.embedded", target, Err(e)),
    };
    r.measurements.push(m);
}

async fn queue_section(cfg: &Config, r: &mut Report) {
    queue_embedded(cfg, r).await;
    let target = "Redis queue";
    let Some(url) = cfg.redis_url.clone() else {
        r.measurements.push(
            queue_measurement("queue.redis", target, Err(anyhow::anyhow!("")))
                .skipped("no Redis URL (--redis-url)"),
        );
        return;
    };
    let mut qc = orderly_redis::RedisQueueConfig::new(url.clone());
    qc.prefix = format!("orderly-bench-{}", uuid::Uuid::new_v4().simple());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        orderly_redis::RedisQueue::connect(qc),
    )
    .await;
    match connected {
        Ok(Ok(rq)) => {
            let p = Progress::start(
                format!("queue {target}"),
                cfg.warmup + cfg.duration,
                cfg.quiet,
            );
            let q: Arc<dyn JobQueue> = Arc::new(rq.clone());
            let res = queue::run(
                q,
                "bench",
                QueueSpec::new(cfg.warmup, cfg.duration),
                p.done.clone(),
            )
            .await;
            let m = queue_measurement("queue.redis", target, res);
            p.finish(&summary(&m));
            r.measurements.push(m);
            if let Err(e) = rq.destroy("bench").await {
                r.notes
                    .push(format!("could not delete the bench's Redis keys: {e}"));
            }
        }
        Ok(Err(e)) => r.measurements.push(
            queue_measurement("queue.redis", target, Err(anyhow::anyhow!("")))
                .skipped(format!("no Redis at {url}: {e}")),
        ),
        Err(_) => r.measurements.push(
            queue_measurement("queue.redis", target, Err(anyhow::anyhow!("")))
                .skipped(format!("no answer from Redis at {url} within 5 s")),
        ),
    }
}

// ---------------------------------------------------------------- order → PAID

async fn paid_section(cfg: &Config, r: &mut Report) {
    let delay_ms = cfg.payment_delay.as_millis() as u64;
    let mut m = Measurement::new(
        "paid.embedded",
        "paid",
        &format!("order → PAID beyond the {delay_ms} ms payment"),
        "orderly (embedded)",
        "orders/s",
    );
    let Some(bin) = cfg.orderly_bin.clone() else {
        r.measurements.push(m.skipped(skip_reason_no_bin()));
        return;
    };
    let proc_ = match OrderlyProcess::spawn(SpawnOptions {
        bin: &bin,
        env: vec![("WORKER_PAYMENT_DELAY_MS".into(), delay_ms.to_string())],
        data_dir: None,
        args: vec![],
    }) {
        Ok(p) => p,
        Err(e) => {
            r.measurements
                .push(m.failed(format!("cannot start orderly: {e:#}")));
            return;
        }
    };
    let run = async {
        let auth = Target::from_url(&proc_.auth_url).await?;
        let orders = Target::from_url(&proc_.orders_url).await?;
        let user = api::new_user(&auth).await?;
        Ok::<_, anyhow::Error>((orders, user))
    };
    let (orders, user) = match run.await {
        Ok(x) => x,
        Err(e) => {
            r.measurements.push(m.failed(format!("setup: {e:#}")));
            proc_.stop(Duration::from_secs(10));
            return;
        }
    };
    // As many clients as the worker runs jobs at once (WORKER_CONCURRENCY, 4):
    // each waits for its order to be paid, so no job queues behind another.
    let clients = 4;
    let p = Progress::start("order → PAID", cfg.warmup + cfg.duration, cfg.quiet);
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (orders, token, done) = (orders.clone(), user.token.clone(), p.done.clone());
        let delay = cfg.payment_delay;
        tasks.spawn(async move {
            let mut creator = Client::new(orders.clone());
            let mut poller = Client::new(orders);
            let mut hist = crate::report::micros_histogram();
            let (mut count, mut errors) = (0u64, 0u64);
            while Instant::now() < end {
                let id = match api::create_order(&mut creator, &token).await {
                    Ok(id) => id,
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let created = Instant::now();
                let give_up = created + Duration::from_secs(30);
                let paid = loop {
                    match api::order_status(&mut poller, &token, &id).await {
                        Ok(s) if s == "PAID" => break Some(Instant::now()),
                        _ if Instant::now() > give_up => break None,
                        _ => tokio::time::sleep(Duration::from_millis(2)).await,
                    }
                };
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match paid {
                    Some(t) if created >= measure_from && t <= end => {
                        count += 1;
                        let beyond = (t - created).saturating_sub(delay);
                        let _ = hist.record((beyond.as_micros() as u64).max(1));
                    }
                    Some(_) => {}
                    None => errors += 1,
                }
            }
            (count, errors, hist)
        });
    }
    let mut hist = crate::report::micros_histogram();
    while let Some(j) = tasks.join_next().await {
        if let Ok((c, e, h)) = j {
            m.count += c;
            m.errors += e;
            let _ = hist.add(&h);
        }
    }
    proc_.stop(Duration::from_secs(10));
    m.seconds = cfg.duration.as_secs_f64();
    m.throughput = Some(m.count as f64 / m.seconds);
    m.latency = Latency::from_micros(&hist);
    m.extra.insert("payment_delay_ms".into(), delay_ms as f64);
    m.extra.insert("poll_interval_ms".into(), 2.0);
    if m.count == 0 {
        m = m.failed("no order reached PAID in the measured window");
    }
    p.finish(&summary(&m));
    r.measurements.push(m);
}

// ---------------------------------------------------------------- footprint

async fn footprint_section(cfg: &Config, r: &mut Report) {
    let ids = [
        (
            "footprint.start.cold",
            "start → /health 200, fresh data dir (key generation)",
        ),
        (
            "footprint.start.warm",
            "start → /health 200, existing data dir",
        ),
        ("footprint.rss.idle", "idle RSS after start + 3 s"),
    ];
    let Some(bin) = cfg.orderly_bin.clone() else {
        for (id, name) in ids {
            r.measurements.push(
                Measurement::new(id, "footprint", name, "orderly (embedded)", "ms")
                    .skipped(skip_reason_no_bin()),
            );
        }
        return;
    };
    let p = Progress::start("footprint", Duration::from_secs(5), cfg.quiet);
    let mut data_dir = None;
    for (i, (id, name)) in ids.iter().take(2).enumerate() {
        let mut m = Measurement::new(id, "footprint", name, "orderly (embedded)", "ms");
        let spawned = OrderlyProcess::spawn(SpawnOptions {
            bin: &bin,
            env: vec![],
            data_dir: data_dir.take(),
            args: vec![],
        });
        let proc_ = match spawned {
            Ok(p) => p,
            Err(e) => {
                r.measurements.push(m.failed(format!("{e:#}")));
                continue;
            }
        };
        let healthy = async {
            let a = Target::from_url(&proc_.auth_url).await?;
            let o = Target::from_url(&proc_.orders_url).await?;
            let (x, y) = tokio::join!(
                api::wait_healthy(&a, Duration::from_secs(30)),
                api::wait_healthy(&o, Duration::from_secs(30))
            );
            x?;
            y?;
            Ok::<_, anyhow::Error>(proc_.spawned_at.elapsed())
        }
        .await;
        match healthy {
            Ok(t) => {
                m.extra
                    .insert("listen_ms".into(), proc_.time_to_listen.as_secs_f64() * 1e3);
                m.extra.insert("healthy_ms".into(), t.as_secs_f64() * 1e3);
            }
            Err(e) => m = m.failed(format!("{e:#}")),
        }
        r.measurements.push(m);
        if i == 1 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut rss =
                Measurement::new(ids[2].0, "footprint", ids[2].1, "orderly (embedded)", "MB");
            match cpu::rss_mb(proc_.pid, "VmRSS:") {
                Some(v) => {
                    rss.extra.insert("rss_mb".into(), v);
                }
                None => rss = rss.failed("cannot read /proc/<pid>/status"),
            }
            r.measurements.push(rss);
        }
        data_dir = proc_.stop(Duration::from_secs(10));
    }
    p.finish("done");
}

// ---------------------------------------------------------------- checks

fn checks(cfg: &Config, r: &mut Report) {
    use Field::{Extra, P99, Throughput};
    for &c in &cfg.connections {
        for (key, label) in [("embedded", "embedded"), ("postgres", "PostgreSQL")] {
            r.ratio(
                &format!("cached GET / bare axum ({label}, c={c})"),
                &format!("http.get.{key}.c{c}"),
                &format!("http.bare.c{c}"),
                Throughput,
                Some((Goal::AtLeast, 0.5)),
            );
        }
        r.ratio(
            &format!("cached GET, access log off / bare axum (embedded, c={c})"),
            &format!("http.get.quiet.c{c}"),
            &format!("http.bare.c{c}"),
            Throughput,
            None,
        );
        r.ratio(
            &format!("create / bare axum (PostgreSQL, c={c})"),
            &format!("http.create.postgres.c{c}"),
            &format!("http.bare.c{c}"),
            Throughput,
            Some((Goal::AtLeast, 0.25)),
        );
        r.ratio(
            &format!("create (PostgreSQL) / its 2 INSERTs in pgbench (c={c})"),
            &format!("http.create.postgres.c{c}"),
            &format!("pg.inserts.c{c}"),
            Throughput,
            Some((Goal::AtLeast, 0.7)),
        );
        r.ratio(
            &format!("create / bare axum (embedded, c={c})"),
            &format!("http.create.embedded.c{c}"),
            &format!("http.bare.c{c}"),
            Throughput,
            None,
        );
        r.ratio(
            &format!("list / bare axum (embedded, c={c})"),
            &format!("http.list.embedded.c{c}"),
            &format!("http.bare.c{c}"),
            Throughput,
            None,
        );
        if cfg.external.is_some() {
            for w in ["get", "create", "list", "token"] {
                r.ratio(
                    &format!("orderly (embedded) / external: {w} (c={c})"),
                    &format!("http.{w}.embedded.c{c}"),
                    &format!("http.{w}.external.c{c}"),
                    Throughput,
                    None,
                );
            }
        }
    }
    r.ratio(
        "embedded broker over TCP / nats-server (msgs/s)",
        "bus.embedded_tcp.throughput",
        "bus.nats.throughput",
        Throughput,
        Some((Goal::AtLeast, 0.8)),
    );
    r.ratio(
        "embedded broker over TCP / nats-server (latency p99)",
        "bus.embedded_tcp.latency",
        "bus.nats.latency",
        P99,
        Some((Goal::AtMost, 1.0)),
    );
    r.ratio(
        "embedded broker in process / nats-server (msgs/s)",
        "bus.embedded.throughput",
        "bus.nats.throughput",
        Throughput,
        Some((Goal::AtLeast, 10.0)),
    );
    r.ratio(
        "embedded broker in process / harness ceiling (msgs/s)",
        "bus.embedded.throughput",
        "bus.harness.throughput",
        Throughput,
        None,
    );
    r.ratio(
        "Kafka adapter / nats-server (msgs/s)",
        "bus.kafka.throughput",
        "bus.nats.throughput",
        Throughput,
        None,
    );
    r.ratio(
        "embedded queue / Redis queue (jobs/s)",
        "queue.embedded",
        "queue.redis",
        Throughput,
        None,
    );
    r.absolute(
        "Redis job queue, no-op jobs",
        "queue.redis",
        Throughput,
        "jobs/s",
        Goal::AtLeast,
        10_000.0,
    );
    r.absolute(
        "order → PAID beyond the payment, p99",
        "paid.embedded",
        P99,
        "ms",
        Goal::AtMost,
        50.0,
    );
    r.absolute(
        "`orderly all` idle RSS",
        "footprint.rss.idle",
        Extra("rss_mb"),
        "MB",
        Goal::AtMost,
        40.0,
    );
    r.absolute(
        "start → healthy (warm disk)",
        "footprint.start.warm",
        Extra("healthy_ms"),
        "ms",
        Goal::AtMost,
        300.0,
    );
}
