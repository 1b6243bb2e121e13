//! The embedded store: one SQLite file (WAL, `synchronous=FULL`) in a private directory.
//!
//! How it keeps the store contract (`store/mod.rs`): a write transaction starts with `BEGIN
//! IMMEDIATE`, which takes the database's one write lock at once and holds it to the end — so
//! writers never overlap and every [`super::Lock`] is already held (taking one is a no-op); a
//! reader sees a consistent snapshot (WAL) and never blocks the writer. Uniqueness rules are
//! constraints: the `names` table (one row per template or certificate name, schema v4), the
//! unique index on (issuer, serial), the revocations' primary key.

mod crl_series;
mod scep;
mod scep_client;
mod schema;
mod sealed;
mod token_loss;
mod txn;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};

use self::schema::migrate;
use super::{Job, Result, Store, Transaction, TxnMode};
use crate::error::StoreError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Prepared statements kept per connection: more than the store has.
const STATEMENTS_KEPT: usize = 128;
/// WAL pages after which a commit folds the WAL into the database and empties it (SQLite's
/// automatic checkpoint is at 1,000). Every process that opens the store reads the WAL back
/// once (see [`SqliteStore::open`]), so it is kept to ~256 KiB: a checkpoint every ~10
/// commands of the CLI.
const WAL_CHECKPOINT_PAGES: u64 = 64;
/// The same for a store kept open ([`SqliteStore::resident`]: `serve`, `certman agent`):
/// SQLite's own 1,000. While it is open, no other process reads the WAL back (its index is
/// shared), and a checkpoint, with the database's fsync and the WAL's truncation, comes 15
/// times less often; it empties the WAL when it closes.
const RESIDENT_CHECKPOINT_PAGES: u64 = 1000;
/// A WAL frame: its header and a page.
const WAL_FRAME_BYTES: u64 = 24 + 4096;
/// How long a command's commit waits for a write lock, a reader to move on, another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The database file's name inside the store directory.
pub const DB_FILE: &str = "certman.db";

/// SQLite's extended result codes for the constraints the contract names.
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Busy
            }
            _ => StoreError::Database {
                source: Box::new(e),
            },
        }
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint failing (not a foreign key).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    salt: Vec<u8>,
    path: PathBuf,
    /// the database's WAL file
    wal: PathBuf,
    /// WAL pages after which a commit empties it
    checkpoint_pages: u64,
    /// the lock files of the jobs this handle leads, held open (and locked) while it does
    leads: Mutex<HashMap<Job, File>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`: directory 0700, database 0600.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, true)
    }

    /// Opens the store in `dir`; with `create`, makes it first if there is none, else a
    /// directory without the database is [`StoreError::NoStore`] (and is left as it is).
    pub fn open_with(dir: &Path, create: bool) -> Result<Self> {
        let path = dir.join(DB_FILE);
        if !create && !path.exists() {
            return Err(StoreError::NoStore {
                location: dir.to_owned(),
            });
        }
        crate::fsutil::ensure_private_dir(dir).map_err(io_err(dir))?;
        // Create the file with 0600 before SQLite does (SQLite gives its -wal/-shm files the
        // database file's mode).
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&path))?;
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Every statement the store runs stays prepared (rusqlite keeps 16 by default, fewer
        // than one SCEP enrolment uses: they were parsed again on every request).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The WAL stays when the connection closes. SQLite's default is to checkpoint it into
        // the database and delete it on the last close, which in a CLI process is every
        // command: a directory fsync, the WAL header's, the commit's, the checkpoint's two and
        // two unlinks, where a commit needs one fsync of the WAL (synchronous=FULL) to be
        // durable. The WAL is folded back instead by the commit that takes it past
        // WAL_CHECKPOINT_PAGES, and emptied then ([`SqliteTxn::commit`]): the next process
        // reads back what is left in it when it opens the store (SQLite rebuilds its WAL
        // index from the WAL once no process has it open), so it is kept small, and it must
        // be emptied, not merely checkpointed — what was checkpointed is forgotten with the
        // index, and every later commit would copy the whole WAL again. SQLite's own
        // automatic checkpoint is off: it only checkpoints. This is also the state of every
        // store `serve` has open; a copy of a store is its directory (or `sqlite3 certman.db
        // .backup`), never certman.db alone.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let salt = migrate(&conn)?;
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            salt,
            path,
            wal: wal.into(),
            checkpoint_pages: WAL_CHECKPOINT_PAGES,
            leads: Mutex::new(HashMap::new()),
        })
    }

    /// For a process that keeps the store open for long (`serve`, `certman agent`): the WAL
    /// is emptied every [`RESIDENT_CHECKPOINT_PAGES`] rather than [`WAL_CHECKPOINT_PAGES`],
    /// and when the store closes.
    pub fn resident(mut self) -> Self {
        self.checkpoint_pages = RESIDENT_CHECKPOINT_PAGES;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the open transaction is
        // rolled back by the guard's drop), so a poisoned mutex is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A resident store empties its WAL as it closes, so that the CLI processes after it do not
/// read back up to [`RESIDENT_CHECKPOINT_PAGES`]; a checkpoint that cannot finish (another
/// process reading) leaves it to their commits.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        if self.checkpoint_pages != WAL_CHECKPOINT_PAGES {
            let conn = self.lock();
            if conn.busy_timeout(Duration::ZERO).is_ok() {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            }
        }
    }
}

