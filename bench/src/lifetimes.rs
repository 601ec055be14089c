//! Orders' lives as the orders database recorded them: when each was created
//! and when it became PAID (its status history), read from the SQLite file or
//! the PostgreSQL database of a pipeline run. The server's own timestamps, so
//! the figures need no polling from the bench.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One order: created, and PAID if it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Life {
    pub(crate) created: OffsetDateTime,
    pub(crate) paid: Option<OffsetDateTime>,
}

const LIVES: &str = "SELECT o.created_at AS created, h.changed_at AS paid FROM orders o \
     LEFT JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'PAID'";
const PENDING: &str = "SELECT COUNT(*) AS n FROM orders WHERE status = 'PENDING'";
const OUTBOX: &str = "SELECT COUNT(*) AS n FROM outbox";

/// A read-only view of an orders database.
pub(crate) enum OrdersDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl OrdersDb {
    /// The SQLite file `path`, read-only.
    pub(crate) async fn sqlite(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .read_only(true)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .with_context(|| format!("open {}", path.display()))?;
        Ok(Self::Sqlite(pool))
    }

    /// The PostgreSQL database `url`.
    pub(crate) async fn postgres(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .context("connect to the orders database")?;
        Ok(Self::Postgres(pool))
    }

    /// Every order's life.
    pub(crate) async fn lives(&self) -> Result<Vec<Life>> {
        match self {
            OrdersDb::Sqlite(pool) => sqlx::query(LIVES)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    let created: String = row.try_get("created")?;
                    let paid: Option<String> = row.try_get("paid")?;
                    Ok(Life {
                        created: OffsetDateTime::parse(&created, &Rfc3339)?,
                        paid: paid
                            .map(|p| OffsetDateTime::parse(&p, &Rfc3339))
                            .transpose()?,
                    })
                })
                .collect(),
            OrdersDb::Postgres(pool) => sqlx::query(LIVES)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(Life {
                        created: row.try_get("created")?,
                        paid: row.try_get("paid")?,
                    })
                })
                .collect(),
        }
    }

    /// Orders not yet PAID (or otherwise moved on).
    pub(crate) async fn pending(&self) -> Result<i64> {
        self.count(PENDING).await
    }

    /// Outbox rows, sent or not.
    pub(crate) async fn outbox_rows(&self) -> Result<i64> {
        self.count(OUTBOX).await
    }

    async fn count(&self, sql: &'static str) -> Result<i64> {
        Ok(match self {
            OrdersDb::Sqlite(pool) => sqlx::query(sql).fetch_one(pool).await?.try_get("n")?,
            OrdersDb::Postgres(pool) => sqlx::query(sql).fetch_one(pool).await?.try_get("n")?,
        })
    }

    pub(crate) async fn close(&self) {
        match self {
            OrdersDb::Sqlite(pool) => pool.close().await,
            OrdersDb::Postgres(pool) => pool.close().await,
        }
    }
}
