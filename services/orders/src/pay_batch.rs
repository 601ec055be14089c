//! PENDING→PAID for many orders in one transaction. Each payment queues its
//! order and waits for a turn; whoever gets the turn writes everything queued
//! by then (its own order and those that arrived while the previous batch was
//! being written) in one transaction, and answers each. One payment alone
//! costs one transaction as before; a thousand at once cost a few.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::domain::OrderStatus;
use crate::events::OutboxEvent;
use crate::store::{OrderStore, StatusChange, StoreError};

/// Orders written by one transaction at most.
const MAX_BATCH: usize = 256;

struct Request {
    id: Uuid,
    traceparent: Option<String>,
    reply: oneshot::Sender<Result<StatusChange, StoreError>>,
}

/// The queue of payments waiting to be written, and the turn to write them.
#[derive(Default)]
pub(crate) struct PayBatcher {
    queue: Mutex<Vec<Request>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl PayBatcher {
    /// Make `id` PAID if it is PENDING, together with whatever else is queued.
    pub(crate) async fn pay(
        &self,
        store: &Arc<dyn OrderStore>,
        id: Uuid,
        traceparent: Option<&str>,
    ) -> Result<StatusChange, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Request {
                id,
                traceparent: traceparent.map(str::to_string),
                reply,
            });
        loop {
            let turn = self.turn.clone().lock_owned().await;
            match answer.try_recv() {
                Ok(outcome) => return outcome,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Database(
                        "the payment's batch ended without an answer".into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Request> = {
                let mut queue = self
                    .queue
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            // A task of its own, holding the turn: the batch is written and
            // answered even if this caller stops waiting.
            let store = store.clone();
            let _ = tokio::spawn(async move {
                let _turn = turn;
                write(store, batch).await;
            })
            .await;
        }
    }
}

async fn write(store: Arc<dyn OrderStore>, batch: Vec<Request>) {
    if batch.is_empty() {
        return;
    }
    let now = OffsetDateTime::now_utc();
    let ids: Vec<Uuid> = batch.iter().map(|r| r.id).collect();
    let mut traceparents: HashMap<Uuid, Option<String>> = HashMap::with_capacity(batch.len());
    for r in &batch {
        traceparents
            .entry(r.id)
            .or_insert_with(|| r.traceparent.clone());
    }
    let event_for = |order: &crate::Order| {
        OutboxEvent::status_changed(
            order.id,
            order.user_id,
            OrderStatus::Pending,
            OrderStatus::Paid,
            now,
            traceparents.get(&order.id).cloned().flatten().as_deref(),
        )
    };
    metrics::histogram!("orders_pay_batch_size").record(batch.len() as f64);
    match store
        .change_statuses(
            &ids,
            OrderStatus::Pending,
            OrderStatus::Paid,
            now,
            &event_for,
        )
        .await
    {
        Ok(outcomes) => {
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for request in batch {
                let _ = request.reply.send(Err(e.clone()));
            }
        }
    }
}
