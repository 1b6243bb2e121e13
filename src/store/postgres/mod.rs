//! The store of several nodes: one PostgreSQL database, reached through a pool of connections.
//!
//! How it keeps the store contract (`store/mod.rs`) when several processes on several machines
//! write at once:
//! - a write transaction runs at READ COMMITTED, each statement seeing what was committed
//!   before it; what it reads to increment or re-check, it reads after taking the object's
//!   [`Lock`] (a transaction-scoped advisory lock), so two such transactions never overlap;
//! - a read transaction is REPEATABLE READ READ ONLY: one snapshot for all its statements;
//! - uniqueness rules are constraints (the `names` table, the unique (issuer, serial) and
//!   fingerprint indexes, the revocations' primary key): a second writer's insert waits for the
//!   first to end and then fails with a unique violation, which becomes
//!   [`StoreError::NameTaken`] or [`StoreError::Duplicate`];
//! - a consumed-once row (a template, an OTP, a SCEP request) is consumed by one conditional
//!   `UPDATE`/`DELETE` whose row count says whether this transaction got it;
//! - serialization failures and deadlocks are [`StoreError::Conflict`], which the manager
//!   retries a bounded number of times.
//!
//! A statement that fails aborts the PostgreSQL transaction: the contract's callers drop a
//! transaction after a failed operation, and [`Transaction::commit`] of an aborted one is
//! refused rather than answered by the server's silent rollback.

mod crl_series;
mod pool;
mod scep;
mod scep_client;
mod schema;
mod sealed;
mod tls;
mod token_loss;
mod txn;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use postgres::config::Host;
use postgres::types::ToSql;
use postgres::{Client, Config, Row, Statement};

use self::pool::{Pool, Pooled};

use super::{Job, Lock, Result, Store, Transaction, TxnMode};
use crate::error::StoreError;

/// The schema version this build writes (`meta.schema_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Connections a node keeps at most: `serve` answers on a few blocking threads, and each
/// connection is a PostgreSQL backend process.
const POOL_SIZE: usize = 8;
/// How long a transaction waits for a connection, and a new connection for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/health`'s probe waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Advisory lock class of [`Lock::Ca`] ("ca  ").
const CA_LOCK_CLASS: i32 = 0x6361_2020;
/// Advisory lock class of [`Lock::ScepServer`] ("scep").
const SCEP_SERVER_LOCK_CLASS: i32 = 0x7363_6570;
/// Advisory lock class of a [`Job`]'s leadership ("lead"), a session lock.
const LEAD_LOCK_CLASS: i32 = 0x6c65_6164;
/// How long the leader's connection may go unanswered before its server ends the session
/// (and frees its locks): TCP keepalives after 10 s idle, every 5 s, 3 unanswered. A node
/// killed outright closes its sockets, and its locks go at once.
const LEADER_KEEPALIVE: (u32, u32, u32) = (10, 5, 3);

/// SQLSTATEs the contract names.
const UNIQUE_VIOLATION: &str = "23505";
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";
const LOCK_NOT_AVAILABLE: &str = "55P03";

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        match e.code().map(|c| c.code()) {
            Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED) => StoreError::Conflict,
            Some(LOCK_NOT_AVAILABLE) => StoreError::Busy,
            _ => StoreError::Database {
                source: pg_error(&e).into(),
            },
        }
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint failing.
pub(super) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION)
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: Pool,
    /// the connection whose session holds this handle's leaderships
    leader: Mutex<Option<Leader>>,
    salt: Vec<u8>,
    /// the location without its password (errors, `Debug`)
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.shown)
    }
}

