//! Where SQLite and PostgreSQL differ, named once. Everything else a store
//! writes is the same SQL text on both.

use time::OffsetDateTime;

use crate::query::{Db, Tx, query};
use crate::{DbError, DbKind};

impl DbKind {
    /// What a time reads back as after storing it: PostgreSQL keeps
    /// microseconds, SQLite's RFC 3339 text keeps nanoseconds. A store returns
    /// this, so what it hands out equals what a later read returns.
    pub fn time_as_stored(self, t: OffsetDateTime) -> OffsetDateTime {
        match self {
            DbKind::Sqlite => t,
            DbKind::Postgres => t
                .replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
                .unwrap_or(t),
        }
    }

    /// The suffix of a `SELECT` in a transaction that locks its rows and
    /// passes over rows other transactions hold. SQLite has no row locks: its
    /// callers exclude each other themselves (every writer of a SQLite file is
    /// in one process).
    pub fn skip_locked(self) -> &'static str {
        match self {
            DbKind::Sqlite => "",
            DbKind::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Whether text may contain U+0000 (PostgreSQL refuses to bind it).
    pub fn text_holds_nul(self) -> bool {
        matches!(self, DbKind::Sqlite)
    }
}

impl Db {
    /// A transaction that reads, then writes what it read decides. On SQLite
    /// it runs on the database's one writer, in turn (so no other writer can
    /// slip in between its read and its write), committed together with the
    /// transactions queued behind it (group commit, see `sqlite_writer`);
    /// PostgreSQL locks rows as statements reach them.
    pub async fn begin_write(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(db.begin_write().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

impl Tx {
    /// Wait until no other transaction holds `(key, n)`, then hold it until
    /// this one ends, so transactions about one key run one after another.
    /// SQLite needs nothing: [`Db::begin_write`] already excludes every other
    /// writer.
    pub async fn serialise_on(&mut self, key: &str, n: i64) -> Result<(), DbError> {
        if self.kind() == DbKind::Postgres {
            query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
                .bind(key)
                .bind(n)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    /// Tell `LISTEN`ers of `channel` in other processes, when (and only if)
    /// this transaction commits. SQLite has no other processes to tell: its
    /// writers are all in the process that would listen.
    pub async fn notify(&mut self, channel: &str) -> Result<(), DbError> {
        if self.kind() == DbKind::Postgres {
            query("SELECT pg_notify($1, '')")
                .bind(channel)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use crate::DbKind;

    #[test]
    fn postgres_times_keep_microseconds_and_sqlite_times_nanoseconds() {
        let t = datetime!(2026-01-02 03:04:05.123456789 UTC);
        assert_eq!(DbKind::Sqlite.time_as_stored(t), t);
        assert_eq!(
            DbKind::Postgres.time_as_stored(t),
            datetime!(2026-01-02 03:04:05.123456 UTC)
        );
    }
}
