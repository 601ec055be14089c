//! Opening orderly's databases, and one query layer over both kinds.
//!
//! A database URL names PostgreSQL (`postgres://`, `postgresql://`) or SQLite
//! (`sqlite://path?mode=rwc` and the other forms sqlx's SQLite driver takes);
//! [`DbKind::of`] is the one place that tells them apart. [`open`] connects
//! with the pool rules and pragmas every service shares and applies the
//! service's [`Migrations`].
//!
//! A store then writes each statement once: `$N` placeholders work on both
//! kinds, and the values whose column types differ (UUIDs, times, JSON) are
//! bound through [`Arg`] and read through [`Row`], which know how each kind
//! stores them. What still differs between the kinds is named in one module:
//! [`Db::begin_write`], [`Tx::serialise_on`], [`Tx::notify`],
//! [`DbKind::skip_locked`], [`DbKind::time_as_stored`] and
//! [`DbKind::text_holds_nul`].

#![warn(missing_docs, unreachable_pub)]

mod dialect;
mod error;
mod kind;
mod open;
mod query;
mod sqlite_file;
mod sqlite_sync;
mod sqlite_writer;

pub use error::DbError;
pub use kind::DbKind;
pub use open::{Migrations, open};
pub use query::{Arg, Db, On, Query, Row, SqliteDb, Tx, query};
pub use sqlite_writer::SqliteTx;
