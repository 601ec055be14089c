//! The ratios and absolute targets computed from the measurements (docs/performance.md;
//! the targets come from the design).

use crate::ids::{
    ApiTarget, BusRun, BusTarget, ConsoleDb, DurableTarget, Footprint, MeasurementId, QueueTarget,
    Workload,
};
use crate::report::{Field, Goal, Report};
use crate::sections::Config;

fn http(workload: Workload, target: ApiTarget, connections: usize) -> MeasurementId {
    MeasurementId::Http {
        workload,
        target,
        connections,
    }
}

fn bus(target: BusTarget, run: BusRun) -> MeasurementId {
    MeasurementId::Bus { target, run }
}

/// Adds every check to `r`.
pub(super) fn add(cfg: &Config, r: &mut Report) {
    for &c in &cfg.connections {
        http_checks(cfg, r, c);
    }
    bus_checks(r);
    super::pipeline::checks(cfg, r);
    use Field::{Extra, P99, Throughput};
    r.ratio(
        "embedded queue / Redis queue (jobs/s)",
        MeasurementId::Queue(QueueTarget::Embedded),
        MeasurementId::Queue(QueueTarget::Redis),
        Throughput,
        None,
    );
    r.absolute(
        "Redis job queue, no-op jobs",
        MeasurementId::Queue(QueueTarget::Redis),
        Throughput,
        "jobs/s",
        Goal::AtLeast,
        10_000.0,
    );
    r.absolute(
        "order → PAID beyond the payment, p99",
        MeasurementId::Paid,
        P99,
        "ms",
        Goal::AtMost,
        50.0,
    );
    r.absolute(
        "`orderly all` idle RSS",
        MeasurementId::Footprint(Footprint::RssIdle),
        Extra("rss_mb"),
        "MB",
        Goal::AtMost,
        40.0,
    );
    r.absolute(
        "start → healthy (warm disk)",
        MeasurementId::Footprint(Footprint::StartWarm),
        Extra("healthy_ms"),
        "ms",
        Goal::AtMost,
        300.0,
    );
    for (db, label) in [
        (ConsoleDb::Sqlite, "SQLite"),
        (ConsoleDb::Postgres, "PostgreSQL"),
    ] {
        r.absolute(
            &format!("console overview with 100k orders ({label}), p99"),
            MeasurementId::Console(db),
            P99,
            "ms",
            Goal::AtMost,
            50.0,
        );
    }
}

fn http_checks(cfg: &Config, r: &mut Report, c: usize) {
    use ApiTarget::{Embedded, External, Postgres, Quiet};
    use Field::Throughput;
    use Workload::{Create, Get, List};
    let bare = MeasurementId::HttpBare { connections: c };
    for (target, label) in [(Embedded, "embedded"), (Postgres, "PostgreSQL")] {
        r.ratio(
            &format!("cached GET / bare axum ({label}, c={c})"),
            http(Get, target, c),
            bare,
            Throughput,
            Some((Goal::AtLeast, 0.5)),
        );
    }
    r.ratio(
        &format!("cached GET, access log off / bare axum (embedded, c={c})"),
        http(Get, Quiet, c),
        bare,
        Throughput,
        None,
    );
    r.ratio(
        &format!("create / bare axum (PostgreSQL, c={c})"),
        http(Create, Postgres, c),
        bare,
        Throughput,
        Some((Goal::AtLeast, 0.25)),
    );
    r.ratio(
        &format!("create (PostgreSQL) / its 2 INSERTs in pgbench (c={c})"),
        http(Create, Postgres, c),
        MeasurementId::PgInserts { connections: c },
        Throughput,
        Some((Goal::AtLeast, 0.7)),
    );
    r.ratio(
        &format!("create / bare axum (embedded, c={c})"),
        http(Create, Embedded, c),
        bare,
        Throughput,
        None,
    );
    r.ratio(
        &format!("list / bare axum (embedded, c={c})"),
        http(List, Embedded, c),
        bare,
        Throughput,
        None,
    );
    if cfg.external.is_some() {
        for w in [Get, Create, List, Workload::Token] {
            r.ratio(
                &format!("orderly (embedded) / external: {} (c={c})", w.key()),
                http(w, Embedded, c),
                http(w, External, c),
                Throughput,
                None,
            );
        }
    }
}

fn bus_checks(r: &mut Report) {
    use BusRun::{Latency, Throughput};
    use BusTarget::{Embedded, EmbeddedTcp, Harness, Kafka, KafkaShortFetch, Nats};
    r.ratio(
        "embedded broker over TCP / nats-server (msgs/s)",
        bus(EmbeddedTcp, Throughput),
        bus(Nats, Throughput),
        Field::Throughput,
        Some((Goal::AtLeast, 0.8)),
    );
    r.ratio(
        "embedded broker over TCP / nats-server (latency p99)",
        bus(EmbeddedTcp, Latency),
        bus(Nats, Latency),
        Field::P99,
        Some((Goal::AtMost, 1.0)),
    );
    r.ratio(
        "embedded broker in process / nats-server (msgs/s)",
        bus(Embedded, Throughput),
        bus(Nats, Throughput),
        Field::Throughput,
        Some((Goal::AtLeast, 10.0)),
    );
    r.ratio(
        "embedded broker in process / harness ceiling (msgs/s)",
        bus(Embedded, Throughput),
        bus(Harness, Throughput),
        Field::Throughput,
        None,
    );
    r.ratio(
        "Kafka adapter / nats-server (msgs/s)",
        bus(Kafka, Throughput),
        bus(Nats, Throughput),
        Field::Throughput,
        None,
    );
    r.ratio(
        "Kafka adapter, fetch.wait.max.ms=10 / default (latency p99)",
        bus(KafkaShortFetch, Latency),
        bus(Kafka, Latency),
        Field::P99,
        None,
    );
    durable_checks(r);
}

/// The durable path: each embedded figure against nats-server JetStream,
/// whose file store fsyncs every 2 minutes, a weaker policy than either.
fn durable_checks(r: &mut Report) {
    use DurableTarget::{EmbeddedAlways, EmbeddedTcpAlways, EmbeddedTcpInterval, Kafka, Nats};
    let durable = MeasurementId::Durable;
    r.ratio(
        "durable: embedded broker over TCP, fsync 50 ms / nats-server JetStream (msgs/s)",
        durable(EmbeddedTcpInterval),
        durable(Nats),
        Field::Throughput,
        Some((Goal::AtLeast, 1.0)),
    );
    r.ratio(
        "durable: embedded broker over TCP, fsync always / nats-server JetStream (msgs/s)",
        durable(EmbeddedTcpAlways),
        durable(Nats),
        Field::Throughput,
        None,
    );
    r.ratio(
        "durable: embedded broker in process, fsync always / nats-server JetStream (msgs/s)",
        durable(EmbeddedAlways),
        durable(Nats),
        Field::Throughput,
        None,
    );
    r.ratio(
        "durable: Kafka adapter / nats-server JetStream (msgs/s)",
        durable(Kafka),
        durable(Nats),
        Field::Throughput,
        None,
    );
}