impl Store for SqliteStore {
    fn begin(&self, mode: TxnMode) -> Result<Box<dyn Transaction + '_>> {
        let conn = self.lock();
        let sql = match mode {
            TxnMode::Read => "BEGIN DEFERRED",
            TxnMode::Write => "BEGIN IMMEDIATE",
        };
        conn.execute_batch(sql)?;
        Ok(Box::new(SqliteTxn {
            conn,
            done: false,
            write: mode == TxnMode::Write,
            wal: &self.wal,
            checkpoint_pages: self.checkpoint_pages,
        }))
    }

    fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// SQLite opened the database read-only (its file was not writable), or a probe file
    /// cannot be created, written and removed in the store directory (a read-only or full
    /// file system, the directory gone or not writable). Neither takes the write lock: a
    /// `BEGIN IMMEDIATE` would wait behind a writer signing on a token, and a write rolled
    /// back may never reach the disk.
    fn check_writable(&self) -> Result<()> {
        use std::io::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static PROBES: AtomicU64 = AtomicU64::new(0);
        if self.lock().is_readonly(rusqlite::MAIN_DB)? {
            return Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the database is open read-only",
                ),
            });
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let probe = dir.join(format!(
            ".write-probe-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"x"));
        let removed = std::fs::remove_file(&probe);
        written.and(removed).map_err(io_err(&probe))
    }

    /// An exclusive `flock` on `lead-<job>.lock` in the store directory, held by this handle's
    /// open file: the processes of one machine that share the store directory lead in turn,
    /// and the kernel frees a lock with its process, however it ended. A lock file removed
    /// or replaced under the leader is leadership lost (another process may lock the new one).
    fn lead(&self, job: Job) -> Result<bool> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(format!("lead-{}.lock", job.as_str()));
        let mut leads = self.leads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = leads.get(&job) {
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
                _ => false,
            };
            if same {
                return Ok(true);
            }
            leads.remove(&job);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a file descriptor this function owns, open for its whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            leads.insert(job, file);
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Ok(false)
        } else {
            Err(io_err(&path)(e))
        }
    }
}

struct SqliteTxn<'a> {
    conn: MutexGuard<'a, Connection>,
    done: bool,
    /// began with `BEGIN IMMEDIATE` (holds the write lock)
    write: bool,
    /// the database's WAL file
    wal: &'a Path,
    /// WAL pages after which a commit empties it
    checkpoint_pages: u64,
}

impl SqliteTxn<'_> {
    /// After a commit: folds the WAL into the database and empties it once it holds
    /// [`WAL_CHECKPOINT_PAGES`] ([`RESIDENT_CHECKPOINT_PAGES`] in a resident store). The commit is durable already, so this never fails it: a
    /// checkpoint that cannot finish at once (a reader still on the WAL, another writer) is
    /// left to a later commit, rather than keeping this command waiting.
    fn checkpoint_if_large(&self) {
        let pages = std::fs::metadata(self.wal).map_or(0, |m| m.len() / WAL_FRAME_BYTES);
        if pages < self.checkpoint_pages {
            return;
        }
        if self.conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
    }

    /// Runs an operation of several statements all or nothing (a savepoint): a failed one
    /// leaves no part of itself behind, as PostgreSQL's failed statements leave nothing.
    fn atomic<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("SAVEPOINT operation")?;
        match op(self) {
            Ok(v) => {
                self.conn.execute_batch("RELEASE operation")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO operation; RELEASE operation");
                Err(e)
            }
        }
    }

    /// Takes a name for a new template or certificate.
    fn claim_name(&mut self, name: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO names(name) VALUES (?1)")?
            .execute(params![name])
            .map_err(|e| name_error(e, name))?;
        Ok(())
    }

    /// Moves a name (a rename); nothing when it stays.
    fn rename(&mut self, old: &str, new: &str) -> Result<()> {
        if old != new {
            self.conn
                .prepare_cached("UPDATE names SET name = ?2 WHERE name = ?1")?
                .execute(params![old, new])
                .map_err(|e| name_error(e, new))?;
        }
        Ok(())
    }

    fn release_name(&mut self, name: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM names WHERE name = ?1")?
            .execute(params![name])?;
        Ok(())
    }

    fn template_name(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT name FROM templates WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?)
    }

    fn certificate_name(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT name FROM certificates WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?)
    }
}

fn name_error(e: rusqlite::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::NameTaken(name.to_owned())
    } else {
        e.into()
    }
}

impl Drop for SqliteTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests;
