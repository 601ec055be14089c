//! [`UserStore`] on SQLite or PostgreSQL, with the same statements on both
//! (runtime-checked, so building needs no database). [`SessionStore`] on the
//! same pool is in `refresh_store.rs`.
//!
//! [`SessionStore`]: crate::refresh::SessionStore

use async_trait::async_trait;
use orderly_core::config::redact_url;
use orderly_db::{Db, DbError, DbKind, Migrations, On, Row, query};
use sqlx::migrate::Migrator;
use time::OffsetDateTime;

use crate::store::{StoreError, User, UserStore};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite/auth");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres/auth");

/// The auth schema.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
    postgres_table: "_sqlx_migrations_auth",
};

/// The columns [`user_from_row`] reads.
macro_rules! user_columns {
    () => {
        "id, email, hashed_password, google_sub, role"
    };
}
pub(crate) use user_columns;

/// Users and their refresh-token families, in one database.
#[derive(Clone)]
pub struct SqlUserStore {
    db: Db,
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Migrate(e) => StoreError::Migrate(e.into()),
            other => StoreError::Database(other.into()),
        }
    }
}

impl SqlUserStore {
    /// Open the database `url` names (`sqlite://data/auth.db?mode=rwc`,
    /// `postgres://user:pw@host:port/db`) and apply the migrations
    /// ([`orderly_db::open`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let db = orderly_db::open(url, &MIGRATIONS)
            .await
            .map_err(|e| match e {
                DbError::Open(source) => StoreError::Open {
                    url: redact_url(url),
                    source,
                },
                other => other.into(),
            })?;
        Ok(Self { db })
    }

    /// The database, to close it.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// `email = $n`, ignoring case the way the schema's unique index does: the
/// column's NOCASE collation on SQLite, `lower()` on both sides on PostgreSQL.
pub(crate) fn email_is(kind: DbKind, param: &str) -> String {
    match kind {
        DbKind::Sqlite => format!("email = {param}"),
        DbKind::Postgres => format!("lower(email) = lower({param})"),
    }
}

pub(crate) fn user_from_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: row.int("id")?,
        email: row.text("email")?,
        hashed_password: row.opt_text("hashed_password")?,
        google_sub: row.opt_text("google_sub")?,
        role: row.text("role")?,
    })
}

/// The one user the statement returned, if any.
pub(crate) async fn fetch_user<'a>(
    statement: orderly_db::Query,
    on: impl Into<On<'a>>,
) -> Result<Option<User>, StoreError> {
    statement
        .fetch_optional(on)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

impl SqlUserStore {
    async fn find_by_google_sub(&self, google_sub: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE google_sub = $1"
        );
        fetch_user(query(sql).bind(google_sub), &self.db).await
    }
}

#[async_trait]
impl UserStore for SqlUserStore {
    async fn create_user(&self, email: &str, password_hash: &str) -> Result<i64, StoreError> {
        // INSERT … SELECT … WHERE NOT EXISTS draws an id (from PostgreSQL's
        // sequence) only when a row is inserted, so a duplicate registration
        // leaves no gap in the ids. A concurrent duplicate still hits the
        // unique index.
        let sql = format!(
            "INSERT INTO users (email, hashed_password, created_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM users WHERE {}) \
             RETURNING id",
            email_is(self.db.kind(), "$1")
        );
        let result = query(sql)
            .bind(email)
            .bind(password_hash)
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.db)
            .await;
        match result {
            Ok(Some(row)) => Ok(row.int("id")?),
            Ok(None) => Err(StoreError::DuplicateEmail),
            Err(err) if err.is_unique_violation() => Err(StoreError::DuplicateEmail),
            Err(err) => Err(err.into()),
        }
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        // Where text cannot hold U+0000 (binding it is an error) no stored
        // e-mail has one: a login form's NUL is just an unknown account.
        if email.contains('\0') && !self.db.kind().text_holds_nul() {
            return Ok(None);
        }
        let sql = format!(
            concat!("SELECT ", user_columns!(), " FROM users WHERE {}"),
            email_is(self.db.kind(), "$1")
        );
        fetch_user(query(sql).bind(email), &self.db).await
    }

    async fn find_or_create_google(
        &self,
        google_sub: &str,
        email: &str,
    ) -> Result<User, StoreError> {
        if let Some(user) = self.find_by_google_sub(google_sub).await? {
            return Ok(user);
        }
        let kind = self.db.kind();
        // One atomic statement, so two concurrent first logins of the same person
        // end with one user instead of an error. Never links by e-mail: an
        // e-mail of another user is a conflict, resolved by linking from a session.
        let create = format!(
            concat!(
                "INSERT INTO users (email, hashed_password, google_sub, created_at) \
                 SELECT $1, NULL, $2, $3 WHERE NOT EXISTS \
                     (SELECT 1 FROM users WHERE {} OR google_sub = $2) \
                 ON CONFLICT DO NOTHING RETURNING ",
                user_columns!()
            ),
            email_is(kind, "$1")
        );
        let created = query(create)
            .bind(email)
            .bind(google_sub)
            .bind(OffsetDateTime::now_utc());
        if let Some(user) = fetch_user(created, &self.db).await? {
            return Ok(user);
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
        let link = concat!(
            "UPDATE users SET google_sub = $1 WHERE id = $2 AND (google_sub IS NULL OR google_sub = $1) RETURNING ",
            user_columns!()
        );
        let linked = query(link)
            .bind(google_sub)
            .bind(user_id)
            .fetch_optional(&self.db)
            .await;
        match linked {
            Ok(Some(row)) => Ok(Some(user_from_row(&row)?)),
            // The identity belongs to another user.
            Err(err) if err.is_unique_violation() => Err(StoreError::GoogleAccountConflict),
            Err(err) => Err(err.into()),
            // No such user, or one linked to another identity.
            Ok(None) => {
                let exists = query("SELECT 1 FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.db)
                    .await?;
                match exists {
                    Some(_) => Err(StoreError::GoogleAccountConflict),
                    None => Ok(None),
                }
            }
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(self.db.check().await?)
    }
}
