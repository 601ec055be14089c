//! SQLite's one writer, with group commit.
//!
//! SQLite runs one write transaction at a time. Left to contend for its lock,
//! writers on separate connections spin in SQLite's busy handler, which sleeps
//! in growing steps: under load a write waits tens to hundreds of milliseconds
//! though the lock was free most of that time, and every commit pays its own
//! fsync. Instead every write transaction of a database runs on one
//! connection, taken in turn (first come, first served), and consecutive
//! transactions share one SQLite transaction and so one fsync:
//!
//! - A write transaction is a savepoint inside the writer's open SQLite
//!   transaction (`BEGIN IMMEDIATE`, opened by the first of a group).
//! - Its commit releases the savepoint. Nobody waiting: it commits the group
//!   there and then. Others waiting: it hands the connection on and queues for
//!   it again; when its turn comes back, the group (it and everyone served
//!   meanwhile) is committed, by it or by a later member that got there first.
//! - A commit returns only once its group's `COMMIT` has returned, with that
//!   `COMMIT`'s outcome: what a caller was told is committed is on disk.
//! - A transaction dropped without committing is rolled back to its savepoint
//!   by the next holder of the connection, before anything else runs.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::DbError;

/// A group commits at the latest with this many transactions in it, so a
/// steady stream of writers cannot keep one SQLite transaction open forever.
const MAX_GROUP: usize = 256;

/// The writer of one SQLite database (shared by every clone of its [`crate::Db`]).
pub(crate) struct SqliteWriter {
    state: Arc<Mutex<WriterState>>,
    /// Callers queued for their first turn (see the module documentation).
    waiting: AtomicUsize,
}

struct WriterState {
    pool: SqlitePool,
    /// The writer's connection, taken from the pool at the first write.
    conn: Option<PoolConnection<Sqlite>>,
    /// The group whose SQLite transaction is open, if one is.
    group: Option<Group>,
    /// A transaction was dropped while holding its savepoint: undo it first.
    abandoned: bool,
}

/// Transactions sharing one SQLite transaction.
struct Group {
    members: usize,
    outcome: Arc<OnceLock<Result<(), String>>>,
}

impl SqliteWriter {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self {
            state: Arc::new(Mutex::new(WriterState {
                pool,
                conn: None,
                group: None,
                abandoned: false,
            })),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Wait for the connection, then open a savepoint in the group's
    /// transaction. Runs as its own task: a caller that stops waiting half-way
    /// leaves no half-opened savepoint behind.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<SqliteTx, DbError> {
        let writer = self.clone();
        tokio::spawn(async move { writer.open().await })
            .await
            .map_err(|e| DbError::GroupCommit(format!("SQLite writer task: {e}")))?
    }

    async fn open(self: Arc<Self>) -> Result<SqliteTx, DbError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued(&self.waiting);
        let mut state = self.state.clone().lock_owned().await;
        drop(queued);
        if let Err(e) = state.settle().await {
            state.abort_group(&e).await;
            return Err(e);
        }
        if state.group.is_none() {
            exec(state.conn().await?, "BEGIN IMMEDIATE").await?;
            state.group = Some(Group {
                members: 0,
                outcome: Arc::new(OnceLock::new()),
            });
        }
        exec(state.conn().await?, "SAVEPOINT orderly_tx").await?;
        Ok(SqliteTx {
            writer: self.clone(),
            state: Some(state),
        })
    }

    /// A member's second turn: commit its group unless a later member did.
    async fn finish(
        self: Arc<Self>,
        outcome: Arc<OnceLock<Result<(), String>>>,
    ) -> Result<(), DbError> {
        let mut state = self.state.clone().lock_owned().await;
        if let Some(done) = outcome.get() {
            return done.clone().map_err(DbError::GroupCommit);
        }
        if let Err(e) = state.settle().await {
            state.abort_group(&e).await;
            return Err(e);
        }
        state.commit_group().await.map_err(DbError::GroupCommit)
    }

    /// Commit an open group and give the connection back to the pool, so the
    /// pool can close.
    pub(crate) async fn release(&self) {
        let mut state = self.state.lock().await;
        if let Err(e) = state.settle().await {
            state.abort_group(&e).await;
        }
        if state.group.is_some() {
            let _ = state.commit_group().await;
        }
        state.conn = None;
    }
}

