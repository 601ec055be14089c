//! The bare axum handler: the machine's HTTP ceiling for this load generator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::load_measurement;
use crate::bare::{self, BareServer};
use crate::cpu;
use crate::http::{self, LoadSpec, RequestTemplate, Target};
use crate::ids::MeasurementId;
use crate::progress::Progress;
use crate::report::{Measurement, Report};
use crate::sections::{Config, summary};

const NAME: &str = "GET (fixed JSON)";
const TARGET: &str = "bare axum";

/// The bare axum ceiling at each connection count.
pub async fn bare_http(cfg: &Config, r: &mut Report) {
    let server = match BareServer::start(2) {
        Ok(s) => s,
        Err(e) => {
            for &c in &cfg.connections {
                r.measurements.push(
                    Measurement::new(MeasurementId::HttpBare { connections: c }, NAME, TARGET)
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
        let p = Progress::start(&label, cfg.run_time(), cfg.quiet);
        let before = cpu::own_threads_split(bare::THREAD_NAME);
        let spec = LoadSpec {
            connections: c,
            ..cfg.load()
        };
        let res = http::run_load(&target, template.clone(), spec, p.done.clone()).await;
        let after = cpu::own_threads_split(bare::THREAD_NAME);
        let total = p.done.load(Ordering::Relaxed).max(1) as f64;
        let id = MeasurementId::HttpBare { connections: c };
        let mut m = load_measurement(id, NAME, TARGET, c, &res);
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
