//! [`UserStore`] on PostgreSQL through sqlx (runtime-checked queries, so building
//! needs no database). Migrations run under sqlx's advisory lock, so instances
//! starting together apply them once.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use orderly_kit::config::redact_url;

use crate::store::{StoreError, User, UserStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres/auth");

/// Its own bookkeeping table, so auth and orders may share one database.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_auth";

#[derive(Clone)]
pub struct PgUserStore {
    pool: PgPool,
}

impl PgUserStore {
    /// Connect and apply the migrations. `url` is `postgres://user:pw@host:port/db`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| StoreError::Open {
                url: redact_url(url),
                source: e.into(),
            })?;
        let mut migrator =
            sqlx::migrate::Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.into()))?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn user_from_row(row: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        hashed_password: row.try_get("hashed_password")?,
        google_sub: row.try_get("google_sub")?,
        role: row.try_get("role")?,
    })
}

const USER_COLUMNS: &str = "id, email, hashed_password, google_sub, role";

impl PgUserStore {
    async fn find_by_google_sub(&self, google_sub: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE google_sub = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(google_sub)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }
}

#[async_trait]
impl UserStore for PgUserStore {
    async fn create_user(&self, email: &str, password_hash: &str) -> Result<i64, StoreError> {
        // INSERT … SELECT … WHERE NOT EXISTS draws an id from the sequence only when
        // a row is inserted, so a duplicate registration leaves no gap in the ids
        // (as with SQLite). A concurrent duplicate still hits the unique index.
        let result = sqlx::query(
            "INSERT INTO users (email, hashed_password) \
             SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1)) \
             RETURNING id",
        )
        .bind(email)
        .bind(password_hash)
        .fetch_optional(&self.pool)
        .await;
        match result {
            Ok(Some(row)) => Ok(row.try_get("id")?),
            Ok(None) => Err(StoreError::DuplicateEmail),
            Err(err) if is_unique_violation(&err) => Err(StoreError::DuplicateEmail),
            Err(err) => Err(err.into()),
        }
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        // PostgreSQL text cannot hold U+0000 (binding it is an error), so no
        // stored e-mail has one: a login form's NUL is just an unknown account.
        if email.contains('\0') {
            return Ok(None);
        }
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        let sql = format!(
            "INSERT INTO users (email, hashed_password, google_sub) \
             SELECT $1, NULL, $2 WHERE NOT EXISTS \
                 (SELECT 1 FROM users WHERE lower(email) = lower($1) OR google_sub = $2) \
             ON CONFLICT DO NOTHING RETURNING {USER_COLUMNS}"
        );
        let created = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email)
            .bind(google_sub)
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
        let sql = format!(
            "UPDATE users SET google_sub = $1 WHERE id = $2 AND (google_sub IS NULL OR google_sub = $1) \
             RETURNING {USER_COLUMNS}"
        );
        let linked = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(google_sub)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await;
        match linked {
            Ok(Some(row)) => Ok(Some(user_from_row(&row)?)),
            // The identity belongs to another user.
            Err(err) if is_unique_violation(&err) => Err(StoreError::GoogleAccountConflict),
            Err(err) => Err(err.into()),
            // No such user, or one linked to another identity.
            Ok(None) => {
                let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1")
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
