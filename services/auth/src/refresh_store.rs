//! [`SessionStore`] on the user store's database, the same statements on
//! SQLite and PostgreSQL.
//!
//! Rotation is two steps (consume the presented token, then insert its
//! successor), and a logout or a replay may revoke the family between them.
//! Two guards keep a revoked family dead: the successor is inserted only if no
//! token of its family is revoked, and a token is consumed only if none of its
//! family is. The first suffices on SQLite, whose writers run one at a time. On
//! PostgreSQL a revocation that started before the insert committed does not
//! see the new row and leaves it unrevoked; the second guard refuses that row
//! when it is presented.

use async_trait::async_trait;
use orderly_db::query;

use crate::refresh::{Consumed, SessionStore};
use crate::sql_store::{SqlUserStore, email_is, fetch_user, user_columns};
use crate::store::{StoreError, User};

#[async_trait]
impl SessionStore for SqlUserStore {
    async fn insert_refresh_token(
        &self,
        token_hash: &str,
        family_id: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let inserted = query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                 (SELECT 1 FROM refresh_tokens WHERE family_id = $2 AND revoked_at IS NOT NULL)",
        )
        .bind(token_hash)
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.db())
        .await?;
        Ok(inserted == 1)
    }

    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        // One conditional UPDATE: of two concurrent uses only one matches.
        let fresh = query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens AS revoked \
                 WHERE revoked.family_id = refresh_tokens.family_id \
                 AND revoked.revoked_at IS NOT NULL) \
             RETURNING user_id, family_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(self.db())
        .await?;
        if let Some(row) = fresh {
            return Ok(Consumed::Fresh {
                user_id: row.int("user_id")?,
                family_id: row.text("family_id")?,
            });
        }
        let known = query(
            "SELECT family_id, used_at IS NOT NULL AS used FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.db())
        .await?;
        Ok(match known {
            Some(row) if row.bool("used")? => Consumed::Replayed {
                family_id: row.text("family_id")?,
            },
            _ => Consumed::Invalid,
        })
    }

    async fn refresh_family(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.db())
            .await?;
        Ok(row.map(|r| r.text("family_id")).transpose()?)
    }

    async fn revoke_refresh_family(&self, family_id: &str, now: i64) -> Result<(), StoreError> {
        query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(self.db())
        .await?;
        query(
            "UPDATE access_tokens SET revoked_at = $1 \
             WHERE family_id = $2 AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(family_id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user_id: i64, now: i64) -> Result<u64, StoreError> {
        let refresh = query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.db())
        .await?;
        query(
            "UPDATE access_tokens SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.db())
        .await?;
        Ok(refresh)
    }

    async fn record_access_token(
        &self,
        jti: &str,
        user_id: i64,
        family_id: Option<&str>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        query(
            "INSERT INTO access_tokens (jti, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(jti)
        .bind(user_id)
        .bind(family_id)
        .bind(expires_at)
        .execute(self.db())
        .await?;
        // Each issue removes a few expired rows, so the table holds about one
        // access lifetime of logins whatever the traffic, with no sweeper.
        query(
            "DELETE FROM access_tokens WHERE jti IN \
                 (SELECT jti FROM access_tokens WHERE expires_at < $1 LIMIT 16)",
        )
        .bind(now)
        .execute(self.db())
        .await?;
        Ok(())
    }

    async fn revoked_access_tokens(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = query(
            "SELECT jti, expires_at FROM access_tokens \
             WHERE revoked_at IS NOT NULL AND expires_at > $1 \
             ORDER BY revoked_at DESC LIMIT $2",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db())
        .await?;
        rows.iter()
            .map(|row| Ok((row.text("jti")?, row.int("expires_at")?)))
            .collect()
    }

    async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        fetch_user(query(sql).bind(id), self.db()).await
    }

    async fn set_role(&self, email: &str, role: &str) -> Result<Option<User>, StoreError> {
        let sql = format!(
            concat!(
                "UPDATE users SET role = $1 WHERE {} RETURNING ",
                user_columns!()
            ),
            email_is(self.db().kind(), "$2")
        );
        fetch_user(query(sql).bind(role).bind(email), self.db()).await
    }
}
