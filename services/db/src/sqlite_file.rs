//! The file of a SQLite database: created private, and migrated by one process
//! at a time.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The database holds password hashes: only its owner may read it. SQLite
/// gives its `-wal` and `-shm` files the database file's mode.
const FILE_MODE: u32 = 0o600;
/// Directories created for the database; existing ones are left as they are.
const DIR_MODE: u32 = 0o700;

/// An exclusive lock on the file beside the database, held while one process
/// opens and migrates it; dropping it releases the lock. sqlx takes no lock
/// around SQLite migrations, so without this two processes starting together
/// on a fresh file both apply the first migration and one fails ("table
/// already exists"). The lock file stays: removing it would race with a
/// process about to lock it.
#[derive(Debug)]
pub(crate) struct MigrationLock {
    _held: File,
}

/// `orders.db` → `orders.db-migrate.lock`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-migrate.lock");
    PathBuf::from(name)
}

/// Create the database's directory (0700) and file (0600) if missing, having
/// first waited for the migration lock. Blocks: run it off the async threads.
pub(crate) fn prepare(database: &Path) -> io::Result<MigrationLock> {
    if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
    }
    let lock = private_file(&lock_path(database))?;
    lock.lock()?;
    // An empty file is a new database to SQLite; creating it here (not in
    // SQLite) is what sets its mode.
    private_file(database)?;
    Ok(MigrationLock { _held: lock })
}

fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}
