//! One statement, written once, run on either kind of database.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::types::{Json, JsonRawValue};
use std::sync::Arc;

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::sqlite_writer::{SqliteTx, SqliteWriter};
use crate::{DbError, DbKind};

/// An open database: a connection pool of either kind. Cloning shares the pool.
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file (or in-memory database).
    Sqlite(SqliteDb),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

impl Db {
    /// Which kind this is.
    pub fn kind(&self) -> DbKind {
        match self {
            Db::Sqlite(_) => DbKind::Sqlite,
            Db::Postgres(_) => DbKind::Postgres,
        }
    }

    /// Close every connection (waits for those in use to come back).
    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => {
                db.writer.release().await;
                db.pool.close().await
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn check(&self) -> Result<(), DbError> {
        query("SELECT 1").execute(self).await.map(drop)
    }
}

/// A SQLite database: its pool (readers) and its one writer.
#[derive(Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    writer: Arc<SqliteWriter>,
}

impl SqliteDb {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self {
            writer: Arc::new(SqliteWriter::new(pool.clone())),
            pool,
        }
    }

    /// The pool statements outside a write transaction run on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn begin_write(&self) -> Result<SqliteTx, DbError> {
        self.writer.begin().await
    }
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqliteDb").field(&self.pool).finish()
    }
}

/// An open transaction; dropped without [`Tx::commit`] it rolls back.
#[derive(Debug)]
pub enum Tx {
    /// On SQLite: a savepoint of the writer's group (see `sqlite_writer`).
    Sqlite(SqliteTx),
    /// On PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Which kind of database this runs on.
    pub fn kind(&self) -> DbKind {
        match self {
            Tx::Sqlite(_) => DbKind::Sqlite,
            Tx::Postgres(_) => DbKind::Postgres,
        }
    }

    /// Make every statement of the transaction permanent.
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Where a statement runs: on any connection of the pool, or inside a transaction.
#[derive(Debug)]
pub enum On<'a> {
    /// A connection of the pool, for this statement only.
    Pool(&'a Db),
    /// The transaction's connection.
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Db> for On<'a> {
    fn from(db: &'a Db) -> Self {
        On::Pool(db)
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        On::Tx(tx)
    }
}

/// A value for a `$N` placeholder. The kinds that both databases store alike
/// bind as themselves; the others as each kind stores them: on SQLite UUIDs
/// as hyphenated text, times as RFC 3339 text and JSON as text, on
/// PostgreSQL as `UUID`, `TIMESTAMPTZ` and `JSONB`.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// Text or NULL.
    OptText(Option<String>),
    /// A UUID.
    Uuid(Uuid),
    /// A point in time.
    Time(OffsetDateTime),
    /// A JSON document, already serialised.
    Json(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_string))
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::OptText(v.clone())
    }
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(v)
    }
}

impl From<OffsetDateTime> for Arg {
    fn from(v: OffsetDateTime) -> Self {
        Arg::Time(v)
    }
}

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;
type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

impl Arg {
    fn bind_sqlite(self, q: SqliteQuery) -> SqliteQuery {
        match self {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) | Arg::Json(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Uuid(v) => q.bind(v.to_string()),
            Arg::Time(v) => q.bind(v.format(&Rfc3339).unwrap_or_default()),
        }
    }

    fn bind_pg(self, q: PgQuery) -> Result<PgQuery, DbError> {
        Ok(match self {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Uuid(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::Json(v) => q
                .bind(Json(JsonRawValue::from_string(v).map_err(|e| {
                    DbError::Corrupt(format!("JSON argument: {e}"))
                })?)),
        })
    }
}

/// A statement and its arguments; see [`query`].
#[derive(Debug)]
#[must_use = "a query does nothing until it runs"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement with `$1 … $N` placeholders. The text must not carry data:
/// values go through [`Query::bind`].
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// Runs a built sqlx query on the pool or transaction `on` names, one arm per
/// kind, and maps each kind's result with `$map`.
macro_rules! run {
    ($self:ident, $on:ident, $method:ident, $map:expr) => {
        match $on.into() {
            On::Pool(Db::Sqlite(db)) => $map($self.sqlite().$method(db.pool()).await?),
            On::Pool(Db::Postgres(pool)) => $map($self.pg()?.$method(pool).await?),
            On::Tx(Tx::Sqlite(tx)) => $map($self.sqlite().$method(tx.connection().await?).await?),
            On::Tx(Tx::Postgres(tx)) => $map($self.pg()?.$method(&mut **tx).await?),
        }
    };
}

impl Query {
    /// The value of the next placeholder.
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Run it; the number of rows it changed.
    pub async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<u64, DbError> {
        Ok(run!(self, on, execute, RowsAffected::rows_affected))
    }

