//! [`SessionStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::refresh::{Consumed, SessionStore};
use crate::sqlite::SqliteUserStore;
use crate::store::{StoreError, User};

const USER_COLUMNS: &str = "id, email, hashed_password, google_sub, role";

fn user_from_row(row: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        hashed_password: row.try_get("hashed_password")?,
        google_sub: row.try_get("google_sub")?,
        role: row.try_get("role")?,
    })
}

#[async_trait]
impl SessionStore for SqliteUserStore {
    async fn insert_refresh_token(
        &self,
        token_hash: &str,
        family_id: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        // One conditional UPDATE: of two concurrent uses only one matches.
        let fresh = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? \
             RETURNING user_id, family_id",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = fresh {
            return Ok(Consumed::Fresh {
                user_id: row.try_get("user_id")?,
                family_id: row.try_get("family_id")?,
            });
        }
        let known = sqlx::query(
            "SELECT family_id, used_at IS NOT NULL AS used FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(match known {
            Some(row) if row.try_get::<bool, _>("used")? => Consumed::Replayed {
                family_id: row.try_get("family_id")?,
            },
            _ => Consumed::Invalid,
        })
    }

    async fn refresh_family(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT family_id FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("family_id")).transpose()?)
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user_id: i64, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn set_role(&self, email: &str, role: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("UPDATE users SET role = ? WHERE email = ? RETURNING {USER_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(role)
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }
}
