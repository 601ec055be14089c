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
    /// A unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlx(sqlx::Error::Database(db)) if db.is_unique_violation())
    }
}