impl PgStore {
    /// Opens the store in the database `url` names (`postgresql://…`, libpq's URL form); with
    /// `create`, makes it first in an empty database, else a database without it is
    /// [`StoreError::NoStore`]. `shown` is the URL as errors may show it (no password).
    pub fn open(url: &str, shown: &str, create: bool) -> Result<Self> {
        let location = |e: String| StoreError::Location(format!("{shown}: {e}"));
        // the TLS parameters first: tokio-postgres knows neither the files nor verify-*
        let (url, tls) = tls::split_url(url).map_err(location)?;
        let mut config = Config::from_str(&url).map_err(|e| location(e.to_string()))?;
        let hosts: Vec<bool> = config
            .get_hosts()
            .iter()
            .map(|h| !matches!(h, Host::Tcp(_)))
            .collect();
        let (ssl_mode, tls) = tls.connector(&hosts).map_err(location)?;
        config.ssl_mode(ssl_mode);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("certman");
        }
        let pool = Pool::new(config, tls, POOL_SIZE, shown);
        let mut conn = pool.get(CONNECT_TIMEOUT)?;
        if !create && !schema::has_store(&mut conn.client)? {
            return Err(StoreError::NoStore {
                location: PathBuf::from(shown),
            });
        }
        let salt = schema::migrate(&mut conn.client)?;
        drop(conn);
        Ok(PgStore {
            pool,
            leader: Mutex::new(None),
            salt,
            shown: shown.to_owned(),
        })
    }
}

/// The session that holds a node's leaderships: session-level advisory locks, one per job,
/// freed by the server when the session ends.
struct Leader {
    client: Client,
    held: HashSet<Job>,
}

impl Leader {
    fn connect(pool: &Pool) -> Result<Leader> {
        let mut client = pool.connect()?;
        let (idle, interval, count) = LEADER_KEEPALIVE;
        // settable by any user (ignored by the server on a unix socket); the session is named
        // for `pg_stat_activity`: which process leads is one query away
        client.batch_execute(&format!(
            "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
             SET tcp_keepalives_count = {count}; \
             SET application_name = 'certman leader {}'",
            std::process::id()
        ))?;
        Ok(Leader {
            client,
            held: HashSet::new(),
        })
    }
}

/// A PostgreSQL error with its causes: the server's message, severity and SQLSTATE for a
/// database error (the error's own `Display` says only "db error").
pub(super) fn pg_error(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let leader = self.leader.lock().unwrap_or_else(|p| p.into_inner()).take();
        pool::close_apart(leader);
    }
}

impl Store for PgStore {
    /// A session advisory lock per job, on a connection of its own (pooled connections come
    /// and go). The connection is checked at every call: when it is gone, so are the locks it
    /// held, and this handle leads again only if it wins them on a new connection.
    fn lead(&self, job: Job) -> Result<bool> {
        let mut leader = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = leader.as_mut() {
            if l.client.simple_query("").is_err() {
                *leader = None;
            }
        }
        let l = match leader.as_mut() {
            Some(l) => l,
            None => leader.insert(Leader::connect(&self.pool)?),
        };
        if l.held.contains(&job) {
            return Ok(true);
        }
        let won: bool = l
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LEAD_LOCK_CLASS, &job.number()],
            )?
            .try_get(0)?;
        if won {
            l.held.insert(job);
        }
        Ok(won)
    }

    fn begin(&self, mode: TxnMode) -> Result<Box<dyn Transaction + '_>> {
        let mut conn = self.pool.get(CONNECT_TIMEOUT)?;
        let sql = match mode {
            TxnMode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            TxnMode::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
        };
        conn.client.batch_execute(sql)?;
        Ok(Box::new(PgTxn {
            conn: RefCell::new(conn),
            done: false,
            aborted: Cell::new(false),
            write: mode == TxnMode::Write,
        }))
    }

    fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The server is a standby in recovery, or makes new transactions read-only: neither
    /// takes a lock, and the probe waits at most [`PROBE_TIMEOUT`] for a connection.
    fn check_writable(&self) -> Result<()> {
        let mut conn = self.pool.get(PROBE_TIMEOUT)?;
        let row = conn.client.query_one(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'",
            &[],
        )?;
        let (recovery, read_only): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
        if recovery || read_only {
            return Err(StoreError::Database {
                source: format!(
                    "PostgreSQL at {} takes no writes ({})",
                    self.shown,
                    if recovery {
                        "a standby in recovery"
                    } else {
                        "default_transaction_read_only"
                    }
                )
                .into(),
            });
        }
        Ok(())
    }
}

