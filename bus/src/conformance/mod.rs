//! The conformance kit: one suite per port ([`Bus`], [`JobQueue`]) that every
//! adapter runs, in its own tests, with a factory for fresh instances.
//!
//! Built after Watermill's universal pub/sub tests: capability flags decide
//! which cases apply, a case that does not apply prints `SKIP <case>: <reason>`
//! and passes, and every case works on its own subjects, stream, groups and
//! queue (named after a fresh UUID), so the cases run in parallel against one
//! broker.
//!
//! # Using it for an adapter
//!
//! Enable the `conformance` feature in the adapter's dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! orderly-bus = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! implement [`BusFactory`] (or wrap a closure with [`bus_factory_fn`]) and
//! call the macro in a test file, e.g. `tests/conformance_mybus.rs`:
//!
//! ```ignore
//! use std::sync::Arc;
//! use orderly_bus::conformance::{BusCaps, bus_factory_fn};
//! use orderly_bus::{Bus, Features};
//!
//! fn caps() -> BusCaps {
//!     BusCaps::new("mybus", Features {
//!         durable: true,
//!         ordered_per_key: true,
//!         consumer_groups: true,
//!         redelivery_delay: true,
//!         headers: true,
//!         max_payload: 1024 * 1024,
//!     })
//!     .wildcards(true)
//! }
//!
//! // Expands to `mod bus_conformance { #[test] fn publish_subscribe() … }`,
//! // one ordinary test per case (`cargo nextest run -E 'test(/conformance/)'`).
//! orderly_bus::bus_conformance!(
//!     bus_factory_fn(|| async {
//!         let bus = mybus::MyBus::connect("127.0.0.1:4222").await?;
//!         Ok(Arc::new(bus) as Arc<dyn Bus>)
//!     }),
//!     caps()
//! );
//! ```
//!
//! The factory expression and the caps expression are evaluated once per case,
//! inside the case's tokio runtime (multi-threaded, 2 workers); items of the
//! calling module are in scope. To run the suite twice in one file (two
//! configurations), put each call in its own `mod`. The job queue suite works
//! the same way with [`QueueFactory`], [`QueueCaps`] and [`queue_conformance!`](crate::queue_conformance);
//! its factory is given the case's unique queue name and the [`RetryPolicy`]
//! the case needs.
//!
//! A factory that can restart its broker (stop it and start it again on the
//! same data) implements [`BusFactory::restart_broker`] and says so with
//! [`BusCaps::broker_restart`]; the durability cases then cross a real restart.
//! A factory whose broker runs in a process of its own can also crash it
//! (SIGKILL: no close, no final sync) with [`BusFactory::crash_broker`] and
//! [`BusCaps::broker_crash`]; the `…_after_crash` cases then check what a
//! durable adapter promises on a process crash: nothing acknowledged is lost.
//! The queue suite has the same pair ([`QueueFactory::crash`], [`QueueCaps::crash`]).
//!
//! # Environment
//!
//! - `ORDERLY_CONFORMANCE_SHORT=1`: smaller message counts (Watermill's short mode).
//! - `ORDERLY_CONFORMANCE_REPORT=<file>`: every case that passes or skips appends
//!   `adapter<TAB>suite<TAB>case<TAB>pass|skip:<reason>` to the file; a failed case
//!   panics first and writes nothing. `scripts/conformance-matrix` turns the lines
//!   into the README's matrix.

pub mod bus;
pub mod queue;
mod runner;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::{Bus, BusError, Features, JobQueue, QueueError, RetryPolicy, StreamConfig};

#[doc(hidden)]
pub use runner::{run_bus_case, run_queue_case, unreported};

/// Environment variable: any value but empty or `0` shrinks the counts.
pub const SHORT_ENV: &str = "ORDERLY_CONFORMANCE_SHORT";
/// Environment variable: file the results are appended to.
pub const REPORT_ENV: &str = "ORDERLY_CONFORMANCE_REPORT";

/// A case that ran its checks without failing passed; a case whose
/// capability is missing says why it did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// Not run, for this reason.
    Skip(String),
}

impl Verdict {
    /// A skip for `reason`.
    pub fn skip(reason: impl Into<String>) -> Self {
        Verdict::Skip(reason.into())
    }
}

