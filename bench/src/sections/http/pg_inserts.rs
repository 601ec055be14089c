//! The create's two INSERTs without orderly (pgbench, or sqlx without it): what
//! PostgreSQL itself allows the create on this machine.

use crate::ids::MeasurementId;
use crate::postgres;
use crate::progress::Progress;
use crate::report::{Measurement, Report};
use crate::sections::{Config, summary};

const NAME: &str = "create's 2 INSERTs in 1 transaction";

/// Skipped rows at each connection count.
pub(super) fn skipped(cfg: &Config, r: &mut Report, why: &str) {
    for &c in &cfg.connections {
        r.measurements.push(
            Measurement::new(MeasurementId::PgInserts { connections: c }, NAME, "pgbench")
                .with_connections(c)
                .skipped(why),
        );
    }
}

/// The create's two INSERTs at the same connection counts, on the same database.
pub(super) async fn run(cfg: &Config, r: &mut Report, orders_db: &str) {
    let use_pgbench = postgres::pgbench_available();
    let scratch = std::env::temp_dir();
    for &c in &cfg.connections {
        let tool = if use_pgbench { "pgbench" } else { "sqlx" };
        let label = format!("postgres 2 INSERTs ({tool}) c={c}");
        let p = Progress::start(&label, cfg.run_time(), cfg.quiet);
        let res = if use_pgbench {
            postgres::pgbench(orders_db, c, cfg.duration, &scratch).await
        } else {
            postgres::sqlx_inserts(orders_db, c, cfg.warmup, cfg.duration).await
        };
        let mut m = Measurement::new(MeasurementId::PgInserts { connections: c }, NAME, tool)
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
