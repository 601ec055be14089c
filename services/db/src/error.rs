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
    /// A stored value is not what its column should hold.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl DbError {
    /// A unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(db)) if db.is_unique_violation())
    }

    /// The database cannot be reached now (no connection within the pool's
    /// wait, a connection that broke, a server shutting down or starting
    /// up): worth trying again later, unlike an error of the statement.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Open(_) => true,
            DbError::Sqlx(e) => match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08: connection exception; 57P01..57P03:
                // the server is shutting down, crashed or cannot accept yet.
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
                }),
                _ => false,
            },
            DbError::Migrate(_) | DbError::Corrupt(_) => false,
        }
    }
}
