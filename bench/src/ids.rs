//! The measurements by name: the code that records a measurement and the
//! checks that read it use the same typed id, and its string form
//! (`http.get.embedded.c50`, the JSON's `id`) is spelled out only here.

use std::fmt;

use serde::{Serialize, Serializer};

/// One workload of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A cached `GET /orders/{id}/`.
    Get,
    /// `GET /orders/user/{id}/` of a user with 10 orders.
    List,
    /// `POST /orders/`.
    Create,
    /// `POST /auth/token/`.
    Token,
}

impl Workload {
    /// Every workload, in the order they are run and reported.
    pub const ALL: [Workload; 4] = [
        Workload::Get,
        Workload::List,
        Workload::Create,
        Workload::Token,
    ];

    /// The workload in ids and progress lines: `get`, `list` …
    pub(crate) fn key(self) -> &'static str {
        match self {
            Workload::Get => "get",
            Workload::List => "list",
            Workload::Create => "create",
            Workload::Token => "token",
        }
    }

    /// What the workload is, for humans.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Get => "cached GET /orders/{id}/",
            Workload::List => "GET /orders/user/{id}/ (10 orders)",
            Workload::Create => "POST /orders/",
            Workload::Token => "POST /auth/token/ (Argon2id)",
        }
    }
}

/// An implementation of the API the workloads run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiTarget {
    /// `orderly all` on SQLite files, the in-process cache and the embedded broker.
    Embedded,
    /// `orderly all` on two fresh PostgreSQL databases.
    Postgres,
    /// [`ApiTarget::Embedded`] with the access log line filtered out.
    Quiet,
    /// Another implementation, given by its base URLs.
    External,
}

impl ApiTarget {
    fn key(self) -> &'static str {
        match self {
            ApiTarget::Embedded => "embedded",
            ApiTarget::Postgres => "postgres",
            ApiTarget::Quiet => "quiet",
            ApiTarget::External => "external",
        }
    }

    /// The target's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            ApiTarget::Embedded => "orderly (embedded)",
            ApiTarget::Postgres => "orderly (PostgreSQL)",
            ApiTarget::Quiet => "orderly (embedded, access log off)",
            ApiTarget::External => "external",
        }
    }
}

/// What carries the messages of a bus run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusTarget {
    /// A tokio channel and no broker: the harness's own ceiling.
    Harness,
    /// The embedded broker in this process, through the `Bus` port.
    Embedded,
    /// `orderly broker`'s NATS listener, with the async-nats client.
    EmbeddedTcp,
    /// nats-server, with the async-nats client.
    Nats,
    /// The Kafka adapter with its default `fetch.wait.max.ms`.
    Kafka,
    /// The Kafka adapter with a 10 ms `fetch.wait.max.ms`.
    KafkaShortFetch,
}

impl BusTarget {
    fn key(self) -> &'static str {
        match self {
            BusTarget::Harness => "harness",
            BusTarget::Embedded => "embedded",
            BusTarget::EmbeddedTcp => "embedded_tcp",
            BusTarget::Nats => "nats",
            BusTarget::Kafka => "kafka",
            BusTarget::KafkaShortFetch => "kafka_short_fetch",
        }
    }
}

/// What stores the messages of a durable bus run (a stream with PubAcks, a
/// durable group with explicit acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableTarget {
    /// The embedded broker in this process, fsync every 50 ms (the default).
    EmbeddedInterval,
    /// The embedded broker in this process, fsync before every PubAck.
    EmbeddedAlways,
    /// `orderly broker` over its NATS listener, fsync every 50 ms (the default).
    EmbeddedTcpInterval,
    /// `orderly broker` over its NATS listener, fsync before every PubAck.
    EmbeddedTcpAlways,
    /// nats-server with JetStream file storage.
    Nats,
    /// The Kafka adapter.
    Kafka,
}

impl DurableTarget {
    /// Every durable target, in the order they run.
    pub const ALL: [DurableTarget; 6] = [
        DurableTarget::EmbeddedInterval,
        DurableTarget::EmbeddedAlways,
        DurableTarget::EmbeddedTcpInterval,
        DurableTarget::EmbeddedTcpAlways,
        DurableTarget::Nats,
        DurableTarget::Kafka,
    ];

    fn key(self) -> &'static str {
        match self {
            DurableTarget::EmbeddedInterval => "embedded.interval",
            DurableTarget::EmbeddedAlways => "embedded.always",
            DurableTarget::EmbeddedTcpInterval => "embedded_tcp.interval",
            DurableTarget::EmbeddedTcpAlways => "embedded_tcp.always",
            DurableTarget::Nats => "nats",
            DurableTarget::Kafka => "kafka",
        }
    }
}

/// The two runs of every bus target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusRun {
    /// [`BusRun::THROUGHPUT_WINDOW`] messages in flight.
    Throughput,
    /// One message in flight.
    Latency,
}

