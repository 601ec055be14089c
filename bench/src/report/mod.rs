//! Results: one [`Measurement`] per run, [`Check`]s (ratios and absolute
//! targets) computed from them, rendered as JSON, Markdown and an SVG chart.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::ids::MeasurementId;

mod markdown;
mod svg;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl Latency {
    /// From a histogram of microseconds; `None` when it is empty.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// What a run of operations counted in its measured window.
#[derive(Debug)]
pub struct Counted {
    /// Operations completed in the window.
    pub count: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Latencies of the counted operations.
    pub latency_us: Histogram<u64>,
    /// The measured window.
    pub seconds: f64,
}

/// Whether a measurement has figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Measured.
    Ok,
    /// Not run: what it needs is not there.
    Skipped {
        /// What is missing.
        reason: String,
    },
    /// Run, and it went wrong.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// One run of one workload against one target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measurement {
    /// Stable identifier, e.g. `http.get.embedded.c50`; checks refer to it.
    pub id: MeasurementId,
    /// `http`, `bus`, `queue`, `paid`, `footprint`, `postgres`.
    pub section: &'static str,
    /// What was measured, for humans.
    pub name: String,
    /// What served it (`orderly (embedded)`, `bare axum`, `nats-server` …).
    pub target: String,
    /// Concurrent connections of an HTTP run.
    pub connections: Option<usize>,
    /// Measured, skipped or failed.
    pub outcome: Outcome,
    /// Completed operations per second in the measured window.
    pub throughput: Option<f64>,
    /// `req/s`, `msgs/s`, `jobs/s`, `tps`.
    pub unit: &'static str,
    /// Latencies of the operations in the measured window.
    pub latency: Option<Latency>,
    /// Operations completed in the measured window.
    pub count: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Errors by kind (`status 429`, `connect`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// Anything else worth keeping (`rss_mb`, `server_cpu_us_per_op` …).
    pub extra: BTreeMap<String, f64>,
    /// Measured window in seconds.
    pub seconds: f64,
}

impl Measurement {
    /// A measurement of `name` against `target`, in `id`'s section and unit.
    pub fn new(id: MeasurementId, name: &str, target: &str) -> Self {
        Self {
            id,
            section: id.section(),
            name: name.into(),
            target: target.into(),
            connections: None,
            outcome: Outcome::Ok,
            throughput: None,
            unit: id.unit(),
            latency: None,
            count: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            extra: BTreeMap::new(),
            seconds: 0.0,
        }
    }

    /// The figures of a run; failed when the run failed, or with `why_none`
    /// when it counted nothing.
    pub fn counted(mut self, run: anyhow::Result<Counted>, why_none: &str) -> Self {
        match run {
            Ok(x) => {
                self.throughput = Some(x.count as f64 / x.seconds);
                self.latency = Latency::from_micros(&x.latency_us);
                self.count = x.count;
                self.errors = x.errors;
                self.seconds = x.seconds;
                if x.count == 0 {
                    self = self.failed(why_none);
                }
                self
            }
            Err(e) => self.failed(format!("{e:#}")),
        }
    }

    /// The measurement, skipped for `reason`.
    pub fn skipped(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Skipped {
            reason: reason.into(),
        };
        self
    }

    /// The measurement, failed for `reason`.
    pub fn failed(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Failed {
            reason: reason.into(),
        };
        self
    }

    /// The measurement of a run on `c` connections.
    pub fn with_connections(mut self, c: usize) -> Self {
        self.connections = Some(c);
        self
    }

    /// Whether it was measured.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// Which way a target points.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Goal {
    /// The value must reach the target.
    #[serde(rename = ">=")]
    AtLeast,
    /// The value must stay at or below the target.
    #[serde(rename = "<=")]
    AtMost,
}

/// A ratio of two measurements, or one absolute figure, with its target if any.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// What is compared, for humans.
    pub name: String,
    /// `×` for ratios, else the figure's unit.
    pub unit: String,
    /// The ratio or figure; `None` when a measurement is missing.
    pub value: Option<f64>,
    /// Which way the target points.
    pub goal: Option<Goal>,
    /// The target, if any.
    pub target: Option<f64>,
    /// `None` when there is no target or no value.
    pub met: Option<bool>,
    /// Why there is no value, or how it was computed.
    pub note: String,
}

