//! How hard a SQLite commit holds on: the `synchronous=` parameter of a
//! SQLite URL, which orderly reads itself (sqlx refuses parameters it does
//! not know) and takes out before sqlx sees the URL.

use sqlx::sqlite::SqliteSynchronous;

use crate::DbError;

/// The URL parameter, e.g. `sqlite://data/orders.db?mode=rwc&synchronous=normal`.
pub(crate) const PARAMETER: &str = "synchronous";

/// `url` without its `synchronous=` parameter, and what it asked for:
/// `full` (the default: a commit survives a power cut) or `normal` (in WAL
/// mode a commit survives a process crash; a power cut may lose the last
/// commits, never corrupting the file).
pub(crate) fn split(url: &str) -> Result<(String, SqliteSynchronous), DbError> {
    let Some((base, params)) = url.split_once('?') else {
        return Ok((url.to_string(), SqliteSynchronous::Full));
    };
    let mut synchronous = SqliteSynchronous::Full;
    let mut kept = Vec::new();
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((PARAMETER, value)) => synchronous = parse(value)?,
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, synchronous))
}

fn parse(value: &str) -> Result<SqliteSynchronous, DbError> {
    match value.to_ascii_lowercase().as_str() {
        "full" => Ok(SqliteSynchronous::Full),
        "normal" => Ok(SqliteSynchronous::Normal),
        _ => Err(DbError::Open(
            format!("unknown value {value:?} for `{PARAMETER}` in the SQLite URL (expected full or normal)").into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_unless_the_url_asks_for_normal_and_the_parameter_never_reaches_sqlx() {
        let (url, sync) = split("sqlite://data/orders.db?mode=rwc").unwrap();
        assert_eq!(url, "sqlite://data/orders.db?mode=rwc");
        assert!(matches!(sync, SqliteSynchronous::Full));

        let (url, sync) = split("sqlite://data/orders.db?synchronous=normal&mode=rwc").unwrap();
        assert_eq!(url, "sqlite://data/orders.db?mode=rwc");
        assert!(matches!(sync, SqliteSynchronous::Normal));

        let (url, sync) = split("sqlite://data/orders.db?synchronous=FULL").unwrap();
        assert_eq!(url, "sqlite://data/orders.db");
        assert!(matches!(sync, SqliteSynchronous::Full));
    }

    #[test]
    fn any_other_value_is_refused_with_its_name() {
        let e = split("sqlite://x.db?mode=rwc&synchronous=off").unwrap_err();
        assert!(e.to_string().contains("\"off\""), "{e}");
        assert!(e.to_string().contains("synchronous"), "{e}");
    }
}
