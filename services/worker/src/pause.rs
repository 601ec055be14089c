//! The worker's pause: while the queue or the orders database is down, no job
//! is reserved (it would only be handed back), and the `worker_paused` gauge
//! says so.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) struct Pause {
    paused: watch::Sender<bool>,
    since: Mutex<Option<Instant>>,
}

impl Pause {
    pub(crate) fn new() -> Self {
        metrics::gauge!("worker_paused").set(0.0);
        Self {
            paused: watch::channel(false).0,
            since: Mutex::new(None),
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Stop reserving until a probe succeeds; `why` is logged once per pause.
    pub(crate) fn pause(&self, why: &str) {
        if self
            .paused
            .send_if_modified(|p| !std::mem::replace(p, true))
        {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            metrics::gauge!("worker_paused").set(1.0);
            metrics::counter!("worker_pauses_total").increment(1);
            tracing::warn!(reason = %why, "worker paused: a dependency is unavailable; jobs are handed back unspent and none are reserved until it answers");
        }
    }

    pub(crate) fn resume(&self) {
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
            metrics::gauge!("worker_paused").set(0.0);
            tracing::info!(
                paused_ms = paused_for.as_millis() as u64,
                "worker resumed: its dependencies answer again"
            );
        }
    }

    /// Resolves once not paused (at once if it is not).
    pub(crate) async fn until_resumed(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Resolves once paused (at once if it is).
    pub(crate) async fn until_paused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| *p).await;
    }
}
