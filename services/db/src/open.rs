//! Connect to the database a URL names and bring its schema up to date.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::query::SqliteDb;
use crate::{Db, DbError, DbKind};
use crate::{sqlite_file, sqlite_sync};

/// Connections of a SQLite pool: SQLite runs one writer at a time, so more
/// only serve more concurrent readers.
const SQLITE_CONNECTIONS: u32 = 8;
/// Connections of a PostgreSQL pool (per store; a server's default limit is 100).
const POSTGRES_CONNECTIONS: u32 = 16;
/// How long a PostgreSQL request waits for a connection before failing, so a
/// server that is down shows up as errors (and `/ready` failing) quickly.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SQLite writer waits for the write lock instead of failing with
/// SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One service's schema, for each kind of database.
#[derive(Debug)]
pub struct Migrations {
    /// Applied to SQLite files (one file per service).
    pub sqlite: &'static Migrator,
    /// Applied to PostgreSQL.
    pub postgres: &'static Migrator,
    /// The table PostgreSQL records applied migrations in: one per service,
    /// so several services may share one database.
    pub postgres_table: &'static str,
}

/// Open the database `url` names ([`DbKind::of`]) and apply `migrations`.
///
/// SQLite: the file and its directory are created if missing, private to the
/// owner (0600 and 0700). Every connection runs in WAL mode (readers do not
/// wait for the writer) with `synchronous = FULL` (a commit survives a power
/// loss, not only a process crash) unless the URL says `synchronous=normal`
/// (a commit survives a process crash; a power cut may take the last ones),
/// a 5 s busy timeout and foreign keys enforced. Opening and migrating happen under a lock file beside the
/// database, so processes starting together migrate it once.
///
/// PostgreSQL: 16 connections, 5 s to get one; migrations run under sqlx's
/// advisory lock, so instances starting together apply them once. TLS is as
/// the URL's `sslmode` (else `PGSSLMODE`, else `prefer`) says; certificates are
/// checked against the system's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR`
/// honoured) plus the URL's `sslrootcert` (else `PGSSLROOTCERT`).
pub async fn open(url: &str, migrations: &Migrations) -> Result<Db, DbError> {
    match DbKind::of(url) {
        DbKind::Sqlite => open_sqlite(url, migrations.sqlite).await,
        DbKind::Postgres => open_postgres(url, migrations).await,
    }
}

async fn open_sqlite(url: &str, migrator: &Migrator) -> Result<Db, DbError> {
    let (url, synchronous) = sqlite_sync::split(url)?;
    let url = url.as_str();
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbError::Open(e.into()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let lock = match on_disk(url, &options) {
        Some(file) => {
            let file = file.to_path_buf();
            let locked = tokio::task::spawn_blocking(move || sqlite_file::prepare(&file))
                .await
                .map_err(|e| DbError::Open(e.into()))?;
            Some(locked.map_err(|e| DbError::Open(e.into()))?)
        }
        None => None,
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|e| DbError::Open(e.into()))?;
    migrator.run(&pool).await.map_err(DbError::Migrate)?;
    drop(lock);
    Ok(Db::Sqlite(SqliteDb::new(pool)))
}

/// The database's file, unless the URL names an in-memory database.
fn on_disk<'a>(url: &str, options: &'a SqliteConnectOptions) -> Option<&'a std::path::Path> {
    let file = options.get_filename();
    let name = file.to_string_lossy();
    // sqlx names `:memory:` databases `file:sqlx-in-memory-<n>`.
    let in_memory = name.is_empty()
        || name.contains(":memory:")
        || name.starts_with("file:")
        || url.contains("mode=memory");
    (!in_memory).then_some(file)
}

async fn open_postgres(url: &str, migrations: &Migrations) -> Result<Db, DbError> {
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| DbError::Open(e.into()))?;
    let mut migrator = Migrator::with_migrations(migrations.postgres.iter().cloned().collect());
    migrator.dangerous_set_table_name(migrations.postgres_table);
    migrator.run(&pool).await.map_err(DbError::Migrate)?;
    Ok(Db::Postgres(pool))
}