    /// Run it; its first row, if any.
    pub async fn fetch_optional<'a>(self, on: impl Into<On<'a>>) -> Result<Option<Row>, DbError> {
        Ok(run!(self, on, fetch_optional, optional_row))
    }

    /// Run it; its only row (an error when there is none).
    pub async fn fetch_one<'a>(self, on: impl Into<On<'a>>) -> Result<Row, DbError> {
        Ok(run!(self, on, fetch_one, Row::from))
    }

    /// Run it; all its rows.
    pub async fn fetch_all<'a>(self, on: impl Into<On<'a>>) -> Result<Vec<Row>, DbError> {
        Ok(run!(self, on, fetch_all, all_rows))
    }

    fn sqlite(self) -> SqliteQuery {
        let q = sqlx::query(AssertSqlSafe(self.sql));
        self.args.into_iter().fold(q, |q, arg| arg.bind_sqlite(q))
    }

    fn pg(self) -> Result<PgQuery, DbError> {
        let q = sqlx::query(AssertSqlSafe(self.sql));
        self.args.into_iter().try_fold(q, |q, arg| arg.bind_pg(q))
    }
}

fn optional_row<R: Into<Row>>(row: Option<R>) -> Option<Row> {
    row.map(Into::into)
}

fn all_rows<R: Into<Row>>(rows: Vec<R>) -> Vec<Row> {
    rows.into_iter().map(Into::into).collect()
}

/// What `execute` reports, whichever the kind.
trait RowsAffected {
    fn rows_affected(self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(&self)
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(&self)
    }
}

/// A row of either kind, read by column name.
#[derive(Debug)]
pub enum Row {
    /// From SQLite.
    Sqlite(SqliteRow),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl From<SqliteRow> for Row {
    fn from(row: SqliteRow) -> Self {
        Row::Sqlite(row)
    }
}

impl From<PgRow> for Row {
    fn from(row: PgRow) -> Self {
        Row::Postgres(row)
    }
}

/// Reads a column whose type both kinds store alike.
macro_rules! get {
    ($row:expr, $col:expr) => {
        match $row {
            Row::Sqlite(r) => r.try_get($col)?,
            Row::Postgres(r) => r.try_get($col)?,
        }
    };
}

impl Row {
    /// An integer column.
    pub fn int(&self, col: &str) -> Result<i64, DbError> {
        Ok(get!(self, col))
    }

    /// A boolean column (an integer on SQLite).
    pub fn bool(&self, col: &str) -> Result<bool, DbError> {
        Ok(get!(self, col))
    }

    /// A text column.
    pub fn text(&self, col: &str) -> Result<String, DbError> {
        Ok(get!(self, col))
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, col: &str) -> Result<Option<String>, DbError> {
        Ok(get!(self, col))
    }

    /// A UUID column (hyphenated text on SQLite).
    pub fn uuid(&self, col: &str) -> Result<Uuid, DbError> {
        match self {
            Row::Sqlite(r) => {
                let text: String = r.try_get(col)?;
                Uuid::parse_str(&text).map_err(|e| DbError::Corrupt(format!("{col} {text:?}: {e}")))
            }
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }

    /// A time column (RFC 3339 text on SQLite).
    pub fn time(&self, col: &str) -> Result<OffsetDateTime, DbError> {
        self.opt_time(col)?
            .ok_or_else(|| DbError::Corrupt(format!("{col} is NULL")))
    }

    /// A time column that may be NULL.
    pub fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>, DbError> {
        match self {
            Row::Sqlite(r) => {
                let text: Option<String> = r.try_get(col)?;
                text.map(|t| {
                    OffsetDateTime::parse(&t, &Rfc3339)
                        .map_err(|e| DbError::Corrupt(format!("{col} {t:?}: {e}")))
                })
                .transpose()
            }
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }

    /// A JSON column (text on SQLite), deserialised.
    pub fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, DbError> {
        match self {
            Row::Sqlite(r) => {
                let text: String = r.try_get(col)?;
                serde_json::from_str(&text).map_err(|e| DbError::Corrupt(format!("{col}: {e}")))
            }
            Row::Postgres(r) => {
                let Json(value) = r
                    .try_get::<Json<T>, _>(col)
                    .map_err(|e| DbError::Corrupt(format!("{col}: {e}")))?;
                Ok(value)
            }
        }
    }
}
