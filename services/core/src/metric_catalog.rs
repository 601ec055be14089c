//! Every Prometheus metric orderly exports, in one list: the exporter
//! describes them from it (their `# HELP` lines), and the dashboards and
//! alert rules in deploy/ are checked against it. tests/deploy also checks
//! that the list and the names in the code agree, so a new metric is one
//! more line here.

/// How a metric is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`_total`).
    Counter,
    /// A value that is set (a depth, a lag).
    Gauge,
    /// Observations in [`LATENCY_BUCKETS`]: `_bucket`, `_sum`, `_count`.
    Histogram,
}

/// One exported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name, as Prometheus sees it (a histogram's series add suffixes).
    pub name: &'static str,
    /// How it is exported.
    pub kind: MetricKind,
    /// Its labels (bounded values only: never an id).
    pub labels: &'static [&'static str],
    /// What it counts, for `# HELP`.
    pub help: &'static str,
}

/// Upper bounds (seconds) of every histogram's buckets: from a cached read
/// to a request that hit the 30 s timeout. Buckets, unlike summaries, can be
/// added up across instances (`histogram_quantile(sum by (le) (rate(…)))`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const fn metric(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric orderly exports.
pub const METRICS: &[Metric] = &[
    metric(
        "consumer_pauses_total",
        Counter,
        &[],
        "Times the consumer paused taking events because the job queue was unavailable",
    ),
    metric(
        "jobs_released_total",
        Counter,
        &[],
        "Jobs handed back to the queue without spending an attempt (outage, stop)",
    ),
    metric(
        "outbox_deleted_total",
        Counter,
        &[],
        "Sent outbox rows deleted after their retention",
    ),
    metric(
        "reconciler_orders_requeued_total",
        Counter,
        &[],
        "Orders PENDING too long whose process_order job the reconciler enqueued again",
    ),
    metric(
        "reconciler_runs_total",
        Counter,
        &["outcome"],
        "Reconciler runs, by outcome",
    ),
    metric(
        "worker_jobs_handed_back_total",
        Counter,
        &[],
        "Jobs the worker handed back at a stop or an outage",
    ),
    metric(
        "worker_pauses_total",
        Counter,
        &[],
        "Times the worker paused reserving because a dependency was unavailable",
    ),
    metric(
        "token_revocation_poll_failures_total",
        Counter,
        &[],
        "Failed fetches of auth's revoked-token list (the last list is kept)",
    ),
    metric(
        "http_requests_total",
        Counter,
        &["service", "method", "route", "status"],
        "HTTP requests answered, by route pattern and status",
    ),
    metric(
        "http_request_duration_seconds",
        Histogram,
        &["service", "method", "route", "status"],
        "Time to answer an HTTP request",
    ),
    metric(
        "bus_published_total",
        Counter,
        &["subject"],
        "Events published on the bus",
    ),
    metric(
        "bus_publish_errors_total",
        Counter,
        &["subject", "error"],
        "Publishes the bus refused or lost",
    ),
    metric(
        "bus_publish_duration_seconds",
        Histogram,
        &["subject"],
        "Time the bus took to confirm a publish",
    ),
    metric(
        "bus_delivered_total",
        Counter,
        &["subject"],
        "Events delivered to subscribers",
    ),
    metric(
        "bus_redelivered_total",
        Counter,
        &["subject"],
        "Deliveries after the first attempt",
    ),
    metric(
        "bus_acked_total",
        Counter,
        &["subject"],
        "Group deliveries acknowledged",
    ),
    metric(
        "bus_nacked_total",
        Counter,
        &["subject"],
        "Group deliveries handed back",
    ),
    metric(
        "jobs_enqueued_total",
        Counter,
        &["queue"],
        "Jobs put on the queue",
    ),
    metric(
        "jobs_duplicate_total",
        Counter,
        &["queue"],
        "Enqueues dropped as duplicates of a job already queued",
    ),
    metric(
        "jobs_reserved_total",
        Counter,
        &["queue"],
        "Jobs taken by a worker",
    ),
    metric("jobs_completed_total", Counter, &["queue"], "Jobs finished"),
    metric(
        "jobs_retried_total",
        Counter,
        &["queue"],
        "Failed jobs scheduled again",
    ),
    metric(
        "jobs_dead_total",
        Counter,
        &["queue"],
        "Jobs given up (dead letters)",
    ),
    metric(
        "jobs_requeued_total",
        Counter,
        &["queue"],
        "Dead or stuck jobs put back on the queue",
    ),
    metric(
        "job_queue_errors_total",
        Counter,
        &["queue", "op"],
        "Job queue calls that failed",
    ),
    metric(
        "job_queue_depth",
        Gauge,
        &["queue", "state"],
        "Jobs in the queue by state (waiting, running, retrying, dead), sampled every 5 s",
    ),
    metric(
        "order_cache_requests_total",
        Counter,
        &["outcome"],
        "Order cache look-ups by outcome",
    ),
    metric(
        "order_cache_errors_total",
        Counter,
        &["op"],
        "Order cache calls to Redis that failed",
    ),
    metric(
        "rate_limiter_errors_total",
        Counter,
        &["op"],
        "Rate limiter calls to Redis that failed",
    ),
    metric(
        "rate_limiter_unavailable_total",
        Counter,
        &["mode"],
        "Requests decided without the rate limiter (mode: open or closed)",
    ),
    metric(
        "rate_limited_total",
        Counter,
        &[],
        "Requests refused by the rate limit",
    ),
    metric(
        "outbox_published_total",
        Counter,
        &[],
        "Events the outbox relay published",
    ),
    metric(
        "outbox_unsent",
        Gauge,
        &[],
        "Events in the outbox not yet published",
    ),
    metric(
        "outbox_oldest_unsent_seconds",
        Gauge,
        &[],
        "Age of the oldest event not yet published (the relay's lag)",
    ),
    metric("orders_created_total", Counter, &[], "Orders created"),
    metric(
        "order_status_changes_total",
        Counter,
        &["to"],
        "Order status changes, by new status",
    ),
    metric(
        "consumer_jobs_enqueued_total",
        Counter,
        &[],
        "process_order jobs the consumer enqueued",
    ),
    metric(
        "consumer_malformed_events_total",
        Counter,
        &[],
        "Events the consumer could not read",
    ),
    metric(
        "worker_orders_paid_total",
        Counter,
        &[],
        "Orders the worker marked PAID",
    ),
    metric(
        "worker_job_failures_total",
        Counter,
        &[],
        "Job runs that failed in the worker",
    ),
    metric(
        "worker_jobs_dead_total",
        Counter,
        &[],
        "Jobs the worker gave up on",
    ),
];

/// The series names a metric shows in `/metrics` (a histogram's three).
pub fn series_names(metric: &Metric) -> Vec<String> {
    match metric.kind {
        MetricKind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", metric.name))
            .collect(),
        _ => vec![metric.name.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for m in METRICS {
            assert_eq!(m.kind == Counter, m.name.ends_with("_total"), "{}", m.name);
        }
    }

    #[test]
    fn buckets_rise() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
