//! The consumer's pause while the job queue is down: no new delivery is
//! taken, and the `consumer_paused` gauge says so.

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
        metrics::gauge!("consumer_paused").set(0.0);
        Self {
            paused: watch::channel(false).0,
            since: Mutex::new(None),
        }
    }

    /// Take no new deliveries until [`Pause::resume`]; `why` is logged once per pause.
    pub(crate) fn pause(&self, why: &str) {
        if self
            .paused
            .send_if_modified(|p| !std::mem::replace(p, true))
        {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            metrics::gauge!("consumer_paused").set(1.0);
            metrics::counter!("consumer_pauses_total").increment(1);
            tracing::warn!(reason = %why, "consumer paused: the job queue is unavailable; events are held (not nacked) until it answers");
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
            metrics::gauge!("consumer_paused").set(0.0);
            tracing::info!(
                paused_ms = paused_for.as_millis() as u64,
                "consumer resumed: the job queue answers again"
            );
        }
    }

    /// Resolves once not paused (at once if it is not).
    pub(crate) async fn until_resumed(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }
}