/// Counts a caller as queued until it gets its turn (or gives up waiting).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriterState {
    async fn conn(&mut self) -> Result<&mut SqliteConnection, DbError> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        Ok(self.conn.as_deref_mut().expect("connection was just set"))
    }

    /// Undo what a dropped transaction left.
    async fn settle(&mut self) -> Result<(), DbError> {
        if self.abandoned {
            self.abandoned = false;
            let conn = self.conn().await?;
            exec(conn, "ROLLBACK TO orderly_tx").await?;
            exec(conn, "RELEASE orderly_tx").await?;
        }
        Ok(())
    }

    /// Roll the open group back (what a dropped member left could not be
    /// undone alone) and tell its members why.
    async fn abort_group(&mut self, why: &DbError) {
        self.abandoned = false;
        if let Some(group) = self.group.take() {
            let _ = group.outcome.set(Err(format!("rolled back: {why}")));
        }
        if let Ok(conn) = self.conn().await {
            // Fails harmlessly when SQLite already ended the transaction.
            let _ = exec(conn, "ROLLBACK").await;
        }
    }

    /// `COMMIT` the open group and tell its members how it went.
    async fn commit_group(&mut self) -> Result<(), String> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let outcome = match self.conn().await {
            Ok(conn) => match exec(conn, "COMMIT").await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // A failed COMMIT may leave the transaction open.
                    let _ = exec(conn, "ROLLBACK").await;
                    Err(e.to_string())
                }
            },
            Err(e) => Err(e.to_string()),
        };
        metrics::histogram!("sqlite_group_commit_size").record(group.members as f64);
        let _ = group.outcome.set(outcome.clone());
        outcome
    }
}

impl Drop for WriterState {
    /// A pool connection hands itself back to its pool on a task; with no
    /// runtime left (a test's app dropped after its runtime) it is closed
    /// here instead.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            drop(conn.detach());
        }
    }
}

/// One write transaction on SQLite: a savepoint on the writer's connection,
/// held (with the connection) until it commits or is dropped.
pub struct SqliteTx {
    writer: Arc<SqliteWriter>,
    state: Option<OwnedMutexGuard<WriterState>>,
}

impl fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTx").finish_non_exhaustive()
    }
}

impl SqliteTx {
    /// The writer's connection, to run a statement in this transaction.
    pub(crate) async fn connection(&mut self) -> Result<&mut SqliteConnection, DbError> {
        self.state
            .as_mut()
            .expect("a transaction holds the writer until it ends")
            .conn()
            .await
    }

    /// Release the savepoint, then return once the group holding it committed.
    pub(crate) async fn commit(mut self) -> Result<(), DbError> {
        let mut state = self
            .state
            .take()
            .expect("a transaction holds the writer until it ends");
        if let Err(e) = exec(state.conn().await?, "RELEASE orderly_tx").await {
            state.abandoned = true;
            return Err(e);
        }
        let Some(group) = state.group.as_mut() else {
            return Err(DbError::Corrupt(
                "SQLite writer lost its open transaction".into(),
            ));
        };
        group.members += 1;
        let outcome = group.outcome.clone();
        if self.writer.waiting.load(Ordering::SeqCst) == 0 || group.members >= MAX_GROUP {
            return state.commit_group().await.map_err(DbError::GroupCommit);
        }
        // Let those waiting add their transactions to the group, then commit
        // it when the turn comes back, unless a later member already did. A
        // task of its own: the group commits even if this caller goes away.
        drop(state);
        let writer = self.writer.clone();
        tokio::spawn(async move { writer.finish(outcome).await })
            .await
            .map_err(|e| DbError::GroupCommit(format!("SQLite writer task: {e}")))?
    }
}

impl Drop for SqliteTx {
    /// Undone at once, not by the next writer: until then the group's open
    /// transaction would hold SQLite's write lock against every other process
    /// on the file. Members of the group that already committed their part
    /// get the group's commit from here.
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.abandoned = true;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = state.settle().await {
                        state.abort_group(&e).await;
                    } else if let Err(e) = state.commit_group().await {
                        tracing::warn!(error = %e, "SQLite group commit after a dropped transaction failed");
                    }
                });
            }
        }
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), DbError> {
    sqlx::raw_sql(sql).execute(conn).await?;
    Ok(())
}
