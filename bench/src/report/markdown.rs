//! The report as Markdown: one table of the measurements, one of the checks,
//! then the notes.

use std::fmt::Write as _;

use super::{Goal, Latency, Measurement, Outcome, Report, fmt_num};

impl Report {
    /// The measurements and the checks as two Markdown tables, then the notes.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| section | workload | target | conns | throughput | p50 ms | p90 ms | p99 ms | max ms | errors |"
        );
        let _ = writeln!(out, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|");
        for m in &self.measurements {
            let conns = m.connections.map(|c| c.to_string()).unwrap_or_default();
            let lat = |f: fn(&Latency) -> f64| {
                m.latency
                    .as_ref()
                    .map(|l| fmt_num(f(l)))
                    .unwrap_or_default()
            };
            match &m.outcome {
                Outcome::Ok => {
                    let tp = match m.throughput {
                        Some(t) => format!("{} {}", fmt_num(t), m.unit),
                        None => extra_summary(m),
                    };
                    let errors = if m.errors == 0 {
                        "0".to_string()
                    } else {
                        let kinds: Vec<String> = m
                            .error_kinds
                            .iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect();
                        format!("{} ({})", m.errors, kinds.join(", "))
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        m.section,
                        m.name,
                        m.target,
                        conns,
                        tp,
                        lat(|l| l.p50_ms),
                        lat(|l| l.p90_ms),
                        lat(|l| l.p99_ms),
                        lat(|l| l.max_ms),
                        errors
                    );
                }
                Outcome::Skipped { reason } | Outcome::Failed { reason } => {
                    let word = if matches!(m.outcome, Outcome::Skipped { .. }) {
                        "skipped"
                    } else {
                        "FAILED"
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {word}: {} | | | | | |",
                        m.section,
                        m.name,
                        m.target,
                        conns,
                        reason.replace('|', "/")
                    );
                }
            }
        }
        pipeline_table(self, &mut out);
        let _ = writeln!(out);
        let _ = writeln!(out, "| check | value | target | met |");
        let _ = writeln!(out, "|---|--:|--:|:-:|");
        for c in &self.checks {
            let value = match c.value {
                Some(v) => format!("{} {}", fmt_num(v), c.unit),
                None => format!("— ({})", c.note.replace('|', "/")),
            };
            let target = match (c.goal, c.target) {
                (Some(Goal::AtLeast), Some(t)) => format!("≥ {} {}", fmt_num(t), c.unit),
                (Some(Goal::AtMost), Some(t)) => format!("≤ {} {}", fmt_num(t), c.unit),
                _ => String::new(),
            };
            let met = match c.met {
                Some(true) => "✅",
                Some(false) => "❌",
                None => "",
            };
            let _ = writeln!(out, "| {} | {} | {} | {} |", c.name, value, target, met);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

/// The pipeline's figures beyond throughput and latency, one row per run.
fn pipeline_table(report: &Report, out: &mut String) {
    let runs: Vec<&Measurement> = report
        .measurements
        .iter()
        .filter(|m| {
            m.section == "pipeline"
                && m.outcome == Outcome::Ok
                && m.extra.contains_key("create_rate")
        })
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| pipeline run | target | create/s | PAID/s | created→PAID p50 / p99 / max ms | create p99 ms | backlog at stop | drain s | RSS MB | outbox rows | broker MB |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for m in runs {
        let x = |k: &str| m.extra.get(k).map(|v| fmt_num(*v)).unwrap_or_default();
        let latency = m
            .latency
            .map(|l| {
                format!(
                    "{} / {} / {}",
                    fmt_num(l.p50_ms),
                    fmt_num(l.p99_ms),
                    fmt_num(l.max_ms)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            m.id,
            m.target,
            x("create_rate"),
            x("paid_rate"),
            latency,
            x("create_p99_ms"),
            x("backlog_at_stop"),
            x("drain_s"),
            x("rss_mb"),
            x("outbox_rows"),
            x("broker_mb"),
        );
    }
}

fn extra_summary(m: &Measurement) -> String {
    m.extra
        .iter()
        .map(|(k, v)| format!("{k} {}", fmt_num(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}
