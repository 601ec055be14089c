//! A short run of the sections that need nothing outside this process: the
//! in-process bus, the embedded job queue and the bare-axum HTTP ceiling.
//! Checks the report's shape and sanity, never its timings.

use std::collections::BTreeSet;
use std::time::Duration;

use orderly_bench::ids::{BusRun, BusTarget, MeasurementId, QueueTarget};
use orderly_bench::report::{Outcome, Report};
use orderly_bench::sections::{self, Config, Section};

fn config() -> Config {
    Config {
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(300),
        connections: vec![4],
        sections: BTreeSet::new(),
        orderly_bin: None,
        external: None,
        postgres_url: None,
        nats_url: "nats://127.0.0.1:1".into(),
        redis_url: None,
        kafka: None,
        payment_delay: Duration::from_millis(100),
        pipeline_duration: Duration::from_secs(1),
        pipeline_setups: Vec::new(),
        soak: None,
        soak_setup: orderly_bench::ids::PipelineSetup::Embedded,
        soak_warmup: Duration::ZERO,
        quiet: true,
    }
}

fn sane(report: &Report, id: MeasurementId) {
    let m = report
        .get(id)
        .unwrap_or_else(|| panic!("{id} missing from {}", report.to_json()));
    assert_eq!(m.outcome, Outcome::Ok, "{id}: {m:?}");
    assert!(m.count > 0, "{id} counted nothing: {m:?}");
    let t = m.throughput.expect("a throughput");
    assert!(t.is_finite() && t > 0.0, "{id}: {t}");
    let l = m.latency.expect("latencies");
    assert!(
        l.p50_ms > 0.0 && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
        "{id}: {l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_sections_make_a_sane_report() {
    let cfg = config();
    let mut report = Report::default();
    sections::bare_http(&cfg, &mut report).await;
    sections::bus_inprocess(&cfg, &mut report).await;
    sections::queue_embedded(&cfg, &mut report).await;

    let bare = MeasurementId::HttpBare { connections: 4 };
    sane(&report, bare);
    for run in BusRun::ALL {
        let target = BusTarget::Embedded;
        sane(&report, MeasurementId::Bus { target, run });
    }
    sane(&report, MeasurementId::Queue(QueueTarget::Embedded));
    let bare = report.get(bare).expect("bare run");
    assert_eq!(bare.connections, Some(4));
    assert_eq!(bare.errors, 0, "{bare:?}");

    let json: serde_json::Value =
        serde_json::from_str(&report.to_json()).expect("the report is valid JSON");
    let first = &json["measurements"][0];
    for field in [
        "id",
        "section",
        "name",
        "target",
        "outcome",
        "throughput",
        "latency",
        "unit",
    ] {
        assert!(!first[field].is_null(), "{field} missing in {first}");
    }
    assert_eq!(first["id"], "http.bare.c4");
    assert_eq!(first["outcome"]["state"], "ok");
    assert!(
        report
            .to_markdown()
            .contains("| http | GET (fixed JSON) | bare axum | 4 |")
    );
    assert!(report.to_svg().starts_with("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_is_skipped_with_its_reason() {
    let mut cfg = config();
    cfg.sections = [Section::Paid, Section::Footprint].into_iter().collect();
    let report = sections::run_all(&cfg).await;
    let paid = report.get(MeasurementId::Paid).expect("paid run listed");
    assert!(
        matches!(&paid.outcome, Outcome::Skipped { reason } if reason.contains("orderly binary")),
        "{paid:?}"
    );
    let check = report
        .checks
        .iter()
        .find(|c| c.name.contains("PAID"))
        .expect("the PAID check");
    assert_eq!(check.value, None);
    assert_eq!(check.met, None);
    assert!(report.to_markdown().contains("skipped: no orderly binary"));
}
