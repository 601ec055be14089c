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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

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

/// How long a PostgreSQL relay's claim keeps other relays off its rows: far
/// longer than publishing a batch takes, short enough that the rows of a relay
/// that died mid-batch go out again soon.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);

/// The orders database.
pub struct SqlOrderStore {
    db: Db,
    /// The turn of a SQLite relay's claim (see [`OrderStore::claim_unsent`]).
    claim_turn: Arc<Mutex<()>>,
    /// How long a PostgreSQL claim lasts unless finished.
    claim_lease: Duration,
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
            claim_lease: DEFAULT_CLAIM_LEASE,
        })
    }

    /// Claims last `lease` instead of [`DEFAULT_CLAIM_LEASE`].
    pub fn with_claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
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
    query(
        "INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event.event_id)
    .bind(event.subject)
    .bind(&event.key)
    .bind(Arg::Json(headers_json(event)))
    .bind(&event.payload)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.notify(OUTBOX_CHANNEL).await?;
    Ok(())
}

async fn unsent<'a>(on: impl Into<On<'a>>, limit: i64) -> Result<Vec<PendingEvent>, StoreError> {
    query(
        "SELECT id, subject, msg_key, headers, payload FROM outbox \
         WHERE sent_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(on)
    .await?
    .iter()
    .map(pending_from_row)
    .collect()
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Set `sent_at` (and end the claim) of `ids`.
async fn mark_sent<'a>(on: impl Into<On<'a>>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE outbox SET sent_at = $1, claimed_until = NULL WHERE id IN ({})",
        placeholders(2, ids.len())
    );
    ids.iter()
        .fold(query(sql).bind(OffsetDateTime::now_utc()), |q, id| {
            q.bind(*id)
        })
        .execute(on)
        .await?;
    Ok(())
}

/// End the claim of `ids` without sending them: other relays may take them now.
async fn release_claims(db: &Db, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE outbox SET claimed_until = NULL WHERE sent_at IS NULL AND id IN ({})",
        placeholders(1, ids.len())
    );
    ids.iter()
        .fold(query(sql), |q, id| q.bind(*id))
        .execute(db)
        .await?;
    Ok(())
}

/// Mark `ids` sent in a transaction of its own: on SQLite a write goes
/// through the database's one writer.
async fn mark_sent_now(db: &Db, ids: &[i64]) -> Result<(), StoreError> {
    match db.kind() {
        DbKind::Postgres => mark_sent(db, ids).await,
        DbKind::Sqlite => {
            let mut tx = db.begin_write().await?;
            mark_sent(&mut tx, ids).await?;
            Ok(tx.commit().await?)
        }
    }
}

/// Unsent events a relay holds until it finishes them.
struct Claim {
    events: Vec<PendingEvent>,
    hold: Option<Hold>,
}

enum Hold {
    /// PostgreSQL: the rows carry this relay's claim (`claimed_until`),
    /// committed before it publishes; no transaction stays open.
    Lease(Db),
    /// SQLite: this relay's turn, over the pool.
    Turn(OwnedMutexGuard<()>, Db),
}

#[async_trait]
impl OutboxClaim for Claim {
    fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    async fn finish(mut self: Box<Self>, sent: &[i64]) -> Result<(), StoreError> {
        match self.hold.take() {
            Some(Hold::Lease(db)) => {
                mark_sent(&db, sent).await?;
                let sent: HashSet<i64> = sent.iter().copied().collect();
                let rest: Vec<i64> = self
                    .events
                    .iter()
                    .map(|e| e.id)
                    .filter(|id| !sent.contains(id))
                    .collect();
                release_claims(&db, &rest).await?;
            }
            Some(Hold::Turn(_turn, db)) => mark_sent_now(&db, sent).await?,
            None => {}
        }
        Ok(())
    }
}

impl Drop for Claim {
    /// A claim dropped unfinished hands its rows back at once where it can
    /// (else they wait for the lease to end).
    fn drop(&mut self) {
        if let Some(Hold::Lease(db)) = self.hold.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let ids: Vec<i64> = self.events.iter().map(|e| e.id).collect();
            runtime.spawn(async move {
                if let Err(e) = release_claims(&db, &ids).await {
                    tracing::warn!(error = %e, "could not hand back unsent outbox rows; they go out when the claim expires");
                }
            });
        }
    }
}

