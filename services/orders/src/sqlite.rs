//! [`OrderStore`] on SQLite (the embedded default).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, ValidOrder, from_cents};
use crate::events::OutboxEvent;
use crate::store::{
    Created, IdempotencyKey, OrderStore, OutboxBacklog, OutboxClaim, PendingEvent, StatusChange,
    StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite/orders");

pub struct SqliteOrderStore {
    pool: SqlitePool,
    /// One outbox claim at a time: every relay on a SQLite file is in this process.
    claim_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Events taken by [`SqliteOrderStore::claim_unsent`]; holds the claim lock.
struct SqliteClaim {
    pool: SqlitePool,
    events: Vec<PendingEvent>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

#[async_trait]
impl OutboxClaim for SqliteClaim {
    fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    async fn finish(self: Box<Self>, sent: &[i64]) -> Result<(), StoreError> {
        mark_sent(&self.pool, sent).await
    }
}

async fn mark_sent(pool: &SqlitePool, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["?"; ids.len()].join(",");
    let sql = format!("UPDATE outbox SET sent_at = ? WHERE id IN ({placeholders})");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ts(OffsetDateTime::now_utc()));
    for id in ids {
        query = query.bind(id);
    }
    query.execute(pool).await?;
    Ok(())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

const ORDER_COLUMNS: &str = "id, user_id, items, total_cents, status, created_at";

fn order_from_row(row: &SqliteRow) -> Result<Order, StoreError> {
    let id: String = row.try_get("id")?;
    let items: String = row.try_get("items")?;
    let status: String = row.try_get("status")?;
    let created_at: String = row.try_get("created_at")?;
    Ok(Order {
        id: Uuid::parse_str(&id)
            .map_err(|e| StoreError::Corrupt(format!("order id {id:?}: {e}")))?,
        user_id: row.try_get("user_id")?,
        items: serde_json::from_str(&items)
            .map_err(|e| StoreError::Corrupt(format!("items of {id}: {e}")))?,
        total_price: from_cents(row.try_get("total_cents")?),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?} of {id}")))?,
        created_at: OffsetDateTime::parse(&created_at, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("created_at of {id}: {e}")))?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl SqliteOrderStore {
    /// Open (creating the file and its directory) and migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash; only an OS crash may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(parent) = std::path::Path::new(options.get_filename())
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
        Ok(Self {
            pool,
            claim_lock: Default::default(),
        })
    }

    async fn fetch_order<'e, E>(executor: E, id: &str) -> Result<Option<Order>, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(executor)
            .await?
            .map(|row| order_from_row(&row))
            .transpose()
    }
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    event: &OutboxEvent,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let headers: serde_json::Map<String, serde_json::Value> = event
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(event.event_id.to_string())
    .bind(event.subject)
    .bind(&event.key)
    .bind(serde_json::Value::Object(headers).to_string())
    .bind(&event.payload)
    .bind(ts(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl OrderStore for SqliteOrderStore {
    async fn create(
        &self,
        order: &Order,
        valid: &ValidOrder,
        event: &OutboxEvent,
        idempotency: Option<(&IdempotencyKey, i64)>,
    ) -> Result<Created, StoreError> {
        // BEGIN IMMEDIATE takes the write lock up front, so the idempotency lookup
        // and the insert cannot interleave with another create.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some((key, user_id)) = idempotency {
            let existing = sqlx::query(
                "SELECT request, order_id FROM idempotency_keys WHERE user_id = ? AND key = ?",
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
                let order_id: String = row.try_get("order_id")?;
                let order = Self::fetch_order(&mut *tx, &order_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "idempotency key points to missing order {order_id}"
                        ))
                    })?;
                return Ok(Created::Replayed(order));
            }
        }
        let items =
            serde_json::to_string(&valid.items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(order.id.to_string())
        .bind(order.user_id)
        .bind(items)
        .bind(valid.total_cents)
        .bind(order.status.as_str())
        .bind(ts(order.created_at))
        .bind(ts(order.created_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) VALUES (?, NULL, ?, ?)")
            .bind(order.id.to_string())
            .bind(order.status.as_str())
            .bind(ts(order.created_at))
            .execute(&mut *tx)
            .await?;
        insert_event(&mut tx, event, order.created_at).await?;
        if let Some((key, user_id)) = idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request, order_id, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(user_id)
            .bind(&key.key)
            .bind(&key.request)
            .bind(order.id.to_string())
            .bind(ts(order.created_at))
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
        Ok(Created::New(order.clone()))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        Self::fetch_order(&self.pool, &id.to_string()).await
    }

    async fn list_by_user(
        &self,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?"
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
        let id_text = id.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let updated =
            sqlx::query("UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?")
                .bind(to.as_str())
                .bind(ts(at))
                .bind(&id_text)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            let current = Self::fetch_order(&mut *tx, &id_text).await?;
            return Ok(match current {
                Some(order) => StatusChange::Conflict(order),
                None => StatusChange::NotFound,
            });
        }
        sqlx::query("INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) VALUES (?, ?, ?, ?)")
            .bind(&id_text)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
        insert_event(&mut tx, event, at).await?;
        let order = Self::fetch_order(&mut *tx, &id_text)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("order {id} vanished inside its update")))?;
        tx.commit().await?;
        Ok(StatusChange::Changed(order))
    }

    async fn unsent_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, subject, msg_key, headers, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let headers: String = row.try_get("headers")?;
                let headers: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&headers)
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
            })
            .collect()
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        mark_sent(&self.pool, ids).await
    }

    async fn claim_unsent(&self, limit: i64) -> Result<Box<dyn OutboxClaim>, StoreError> {
        let lock = self.claim_lock.clone().lock_owned().await;
        let events = self.unsent_events(limit).await?;
        Ok(Box::new(SqliteClaim {
            pool: self.pool.clone(),
            events,
            _lock: lock,
        }))
    }

    async fn unsent_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let (unsent, oldest): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), (SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1) \
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let oldest_created_at = oldest
            .map(|at| {
                OffsetDateTime::parse(&at, &Rfc3339)
                    .map_err(|e| StoreError::Corrupt(format!("outbox created_at {at:?}: {e}")))
            })
            .transpose()?;
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