impl BusRun {
    /// Both runs, in the order they are made.
    pub const ALL: [BusRun; 2] = [BusRun::Throughput, BusRun::Latency];
    /// Messages in flight in the throughput run.
    pub const THROUGHPUT_WINDOW: usize = 1024;

    fn key(self) -> &'static str {
        match self {
            BusRun::Throughput => "throughput",
            BusRun::Latency => "latency",
        }
    }

    /// Messages published but not yet delivered, at most.
    pub fn window(self) -> usize {
        match self {
            BusRun::Throughput => Self::THROUGHPUT_WINDOW,
            BusRun::Latency => 1,
        }
    }
}

/// A job queue under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTarget {
    /// The embedded queue on a file log.
    Embedded,
    /// The Redis queue.
    Redis,
}

/// What `orderly all` runs on in a pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PipelineSetup {
    /// The defaults: SQLite files, the embedded broker and job queue.
    Embedded,
    /// PostgreSQL, the Redis job queue, the embedded broker.
    Postgres,
    /// PostgreSQL, the Redis job queue, a Kafka-compatible broker.
    Kafka,
    /// PostgreSQL, the Redis job queue, nats-server with JetStream.
    Nats,
}

impl PipelineSetup {
    /// Every setup, in the order they run.
    pub const ALL: [PipelineSetup; 4] = [
        PipelineSetup::Embedded,
        PipelineSetup::Postgres,
        PipelineSetup::Kafka,
        PipelineSetup::Nats,
    ];

    /// The setup in ids and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            PipelineSetup::Embedded => "embedded",
            PipelineSetup::Postgres => "postgres",
            PipelineSetup::Kafka => "kafka",
            PipelineSetup::Nats => "nats",
        }
    }

    /// What the setup is, for humans.
    pub fn name(self) -> &'static str {
        match self {
            PipelineSetup::Embedded => "orderly (embedded)",
            PipelineSetup::Postgres => "orderly (PostgreSQL, Redis queue, embedded bus)",
            PipelineSetup::Kafka => "orderly (PostgreSQL, Redis queue, Kafka bus)",
            PipelineSetup::Nats => "orderly (PostgreSQL, Redis queue, NATS JetStream bus)",
        }
    }
}

impl std::str::FromStr for PipelineSetup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|setup| setup.key() == s)
            .ok_or_else(|| format!("unknown pipeline setup {s:?}: embedded, postgres, kafka, nats"))
    }
}

/// Which pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineRun {
    /// Creates at full rate, every order paid by the worker.
    Full,
    /// The same load with the worker idle: the create side alone.
    IdleWorker,
    /// One minute (counted from 1) of a soak run.
    SoakMinute(u32),
}

/// A figure of `orderly all`'s footprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footprint {
    /// Start to both `/health` 200 on a fresh data directory.
    StartCold,
    /// Start to both `/health` 200 on an existing data directory.
    StartWarm,
    /// RSS 3 s after a start.
    RssIdle,
    /// RSS after the HTTP section's runs.
    RssAfterLoad,
}

impl Footprint {
    fn key(self) -> &'static str {
        match self {
            Footprint::StartCold => "start.cold",
            Footprint::StartWarm => "start.warm",
            Footprint::RssIdle => "rss.idle",
            Footprint::RssAfterLoad => "rss.after_load",
        }
    }
}

/// The orders database under the console's overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleDb {
    /// The SQLite file of `orderly all`.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

impl ConsoleDb {
    fn key(self) -> &'static str {
        match self {
            ConsoleDb::Sqlite => "sqlite",
            ConsoleDb::Postgres => "postgres",
        }
    }

    /// The target's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            ConsoleDb::Sqlite => "orderly (SQLite)",
            ConsoleDb::Postgres => "orderly (PostgreSQL)",
        }
    }
}

/// Which measurement: its identity in the report and in the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasurementId {
    /// The bare axum ceiling at a connection count.
    HttpBare {
        /// Concurrent connections.
        connections: usize,
    },
    /// A workload of the API against one target at a connection count.
    Http {
        /// What is requested.
        workload: Workload,
        /// What answers.
        target: ApiTarget,
        /// Concurrent connections.
        connections: usize,
    },
    /// The create's two INSERTs, outside orderly, at a connection count.
    PgInserts {
        /// Concurrent connections.
        connections: usize,
    },
    /// Publish → deliver through one target.
    Bus {
        /// What carries the messages.
        target: BusTarget,
        /// Which of the two runs.
        run: BusRun,
    },
    /// Publish to a stream → durable group → ack, through one target.
    Durable(DurableTarget),
    /// Enqueue → reserve → ack of no-op jobs.
    Queue(QueueTarget),
    /// Order → PAID through `orderly all`.
    Paid,
    /// The order pipeline at the API's full rate.
    Pipeline {
        /// What `orderly all` runs on.
        setup: PipelineSetup,
        /// Which run.
        run: PipelineRun,
    },
    /// pgbench running one order's whole life on PostgreSQL: the ceiling.
    PipelineCeiling,
    /// Start time and memory of `orderly all`.
    Footprint(Footprint),
    /// The console's overview on a database of 100k orders.
    Console(ConsoleDb),
}

