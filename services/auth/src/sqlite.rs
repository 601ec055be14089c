//! [`UserStore`] on SQLite through sqlx (runtime-checked queries, so building
//! needs no database).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{StoreError, User, UserStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite/auth");

#[derive(Clone)]
pub struct SqliteUserStore {
    pool: SqlitePool,
}

impl SqliteUserStore {
    /// Open (creating the file and its directory if needed) and migrate.
    /// `url` is e.g. `sqlite://data/auth.db?mode=rwc`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_error(e.into()))?
            .create_if_missing(true)
            // WAL lets readers (logins) proceed while a registration writes.
            .journal_mode(SqliteJournalMode::Wal)
            // Writers queue for up to 5 s instead of failing with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5));
        let file = options.get_filename();
        let in_memory = file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:");
        if !in_memory && let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| open_error(e.into()))?;
        }
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(|e| open_error(e.into()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.into()))?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(err.into())
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn user_from_row(row: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        hashed_password: row.try_get("hashed_password")?,
        google_sub: row.try_get("google_sub")?,
        role: row.try_get("role")?,
    })
}

fn now_rfc3339() -> Result<String, StoreError> {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(|e| StoreError::Database(e.into()))
}

impl SqliteUserStore {
    async fn find_by_google_sub(&self, google_sub: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, hashed_password, google_sub, role FROM users WHERE google_sub = ?",
        )
        .bind(google_sub)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn create_user(&self, email: &str, password_hash: &str) -> Result<i64, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (email, hashed_password, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .bind(now_rfc3339()?)
        .fetch_one(&self.pool)
        .await;
        match result {
            Ok(row) => Ok(row.try_get("id")?),
            // Only `email` can collide here: `google_sub` is NULL.
            Err(err) if is_unique_violation(&err) => Err(StoreError::DuplicateEmail),
            Err(err) => Err(err.into()),
        }
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        // The column's NOCASE collation makes this comparison case-insensitive.
        let row = sqlx::query(
            "SELECT id, email, hashed_password, google_sub, role FROM users WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn find_or_create_google(
        &self,
        google_sub: &str,
        email: &str,
    ) -> Result<User, StoreError> {
        if let Some(user) = self.find_by_google_sub(google_sub).await? {
            return Ok(user);
        }
        // One atomic statement, so two concurrent first logins of the same person
        // end with one user instead of an error.
        let created = sqlx::query(
            "INSERT INTO users (email, hashed_password, google_sub, created_at) \
             VALUES (?, NULL, ?, ?) ON CONFLICT DO NOTHING \
             RETURNING id, email, hashed_password, google_sub, role",
        )
        .bind(email)
        .bind(google_sub)
        .bind(now_rfc3339()?)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = created {
            return Ok(user_from_row(&row)?);
        }
        // Nothing inserted: either a concurrent call created this identity, or the
        // e-mail belongs to another user.
        self.find_by_google_sub(google_sub)
            .await?
            .ok_or(StoreError::GoogleAccountConflict)
    }

    async fn link_google(
        &self,
        user_id: i64,
        google_sub: &str,
    ) -> Result<Option<User>, StoreError> {
        let linked = sqlx::query(
            "UPDATE users SET google_sub = ? WHERE id = ? AND (google_sub IS NULL OR google_sub = ?) \
             RETURNING id, email, hashed_password, google_sub, role",
        )
        .bind(google_sub)
        .bind(user_id)
        .bind(google_sub)
        .fetch_optional(&self.pool)
        .await;
        match linked {
            Ok(Some(row)) => Ok(Some(user_from_row(&row)?)),
            // The identity belongs to another user.
            Err(err) if is_unique_violation(&err) => Err(StoreError::GoogleAccountConflict),
            Err(err) => Err(err.into()),
            // No such user, or one linked to another identity.
            Ok(None) => {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = ?")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                match exists {
                    Some(_) => Err(StoreError::GoogleAccountConflict),
                    None => Ok(None),
                }
            }
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
