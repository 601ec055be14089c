//! The order → PAID section: clients create orders and poll each until the
//! worker has paid it; measured is the time beyond the simulated payment.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::api;
use crate::http::{Client, Target};
use crate::ids::{ApiTarget, MeasurementId};
use crate::progress::Progress;
use crate::report::{Latency, Measurement, Report, micros_histogram};
use crate::sections::{Config, api_targets, skip_reason_no_bin, summary};
use crate::spawn::{OrderlyProcess, SpawnOptions};

/// As many clients as the worker runs jobs at once (WORKER_CONCURRENCY, 4):
/// each waits for its order to be paid, so no job queues behind another.
const CLIENTS: usize = 4;
/// How often a client asks for its order's status.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    let delay_ms = cfg.payment_delay.as_millis() as u64;
    let m = Measurement::new(
        MeasurementId::Paid,
        &format!("order → PAID beyond the {delay_ms} ms payment"),
        ApiTarget::Embedded.name(),
    );
    let Some(bin) = cfg.orderly_bin.clone() else {
        r.measurements.push(m.skipped(skip_reason_no_bin()));
        return;
    };
    let proc_ = match OrderlyProcess::spawn(SpawnOptions {
        bin: &bin,
        env: vec![("WORKER_PAYMENT_DELAY_MS".into(), delay_ms.to_string())],
        data_dir: None,
        args: vec![],
    }) {
        Ok(p) => p,
        Err(e) => {
            r.measurements
                .push(m.failed(format!("cannot start orderly: {e:#}")));
            return;
        }
    };
    let setup = async {
        let (auth, orders) = api_targets(&proc_).await?;
        let user = api::new_user(&auth).await?;
        Ok::<_, anyhow::Error>((orders, user.token))
    };
    let m = match setup.await {
        Ok((orders, token)) => measure(cfg, m, orders, token).await,
        Err(e) => m.failed(format!("setup: {e:#}")),
    };
    proc_.stop(Duration::from_secs(10));
    r.measurements.push(m);
}

/// What one client saw in the measured window.
struct ClientResult {
    paid: u64,
    errors: u64,
    beyond_payment_us: Histogram<u64>,
}

async fn measure(cfg: &Config, mut m: Measurement, orders: Target, token: String) -> Measurement {
    let p = Progress::start("order → PAID", cfg.run_time(), cfg.quiet);
    let measure_from = Instant::now() + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (orders, token, done) = (orders.clone(), token.clone(), p.done.clone());
        let delay = cfg.payment_delay;
        tasks.spawn(async move {
            let mut creator = Client::new(orders.clone());
            let mut poller = Client::new(orders);
            let mut out = ClientResult {
                paid: 0,
                errors: 0,
                beyond_payment_us: micros_histogram(),
            };
            while Instant::now() < end {
                let id = match api::create_order(&mut creator, &token).await {
                    Ok(id) => id,
                    Err(_) => {
                        out.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let created = Instant::now();
                let paid =
                    wait_paid(&mut poller, &token, &id, created + Duration::from_secs(30)).await;
                done.fetch_add(1, Ordering::Relaxed);
                match paid {
                    Some(t) if created >= measure_from && t <= end => {
                        out.paid += 1;
                        let beyond = (t - created).saturating_sub(delay);
                        let _ = out
                            .beyond_payment_us
                            .record((beyond.as_micros() as u64).max(1));
                    }
                    Some(_) => {}
                    None => out.errors += 1,
                }
            }
            out
        });
    }
    let mut hist = micros_histogram();
    while let Some(j) = tasks.join_next().await {
        if let Ok(c) = j {
            m.count += c.paid;
            m.errors += c.errors;
            let _ = hist.add(&c.beyond_payment_us);
        }
    }
    m.seconds = cfg.duration.as_secs_f64();
    m.throughput = Some(m.count as f64 / m.seconds);
    m.latency = Latency::from_micros(&hist);
    m.extra.insert(
        "payment_delay_ms".into(),
        cfg.payment_delay.as_millis() as f64,
    );
    m.extra
        .insert("poll_interval_ms".into(), POLL_INTERVAL.as_millis() as f64);
    if m.count == 0 {
        m = m.failed("no order reached PAID in the measured window");
    }
    p.finish(&summary(&m));
    m
}

/// When the order was seen PAID; `None` if not by `give_up`.
async fn wait_paid(
    poller: &mut Client,
    token: &str,
    id: &str,
    give_up: Instant,
) -> Option<Instant> {
    loop {
        match api::order_status(poller, token, id).await {
            Ok(s) if s == "PAID" => return Some(Instant::now()),
            _ if Instant::now() > give_up => return None,
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}
