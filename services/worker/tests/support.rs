//! What the worker's tests share: a ledger standing in for the orders
//! database (PAID once per order, counted; down on demand; payments held at a
//! gate on demand), jobs on a queue, and a worker running until told to stop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder};
use orderly_bus::{JobQueue, NewJob};
use orderly_core::Shutdown;
use orderly_orders::store::StoreError;
use orderly_orders::{Order, OrderStatus, OrdersError, PayOutcome};
use orderly_worker::{Payments, Worker, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// The orders' PAID transitions, as a database would make them (the first
/// run pays, later ones find it done), with the runs that reached it counted.
pub struct Ledger {
    paid: Mutex<HashMap<Uuid, u32>>,
    /// Calls of `pay`, whatever their outcome.
    pub calls: AtomicUsize,
    /// Calls waiting at the gate right now.
    pub waiting: AtomicUsize,
    down: AtomicBool,
    gate: watch::Sender<bool>,
}

impl Ledger {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            paid: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            gate: watch::channel(true).0,
        })
    }

    /// While down, every call fails as an unreachable database does.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// While closed, payments wait at the gate (after their delay).
    pub fn set_gate_open(&self, open: bool) {
        self.gate.send_replace(open);
    }

    /// How many runs reached the store for each order.
    pub fn paid(&self) -> HashMap<Uuid, u32> {
        self.paid.lock().unwrap().clone()
    }

    pub fn paid_count(&self) -> usize {
        self.paid.lock().unwrap().len()
    }
}

fn order(id: Uuid, status: OrderStatus) -> Order {
    Order {
        id,
        user_id: 1,
        items: Vec::new(),
        total_price: 0.0,
        status,
        created_at: time::OffsetDateTime::now_utc(),
    }
}

#[async_trait]
impl Payments for Ledger {
    async fn pay(&self, id: Uuid, _traceparent: Option<&str>) -> Result<PayOutcome, OrdersError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(OrdersError::Store(StoreError::Unavailable(
                "connection refused (the test's database is down)".into(),
            )));
        }
        let mut paid = self.paid.lock().unwrap();
        let n = paid.entry(id).or_default();
        *n += 1;
        Ok(if *n == 1 {
            PayOutcome::Paid(order(id, OrderStatus::Paid))
        } else {
            PayOutcome::AlreadyDone(order(id, OrderStatus::Paid))
        })
    }

    async fn check(&self) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            Err("connection refused".into())
        } else {
            Ok(())
        }
    }
}

/// `n` process_order jobs, one per new order id.
pub async fn enqueue_orders(queue: &dyn JobQueue, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let order_id = Uuid::new_v4();
        let payload = serde_json::to_vec(&ProcessOrder {
            order_id,
            traceparent: None,
        })
        .unwrap();
        let created = queue
            .enqueue(NewJob {
                queue: PROCESS_ORDER.into(),
                id: format!("{PROCESS_ORDER}:{order_id}"),
                payload: payload.into(),
            })
            .await
            .expect("enqueue");
        assert!(created);
        ids.push(order_id);
    }
    ids
}

pub fn config(payment_ms: u64, concurrency: usize, visibility: Duration) -> WorkerConfig {
    WorkerConfig {
        payment_delay: Duration::from_millis(payment_ms),
        concurrency,
        visibility_timeout: visibility,
        stop_grace: Duration::from_secs(5),
    }
}

/// A worker running on `queue` until its shutdown is triggered.
pub struct Running {
    pub worker: Arc<Worker>,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

pub fn run(queue: Arc<dyn JobQueue>, ledger: Arc<Ledger>, config: WorkerConfig) -> Running {
    let worker = Arc::new(Worker::with_payments(queue, ledger, config));
    let shutdown = Shutdown::new();
    let task = tokio::spawn(worker.clone().run(shutdown.clone()));
    Running {
        worker,
        shutdown,
        task,
    }
}

/// Polls `cond` until it holds; panics with `what` (and its last value) after `within`.
pub async fn wait_until(
    within: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + within;
    loop {
        let last = match cond() {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every order of `ids` PAID, and by one run only: no job ran twice.
pub fn assert_paid_once(ledger: &Ledger, ids: &[Uuid]) {
    let paid = ledger.paid();
    let wrong: Vec<_> = ids
        .iter()
        .filter(|id| paid.get(id).copied() != Some(1))
        .map(|id| (id, paid.get(id).copied().unwrap_or(0)))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "orders not paid by exactly one run (id, runs): {wrong:?}"
    );
    assert_eq!(
        paid.len(),
        ids.len(),
        "orders paid that were never enqueued"
    );
}

/// Every order of `ids` PAID (by one run or more: the store makes one
/// transition either way).
pub fn assert_all_paid(ledger: &Ledger, ids: &[Uuid]) {
    let paid = ledger.paid();
    let missing = ids.iter().filter(|id| !paid.contains_key(id)).count();
    assert_eq!(missing, 0, "orders never paid");
    assert_eq!(
        paid.len(),
        ids.len(),
        "orders paid that were never enqueued"
    );
}
