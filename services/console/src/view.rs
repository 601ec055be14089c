//! What the console reads from the orders database: a port of its own (read
//! queries only), and [`SqlOrdersView`], its implementation on SQLite and
//! PostgreSQL. Every query is bounded (a limit, or an index range) so a page
//! stays fast with many orders; see migrations/*/orders/0004_orders_console.sql.

use async_trait::async_trait;
use orderly_db::{Db, DbError, DbKind, Row, query};
use time::OffsetDateTime;
use uuid::Uuid;

/// About how many payments the chart's latency is the mean of (a sample,
/// so the overview stays fast however many orders are PAID per minute).
const LATENCY_SAMPLE: i64 = 1_000;

/// The statuses an order can have, in the order the overview lists them.
pub const STATUSES: [&str; 4] = ["PENDING", "PAID", "SHIPPED", "CANCELED"];

#[derive(Debug, thiserror::Error)]
#[error("orders database: {0}")]
pub struct ViewError(String);

impl From<DbError> for ViewError {
    fn from(e: DbError) -> Self {
        ViewError(e.to_string())
    }
}

/// One minute of the pipeline (`minute`: `YYYY-MM-DDTHH:MM`, UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Minute {
    pub minute: String,
    pub created: i64,
    pub paid: i64,
    /// The mean created→PAID time of the orders PAID in this minute (of a
    /// sample of them when there are many, see `LATENCY_SAMPLE`).
    pub paid_latency_ms: Option<i64>,
}

/// Unsent outbox rows and how long the oldest has waited.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OutboxLag {
    pub unsent: i64,
    pub oldest_unsent_at: Option<String>,
    pub oldest_age_seconds: f64,
}

/// An order as the console lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: i64,
    pub status: String,
    pub total_cents: i64,
    pub created_at: OffsetDateTime,
}

/// One status change of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub from: Option<String>,
    pub to: String,
    pub at: OffsetDateTime,
}

/// One outbox row of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    pub event_id: String,
    pub subject: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub payload: String,
    pub created_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
}

/// An order with everything the database holds about it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderStory {
    pub order: OrderRow,
    /// The items as the client sent them (JSON).
    pub items: serde_json::Value,
    pub history: Vec<StatusChange>,
    /// Its outbox rows still kept (sent rows go after the retention time).
    pub events: Vec<OrderEvent>,
}

impl OrderStory {
    /// The `new_order` event's id: what the consumer names the order's job after.
    pub fn new_order_event(&self) -> Option<&str> {
        self.events
            .iter()
            .find(|e| e.subject == orderly_bus::schema::events::NEW_ORDER)
            .map(|e| e.event_id.as_str())
    }

    /// The trace id the order's requests, events and job attempts log under,
    /// from the first event's `traceparent` (`00-<trace id>-<span id>-<flags>`).
    pub fn trace_id(&self) -> Option<&str> {
        self.events.iter().find_map(|e| {
            let tp = e.headers.get("traceparent")?.as_str()?;
            let id = tp.split('-').nth(1)?;
            (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
        })
    }
}

/// The console's read queries on the orders database.
#[async_trait]
pub trait OrdersView: Send + Sync + 'static {
    /// How many orders are in each status (statuses without orders: 0).
    async fn counts_by_status(&self) -> Result<Vec<(String, i64)>, ViewError>;

    /// Orders created and PAID per minute since `since`, oldest first (only
    /// minutes with something in them).
    async fn minutes(&self, since: OffsetDateTime) -> Result<Vec<Minute>, ViewError>;

    /// How many orders are PENDING since before `before`, and the oldest
    /// `limit` of them.
    async fn pending_since(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<(i64, Vec<OrderRow>), ViewError>;

    /// The outbox rows not yet published.
    async fn outbox_lag(&self, now: OffsetDateTime) -> Result<OutboxLag, ViewError>;

    /// One order and its history and events.
    async fn order(&self, id: Uuid) -> Result<Option<OrderStory>, ViewError>;

    /// A user's newest `limit` orders.
    async fn orders_of_user(&self, user_id: i64, limit: i64) -> Result<Vec<OrderRow>, ViewError>;
}

/// [`OrdersView`] on the orders database (the pool the orders store uses).
pub struct SqlOrdersView {
    db: Db,
}

impl SqlOrdersView {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// `column` (a time) truncated to the minute as `YYYY-MM-DDTHH:MM` text:
    /// the one place the two kinds are written differently (RFC 3339 text on
    /// SQLite, TIMESTAMPTZ on PostgreSQL).
    fn minute_of(&self, column: &str) -> String {
        match self.db.kind() {
            DbKind::Sqlite => format!("substr({column}, 1, 16)"),
            DbKind::Postgres => format!(
                "to_char(date_trunc('minute', {column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI')"
            ),
        }
    }

    /// Milliseconds from `earlier` to `later` (SQLite's julianday arithmetic
    /// lands a hair off whole milliseconds: callers round, not truncate).
    fn millis_between(&self, earlier: &str, later: &str) -> String {
        match self.db.kind() {
            DbKind::Sqlite => {
                format!("(julianday({later}) - julianday({earlier})) * 86400000.0")
            }
            DbKind::Postgres => format!("EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000.0"),
        }
    }
}

fn order_row(row: &Row) -> Result<OrderRow, DbError> {
    Ok(OrderRow {
        id: row.uuid("id")?,
        user_id: row.int("user_id")?,
        status: row.text("status")?,
        total_cents: row.int("total_cents")?,
        created_at: row.time("created_at")?,
    })
}

const ORDER_COLUMNS: &str = "id, user_id, status, total_cents, created_at";

#[async_trait]
impl OrdersView for SqlOrdersView {
    async fn counts_by_status(&self) -> Result<Vec<(String, i64)>, ViewError> {
        // Read from orders_by_status_created alone (a covering index scan).
        let rows = query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
            .fetch_all(&self.db)
            .await?;
        let mut counts: Vec<(String, i64)> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
        for row in rows {
            let (status, n) = (row.text("status")?, row.int("n")?);
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some(c) => c.1 = n,
                None => counts.push((status, n)),
            }
        }
        Ok(counts)
    }

