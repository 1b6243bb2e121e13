//! The SCEP tables of the PostgreSQL store: servers, OTP hashes, the request queue.
//!
//! Several `serve` nodes write here at once, each write transaction at READ COMMITTED, so no
//! rule of `store/scep.rs` rests on a read followed by a write:
//! - a path, an OTP hash held once: the unique constraints decide (`ON CONFLICT DO NOTHING`
//!   on insert, a unique violation on update); a second writer waits for the first to end;
//! - an OTP consumed once, a request moved once: one conditional `UPDATE` each, whose row
//!   count says whether this transaction got it. A writer that finds the row locked by
//!   another waits for it to end, then checks the condition again on the row as the other
//!   left it (PostgreSQL's re-check of an `UPDATE`'s `WHERE` under READ COMMITTED), so of
//!   two racing writers one matches and the other finds nothing.

use postgres::Row;

use super::{is_unique_violation, PgTxn};
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

/// What a path held by another server is.
const PATH_TAKEN: StoreError = StoreError::Duplicate("a SCEP server with this path");

fn server_from_row(r: &Row) -> Result<ScepServerRecord> {
    let days_valid: i64 = r.try_get(5)?;
    Ok(ScepServerRecord {
        id: r.try_get(0)?,
        server: NewScepServer {
            path: r.try_get(1)?,
            ca_id: r.try_get(2)?,
            ra_id: r.try_get(3)?,
            next_ca_id: r.try_get(4)?,
            days_valid: u32::try_from(days_valid).map_err(|_| {
                StoreError::Corrupt(format!("scep_servers.days_valid {days_valid}"))
            })?,
            request_lifetime: r.try_get(6)?,
            disabled: r.try_get(7)?,
            upstream_id: r.try_get(9)?,
        },
        created_at: r.try_get(8)?,
    })
}

fn otp_from_row(r: &Row) -> Result<OtpRecord> {
    Ok(OtpRecord {
        id: r.try_get(0)?,
        server_id: r.try_get(1)?,
        hash: r.try_get(2)?,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        used_at: r.try_get(5)?,
    })
}

fn request_from_row(r: &Row) -> Result<ScepRequestRecord> {
    Ok(ScepRequestRecord {
        id: r.try_get(0)?,
        request: NewScepRequest {
            server_id: r.try_get(1)?,
            transaction_id: r.try_get(2)?,
            status: r.try_get(3)?,
            csr: r.try_get(4)?,
            signer: r.try_get(5)?,
            subject: r.try_get(6)?,
            common_name: r.try_get(7)?,
            subject_alt_name: r.try_get(8)?,
            fingerprint: r.try_get(9)?,
        },
        certificate_id: r.try_get(10)?,
        created_at: r.try_get(11)?,
        updated_at: r.try_get(12)?,
    })
}

/// The first column of a row, an id.
fn id_from_row(r: &Row) -> Result<i64> {
    Ok(r.try_get(0)?)
}