impl Check {
    fn finish(mut self) -> Self {
        self.met = match (self.value, self.goal, self.target) {
            (Some(v), Some(Goal::AtLeast), Some(t)) => Some(v >= t),
            (Some(v), Some(Goal::AtMost), Some(t)) => Some(v <= t),
            _ => None,
        };
        self
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// When the run began (UTC, RFC 3339).
    pub started_at: String,
    /// CPU model and count.
    pub machine: BTreeMap<String, String>,
    /// Warm-up, duration, connection counts.
    pub settings: BTreeMap<String, String>,
    /// Every run, in the order made.
    pub measurements: Vec<Measurement>,
    /// Ratios and targets computed from the measurements.
    pub checks: Vec<Check>,
    /// Anything a reader of the figures should know.
    pub notes: Vec<String>,
}

/// What a check reads from a measurement.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// The throughput.
    Throughput,
    /// The 99th percentile latency.
    P99,
    /// A named extra figure (`rss_mb` …).
    Extra(&'static str),
}

impl Report {
    /// The measurement `id`, if it was run.
    pub fn get(&self, id: MeasurementId) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.id == id)
    }

    fn field(&self, id: MeasurementId, field: Field) -> Result<f64, String> {
        let m = self.get(id).ok_or_else(|| format!("{id} not run"))?;
        match &m.outcome {
            Outcome::Ok => {}
            Outcome::Skipped { reason } => return Err(format!("{id} skipped: {reason}")),
            Outcome::Failed { reason } => return Err(format!("{id} failed: {reason}")),
        }
        let v = match field {
            Field::Throughput => m.throughput,
            Field::P99 => m.latency.map(|l| l.p99_ms),
            Field::Extra(k) => m.extra.get(k).copied(),
        };
        match v {
            Some(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{id} has no value")),
        }
    }

    /// `num / den` of the same field, side by side.
    pub fn ratio(
        &mut self,
        name: &str,
        num: MeasurementId,
        den: MeasurementId,
        field: Field,
        target: Option<(Goal, f64)>,
    ) {
        let (value, note) = match (self.field(num, field), self.field(den, field)) {
            (Ok(a), Ok(b)) if b > 0.0 => (Some(a / b), format!("{num} / {den}")),
            (Ok(_), Ok(_)) => (None, format!("{den} is zero")),
            (Err(e), _) | (_, Err(e)) => (None, e),
        };
        self.checks.push(
            Check {
                name: name.into(),
                unit: "×".into(),
                value,
                goal: target.map(|t| t.0),
                target: target.map(|t| t.1),
                met: None,
                note,
            }
            .finish(),
        );
    }

    /// One absolute figure against its target.
    pub fn absolute(
        &mut self,
        name: &str,
        id: MeasurementId,
        field: Field,
        unit: &str,
        goal: Goal,
        t: f64,
    ) {
        let (value, note) = match self.field(id, field) {
            Ok(v) => (Some(v), id.to_string()),
            Err(e) => (None, e),
        };
        self.checks.push(
            Check {
                name: name.into(),
                unit: unit.into(),
                value,
                goal: Some(goal),
                target: Some(t),
                met: None,
                note,
            }
            .finish(),
        );
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }
}

/// Three significant digits, thousands separated, no exponent.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::QueueTarget;

    const A: MeasurementId = MeasurementId::Queue(QueueTarget::Embedded);
    const B: MeasurementId = MeasurementId::Queue(QueueTarget::Redis);

    #[test]
    fn ratio_of_skipped_measurement_has_no_value() {
        let mut r = Report::default();
        let mut a = Measurement::new(A, "a", "x");
        a.throughput = Some(50.0);
        r.measurements.push(a);
        r.measurements
            .push(Measurement::new(B, "b", "y").skipped("no server"));
        r.ratio("a/b", A, B, Field::Throughput, Some((Goal::AtLeast, 0.5)));
        assert_eq!(r.checks[0].value, None);
        assert_eq!(r.checks[0].met, None);
        assert!(r.checks[0].note.contains("no server"));
        let md = r.to_markdown();
        assert!(md.contains("skipped: no server"), "{md}");
    }

    #[test]
    fn ratio_and_target() {
        let mut r = Report::default();
        for (id, v) in [(A, 30.0), (B, 100.0)] {
            let mut m = Measurement::new(id, "q", "x");
            m.throughput = Some(v);
            r.measurements.push(m);
        }
        r.ratio("a/b", A, B, Field::Throughput, Some((Goal::AtLeast, 0.5)));
        assert_eq!(r.checks[0].value, Some(0.3));
        assert_eq!(r.checks[0].met, Some(false));
        assert_eq!(r.checks[0].note, "queue.embedded / queue.redis");
        assert!(r.to_svg().contains("0.300×"));
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_num(116_234.4), "116,234");
        assert_eq!(fmt_num(0.7251), "0.725");
        assert_eq!(fmt_num(12.345), "12.3");
    }
}