    async fn minutes(&self, since: OffsetDateTime) -> Result<Vec<Minute>, ViewError> {
        // One index range per status (status is the index's first column),
        // and the partial index of PAID history rows.
        let statuses = STATUSES.map(|s| format!("'{s}'")).join(", ");
        let created = format!(
            "SELECT {m} AS minute, COUNT(*) AS n FROM orders \
             WHERE status IN ({statuses}) AND created_at >= $1 GROUP BY 1",
            m = self.minute_of("created_at"),
        );
        // The PAID counts read the partial index alone; the latency needs
        // each order's creation time, so it is the mean of a sample: every
        // k-th payment (by history id), k chosen for about LATENCY_SAMPLE of them.
        let paid = format!(
            "SELECT {m} AS minute, COUNT(*) AS n FROM order_status_history h \
             WHERE h.to_status = 'PAID' AND h.changed_at >= $1 GROUP BY 1",
            m = self.minute_of("h.changed_at"),
        );
        let latency = format!(
            "SELECT {m} AS minute, CAST(ROUND(AVG({ms})) AS BIGINT) AS latency_ms \
             FROM order_status_history h JOIN orders o ON o.id = h.order_id \
             WHERE h.to_status = 'PAID' AND h.changed_at >= $1 AND h.id % $2 = 0 GROUP BY 1",
            m = self.minute_of("h.changed_at"),
            ms = self.millis_between("o.created_at", "h.changed_at"),
        );
        let created = query(created).bind(since).fetch_all(&self.db).await?;
        let paid = query(paid).bind(since).fetch_all(&self.db).await?;
        let mut minutes: std::collections::BTreeMap<String, Minute> = Default::default();
        for row in created {
            let minute = row.text("minute")?;
            let m = minutes.entry(minute.clone()).or_default();
            m.minute = minute;
            m.created = row.int("n")?;
        }
        let mut payments = 0;
        for row in paid {
            let minute = row.text("minute")?;
            let m = minutes.entry(minute.clone()).or_default();
            m.minute = minute;
            m.paid = row.int("n")?;
            payments += m.paid;
        }
        let every = (payments / LATENCY_SAMPLE).max(1);
        for row in query(latency)
            .bind(since)
            .bind(every)
            .fetch_all(&self.db)
            .await?
        {
            if let Some(m) = minutes.get_mut(&row.text("minute")?) {
                m.paid_latency_ms = Some(row.int("latency_ms")?);
            }
        }
        Ok(minutes.into_values().collect())
    }

    async fn pending_since(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<(i64, Vec<OrderRow>), ViewError> {
        // The status is written out, not bound: only then may the partial
        // index orders_pending_by_age serve the query.
        let count =
            query("SELECT COUNT(*) AS n FROM orders WHERE status = 'PENDING' AND created_at < $1")
                .bind(before)
                .fetch_one(&self.db)
                .await?
                .int("n")?;
        let rows = query(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'PENDING' AND created_at < $1 \
             ORDER BY created_at, id LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let rows = rows.iter().map(order_row).collect::<Result<_, _>>()?;
        Ok((count, rows))
    }

    async fn outbox_lag(&self, now: OffsetDateTime) -> Result<OutboxLag, ViewError> {
        let row = query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.db)
        .await?;
        let oldest = row.opt_time("oldest")?;
        Ok(OutboxLag {
            unsent: row.int("n")?,
            oldest_unsent_at: oldest.map(crate::html::time_text),
            oldest_age_seconds: oldest
                .map(|at| (now - at).as_seconds_f64().max(0.0))
                .unwrap_or(0.0),
        })
    }

    async fn order(&self, id: Uuid) -> Result<Option<OrderStory>, ViewError> {
        let Some(row) = query(format!(
            "SELECT {ORDER_COLUMNS}, items FROM orders WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        else {
            return Ok(None);
        };
        let order = order_row(&row)?;
        let items = row.json("items")?;
        let history = query(
            "SELECT from_status, to_status, changed_at FROM order_status_history \
             WHERE order_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| {
            Ok(StatusChange {
                from: r.opt_text("from_status")?,
                to: r.text("to_status")?,
                at: r.time("changed_at")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        // The outbox has no index on the key (the API's writes keep theirs
        // few); retention keeps the table to the recent rows.
        let events = query(
            "SELECT event_id, subject, headers, payload, created_at, sent_at FROM outbox \
             WHERE msg_key = $1 ORDER BY id LIMIT 100",
        )
        .bind(id.to_string())
        .fetch_all(&self.db)
        .await?
        .iter()
        .map(|r| {
            Ok(OrderEvent {
                event_id: match self.db.kind() {
                    DbKind::Sqlite => r.text("event_id")?,
                    DbKind::Postgres => r.uuid("event_id")?.to_string(),
                },
                subject: r.text("subject")?,
                headers: r.json("headers")?,
                payload: r.text("payload")?,
                created_at: r.time("created_at")?,
                sent_at: r.opt_time("sent_at")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        Ok(Some(OrderStory {
            order,
            items,
            history,
            events,
        }))
    }

    async fn orders_of_user(&self, user_id: i64, limit: i64) -> Result<Vec<OrderRow>, ViewError> {
        let rows = query(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        Ok(rows.iter().map(order_row).collect::<Result<_, _>>()?)
    }
}
