//! The orders role: the events stream, the token verifier `ORDERS_JWKS_URL`
//! or `ORDERS_PUBLIC_KEY_PATH` names, the HTTP app, the outbox relay, and the
//! listener that keeps a per-process cache coherent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use orderly_bus::{Backoff, Bus, BusError};
use orderly_core::Shutdown;
use orderly_core::config::{REVOKED_TOKENS_PATH, RevokedTokensSource, Settings};
use orderly_http::health::ReadinessCheck;
use orderly_http::token::{RevokedTokens, TokenVerifier};
use orderly_orders::relay::{OutboxRelay, forget_changed_orders};
use orderly_orders::startup::OrdersParts;

use super::checks::{BusCheck, JwksCheck, QueueCheck};
use super::console;
use super::key_file;
use super::messaging::Messaging;
use super::ops::ConsoleInputs;
use super::serve;

/// How long the first attempt to create the events stream may hold up start.
const FIRST_STREAM_ATTEMPT: Duration = Duration::from_secs(3);
/// Waits between the later attempts: doubling from the first to the cap.
const STREAM_RETRY_FIRST: Duration = Duration::from_secs(1);
const STREAM_RETRY_MAX: Duration = Duration::from_secs(10);
/// Before subscribing again to the changed orders, after the bus went away.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Starts the orders API and its background tasks. `check_queue`: the process
/// also takes jobs, so `/ready` reports the job queue too. `local_auth`: the
/// URL of the auth service this process runs, if it runs one.
pub async fn start(
    settings: &Settings,
    parts: &OrdersParts,
    messaging: &Messaging,
    check_queue: bool,
    local_auth: Option<&str>,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<()> {
    let bus = &messaging.bus;
    ensure_events_stream(bus.clone(), shutdown.clone()).await?;
    let mut checks: Vec<Arc<dyn ReadinessCheck>> =
        vec![Arc::new(BusCheck::behind_outbox(bus.clone()))];
    let verifier = verifier(settings, &mut checks, shutdown).await?;
    refuse_revoked_tokens(settings, &verifier, local_auth, shutdown, tasks);
    if check_queue {
        checks.push(Arc::new(QueueCheck(messaging.jobs.queue.clone())));
    }
    let console = if settings.orders.console {
        let inputs = ConsoleInputs::new(parts, &messaging.jobs.queue, bus);
        let mut all_checks = parts.checks.clone();
        all_checks.extend(checks.iter().cloned());
        let routes =
            console::under_orders(settings, inputs, all_checks, verifier.clone(), local_auth)?;
        Some(routes)
    } else {
        None
    };
    let mut app =
        orderly_orders::startup::app(&settings.orders, parts, verifier, checks, &settings.http);
    // Merged after the API's layers, so neither gets the other's.
    if let Some(console) = console {
        app = app.merge(console);
    }
    let (addr, http) = (&settings.orders.bind, &settings.http);
    let url = serve::start_api("orders", addr, app, shutdown, http, tasks).await?;
    if let (true, Some(url)) = (settings.orders.console, url) {
        println!(
            "{:>6}: {url}/console  (the console for admin accounts; ORDERS_CONSOLE=on)",
            "admin"
        );
    }
    let relay = OutboxRelay::new(
        parts.service.store().clone(),
        bus.clone(),
        parts.outbox_written.clone(),
    )
    .with_retention(settings.orders.outbox_retention);
    let relay_stop = shutdown.clone();
    tasks.spawn(async move {
        relay.run(relay_stop).await;
        Ok(())
    });
    // A shared (Redis) cache is refreshed by whoever writes; only
    // per-process caches need to hear about other processes' changes.
    if !parts.shared_cache {
        let (service, bus, stop) = (parts.service.clone(), bus.clone(), shutdown.clone());
        tasks.spawn(async move {
            // It returns early when the bus cannot be reached: listen again.
            loop {
                forget_changed_orders(service.clone(), bus.clone(), stop.clone()).await;
                tokio::select! {
                    _ = tokio::time::sleep(LISTEN_AGAIN_AFTER) => {}
                    _ = stop.wait() => return Ok(()),
                }
            }
        });
    }
    Ok(())
}

/// The keys at `ORDERS_JWKS_URL` when set, else the auth service's public key
/// file, and the readiness check that says when there are none yet. Both may
/// be missing at start (auth starting at the same time): the JWKS is fetched
/// again on demand, the file is waited for.
async fn verifier(
    settings: &Settings,
    checks: &mut Vec<Arc<dyn ReadinessCheck>>,
    shutdown: &Shutdown,
) -> Result<Arc<TokenVerifier>> {
    let orders = &settings.orders;
    if let Some(url) = &orders.jwks_url {
        let verifier = TokenVerifier::from_jwks_url(url, &orders.verifier, orders.jwks_min_refetch)
            .await
            .context("orders cannot verify tokens (ORDERS_JWKS_URL)")?;
        let verifier = Arc::new(verifier);
        checks.push(Arc::new(JwksCheck(verifier.clone())));
        return Ok(verifier);
    }
    let path = &orders.public_key_path;
    if key_file::is_missing(path) {
        let verifier = Arc::new(TokenVerifier::new(Vec::new(), &orders.verifier));
        let check = key_file::wait_for_key_file(verifier.clone(), path, shutdown.clone());
        checks.push(Arc::new(check));
        return Ok(verifier);
    }
    let verifier = TokenVerifier::from_file(path, &orders.verifier).context(
        "orders cannot verify tokens (is ORDERS_PUBLIC_KEY_PATH the auth service's public key?)",
    )?;
    Ok(Arc::new(verifier))
}

/// Polls auth's list of revoked access tokens in the background, when its
/// address is known, and has the verifier refuse them.
fn refuse_revoked_tokens(
    settings: &Settings,
    verifier: &TokenVerifier,
    local_auth: Option<&str>,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<Result<()>>,
) {
    let Some(url) = settings.orders.revoked_tokens_url(local_auth) else {
        if settings.orders.revoked_tokens == RevokedTokensSource::Off {
            tracing::info!(
                "ORDERS_REVOKED_TOKENS_URL=off: revoked access tokens work until they expire"
            );
            return;
        }
        tracing::warn!(
            "revoked access tokens are accepted until they expire: set \
             ORDERS_REVOKED_TOKENS_URL to auth's {REVOKED_TOKENS_PATH} (or off to silence this)"
        );
        return;
    };
    let revoked = Arc::new(RevokedTokens::new());
    verifier.refuse_revoked(revoked.clone());
    let (every, stop) = (settings.orders.revoked_tokens_poll, shutdown.clone());
    tracing::info!(%url, every_s = every.as_secs(), "access tokens revoked by auth are refused");
    tasks.spawn(async move {
        revoked.poll(&url, every, stop).await;
        Ok(())
    });
}

/// Creates the events stream. A broker that cannot be reached does not stop
/// the service (the outbox keeps the events, `/ready` reports the bus): the
/// stream is created in the background once the broker answers.
async fn ensure_events_stream(bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<()> {
    let first = tokio::time::timeout(
        FIRST_STREAM_ATTEMPT,
        bus.ensure_stream(orderly_bus::schema::events::stream()),
    )
    .await
    .unwrap_or_else(|_| Err(BusError::Unavailable("no answer yet".into())));
    match first {
        Ok(()) => return Ok(()),
        Err(BusError::Unavailable(why)) => {
            tracing::warn!(%why, "bus unreachable; orders starts anyway and creates the events stream when it is back");
        }
        Err(e) => return Err(e).context("events stream"),
    }
    tokio::spawn(async move {
        let mut backoff = Backoff::new(STREAM_RETRY_FIRST, STREAM_RETRY_MAX);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait() => return,
            }
            match bus
                .ensure_stream(orderly_bus::schema::events::stream())
                .await
            {
                Ok(()) => {
                    tracing::info!("events stream ready");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "events stream still unavailable; retrying"),
            }
        }
    });
    Ok(())
}
