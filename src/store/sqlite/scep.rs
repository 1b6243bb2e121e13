//! The SCEP tables of the SQLite store: servers, OTP hashes, the request queue.

use rusqlite::{params, OptionalExtension, Row};

use super::{is_unique_violation, SqliteTxn};
use crate::error::StoreError;
use crate::store::{
    now_micros, NewScepRequest, NewScepServer, OtpRecord, Result, ScepRequestRecord,
    ScepServerRecord, ScepTransaction,
};

const SERVER_COLUMNS: &str =
    "id, path, ca_id, ra_id, next_ca_id, days_valid, request_lifetime, disabled, created_at, \
     upstream_id";
const OTP_COLUMNS: &str = "id, server_id, hash, created_at, expires_at, used_at";
const REQUEST_COLUMNS: &str = "id, server_id, transaction_id, status, csr, signer, subject, \
                               common_name, subject_alt_name, fingerprint, certificate_id, \
                               created_at, updated_at";

fn server_from_row(r: &Row<'_>) -> rusqlite::Result<ScepServerRecord> {
    Ok(ScepServerRecord {
        id: r.get(0)?,
        server: NewScepServer {
            path: r.get(1)?,
            ca_id: r.get(2)?,
            ra_id: r.get(3)?,
            next_ca_id: r.get(4)?,
            days_valid: r.get(5)?,
            request_lifetime: r.get(6)?,
            disabled: r.get(7)?,
            upstream_id: r.get(9)?,
        },
        created_at: r.get(8)?,
    })
}

fn otp_from_row(r: &Row<'_>) -> rusqlite::Result<OtpRecord> {
    Ok(OtpRecord {
        id: r.get(0)?,
        server_id: r.get(1)?,
        hash: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        used_at: r.get(5)?,
    })
}

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<ScepRequestRecord> {
    Ok(ScepRequestRecord {
        id: r.get(0)?,
        request: NewScepRequest {
            server_id: r.get(1)?,
            transaction_id: r.get(2)?,
            status: r.get(3)?,
            csr: r.get(4)?,
            signer: r.get(5)?,
            subject: r.get(6)?,
            common_name: r.get(7)?,
            subject_alt_name: r.get(8)?,
            fingerprint: r.get(9)?,
        },
        certificate_id: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

fn path_error(e: rusqlite::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Duplicate("a SCEP server with this path")
    } else {
        e.into()
    }
}

impl ScepTransaction for SqliteTxn<'_> {
    fn scep_servers(&self) -> Result<Vec<ScepServerRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SERVER_COLUMNS} FROM scep_servers ORDER BY id"
        ))?;
        let rows = stmt.query_map([], server_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_scep_server(&mut self, s: &NewScepServer) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO scep_servers(path, ca_id, ra_id, next_ca_id, days_valid, \
                 request_lifetime, disabled, created_at, upstream_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                s.path,
                s.ca_id,
                s.ra_id,
                s.next_ca_id,
                s.days_valid,
                s.request_lifetime,
                s.disabled,
                now_micros(),
                s.upstream_id
            ])
            .map_err(path_error)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_scep_server(&mut self, id: i64, s: &NewScepServer) -> Result<()> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE scep_servers SET path = ?2, ca_id = ?3, ra_id = ?4, next_ca_id = ?5, \
                 days_valid = ?6, request_lifetime = ?7, disabled = ?8, upstream_id = ?9 WHERE id = ?1",
            )?
            .execute(params![
                id,
                s.path,
                s.ca_id,
                s.ra_id,
                s.next_ca_id,
                s.days_valid,
                s.request_lifetime,
                s.disabled,
                s.upstream_id
            ])
            .map_err(path_error)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn delete_scep_server(&mut self, id: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM scep_servers WHERE id = ?1")?
            .execute(params![id])?;
        Ok(n == 1)
    }

    fn insert_otp(&mut self, server_id: Option<i64>, hash: &[u8], expires_at: i64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO scep_otps(server_id, hash, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![server_id, hash, now_micros(), expires_at])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate("a one-time password with this hash")
                } else {
                    e.into()
                }
            })?;
        Ok(self.conn.last_insert_rowid())
    }

    fn otps(&self) -> Result<Vec<OtpRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {OTP_COLUMNS} FROM scep_otps ORDER BY id"))?;
        let rows = stmt.query_map([], otp_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn otp_by_hash(&self, hash: &[u8]) -> Result<Option<OtpRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {OTP_COLUMNS} FROM scep_otps WHERE hash = ?1"
            ))?
            .query_row(params![hash], otp_from_row)
            .optional()?)
    }

    fn consume_otp(&mut self, hash: &[u8], server_id: i64, now: i64) -> Result<bool> {
        // One statement: the check and the consumption cannot be split by another writer.
        let n = self
            .conn
            .prepare_cached(
                "UPDATE scep_otps SET used_at = ?3 WHERE hash = ?1 AND used_at IS NULL \
                 AND expires_at > ?3 AND (server_id IS NULL OR server_id = ?2)",
            )?
            .execute(params![hash, server_id, now])?;
        Ok(n == 1)
    }

    fn insert_scep_request(
        &mut self,
        r: &NewScepRequest,
        certificate_id: Option<i64>,
    ) -> Result<i64> {
        let now = now_micros();
        self.conn
            .prepare_cached(
                "INSERT INTO scep_requests(server_id, transaction_id, status, csr, signer, \
                 subject, common_name, subject_alt_name, fingerprint, certificate_id, \
                 created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            )?
            .execute(params![
                r.server_id,
                r.transaction_id,
                r.status,
                r.csr,
                r.signer,
                r.subject,
                r.common_name,
                r.subject_alt_name,
                r.fingerprint,
                certificate_id,
                now
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn scep_requests(&self) -> Result<Vec<ScepRequestRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM scep_requests ORDER BY id"
        ))?;
        let rows = stmt.query_map([], request_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_scep_requests(&self, server_id: i64, status: &str, created_after: i64) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM scep_requests \
                 WHERE server_id = ?1 AND status = ?2 AND created_at > ?3",
            )?
            .query_row(params![server_id, status, created_after], |r| r.get(0))?)
    }

    fn scep_request_by_any_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM scep_requests \
                 WHERE transaction_id = ?1 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row(params![transaction_id], request_from_row)
            .optional()?)
    }

    fn scep_request(&self, id: i64) -> Result<Option<ScepRequestRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM scep_requests WHERE id = ?1"
            ))?
            .query_row(params![id], request_from_row)
            .optional()?)
    }

    fn scep_request_by_transaction(
        &self,
        server_id: i64,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM scep_requests \
                 WHERE server_id = ?1 AND transaction_id = ?2 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row(params![server_id, transaction_id], request_from_row)
            .optional()?)
    }

    fn move_scep_request(
        &mut self,
        id: i64,
        from: &str,
        to: &str,
        certificate_id: Option<i64>,
    ) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE scep_requests SET status = ?3, \
                 certificate_id = COALESCE(?4, certificate_id), updated_at = ?5 \
                 WHERE id = ?1 AND status = ?2",
            )?
            .execute(params![id, from, to, certificate_id, now_micros()])?;
        Ok(n == 1)
    }
}
