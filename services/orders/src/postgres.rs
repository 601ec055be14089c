//! [`OrderStore`] on PostgreSQL (production): exact money (BIGINT cents),
//! TIMESTAMPTZ, items as JSONB. Creates and status changes NOTIFY the outbox
//! channel in their transaction; relays in any process claim unsent rows with
//! `FOR UPDATE SKIP LOCKED`. Runtime-checked queries, so building needs no database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use orderly_core::Shutdown;
use orderly_core::config::redact_url;

use crate::domain::{Order, OrderItem, OrderStatus, ValidOrder, from_cents};
use crate::events::OutboxEvent;
use crate::store::{
    Created, IdempotencyKey, OrderStore, OutboxBacklog, OutboxClaim, PendingEvent, StatusChange,
    StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres/orders");

/// Its own bookkeeping table, so auth and orders may share one database.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_orders";

/// NOTIFY channel: "an outbox row was written" (payload unused).
const OUTBOX_CHANNEL: &str = "orderly_outbox";

const ORDER_COLUMNS: &str = "id, user_id, items, total_cents, status, created_at";

pub struct PgOrderStore {
    pool: PgPool,
}

fn order_from_row(row: &PgRow) -> Result<Order, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let Json(items): Json<Vec<OrderItem>> = row
        .try_get("items")
        .map_err(|e| StoreError::Corrupt(format!("items of {id}: {e}")))?;
    Ok(Order {
        id,
        user_id: row.try_get("user_id")?,
        items,
        total_price: from_cents(row.try_get("total_cents")?),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?} of {id}")))?,
        created_at: row.try_get("created_at")?,
    })
}

/// PostgreSQL keeps microseconds; the order a create returns must equal the one
/// read back later (the cache and clients compare them).
fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl PgOrderStore {
    /// Connect and apply the migrations (under sqlx's advisory lock, so instances
    /// starting together apply them once).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", redact_url(url))))?;
        let mut migrator =
            sqlx::migrate::Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch_order<'e, E>(executor: E, id: Uuid) -> Result<Option<Order>, StoreError>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(executor)
            .await?
            .map(|row| order_from_row(&row))
            .transpose()
    }
}

/// The event row plus a NOTIFY, both delivered only if the transaction commits.
async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    event: &OutboxEvent,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let headers: serde_json::Map<String, serde_json::Value> = event
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.event_id)
    .bind(event.subject)
    .bind(&event.key)
    .bind(Json(headers))
    .bind(&event.payload)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(OUTBOX_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn pending_from_row(row: &PgRow) -> Result<PendingEvent, StoreError> {
    let Json(headers): Json<serde_json::Map<String, serde_json::Value>> = row
        .try_get("headers")
        .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?;
    Ok(PendingEvent {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        key: row.try_get("msg_key")?,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect(),
        payload: row.try_get("payload")?,
    })
}

/// Rows locked `FOR UPDATE SKIP LOCKED` by an open transaction.
struct PgClaim {
    tx: Transaction<'static, Postgres>,
    events: Vec<PendingEvent>,
}

#[async_trait]
impl OutboxClaim for PgClaim {
    fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    async fn finish(self: Box<Self>, sent: &[i64]) -> Result<(), StoreError> {
        let PgClaim { mut tx, .. } = *self;
        if !sent.is_empty() {
            sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
                .bind(sent)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl OrderStore for PgOrderStore {
    async fn create(
        &self,
        order: &Order,
        valid: &ValidOrder,
        event: &OutboxEvent,
        idempotency: Option<(&IdempotencyKey, i64)>,
    ) -> Result<Created, StoreError> {
        let order = Order {
            created_at: to_micros(order.created_at),
            ..order.clone()
        };
        let mut tx = self.pool.begin().await?;
        if let Some((key, user_id)) = idempotency {
            // Serialises creates carrying the same key: the second waits for the
            // first to commit, then finds its row and replays it.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
                .bind(&key.key)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            let existing = sqlx::query(
                "SELECT request, order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(&key.key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                let request: String = row.try_get("request")?;
                if request != key.request {
                    return Ok(Created::KeyReused);
                }
                let order_id: Uuid = row.try_get("order_id")?;
                let earlier = Self::fetch_order(&mut *tx, order_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "idempotency key points to missing order {order_id}"
                        ))
                    })?;
                return Ok(Created::Replayed(earlier));
            }
        }
        sqlx::query(
            "INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(order.id)
        .bind(order.user_id)
        .bind(Json(&valid.items))
        .bind(valid.total_cents)
        .bind(order.status.as_str())
        .bind(order.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) \
             VALUES ($1, NULL, $2, $3)",
        )
        .bind(order.id)
        .bind(order.status.as_str())
        .bind(order.created_at)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, event, order.created_at).await?;
        if let Some((key, user_id)) = idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request, order_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(&key.key)
            .bind(&key.request)
            .bind(order.id)
            .bind(order.created_at)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                if is_unique_violation(&e) {
                    return Ok(Created::KeyReused);
                }
                return Err(e.into());
            }
        }
        tx.commit().await?;
        Ok(Created::New(order))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        Self::fetch_order(&self.pool, id).await
    }

    async fn list_by_user(
        &self,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(order_from_row)
            .collect()
    }

    async fn change_status(
        &self,
        id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
        event: &OutboxEvent,
        at: OffsetDateTime,
    ) -> Result<StatusChange, StoreError> {
        let at = to_micros(at);
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4 \
             RETURNING {ORDER_COLUMNS}"
        );
        let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(at)
            .bind(id)
            .bind(from.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = updated else {
            let current = Self::fetch_order(&mut *tx, id).await?;
            return Ok(match current {
                Some(order) => StatusChange::Conflict(order),
                None => StatusChange::NotFound,
            });
        };
        let order = order_from_row(&row)?;
        sqlx::query(
            "INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, event, at).await?;
        tx.commit().await?;
        Ok(StatusChange::Changed(order))
    }

    async fn unsent_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
        sqlx::query(
            "SELECT id, subject, msg_key, headers, payload FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(pending_from_row)
        .collect()
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn unsent_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn claim_unsent(&self, limit: i64) -> Result<Box<dyn OutboxClaim>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query(
            "SELECT id, subject, msg_key, headers, payload FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(pending_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(PgClaim { tx, events }))
    }

    async fn watch_outbox(&self, wake: Arc<Notify>, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(200);
        let mut listener = loop {
            let attempt = async {
                let mut l = PgListener::connect_with(&self.pool).await?;
                l.listen(OUTBOX_CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match attempt.await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for outbox writes; the relay polls meanwhile");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
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

    async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let (unsent, oldest_created_at): (i64, Option<OffsetDateTime>) = sqlx::query_as(
            "SELECT COUNT(*), (SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1) \
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxBacklog {
            unsent,
            oldest_created_at,
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
