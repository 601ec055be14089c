//! An outage pause: while a dependency is unavailable a loop takes no new
//! work, a gauge says so, and the start and end of each pause are logged once.
//! The consumer and the worker each hold one, with their own names.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What a pause is called in metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct PauseNames {
    /// The gauge, 1 while paused (e.g. `worker_paused`).
    pub gauge: &'static str,
    /// The counter of pauses (e.g. `worker_pauses_total`).
    pub counter: &'static str,
    /// Logged (warn) when a pause starts.
    pub paused: &'static str,
    /// Logged (info) when it ends.
    pub resumed: &'static str,
}

/// Paused or not, with waiters for either.
#[derive(Debug)]
pub struct Pause {
    names: PauseNames,
    paused: watch::Sender<bool>,
    since: Mutex<Option<Instant>>,
}

impl Pause {
    /// Not paused; sets the gauge to 0.
    pub fn new(names: PauseNames) -> Self {
        metrics::gauge!(names.gauge).set(0.0);
        Self {
            names,
            paused: watch::channel(false).0,
            since: Mutex::new(None),
        }
    }

    /// Whether a pause is on.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Take no new work until [`Pause::resume`]; `why` is logged once per pause.
    pub fn pause(&self, why: &str) {
        if self
            .paused
            .send_if_modified(|p| !std::mem::replace(p, true))
        {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            metrics::gauge!(self.names.gauge).set(1.0);
            metrics::counter!(self.names.counter).increment(1);
            tracing::warn!(reason = %why, "{}", self.names.paused);
        }
    }

    /// The dependency answers again.
    pub fn resume(&self) {
        if self
            .paused
            .send_if_modified(|p| std::mem::replace(p, false))
        {
            let paused_for = self
                .since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map_or(Duration::ZERO, |t| t.elapsed());
            metrics::gauge!(self.names.gauge).set(0.0);
            tracing::info!(
                paused_ms = paused_for.as_millis() as u64,
                "{}",
                self.names.resumed
            );
        }
    }

    /// Resolves once not paused (at once if it is not).
    pub async fn until_resumed(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Resolves once paused (at once if it is).
    pub async fn until_paused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| *p).await;
    }
}