impl MeasurementId {
    /// The report's section of the measurement.
    pub fn section(self) -> &'static str {
        match self {
            MeasurementId::HttpBare { .. } | MeasurementId::Http { .. } => "http",
            MeasurementId::PgInserts { .. } => "postgres",
            MeasurementId::Bus { .. } | MeasurementId::Durable(_) => "bus",
            MeasurementId::Queue(_) => "queue",
            MeasurementId::Paid => "paid",
            MeasurementId::Pipeline { .. } | MeasurementId::PipelineCeiling => "pipeline",
            MeasurementId::Footprint(_) => "footprint",
            MeasurementId::Console(_) => "console",
        }
    }

    /// The unit of the measurement's throughput (or of its figure).
    pub fn unit(self) -> &'static str {
        match self {
            MeasurementId::HttpBare { .. } | MeasurementId::Http { .. } => "req/s",
            MeasurementId::PgInserts { .. } => "tps",
            MeasurementId::Bus { .. } | MeasurementId::Durable(_) => "msgs/s",
            MeasurementId::Queue(_) => "jobs/s",
            MeasurementId::Paid => "orders/s",
            MeasurementId::Pipeline { .. } | MeasurementId::PipelineCeiling => "orders/s",
            MeasurementId::Footprint(Footprint::StartCold | Footprint::StartWarm) => "ms",
            MeasurementId::Footprint(Footprint::RssIdle | Footprint::RssAfterLoad) => "MB",
            MeasurementId::Console(_) => "req/s",
        }
    }
}

impl fmt::Display for MeasurementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MeasurementId::HttpBare { connections } => write!(f, "http.bare.c{connections}"),
            MeasurementId::Http {
                workload,
                target,
                connections,
            } => write!(f, "http.{}.{}.c{connections}", workload.key(), target.key()),
            MeasurementId::PgInserts { connections } => write!(f, "pg.inserts.c{connections}"),
            MeasurementId::Bus { target, run } => write!(f, "bus.{}.{}", target.key(), run.key()),
            MeasurementId::Durable(target) => write!(f, "bus.durable.{}", target.key()),
            MeasurementId::Queue(QueueTarget::Embedded) => f.write_str("queue.embedded"),
            MeasurementId::Queue(QueueTarget::Redis) => f.write_str("queue.redis"),
            MeasurementId::Paid => f.write_str("paid.embedded"),
            MeasurementId::Pipeline { setup, run } => match run {
                PipelineRun::Full => write!(f, "pipeline.{}", setup.key()),
                PipelineRun::IdleWorker => write!(f, "pipeline.{}.idle_worker", setup.key()),
                PipelineRun::SoakMinute(m) => write!(f, "pipeline.{}.soak.m{m}", setup.key()),
            },
            MeasurementId::PipelineCeiling => f.write_str("pipeline.ceiling.pgbench"),
            MeasurementId::Footprint(which) => write!(f, "footprint.{}", which.key()),
            MeasurementId::Console(db) => write!(f, "console.overview.{}", db.key()),
        }
    }
}

impl Serialize for MeasurementId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_report_s_spelling() {
        let cases = [
            (MeasurementId::HttpBare { connections: 10 }, "http.bare.c10"),
            (
                MeasurementId::Http {
                    workload: Workload::Get,
                    target: ApiTarget::Quiet,
                    connections: 50,
                },
                "http.get.quiet.c50",
            ),
            (
                MeasurementId::PgInserts { connections: 50 },
                "pg.inserts.c50",
            ),
            (
                MeasurementId::Bus {
                    target: BusTarget::EmbeddedTcp,
                    run: BusRun::Latency,
                },
                "bus.embedded_tcp.latency",
            ),
            (
                MeasurementId::Durable(DurableTarget::EmbeddedTcpAlways),
                "bus.durable.embedded_tcp.always",
            ),
            (MeasurementId::Queue(QueueTarget::Redis), "queue.redis"),
            (MeasurementId::Paid, "paid.embedded"),
            (
                MeasurementId::Pipeline {
                    setup: PipelineSetup::Kafka,
                    run: PipelineRun::IdleWorker,
                },
                "pipeline.kafka.idle_worker",
            ),
            (
                MeasurementId::Pipeline {
                    setup: PipelineSetup::Embedded,
                    run: PipelineRun::SoakMinute(3),
                },
                "pipeline.embedded.soak.m3",
            ),
            (MeasurementId::PipelineCeiling, "pipeline.ceiling.pgbench"),
            (
                MeasurementId::Footprint(Footprint::RssAfterLoad),
                "footprint.rss.after_load",
            ),
            (
                MeasurementId::Console(ConsoleDb::Postgres),
                "console.overview.postgres",
            ),
        ];
        for (id, text) in cases {
            assert_eq!(id.to_string(), text);
            assert_eq!(serde_json::to_value(id).unwrap(), text);
        }
    }
}
