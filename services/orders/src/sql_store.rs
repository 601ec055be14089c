//! [`OrderStore`] on SQLite (the embedded default) or PostgreSQL (production),
//! with the same statements on both. Money is exact (integer cents); items and
//! outbox headers are JSON (text on SQLite, JSONB on PostgreSQL).
//!
//! Writes run in one transaction each. Where the kinds differ they say so
//! through [`orderly_db`]'s dialect: creates carrying one idempotency key take
//! turns (an advisory lock on PostgreSQL, the write lock SQLite takes at
//! `BEGIN IMMEDIATE`); outbox writes NOTIFY other processes on PostgreSQL;
//! relays claim unsent rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL and
//! one at a time within the process on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use orderly_bus::schema::events::NEW_ORDER;
use orderly_core::Shutdown;
use orderly_core::config::redact_url;
use orderly_db::{Arg, Db, DbError, DbKind, Migrations, On, Row, Tx, query};
use sqlx::migrate::Migrator;
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, ValidOrder, from_cents};
use crate::events::OutboxEvent;
use crate::outbox_listen::{self, OUTBOX_CHANNEL};
use crate::store::{
    Created, IdempotencyKey, OrderStore, OutboxBacklog, OutboxClaim, PendingEvent, StalePending,
    StatusChange, StoreError,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite/orders");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres/orders");

/// The orders schema.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
    postgres_table: "_sqlx_migrations_orders",
};

/// The columns [`order_from_row`] reads.
macro_rules! order_columns {
    () => {
        "id, user_id, items, total_cents, status, created_at"
    };
}

/// The orders database.
pub struct SqlOrderStore {
    db: Db,
    /// The turn of a SQLite relay's claim (see [`OrderStore::claim_unsent`]).
    claim_turn: Arc<Mutex<()>>,
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Corrupt(what) => StoreError::Corrupt(what),
            other if other.is_unavailable() => StoreError::Unavailable(other.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl SqlOrderStore {
    /// Open the database `url` names and apply the migrations
    /// ([`orderly_db::open`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let db = orderly_db::open(url, &MIGRATIONS)
            .await
            .map_err(|e| match e {
                DbError::Open(source) => {
                    StoreError::Database(format!("cannot open {}: {source}", redact_url(url)))
                }
                other => other.into(),
            })?;
        Ok(Self {
            db,
            claim_turn: Arc::default(),
        })
    }

    /// The database, to close it.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let id = row.uuid("id")?;
    let status = row.text("status")?;
    Ok(Order {
        id,
        user_id: row.int("user_id")?,
        items: row
            .json("items")
            .map_err(|e| StoreError::Corrupt(format!("items of {id}: {e}")))?,
        total_price: from_cents(row.int("total_cents")?),
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?} of {id}")))?,
        created_at: row.time("created_at")?,
    })
}

fn pending_from_row(row: &Row) -> Result<PendingEvent, StoreError> {
    let headers: serde_json::Map<String, serde_json::Value> = row
        .json("headers")
        .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?;
    Ok(PendingEvent {
        id: row.int("id")?,
        subject: row.text("subject")?,
        key: row.opt_text("msg_key")?,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect(),
        payload: row.text("payload")?,
    })
}

async fn fetch_order<'a>(on: impl Into<On<'a>>, id: Uuid) -> Result<Option<Order>, StoreError> {
    query(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(on)
    .await?
    .map(|row| order_from_row(&row))
    .transpose()
}

async fn record_history(
    tx: &mut Tx,
    id: Uuid,
    from: Option<OrderStatus>,
    to: OrderStatus,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}

/// The event row, and a NOTIFY for relays in other processes; both take
/// effect only if the transaction commits.
async fn insert_event(
    tx: &mut Tx,
    event: &OutboxEvent,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let headers: serde_json::Map<String, serde_json::Value> = event
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    query(
        "INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.event_id)
    .bind(event.subject)
    .bind(&event.key)
    .bind(Arg::Json(serde_json::Value::Object(headers).to_string()))
    .bind(&event.payload)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.notify(OUTBOX_CHANNEL).await?;
    Ok(())
}

async fn unsent<'a>(
    on: impl Into<On<'a>>,
    limit: i64,
    lock: &'static str,
) -> Result<Vec<PendingEvent>, StoreError> {
    query(format!(
        "SELECT id, subject, msg_key, headers, payload FROM outbox \
         WHERE sent_at IS NULL ORDER BY id LIMIT $1{lock}"
    ))
    .bind(limit)
    .fetch_all(on)
    .await?
    .iter()
    .map(pending_from_row)
    .collect()
}

async fn mark_sent<'a>(on: impl Into<On<'a>>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "UPDATE outbox SET sent_at = $1 WHERE id IN ({})",
        placeholders.join(", ")
    );
    ids.iter()
        .fold(query(sql).bind(OffsetDateTime::now_utc()), |q, id| {
            q.bind(*id)
        })
        .execute(on)
        .await?;
    Ok(())
}