/// The history rows and the outbox rows of a batched status change: one
/// multi-row INSERT each.
fn history_and_event_rows(
    changed: &[(Order, OutboxEvent)],
    from: OrderStatus,
    to: OrderStatus,
    at: OffsetDateTime,
) -> (orderly_db::Query, orderly_db::Query) {
    // $1 from, $2 to, $3 at; then one id per row.
    let history_sql = format!(
        "INSERT INTO order_status_history (order_id, from_status, to_status, changed_at) VALUES {}",
        (0..changed.len())
            .map(|i| format!("(${}, $1, $2, $3)", i + 4))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let history = changed.iter().fold(
        query(history_sql)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(at),
        |q, (order, _)| q.bind(order.id),
    );
    // $1 at; then five values per row.
    let outbox_sql = format!(
        "INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES {}",
        (0..changed.len())
            .map(|i| {
                let b = 2 + i * 5;
                format!("(${b}, ${}, ${}, ${}, ${}, $1)", b + 1, b + 2, b + 3, b + 4)
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut outbox = query(outbox_sql).bind(at);
    for (_, event) in changed {
        outbox = outbox
            .bind(event.event_id)
            .bind(event.subject)
            .bind(&event.key)
            .bind(Arg::Json(headers_json(event)))
            .bind(&event.payload);
    }
    (history, outbox)
}

fn headers_json(event: &OutboxEvent) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = event
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    serde_json::Value::Object(headers).to_string()
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
        unsent(&self.db, limit).await
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        mark_sent_now(&self.db, ids).await
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

    /// PostgreSQL: one statement claims the rows for the lease
    /// (`claimed_until`, skipping rows other relays hold or are claiming) and
    /// commits, so no transaction stays open while the relay publishes. SQLite
    /// has no row locks, and every relay on a SQLite file is in this process:
    /// they take turns instead, and hold no transaction either.
    async fn claim_unsent(&self, limit: i64) -> Result<Box<dyn OutboxClaim>, StoreError> {
        let (events, hold) = match self.db.kind() {
            DbKind::Postgres => {
                let now = OffsetDateTime::now_utc();
                let mut events = query(
                    "UPDATE outbox SET claimed_until = $1 WHERE id IN (\
                     SELECT id FROM outbox WHERE sent_at IS NULL \
                     AND (claimed_until IS NULL OR claimed_until < $2) \
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING id, subject, msg_key, headers, payload",
                )
                .bind(now + self.claim_lease)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.db)
                .await?
                .iter()
                .map(pending_from_row)
                .collect::<Result<Vec<_>, _>>()?;
                events.sort_by_key(|e| e.id);
                (events, Hold::Lease(self.db.clone()))
            }
            DbKind::Sqlite => {
                let turn = self.claim_turn.clone().lock_owned().await;
                let events = unsent(&self.db, limit).await?;
                (events, Hold::Turn(turn, self.db.clone()))
            }
        };
        Ok(Box::new(Claim {
            events,
            hold: Some(hold),
        }))
    }

    /// Oldest first, at most `limit` rows, and only rows written before
    /// `before` too: the scan stops at the first younger row, so a pass over a
    /// table of young rows costs nothing.
    async fn delete_sent_before(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let before = self.db.kind().time_as_stored(before);
        let delete = query(
            "DELETE FROM outbox WHERE id IN (\
             SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1 \
             AND id < COALESCE(\
               (SELECT id FROM outbox WHERE created_at >= $1 ORDER BY id LIMIT 1), \
               (SELECT MAX(id) + 1 FROM outbox)) \
             ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(limit);
        Ok(match self.db.kind() {
            DbKind::Postgres => delete.execute(&self.db).await?,
            DbKind::Sqlite => {
                let mut tx = self.db.begin_write().await?;
                let deleted = delete.execute(&mut tx).await?;
                tx.commit().await?;
                deleted
            }
        })
    }

    async fn outbox_rows(&self) -> Result<i64, StoreError> {
        Ok(query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&self.db)
            .await?
            .int("n")?)
    }

    async fn change_statuses(
        &self,
        ids: &[Uuid],
        from: OrderStatus,
        to: OrderStatus,
        at: OffsetDateTime,
        event_for: &(dyn for<'o> Fn(&'o Order) -> OutboxEvent + Send + Sync),
    ) -> Result<Vec<StatusChange>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let at = self.db.kind().time_as_stored(at);
        let mut tx = self.db.begin_write().await?;
        let update = format!(
            concat!(
                "UPDATE orders SET status = $1, updated_at = $2 WHERE status = $3 AND id IN ({}) RETURNING ",
                order_columns!()
            ),
            placeholders(4, ids.len())
        );
        let mut changed: HashMap<Uuid, Order> = HashMap::new();
        for row in ids
            .iter()
            .fold(
                query(update).bind(to.as_str()).bind(at).bind(from.as_str()),
                |q, id| q.bind(*id),
            )
            .fetch_all(&mut tx)
            .await?
        {
            let order = order_from_row(&row)?;
            changed.insert(order.id, order);
        }
        let mut others: HashMap<Uuid, Order> = HashMap::new();
        let missed: Vec<Uuid> = ids
            .iter()
            .filter(|id| !changed.contains_key(id))
            .copied()
            .collect();
        if !missed.is_empty() {
            let select = format!(
                concat!("SELECT ", order_columns!(), " FROM orders WHERE id IN ({})"),
                placeholders(1, missed.len())
            );
            for row in missed
                .iter()
                .fold(query(select), |q, id| q.bind(*id))
                .fetch_all(&mut tx)
                .await?
            {
                let order = order_from_row(&row)?;
                others.insert(order.id, order);
            }
        }
        // In the callers' order; an id asked for twice changes once.
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut written: Vec<(Order, OutboxEvent)> = Vec::with_capacity(changed.len());
        for id in ids {
            outcomes.push(match changed.remove(id) {
                Some(order) => {
                    written.push((order.clone(), event_for(&order)));
                    StatusChange::Changed(order)
                }
                None => match written.iter().find(|(o, _)| o.id == *id) {
                    Some((order, _)) => StatusChange::Conflict(order.clone()),
                    None => match others.get(id) {
                        Some(order) => StatusChange::Conflict(order.clone()),
                        None => StatusChange::NotFound,
                    },
                },
            });
        }
        if !written.is_empty() {
            let (history, outbox) = history_and_event_rows(&written, from, to, at);
            history.execute(&mut tx).await?;
            outbox.execute(&mut tx).await?;
            tx.notify(OUTBOX_CHANNEL).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
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
