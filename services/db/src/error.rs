//! What can go wrong opening or querying a database.

/// Errors of [`open`](crate::open) and of queries.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or created (the caller adds which).
    #[error("cannot open the database: {0}")]
    Open(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Applying the migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// The SQLite group a write transaction was committed with failed (or
    /// was rolled back), so the transaction did not commit.
    #[error("commit failed: {0}")]
    GroupCommit(String),
    /// A stored value is not what its column should hold.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl DbError {
    /// The database cannot serve for now, whatever the statement: it cannot
    /// be reached, the connection broke, the pool is exhausted or closed, the
    /// server is shutting down or refusing connections, SQLite is busy. A
    /// retry later can succeed; the data asked for is not at fault.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Open(_) => true,
            DbError::Sqlx(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => {
                    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
                        return db
                            .code()
                            .and_then(|c| c.parse::<i32>().ok())
                            .is_some_and(|c| matches!(c & 0xff, 5 | 6));
                    }
                    // PostgreSQL: connection exceptions (08), operator
                    // intervention such as a shutdown (57P), too many connections.
                    db.code().is_some_and(|c| {
                        c.starts_with("08") || c.starts_with("57P") || c == "53300"
                    })
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(db)) if db.is_unique_violation())
    }
}