/// Unsent events a relay holds until it finishes them.
struct Claim {
    events: Vec<PendingEvent>,
    hold: Hold,
}

enum Hold {
    /// PostgreSQL: the rows stay locked by this open transaction.
    Rows(Tx),
    /// SQLite: this relay's turn, over the pool.
    Turn(OwnedMutexGuard<()>, Db),
}

#[async_trait]
impl OutboxClaim for Claim {
    fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    async fn finish(self: Box<Self>, sent: &[i64]) -> Result<(), StoreError> {
        match self.hold {
            Hold::Rows(mut tx) => {
                mark_sent(&mut tx, sent).await?;
                tx.commit().await?;
            }
            Hold::Turn(_turn, db) => mark_sent(&db, sent).await?,
        }
        Ok(())
    }
}

#[async_trait]
impl OrderStore for SqlOrderStore {
    async fn create(
        &self,
        order: &Order,
        valid: &ValidOrder,
        event: &OutboxEvent,
        idempotency: Option<(&IdempotencyKey, i64)>,
    ) -> Result<Created, StoreError> {
        let order = Order {
            created_at: self.db.kind().time_as_stored(order.created_at),
            ..order.clone()
        };
        let mut tx = self.db.begin_write().await?;
        if let Some((key, user_id)) = idempotency {
            // Creates carrying the same key take turns: the second waits for the
            // first to commit, then finds its row and replays it.
            tx.serialise_on(&key.key, user_id).await?;
            let existing = query(
                "SELECT request, order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(&key.key)
            .fetch_optional(&mut tx)
            .await?;
            if let Some(row) = existing {
                if row.text("request")? != key.request {
                    return Ok(Created::KeyReused);
                }
                let order_id = row.uuid("order_id")?;
                let earlier = fetch_order(&mut tx, order_id).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "idempotency key points to missing order {order_id}"
                    ))
                })?;
                return Ok(Created::Replayed(earlier));
            }
        }
        let items =
            serde_json::to_string(&valid.items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        query(
            "INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(order.id)
        .bind(order.user_id)
        .bind(Arg::Json(items))
        .bind(valid.total_cents)
        .bind(order.status.as_str())
        .bind(order.created_at)
        .execute(&mut tx)
        .await?;
        record_history(&mut tx, order.id, None, order.status, order.created_at).await?;
        insert_event(&mut tx, event, order.created_at).await?;
        if let Some((key, user_id)) = idempotency {
            let inserted = query(
                "INSERT INTO idempotency_keys (user_id, key, request, order_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(&key.key)
            .bind(&key.request)
            .bind(order.id)
            .bind(order.created_at)
            .execute(&mut tx)
            .await;
            match inserted {
                Err(e) if e.is_unique_violation() => return Ok(Created::KeyReused),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        tx.commit().await?;
        Ok(Created::New(order))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        fetch_order(&self.db, id).await
    }

    async fn list_by_user(
        &self,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, StoreError> {
        query(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE user_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db)
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
        let at = self.db.kind().time_as_stored(at);
        let mut tx = self.db.begin_write().await?;
        let updated = query(concat!(
            "UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4 \
             RETURNING ",
            order_columns!()
        ))
        .bind(to.as_str())
        .bind(at)
        .bind(id)
        .bind(from.as_str())
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = updated else {
            return Ok(match fetch_order(&mut tx, id).await? {
                Some(order) => StatusChange::Conflict(order),
                None => StatusChange::NotFound,
            });
        };
        let order = order_from_row(&row)?;
        record_history(&mut tx, id, Some(from), to, at).await?;
        insert_event(&mut tx, event, at).await?;
        tx.commit().await?;
        Ok(StatusChange::Changed(order))
    }

    async fn unsent_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
        unsent(&self.db, limit, "").await
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        mark_sent(&self.db, ids).await
    }

    async fn unsent_count(&self) -> Result<i64, StoreError> {
        Ok(
            query("SELECT COUNT(*) AS unsent FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.db)
                .await?
                .int("unsent")?,
        )
    }

    async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row = query(
            "SELECT COUNT(*) AS unsent, \
             (SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1) AS oldest \
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.db)
        .await?;
        Ok(OutboxBacklog {
            unsent: row.int("unsent")?,
            oldest_created_at: row.opt_time("oldest")?,
        })
    }

    /// PostgreSQL locks the claimed rows in a transaction that lives as long
    /// as the claim, and other relays (in any process) skip them. SQLite has
    /// no row locks, and every relay on a SQLite file is in this process: they
    /// take turns instead, and hold no transaction, so writers are not blocked
    /// while a relay publishes.
    async fn claim_unsent(&self, limit: i64) -> Result<Box<dyn OutboxClaim>, StoreError> {
        let kind = self.db.kind();
        let (events, hold) = match kind {
            DbKind::Postgres => {
                let mut tx = self.db.begin_write().await?;
                let events = unsent(&mut tx, limit, kind.skip_locked()).await?;
                (events, Hold::Rows(tx))
            }
            DbKind::Sqlite => {
                let turn = self.claim_turn.clone().lock_owned().await;
                let events = unsent(&self.db, limit, kind.skip_locked()).await?;
                (events, Hold::Turn(turn, self.db.clone()))
            }
        };
        Ok(Box::new(Claim { events, hold }))
    }

    async fn watch_outbox(&self, wake: Arc<Notify>, shutdown: Shutdown) {
        if let Db::Postgres(pool) = &self.db {
            outbox_listen::watch(pool, wake, shutdown).await;
        }
    }

    /// Two statements rather than a join: the outbox has no index on
    /// `msg_key`, so its rows are looked up once for the whole batch, and
    /// only when some order is stale. SQLite compares its RFC 3339 texts,
    /// which order like the times they hold to within a second.
    async fn stale_pending(
        &self,
        created_before: OffsetDateTime,
        from: Option<&StalePending>,
        limit: i64,
    ) -> Result<Vec<StalePending>, StoreError> {
        let page = match from {
            None => query(
                "SELECT id, created_at FROM orders WHERE status = $1 AND created_at < $2 \
                 ORDER BY created_at, id LIMIT $3",
            )
            .bind(OrderStatus::Pending.as_str())
            .bind(created_before)
            .bind(limit),
            Some(last) => query(
                "SELECT id, created_at FROM orders WHERE status = $1 AND created_at < $2 \
                 AND (created_at > $4 OR (created_at = $4 AND id > $5)) \
                 ORDER BY created_at, id LIMIT $3",
            )
            .bind(OrderStatus::Pending.as_str())
            .bind(created_before)
            .bind(limit)
            .bind(last.created_at)
            .bind(last.order_id),
        };
        let orders = page.fetch_all(&self.db).await?;
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let mut stale = orders
            .iter()
            .map(|row| {
                Ok(StalePending {
                    order_id: row.uuid("id")?,
                    created_at: row.time("created_at")?,
                    new_order_event: None,
                    traceparent: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let placeholders: Vec<String> = (0..stale.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT event_id, msg_key, headers FROM outbox WHERE subject = $1 AND msg_key IN ({}) \
             ORDER BY id",
            placeholders.join(", ")
        );
        let events = stale
            .iter()
            .fold(query(sql).bind(NEW_ORDER), |q, s| {
                q.bind(s.order_id.to_string())
            })
            .fetch_all(&self.db)
            .await?;
        for row in &events {
            let key = row.opt_text("msg_key")?.unwrap_or_default();
            let headers: serde_json::Map<String, serde_json::Value> = row
                .json("headers")
                .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?;
            // The first new_order row of an order is the one the consumer saw first.
            if let Some(order) = stale
                .iter_mut()
                .find(|s| s.new_order_event.is_none() && s.order_id.to_string() == key)
            {
                order.new_order_event = Some(row.uuid("event_id")?);
                order.traceparent = headers
                    .get(orderly_bus::header::TRACEPARENT)
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
            }
        }
        Ok(stale)
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(self.db.check().await?)
    }
}