impl ScepTransaction for PgTxn<'_> {
    fn scep_servers(&self) -> Result<Vec<ScepServerRecord>> {
        self.query(
            &format!("SELECT {SERVER_COLUMNS} FROM scep_servers ORDER BY id"),
            &[],
        )?
        .iter()
        .map(server_from_row)
        .collect()
    }

    fn insert_scep_server(&mut self, s: &NewScepServer) -> Result<i64> {
        // The path's unique index decides: a racing insert of the same path waits for this
        // transaction, then inserts nothing.
        let row = self.query_opt(
            "INSERT INTO scep_servers(path, ca_id, ra_id, next_ca_id, days_valid, \
             request_lifetime, disabled, created_at, upstream_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (path) DO NOTHING RETURNING id",
            &[
                &s.path,
                &s.ca_id,
                &s.ra_id,
                &s.next_ca_id,
                &i64::from(s.days_valid),
                &s.request_lifetime,
                &s.disabled,
                &now_micros(),
                &s.upstream_id,
            ],
        )?;
        match row {
            Some(row) => id_from_row(&row),
            None => Err(PATH_TAKEN),
        }
    }

    fn update_scep_server(&mut self, id: i64, s: &NewScepServer) -> Result<()> {
        let n = self
            .try_execute(
                "UPDATE scep_servers SET path = $2, ca_id = $3, ra_id = $4, next_ca_id = $5, \
                 days_valid = $6, request_lifetime = $7, disabled = $8, upstream_id = $9 \
                 WHERE id = $1",
                &[
                    &id,
                    &s.path,
                    &s.ca_id,
                    &s.ra_id,
                    &s.next_ca_id,
                    &i64::from(s.days_valid),
                    &s.request_lifetime,
                    &s.disabled,
                    &s.upstream_id,
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    PATH_TAKEN
                } else {
                    e.into()
                }
            })?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    fn delete_scep_server(&mut self, id: i64) -> Result<bool> {
        let n = self.execute("DELETE FROM scep_servers WHERE id = $1", &[&id])?;
        Ok(n == 1)
    }

    fn insert_otp(&mut self, server_id: Option<i64>, hash: &[u8], expires_at: i64) -> Result<i64> {
        let row = self.query_opt(
            "INSERT INTO scep_otps(server_id, hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING RETURNING id",
            &[&server_id, &hash, &now_micros(), &expires_at],
        )?;
        match row {
            Some(row) => id_from_row(&row),
            None => Err(StoreError::Duplicate("a one-time password with this hash")),
        }
    }

    fn otps(&self) -> Result<Vec<OtpRecord>> {
        self.query(
            &format!("SELECT {OTP_COLUMNS} FROM scep_otps ORDER BY id"),
            &[],
        )?
        .iter()
        .map(otp_from_row)
        .collect()
    }

    fn otp_by_hash(&self, hash: &[u8]) -> Result<Option<OtpRecord>> {
        self.query_opt(
            &format!("SELECT {OTP_COLUMNS} FROM scep_otps WHERE hash = $1"),
            &[&hash],
        )?
        .as_ref()
        .map(otp_from_row)
        .transpose()
    }

    fn consume_otp(&mut self, hash: &[u8], server_id: i64, now: i64) -> Result<bool> {
        // One statement, the check in its WHERE: a racing consumer waits for this
        // transaction, then finds `used_at` set (or, after a rollback, consumes it itself).
        let n = self.execute(
            "UPDATE scep_otps SET used_at = $3 WHERE hash = $1 AND used_at IS NULL \
             AND expires_at > $3 AND (server_id IS NULL OR server_id = $2)",
            &[&hash, &server_id, &now],
        )?;
        Ok(n == 1)
    }

    fn insert_scep_request(
        &mut self,
        r: &NewScepRequest,
        certificate_id: Option<i64>,
    ) -> Result<i64> {
        let row = self.query_one(
            "INSERT INTO scep_requests(server_id, transaction_id, status, csr, signer, \
             subject, common_name, subject_alt_name, fingerprint, certificate_id, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
            &[
                &r.server_id,
                &r.transaction_id,
                &r.status,
                &r.csr,
                &r.signer,
                &r.subject,
                &r.common_name,
                &r.subject_alt_name,
                &r.fingerprint,
                &certificate_id,
                &now_micros(),
            ],
        )?;
        id_from_row(&row)
    }

    fn scep_requests(&self) -> Result<Vec<ScepRequestRecord>> {
        self.query(
            &format!("SELECT {REQUEST_COLUMNS} FROM scep_requests ORDER BY id"),
            &[],
        )?
        .iter()
        .map(request_from_row)
        .collect()
    }

    fn count_scep_requests(&self, server_id: i64, status: &str, created_after: i64) -> Result<i64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM scep_requests \
             WHERE server_id = $1 AND status = $2 AND created_at > $3",
            &[&server_id, &status, &created_after],
        )?;
        Ok(row.try_get(0)?)
    }

    fn scep_request_by_any_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        self.query_opt(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM scep_requests \
                 WHERE transaction_id = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[&transaction_id],
        )?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    fn scep_request(&self, id: i64) -> Result<Option<ScepRequestRecord>> {
        self.query_opt(
            &format!("SELECT {REQUEST_COLUMNS} FROM scep_requests WHERE id = $1"),
            &[&id],
        )?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    fn scep_request_by_transaction(
        &self,
        server_id: i64,
        transaction_id: &str,
    ) -> Result<Option<ScepRequestRecord>> {
        self.query_opt(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM scep_requests \
                 WHERE server_id = $1 AND transaction_id = $2 ORDER BY id DESC LIMIT 1"
            ),
            &[&server_id, &transaction_id],
        )?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    fn move_scep_request(
        &mut self,
        id: i64,
        from: &str,
        to: &str,
        certificate_id: Option<i64>,
    ) -> Result<bool> {
        // Compare-and-set on the status, in the UPDATE's WHERE: of racing movers, the ones
        // that wait for the first re-check the status it left and move nothing. `updated_at`
        // never goes back, even when this node's clock is behind the last writer's.
        let n = self.execute(
            "UPDATE scep_requests SET status = $3, \
             certificate_id = COALESCE($4::bigint, certificate_id), \
             updated_at = GREATEST($5, updated_at) \
             WHERE id = $1 AND status = $2",
            &[&id, &from, &to, &certificate_id, &now_micros()],
        )?;
        Ok(n == 1)
    }
}