/// What a bus adapter promises, beyond what it reports in [`Features`].
#[derive(Debug, Clone, PartialEq)]
pub struct BusCaps {
    /// Name in the results (`embedded-memory`, `kafka` …); no tabs.
    pub adapter: String,
    /// Must equal what the adapter's [`Bus::features`] reports (a case checks it).
    pub features: Features,
    /// `*` and `>` in subscription subjects.
    pub wildcards: bool,
    /// Every message is delivered once to a group while no delivery times out
    /// and nothing restarts: duplicates fail the cases.
    pub exactly_once: bool,
    /// [`Bus::dead_letters`] lists what a group gave up on, and replay gives it back.
    pub dead_letters: bool,
    /// The factory implements [`BusFactory::restart_broker`].
    pub broker_restart: bool,
    /// The factory implements [`BusFactory::crash_broker`].
    pub broker_crash: bool,
    /// Bus handles opened before a broker restart keep working after it
    /// (they reconnect); otherwise the cases connect anew after a restart.
    pub clients_survive_restart: bool,
    /// Multiplies every ack wait, delay and deadline of the cases (slow brokers).
    pub time_scale: u32,
}

impl BusCaps {
    /// Caps of adapter `adapter` reporting `features`; every other promise off.
    pub fn new(adapter: impl Into<String>, features: Features) -> Self {
        Self {
            adapter: adapter.into(),
            features,
            wildcards: false,
            exactly_once: false,
            dead_letters: false,
            broker_restart: false,
            broker_crash: false,
            clients_survive_restart: false,
            time_scale: 1,
        }
    }

    /// Sets [`BusCaps::wildcards`].
    pub fn wildcards(mut self, yes: bool) -> Self {
        self.wildcards = yes;
        self
    }

    /// Sets [`BusCaps::exactly_once`].
    pub fn exactly_once(mut self, yes: bool) -> Self {
        self.exactly_once = yes;
        self
    }

    /// Sets [`BusCaps::dead_letters`].
    pub fn dead_letters(mut self, yes: bool) -> Self {
        self.dead_letters = yes;
        self
    }

    /// Sets [`BusCaps::broker_restart`].
    pub fn broker_restart(mut self, yes: bool) -> Self {
        self.broker_restart = yes;
        self
    }

    /// Sets [`BusCaps::broker_crash`].
    pub fn broker_crash(mut self, yes: bool) -> Self {
        self.broker_crash = yes;
        self
    }

    /// Sets [`BusCaps::clients_survive_restart`].
    pub fn clients_survive_restart(mut self, yes: bool) -> Self {
        self.clients_survive_restart = yes;
        self
    }

    /// Sets [`BusCaps::time_scale`] (at least 1).
    pub fn time_scale(mut self, factor: u32) -> Self {
        self.time_scale = factor.max(1);
        self
    }
}

/// What a job queue adapter promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCaps {
    /// Name in the results; no tabs.
    pub adapter: String,
    /// Queued, reserved and retrying jobs survive a restart.
    pub durable: bool,
    /// The factory implements [`QueueFactory::restart`].
    pub restart: bool,
    /// The factory implements [`QueueFactory::crash`].
    pub crash: bool,
    /// Multiplies every visibility timeout, delay and deadline of the cases.
    pub time_scale: u32,
}

impl QueueCaps {
    /// Caps of adapter `adapter`: not durable, no restarts.
    pub fn new(adapter: impl Into<String>) -> Self {
        Self {
            adapter: adapter.into(),
            durable: false,
            restart: false,
            crash: false,
            time_scale: 1,
        }
    }

    /// Sets [`QueueCaps::durable`].
    pub fn durable(mut self, yes: bool) -> Self {
        self.durable = yes;
        self
    }

    /// Sets [`QueueCaps::restart`].
    pub fn restart(mut self, yes: bool) -> Self {
        self.restart = yes;
        self
    }

    /// Sets [`QueueCaps::crash`].
    pub fn crash(mut self, yes: bool) -> Self {
        self.crash = yes;
        self
    }

    /// Sets [`QueueCaps::time_scale`] (at least 1).
    pub fn time_scale(mut self, factor: u32) -> Self {
        self.time_scale = factor.max(1);
        self
    }
}

/// Makes the bus clients of one case. A factory value lives for one case, so
/// it may own that case's broker (a temp dir, a child process …).
#[async_trait]
pub trait BusFactory: Send + Sync + 'static {
    /// A client of this case's broker: a new connection where the adapter has
    /// connections. Cases call it once or several times.
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError>;

    /// Stops the broker and starts it again on the same data (a durable
    /// adapter keeps its streams). Called only with [`BusCaps::broker_restart`].
    async fn restart_broker(&self) -> Result<(), BusError> {
        Err(BusError::Other(
            "this factory cannot restart its broker".into(),
        ))
    }

    /// Kills the process that owns the broker (SIGKILL: nothing is closed or
    /// synced) and starts it again on the same data. What clients sent before
    /// the call (acks included) has reached the broker; what the broker did
    /// with it is the case's question. Called only with [`BusCaps::broker_crash`];
    /// handles survive it where [`BusCaps::clients_survive_restart`] says so.
    async fn crash_broker(&self) -> Result<(), BusError> {
        Err(BusError::Other(
            "this factory cannot crash its broker".into(),
        ))
    }
}