/// One transaction on one pooled connection. The contract's read methods take `&self`, and a
/// PostgreSQL client needs `&mut` to talk: the connection sits in a `RefCell` (a transaction
/// is used by one thread, one call at a time).
pub(super) struct PgTxn<'a> {
    conn: RefCell<Pooled<'a>>,
    done: bool,
    /// a statement failed: PostgreSQL aborted the transaction
    aborted: Cell<bool>,
    /// began as a write transaction
    write: bool,
}

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgTxn<'_> {
    /// Runs `f` with the statement `sql`, prepared once per connection.
    fn run<T>(
        &self,
        sql: &str,
        f: impl FnOnce(&mut Client, &Statement) -> std::result::Result<T, postgres::Error>,
    ) -> std::result::Result<T, postgres::Error> {
        let mut conn = self.conn.borrow_mut();
        let conn = &mut **conn;
        let result = match conn.statements.get(sql) {
            Some(st) => f(&mut conn.client, st),
            None => conn.client.prepare(sql).and_then(|st| {
                let r = f(&mut conn.client, &st);
                conn.statements.insert(sql.to_owned(), st);
                r
            }),
        };
        if result.is_err() {
            self.aborted.set(true);
        }
        result
    }

    /// The rows of a query.
    pub(super) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        Ok(self.run(sql, |c, st| c.query(st, params))?)
    }

    /// The row of a query that has at most one.
    pub(super) fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.run(sql, |c, st| c.query_opt(st, params))?)
    }

    /// The row of a query that has exactly one.
    pub(super) fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        Ok(self.run(sql, |c, st| c.query_one(st, params))?)
    }

    /// Runs a statement; how many rows it changed.
    pub(super) fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        Ok(self.run(sql, |c, st| c.execute(st, params))?)
    }

    /// [`PgTxn::execute`], with PostgreSQL's error for the caller to map (a unique violation).
    pub(super) fn try_execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> std::result::Result<u64, postgres::Error> {
        self.run(sql, |c, st| c.execute(st, params))
    }

    /// Takes a name for a new template or certificate.
    pub(super) fn claim_name(&self, name: &str) -> Result<()> {
        let n = self.execute(
            "INSERT INTO names(name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&name],
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NameTaken(name.to_owned()))
        }
    }

    /// Moves a name (a rename); nothing when it stays.
    pub(super) fn rename(&self, old: &str, new: &str) -> Result<()> {
        if old != new {
            self.try_execute("UPDATE names SET name = $2 WHERE name = $1", &[&old, &new])
                .map_err(|e| name_error(e, new))?;
        }
        Ok(())
    }

    /// Frees a name.
    pub(super) fn release_name(&self, name: &str) -> Result<()> {
        self.execute("DELETE FROM names WHERE name = $1", &[&name])?;
        Ok(())
    }

    /// Takes a transaction-scoped advisory lock.
    fn advisory_lock(&self, class: i32, id: i64) -> Result<()> {
        // ids past 2^31 fold into the 32-bit key: two objects may then share a lock, which
        // serializes more than needed and never less
        let key = (id ^ (id >> 32)) as i32;
        self.query_one("SELECT pg_advisory_xact_lock($1, $2)", &[&class, &key])?;
        Ok(())
    }

    fn finish(&mut self, sql: &str) -> Result<()> {
        self.done = true;
        let result = self.conn.borrow_mut().client.batch_execute(sql);
        if result.is_err() {
            self.conn.borrow_mut().broken = true;
        }
        Ok(result?)
    }
}

fn name_error(e: postgres::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::NameTaken(name.to_owned())
    } else {
        e.into()
    }
}

impl Drop for PgTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.finish("ROLLBACK");
        }
    }
}

/// What `Transaction::commit` and `lock` do on PostgreSQL (the rest is in `txn.rs`).
impl PgTxn<'_> {
    pub(super) fn commit_txn(&mut self) -> Result<()> {
        if self.aborted.get() {
            // PostgreSQL would answer COMMIT with a rollback and no error
            let _ = self.finish("ROLLBACK");
            return Err(StoreError::Database {
                source: "commit of a transaction in which a statement failed".into(),
            });
        }
        self.finish("COMMIT")
    }

    pub(super) fn lock_object(&mut self, what: Lock) -> Result<()> {
        debug_assert!(self.write, "a lock taken in a read transaction");
        match what {
            Lock::Ca(id) => self.advisory_lock(CA_LOCK_CLASS, id),
            Lock::ScepServer(id) => self.advisory_lock(SCEP_SERVER_LOCK_CLASS, id),
        }
    }
}
