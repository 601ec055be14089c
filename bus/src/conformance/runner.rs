//! Running one case: its own runtime, its context, a time limit, and the
//! result line for the report.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    BusCaps, BusCx, BusFactory, CASE_TIMEOUT, QueueCaps, QueueCx, QueueFactory, REPORT_ENV,
    Verdict, short_mode,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case")
}

thread_local! {
    static UNREPORTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the results of the cases it runs (on this thread) kept out
/// of the report: the kit's own tests run cases on adapters that are not
/// adapters (faulty decorators), which have no place in the matrix.
#[doc(hidden)]
pub fn unreported<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            UNREPORTED.with(|u| u.set(self.0));
        }
    }
    let _reset = Reset(UNREPORTED.with(|u| u.replace(true)));
    f()
}

fn finish(adapter: &str, suite: &str, case: &str, verdict: &Verdict) {
    let result = match verdict {
        Verdict::Pass => "pass".to_string(),
        Verdict::Skip(reason) => {
            eprintln!("SKIP {case}: {reason}");
            format!("skip:{}", reason.replace(['\t', '\n'], " "))
        }
    };
    if UNREPORTED.with(|u| u.get()) {
        return;
    }
    let Some(path) = std::env::var_os(REPORT_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let line = format!("{adapter}\t{suite}\t{case}\t{result}\n");
    // One write of one line with O_APPEND: parallel test processes never interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!(
            "could not append the result to {} ({REPORT_ENV}): {e}",
            path.to_string_lossy()
        );
    }
}

/// Runs one bus case in its own runtime; the macro's tests call this.
#[doc(hidden)]
pub fn run_bus_case<F, Body, Fut>(
    case: &'static str,
    body: Body,
    make_factory: impl FnOnce() -> F,
    caps: BusCaps,
) where
    F: BusFactory,
    Body: FnOnce(Arc<BusCx>) -> Fut,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let rt = runtime();
    let verdict = {
        let _entered = rt.enter();
        let cx = Arc::new(BusCx {
            factory: Arc::new(make_factory()),
            caps: caps.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            short: short_mode(),
            clients: Mutex::new(Vec::new()),
        });
        let limit = CASE_TIMEOUT * caps.time_scale;
        let run = body(cx.clone());
        rt.block_on(async move {
            let verdict = tokio::time::timeout(limit, tokio::spawn(run))
                .await
                .unwrap_or_else(|_| panic!("case {case} did not finish within {limit:?}"))
                .unwrap_or_else(|e| match e.try_into_panic() {
                    Ok(p) => std::panic::resume_unwind(p),
                    Err(e) => panic!("case {case} was cancelled: {e}"),
                });
            cx.close_all().await;
            verdict
        })
    };
    rt.shutdown_timeout(Duration::from_secs(5));
    finish(&caps.adapter, "bus", case, &verdict);
}

/// Runs one queue case in its own runtime; the macro's tests call this.
#[doc(hidden)]
pub fn run_queue_case<F, Body, Fut>(
    case: &'static str,
    body: Body,
    make_factory: impl FnOnce() -> F,
    caps: QueueCaps,
) where
    F: QueueFactory,
    Body: FnOnce(Arc<QueueCx>) -> Fut,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let rt = runtime();
    let verdict = {
        let _entered = rt.enter();
        let cx = Arc::new(QueueCx {
            factory: Arc::new(make_factory()),
            caps: caps.clone(),
            queue: format!("conf_{}", uuid::Uuid::new_v4().simple()),
            short: short_mode(),
        });
        let limit = CASE_TIMEOUT * caps.time_scale;
        let run = body(cx);
        rt.block_on(async move {
            tokio::time::timeout(limit, tokio::spawn(run))
                .await
                .unwrap_or_else(|_| panic!("case {case} did not finish within {limit:?}"))
                .unwrap_or_else(|e| match e.try_into_panic() {
                    Ok(p) => std::panic::resume_unwind(p),
                    Err(e) => panic!("case {case} was cancelled: {e}"),
                })
        })
    };
    rt.shutdown_timeout(Duration::from_secs(5));
    finish(&caps.adapter, "queue", case, &verdict);
}
