//! Which database a URL names.

/// The two kinds of database orderly runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// An embedded file (the default), or an in-memory database.
    Sqlite,
    /// A server, for several processes sharing one database.
    Postgres,
}

impl DbKind {
    /// `postgres://` and `postgresql://` name PostgreSQL; every other URL goes
    /// to SQLite, whose driver accepts `sqlite://path`, `sqlite:path` and
    /// `sqlite::memory:` (the configuration refuses other schemes earlier).
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbKind::Postgres
        } else {
            DbKind::Sqlite
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DbKind;

    #[test]
    fn postgres_urls_name_postgres_and_everything_else_sqlite() {
        for url in ["postgres://u@h/db", "postgresql://u:p@h:5432/db"] {
            assert_eq!(DbKind::of(url), DbKind::Postgres, "{url}");
        }
        for url in [
            "sqlite://data/orders.db?mode=rwc",
            "sqlite::memory:",
            "sqlite:x.db",
        ] {
            assert_eq!(DbKind::of(url), DbKind::Sqlite, "{url}");
        }
    }
}
