//! Waking the outbox relay when another process writes an outbox row
//! (PostgreSQL LISTEN/NOTIFY; SQLite's writers are all in the relay's process
//! and wake it directly).

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::Backoff;
use orderly_core::Shutdown;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

/// NOTIFY channel: "an outbox row was written" (payload unused).
pub(crate) const OUTBOX_CHANNEL: &str = "orderly_outbox";

/// Wake `wake` on every notification until `shutdown`. While the listening
/// connection cannot be opened the relay polls, and this retries with backoff.
pub(crate) async fn watch(pool: &PgPool, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut listener = loop {
        let attempt = async {
            let mut l = PgListener::connect_with(pool).await?;
            l.listen(OUTBOX_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match attempt.await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for outbox writes; the relay polls meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    };
    loop {
        tokio::select! {
            received = listener.recv() => match received {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    // recv() reconnects on the next call; notifications sent
                    // meanwhile are lost, so look at the outbox anyway.
                    tracing::warn!(error = %e, "outbox LISTEN connection lost; reconnecting");
                    wake.notify_one();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.wait() => return,
                    }
                }
            },
            _ = shutdown.wait() => return,
        }
    }
}
