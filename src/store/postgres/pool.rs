//! The connections of one store handle: up to a fixed number, made when first needed, reused,
//! dropped when broken. A connection that cannot be made fails the caller at once with the
//! server's reason (a pool that retried until a timeout would hide "database does not exist"
//! behind "timed out"); a caller finding every connection busy waits for one, up to a timeout.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls, Statement};

use super::pg_error;
use super::tls::Tls;
use crate::error::StoreError;
use crate::store::Result;

/// A connection and the statements prepared on it.
pub(super) struct PgConn {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
    /// a rollback failed: the connection is in an unknown state and is not reused
    pub(super) broken: bool,
}

/// The pool.
pub(super) struct Pool {
    config: Config,
    /// how connections are secured (`sslmode` and friends): every one alike, the leader's too
    tls: Tls,
    size: usize,
    state: Mutex<State>,
    returned: Condvar,
    /// the location as errors show it
    shown: String,
}

struct State {
    idle: Vec<PgConn>,
    /// connections that exist: idle, out of the pool, or being made
    open: usize,
}

impl Pool {
    pub(super) fn new(config: Config, tls: Tls, size: usize, shown: &str) -> Self {
        Pool {
            config,
            tls,
            size: size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            shown: shown.to_owned(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection, outside the pool (the leader's session).
    pub(super) fn connect(&self) -> Result<Client> {
        match &self.tls {
            Tls::None => self.config.connect(NoTls),
            Tls::Rustls(make) => self.config.connect(make.clone()),
        }
        .map_err(|e| StoreError::Database {
            source: format!("PostgreSQL at {}: {}", self.shown, pg_error(&e)).into(),
        })
    }

    /// An idle connection, a new one while there are fewer than the pool's size, else the
    /// first one returned within `timeout` ([`StoreError::Busy`] after it).
    pub(super) fn get(&self, timeout: Duration) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            statements: HashMap::new(),
                            broken: false,
                        }),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy);
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Connections are closed on a thread of their own: closing one blocks on its runtime, which
/// panics on a thread that drives asynchronous tasks (a store dropped as `serve` ends).
impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        close_apart(idle);
    }
}

/// Drops `what` (connections) on a thread of its own, and waits for it.
pub(super) fn close_apart<T: Send + 'static>(what: T) {
    let _ = std::thread::spawn(move || drop(what)).join();
}

/// A connection out of the pool; back to it when dropped (closed instead, if broken).
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<PgConn>,
}

impl Deref for Pooled<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn
            .as_ref()
            .expect("a pooled connection until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn
            .as_mut()
            .expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut state = self.pool.lock();
        if conn.broken || conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}