/// Makes the job queue clients of one case.
#[async_trait]
pub trait QueueFactory: Send + Sync + 'static {
    /// A client of this case's queue backend. `queue` is the case's unique
    /// queue name (`conf_<uuid>`; a case may also use names that extend it
    /// with `_<suffix>`); failed jobs retry by `policy`.
    async fn connect(
        &self,
        queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError>;

    /// Stops the backend and starts it again on the same data. Called only
    /// with [`QueueCaps::restart`]; clients are connected anew afterwards.
    async fn restart(&self) -> Result<(), QueueError> {
        Err(QueueError::Other("this factory cannot restart".into()))
    }

    /// Kills the process that owns the queue (SIGKILL: nothing is closed or
    /// synced) and starts it again on the same data. Called only with
    /// [`QueueCaps::crash`]; clients are connected anew afterwards.
    async fn crash(&self) -> Result<(), QueueError> {
        Err(QueueError::Other(
            "this factory cannot crash its queue".into(),
        ))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A [`BusFactory`] from a closure; no broker restarts.
pub fn bus_factory_fn<F, Fut>(connect: F) -> impl BusFactory
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Bus>, BusError>> + Send + 'static,
{
    type Connect = dyn Fn() -> BoxFuture<Result<Arc<dyn Bus>, BusError>> + Send + Sync;
    struct FnBus(Box<Connect>);
    #[async_trait]
    impl BusFactory for FnBus {
        async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
            (self.0)().await
        }
    }
    FnBus(Box::new(move || Box::pin(connect())))
}

/// A [`QueueFactory`] from a closure; no restarts.
pub fn queue_factory_fn<F, Fut>(connect: F) -> impl QueueFactory
where
    F: Fn(String, RetryPolicy) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn JobQueue>, QueueError>> + Send + 'static,
{
    type Connect = dyn Fn(String, RetryPolicy) -> BoxFuture<Result<Arc<dyn JobQueue>, QueueError>>
        + Send
        + Sync;
    struct FnQueue(Box<Connect>);
    #[async_trait]
    impl QueueFactory for FnQueue {
        async fn connect(
            &self,
            queue: &str,
            policy: RetryPolicy,
        ) -> Result<Arc<dyn JobQueue>, QueueError> {
            (self.0)(queue.to_string(), policy).await
        }
    }
    FnQueue(Box::new(move |q, p| Box::pin(connect(q, p))))
}

fn short_mode() -> bool {
    std::env::var(SHORT_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// How long one case may take before it fails, at time scale 1.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a bus case gets: its factory, the adapter's caps and its own names.
pub struct BusCx {
    factory: Arc<dyn BusFactory>,
    caps: BusCaps,
    id: String,
    short: bool,
    clients: Mutex<Vec<Arc<dyn Bus>>>,
}

impl BusCx {
    pub(crate) fn caps(&self) -> &BusCaps {
        &self.caps
    }

    pub(crate) fn features(&self) -> Features {
        self.caps.features
    }

    /// A new client; fails the case if the adapter cannot connect.
    pub(crate) async fn connect(&self) -> Arc<dyn Bus> {
        let bus = self
            .factory
            .connect()
            .await
            .unwrap_or_else(|e| panic!("factory could not connect: {e}"));
        self.clients
            .lock()
            .expect("clients lock poisoned")
            .push(bus.clone());
        bus
    }

    pub(crate) async fn restart_broker(&self) {
        self.factory
            .restart_broker()
            .await
            .unwrap_or_else(|e| panic!("factory could not restart the broker: {e}"));
    }

    pub(crate) async fn crash_broker(&self) {
        self.factory
            .crash_broker()
            .await
            .unwrap_or_else(|e| panic!("factory could not crash the broker: {e}"));
    }

    /// `conf.<uuid>.<tail>`: a subject no other case or run uses.
    pub(crate) fn subject(&self, tail: &str) -> String {
        format!("conf.{}.{tail}", self.id)
    }

    /// The stream of this case, capturing `conf.<uuid>.>`.
    pub(crate) fn stream_config(&self) -> StreamConfig {
        StreamConfig::new(
            format!("conf_{}", self.id),
            &[format!("conf.{}.>", self.id).as_str()],
        )
    }

    pub(crate) async fn ensure_stream(&self, bus: &dyn Bus) {
        bus.ensure_stream(self.stream_config())
            .await
            .unwrap_or_else(|e| panic!("ensure_stream failed: {e}"));
    }

    pub(crate) fn group(&self, name: &str) -> String {
        format!("conf-{}-{name}", self.id)
    }

    /// `full` normally, `short` in short mode.
    pub(crate) fn count(&self, full: usize, short: usize) -> usize {
        if self.short { short } else { full }
    }

    pub(crate) fn ms(&self, ms: u64) -> Duration {
        Duration::from_millis(ms * u64::from(self.caps.time_scale))
    }

    async fn close_all(&self) {
        let clients = std::mem::take(&mut *self.clients.lock().expect("clients lock poisoned"));
        for c in clients {
            c.close().await;
        }
    }
}

/// What a queue case gets.
pub struct QueueCx {
    factory: Arc<dyn QueueFactory>,
    caps: QueueCaps,
    queue: String,
    short: bool,
}

impl QueueCx {
    pub(crate) fn caps(&self) -> &QueueCaps {
        &self.caps
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) async fn connect(&self, policy: RetryPolicy) -> Arc<dyn JobQueue> {
        self.factory
            .connect(&self.queue, policy)
            .await
            .unwrap_or_else(|e| panic!("factory could not connect: {e}"))
    }

    pub(crate) async fn restart(&self) {
        self.factory
            .restart()
            .await
            .unwrap_or_else(|e| panic!("factory could not restart: {e}"));
    }

    pub(crate) async fn crash(&self) {
        self.factory
            .crash()
            .await
            .unwrap_or_else(|e| panic!("factory could not crash the queue: {e}"));
    }

    pub(crate) fn count(&self, full: usize, short: usize) -> usize {
        if self.short { short } else { full }
    }

    pub(crate) fn ms(&self, ms: u64) -> Duration {
        Duration::from_millis(ms * u64::from(self.caps.time_scale))
    }
}

/// Generates the bus suite: `mod bus_conformance` with one `#[test]` per case.
///
/// `bus_conformance!(factory_expr, caps_expr)`: `factory_expr` gives a
/// [`BusFactory`](crate::conformance::BusFactory), `caps_expr` a
/// [`BusCaps`](crate::conformance::BusCaps); both are evaluated per case.
/// The case list lives here and in `scripts/conformance-matrix` only by name.
#[macro_export]
macro_rules! bus_conformance {
    ($factory:expr, $caps:expr $(,)?) => {
        $crate::__conformance_tests! {
            bus_conformance, run_bus_case, bus, ($factory), ($caps),
            // BUS CASES BEGIN
            features_match_the_adapter
            publish_subscribe
            plain_subscribers_fan_out
            many_subjects
            wildcard_subjects
            order_per_key
            fan_out_across_groups
            balance_within_group
            no_ack_redelivers
            nack_redelivers
            max_deliveries_ends_redelivery
            nack_with_delay
            in_progress_holds_a_delivery
            ack_after_subscription_closed
            close_with_deliveries_in_flight
            durable_resume_after_restart
            messages_before_group_first_subscribes
            ensure_stream_is_idempotent
            headers_round_trip
            payload_near_limit
            payload_over_limit
            concurrent_publishers_and_subscribers
            broker_restart
            durable_resume_after_crash
            close_ends_subscriptions
            // BUS CASES END
        }
    };
}

/// Generates the job queue suite: `mod queue_conformance` with one `#[test]`
/// per case. `queue_conformance!(factory_expr, caps_expr)` with a
/// [`QueueFactory`](crate::conformance::QueueFactory) and
/// [`QueueCaps`](crate::conformance::QueueCaps).
#[macro_export]
macro_rules! queue_conformance {
    ($factory:expr, $caps:expr $(,)?) => {
        $crate::__conformance_tests! {
            queue_conformance, run_queue_case, queue, ($factory), ($caps),
            // QUEUE CASES BEGIN
            enqueue_reserve_ack
            reserve_waits_for_a_job
            dedup_by_id
            queues_are_isolated
            visibility_timeout_reclaims
            extend_keeps_it_reserved
            fail_retries_then_dead
            requeue_dead_runs_again
            stats_count
            concurrent_workers_never_share_a_job
            restart_keeps_queued_work
            jobs_kept_after_crash
            release_spends_no_attempt
            reserve_many_takes_a_batch
            // QUEUE CASES END
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $runner:ident, $suite:ident, ($factory:expr), ($caps:expr), $($case:ident)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::conformance::$runner(
                        stringify!($case),
                        $crate::conformance::$suite::$case,
                        || $factory,
                        $caps,
                    );
                }
            )*
        }
    };
}
