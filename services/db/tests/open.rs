//! Opening and migrating: private SQLite files, one migration run among
//! processes starting together, and values read back as written on both kinds.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use orderly_db::{Arg, Db, DbKind, Migrations, open, query};
use time::OffsetDateTime;
use uuid::Uuid;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations/postgres");

const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
    postgres_table: "_sqlx_migrations_db_tests",
};

fn sqlite_url(file: &Path) -> String {
    format!("sqlite://{}?mode=rwc", file.display())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_fresh_sqlite_database_and_the_directories_made_for_it_are_private() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("data/auth/auth.db");
    let db = open(&sqlite_url(&file), &MIGRATIONS).await.unwrap();
    write_one(&db, 1).await;
    assert_eq!(mode(&root.path().join("data")), 0o700);
    assert_eq!(mode(&root.path().join("data/auth")), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&root.path().join("data/auth/auth.db-wal")), 0o600);
    assert_eq!(
        mode(&root.path().join("data/auth/auth.db-migrate.lock")),
        0o600
    );
    db.close().await;
}

#[tokio::test]
async fn a_directory_that_already_exists_keeps_its_mode() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = shared.join("orders.db");
    let db = open(&sqlite_url(&file), &MIGRATIONS).await.unwrap();
    assert_eq!(mode(&shared), 0o755);
    assert_eq!(mode(&file), 0o600);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_opening_a_fresh_file_together_migrate_it_once() {
    let root = tempfile::tempdir().unwrap();
    let url = sqlite_url(&root.path().join("orders.db"));
    let opens: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open(&url, &MIGRATIONS).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for open in opens {
        dbs.push(open.await.unwrap().expect("every open succeeds"));
    }
    let applied = query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(&dbs[0])
        .await
        .unwrap()
        .int("n")
        .unwrap();
    assert_eq!(applied, 6);
    for db in dbs {
        db.close().await;
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_database_opens_without_files() {
    let db = open("sqlite::memory:", &MIGRATIONS).await.unwrap();
    assert_eq!(db.kind(), DbKind::Sqlite);
    db.check().await.unwrap();
}

#[tokio::test]
async fn values_read_back_as_written_on_sqlite() {
    let root = tempfile::tempdir().unwrap();
    let db = open(&sqlite_url(&root.path().join("t.db")), &MIGRATIONS)
        .await
        .unwrap();
    values_read_back_as_written(db).await;
}

#[tokio::test]
async fn values_read_back_as_written_on_postgres() {
    let Some(test_db) = orderly_testkit::TestDatabase::create().await else {
        return;
    };
    let db = open(&test_db.url, &MIGRATIONS).await.unwrap();
    assert_eq!(db.kind(), DbKind::Postgres);
    values_read_back_as_written(db.clone()).await;
    db.close().await;
}

async fn write_one(db: &Db, id: i64) -> (Uuid, OffsetDateTime) {
    let (uid, at) = (Uuid::now_v7(), OffsetDateTime::now_utc());
    query("INSERT INTO things (id, uid, at, doc, note) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(uid)
        .bind(at)
        .bind(Arg::Json(r#"{"b":[1,2],"a":"x"}"#.into()))
        .bind(None::<&str>)
        .execute(db)
        .await
        .unwrap();
    (uid, at)
}

async fn values_read_back_as_written(db: Db) {
    let (uid, at) = write_one(&db, 7).await;
    let row =
        query("SELECT id, uid, at, doc, note, note IS NULL AS no_note FROM things WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&db)
            .await
            .unwrap()
            .expect("the row");
    assert_eq!(row.int("id").unwrap(), 7);
    assert_eq!(row.uuid("uid").unwrap(), uid);
    assert_eq!(row.time("at").unwrap(), db.kind().time_as_stored(at));
    let doc: serde_json::Value = row.json("doc").unwrap();
    assert_eq!(doc, serde_json::json!({"a": "x", "b": [1, 2]}));
    assert_eq!(row.opt_text("note").unwrap(), None);
    assert!(row.bool("no_note").unwrap());

    // In a write transaction: changes count, and vanish without a commit.
    let mut tx = db.begin_write().await.unwrap();
    let changed = query("UPDATE things SET note = $1 WHERE id = $2")
        .bind("noted")
        .bind(7_i64)
        .execute(&mut tx)
        .await
        .unwrap();
    assert_eq!(changed, 1);
    drop(tx);
    let notes = query("SELECT note FROM things")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.opt_text("note").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(notes, [None]);
}

/// SQLite's `PRAGMA synchronous` on a connection of `db` (1 NORMAL, 2 FULL).
async fn synchronous(db: &Db) -> i64 {
    query("PRAGMA synchronous")
        .fetch_one(db)
        .await
        .unwrap()
        .int("synchronous")
        .unwrap()
}

#[tokio::test]
async fn sqlite_commits_are_synced_fully_unless_the_url_asks_for_normal() {
    let root = tempfile::tempdir().unwrap();
    let full = open(&sqlite_url(&root.path().join("full.db")), &MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(synchronous(&full).await, 2, "FULL by default");
    full.close().await;

    let url = format!(
        "{}&synchronous=normal",
        sqlite_url(&root.path().join("normal.db"))
    );
    let normal = open(&url, &MIGRATIONS).await.unwrap();
    assert_eq!(synchronous(&normal).await, 1, "NORMAL when asked");
    write_one(&normal, 1).await;
    normal.close().await;

    let refused = open(
        &format!(
            "{}&synchronous=off",
            sqlite_url(&root.path().join("off.db"))
        ),
        &MIGRATIONS,
    )
    .await;
    let Err(error) = refused else {
        panic!("synchronous=off is refused");
    };
    let error = error.to_string();
    assert!(error.contains("synchronous"), "{error}");
}

/// A write transaction dropped after an error (a failed statement, a caller
/// that gave up) gives SQLite's write lock back at once, not at this
/// process's next write: another process on the same file (a worker beside
/// the orders service) would be refused meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sqlite_transaction_releases_the_write_lock_for_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("things.db");
    let db = open(&sqlite_url(&file), &MIGRATIONS).await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    query("INSERT INTO things (id, uid, at, doc, note) VALUES ($1, $2, $3, $4, $5)")
        .bind(1_i64)
        .bind(Uuid::now_v7())
        .bind(OffsetDateTime::now_utc())
        .bind(Arg::Json("{}".into()))
        .bind(None::<&str>)
        .execute(&mut tx)
        .await
        .unwrap();
    drop(tx);

    // Another process's connection, with a second of patience.
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=rw", file.display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("PRAGMA busy_timeout = 1000")
        .execute(&mut other)
        .await
        .unwrap();
    let took = sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO things (id, uid, at, doc) VALUES (2, x'00', '2026-01-01', '{}'); COMMIT")
        .execute(&mut other)
        .await;
    assert!(
        took.is_ok(),
        "another process could not write after the dropped transaction: {took:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM things")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the dropped transaction's row was not rolled back");
    db.close().await;
}
