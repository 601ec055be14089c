//! The HTTP section: the bare axum ceiling, then the API's workloads against
//! another implementation (if given), orderly embedded, embedded with the
//! access log off, and orderly on PostgreSQL beside pgbench.

mod api;
mod bare;
mod pg_inserts;

use std::path::Path;
use std::time::Duration;

pub use bare::bare_http;

use self::api::ApiRun;
use crate::cpu;
use crate::http::{LoadResult, Target};
use crate::ids::{ApiTarget, Footprint, MeasurementId, Workload};
use crate::postgres::Databases;
use crate::report::{Latency, Measurement, Report};
use crate::sections::{Config, api_targets, skip_reason_no_bin};
use crate::spawn::{OrderlyProcess, SpawnOptions};

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    bare_http(cfg, r).await;
    if let Some((auth_url, orders_url)) = &cfg.external {
        external(cfg, r, auth_url, orders_url).await;
    }
    let Some(bin) = cfg.orderly_bin.clone() else {
        let why = skip_reason_no_bin();
        api::skip(cfg, r, ApiTarget::Embedded, &why, None);
        api::skip(cfg, r, ApiTarget::Postgres, &why, None);
        pg_inserts::skipped(cfg, r, &why);
        return;
    };
    // Embedded: SQLite files, in-process cache, embedded broker and queue.
    let embedded = Started {
        target: ApiTarget::Embedded,
        env: vec![],
        only: None,
        rss_after_load: true,
    };
    against_started(cfg, r, &bin, embedded).await;
    // The cached GET again with the access log line filtered out: what the
    // line costs, side by side.
    let quiet = Started {
        target: ApiTarget::Quiet,
        env: vec![("RUST_LOG".into(), "info,access=off".into())],
        only: Some(&[Workload::Get]),
        rss_after_load: false,
    };
    against_started(cfg, r, &bin, quiet).await;
    postgres(cfg, r, &bin).await;
}

/// A measurement of one load run; failed when no request succeeded.
fn load_measurement(
    id: MeasurementId,
    name: &str,
    target: &str,
    c: usize,
    res: &LoadResult,
) -> Measurement {
    let mut m = Measurement::new(id, name, target).with_connections(c);
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

/// Another implementation of the API, by its base URLs.
async fn external(cfg: &Config, r: &mut Report, auth_url: &str, orders_url: &str) {
    r.notes.push(format!(
        "external target {auth_url} / {orders_url}: its rate limit (10/minute in the old system) may cap the results; errors count 429s"
    ));
    match (
        Target::from_url(auth_url).await,
        Target::from_url(orders_url).await,
    ) {
        (Ok(auth), Ok(orders)) => {
            let run = ApiRun {
                target: ApiTarget::External,
                auth: &auth,
                orders: &orders,
                pid: None,
                only: None,
            };
            run.run(cfg, r).await;
        }
        (Err(e), _) | (_, Err(e)) => {
            api::skip(cfg, r, ApiTarget::External, &format!("{e:#}"), None);
        }
    }
}

/// An `orderly all` the section starts, and what to run against it.
struct Started<'a> {
    target: ApiTarget,
    /// Added to the process's environment.
    env: Vec<(String, String)>,
    /// Only these workloads; `None`: all of them.
    only: Option<&'a [Workload]>,
    /// Also record the process's RSS once the workloads have run.
    rss_after_load: bool,
}

/// Starts `orderly all` on a fresh data directory, runs the workloads
/// against it and stops it.
async fn against_started(cfg: &Config, r: &mut Report, bin: &Path, run: Started<'_>) {
    let proc_ = match OrderlyProcess::spawn(SpawnOptions {
        bin,
        env: run.env,
        data_dir: None,
        args: vec![],
    }) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("cannot start orderly: {e:#}");
            return api::skip(cfg, r, run.target, &why, run.only);
        }
    };
    match api_targets(&proc_).await {
        Ok((auth, orders)) => {
            let load = ApiRun {
                target: run.target,
                auth: &auth,
                orders: &orders,
                pid: Some(proc_.pid),
                only: run.only,
            };
            load.run(cfg, r).await;
            if run.rss_after_load {
                r.measurements.push(rss_after_load(proc_.pid));
            }
        }
        Err(e) => api::skip(cfg, r, run.target, &format!("{e:#}"), run.only),
    }
    proc_.stop(Duration::from_secs(10));
}

fn rss_after_load(pid: u32) -> Measurement {
    let mut m = Measurement::new(
        MeasurementId::Footprint(Footprint::RssAfterLoad),
        "RSS after the HTTP runs",
        ApiTarget::Embedded.name(),
    );
    if let Some(v) = cpu::rss_mb(pid, "VmRSS:") {
        m.extra.insert("rss_mb".into(), v);
    }
    if let Some(v) = cpu::rss_mb(pid, "VmHWM:") {
        m.extra.insert("peak_rss_mb".into(), v);
    }
    m
}

/// PostgreSQL: two fresh databases, dropped at the end; pgbench of the
/// create's INSERTs on the orders database once orderly has stopped.
async fn postgres(cfg: &Config, r: &mut Report, bin: &Path) {
    let target = ApiTarget::Postgres;
    let skip_both = |r: &mut Report, why: &str| {
        api::skip(cfg, r, target, why, None);
        pg_inserts::skipped(cfg, r, why);
    };
    let Some(pg_url) = cfg.postgres_url.clone() else {
        return skip_both(r, "PostgreSQL disabled (--no-postgres)");
    };
    let mut dbs = match Databases::connect(&pg_url).await {
        Ok(d) => d,
        Err(e) => return skip_both(r, &format!("no PostgreSQL at {pg_url}: {e:#}")),
    };
    let outcome = async {
        let auth_db = dbs.create("auth").await?;
        let orders_db = dbs.create("orders").await?;
        let proc_ = OrderlyProcess::spawn(SpawnOptions {
            bin,
            env: vec![
                ("AUTH_DATABASE_URL".into(), auth_db),
                ("ORDERS_DATABASE_URL".into(), orders_db.clone()),
            ],
            data_dir: None,
            args: vec![],
        })?;
        let (auth, orders) = api_targets(&proc_).await?;
        let run = ApiRun {
            target,
            auth: &auth,
            orders: &orders,
            pid: Some(proc_.pid),
            only: None,
        };
        run.run(cfg, r).await;
        // Stopped first: its relay and worker must not share the CPU with pgbench.
        proc_.stop(Duration::from_secs(10));
        pg_inserts::run(cfg, r, &orders_db).await;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if let Err(e) = outcome {
        let why = format!("{e:#}");
        let any =
            |r: &Report, f: fn(&MeasurementId) -> bool| r.measurements.iter().any(|m| f(&m.id));
        if !any(r, |id| {
            matches!(
                id,
                MeasurementId::Http {
                    workload: Workload::Get,
                    target: ApiTarget::Postgres,
                    ..
                }
            )
        }) {
            api::skip(cfg, r, target, &why, None);
        }
        if !any(r, |id| matches!(id, MeasurementId::PgInserts { .. })) {
            pg_inserts::skipped(cfg, r, &why);
        }
    }
    if let Err(e) = dbs.drop_all().await {
        r.notes
            .push(format!("could not drop the bench databases: {e:#}"));
    }
}
