//! The reconciler: when it looks for stranded orders, and which it takes.

use std::time::Duration;

use croner::parser::{CronParser, Seconds};

use super::ConfigError;
use super::env::{Env, invalid, positive};

/// Every 30 s, at :00 and :30 (seconds first, as tokio-cron-scheduler reads it).
pub const DEFAULT_RECONCILE_SCHEDULE: &str = "*/30 * * * * *";
/// The most orders one run re-enqueues; the rest wait for the next run.
const MAX_BATCH: u64 = 1_000;

/// When the reconciler runs and what it counts as stranded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// `RECONCILE_SCHEDULE`: a cron expression with seconds
    /// (`sec min hour day-of-month month day-of-week`).
    pub schedule: String,
    /// `RECONCILE_AFTER_SECONDS`: an order PENDING longer than this is looked at.
    pub after: Duration,
    /// `RECONCILE_BATCH`: orders looked at per run, oldest first.
    pub batch: u32,
}

pub(super) fn reconcile_settings(env: &Env) -> Result<ReconcileSettings, ConfigError> {
    let schedule = match env.get(&["RECONCILE_SCHEDULE"]) {
        None => DEFAULT_RECONCILE_SCHEDULE.to_string(),
        Some((name, value)) => {
            let value = value.trim().to_string();
            CronParser::builder()
                .seconds(Seconds::Required)
                .dom_and_dow(true)
                .build()
                .parse(&value)
                .map_err(|e| {
                    invalid(
                        &name,
                        &value,
                        format!("{e}; expected a cron expression with seconds, e.g. \"{DEFAULT_RECONCILE_SCHEDULE}\""),
                    )
                })?;
            value
        }
    };
    let after = Duration::from_secs(positive(env, "RECONCILE_AFTER_SECONDS", 60)?);
    let batch = positive(env, "RECONCILE_BATCH", 100)?;
    if batch > MAX_BATCH {
        return Err(invalid(
            "RECONCILE_BATCH",
            &batch.to_string(),
            format!("at most {MAX_BATCH}"),
        ));
    }
    Ok(ReconcileSettings {
        schedule,
        after,
        batch: batch as u32,
    })
}
