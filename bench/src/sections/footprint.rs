//! The footprint section: start to healthy on a fresh and on an existing data
//! directory, and the idle RSS.

use std::time::Duration;

use crate::api;
use crate::cpu;
use crate::ids::{ApiTarget, Footprint, MeasurementId};
use crate::progress::Progress;
use crate::report::{Measurement, Report};
use crate::sections::{Config, api_targets, skip_reason_no_bin};
use crate::spawn::{OrderlyProcess, SpawnOptions};

/// The figures, in the order they are measured, with their names.
const RUNS: [(Footprint, &str); 3] = [
    (
        Footprint::StartCold,
        "start → /health 200, fresh data dir (key generation)",
    ),
    (
        Footprint::StartWarm,
        "start → /health 200, existing data dir",
    ),
    (Footprint::RssIdle, "idle RSS after start + 3 s"),
];

fn new(which: Footprint, name: &str) -> Measurement {
    Measurement::new(
        MeasurementId::Footprint(which),
        name,
        ApiTarget::Embedded.name(),
    )
}

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    let Some(bin) = cfg.orderly_bin.clone() else {
        for (which, name) in RUNS {
            r.measurements
                .push(new(which, name).skipped(skip_reason_no_bin()));
        }
        return;
    };
    let p = Progress::start("footprint", Duration::from_secs(5), cfg.quiet);
    // The cold start makes the data directory the warm start reuses.
    let mut data_dir = None;
    for (which, name) in [RUNS[0], RUNS[1]] {
        let mut m = new(which, name);
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
            let (a, o) = api_targets(&proc_).await?;
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
        if which == Footprint::StartWarm {
            r.measurements.push(idle_rss(proc_.pid).await);
        }
        data_dir = proc_.stop(Duration::from_secs(10));
    }
    p.finish("done");
}

/// The RSS of `pid` once it has been idle for 3 s.
async fn idle_rss(pid: u32) -> Measurement {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (which, name) = RUNS[2];
    let mut m = new(which, name);
    match cpu::rss_mb(pid, "VmRSS:") {
        Some(v) => {
            m.extra.insert("rss_mb".into(), v);
        }
        None => m = m.failed("cannot read /proc/<pid>/status"),
    }
    m
}
