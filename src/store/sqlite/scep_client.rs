//! The SCEP client table of the SQLite store.

use rusqlite::{params, OptionalExtension, Row};

use super::{is_unique_violation, SqliteTxn};
use crate::error::StoreError;
use crate::store::{
    now_micros, NewScepClient, Result, ScepClientRecord, ScepClientState, ScepClientStore,
    ScepClientTransaction,
};

const COLUMNS: &str = "id, name, kind, url, ca_identity, properties, key_profile, refresh, \
                       status, detail, ca_id, next_ca_id, certificate_id, key_id, challenge, \
                       tx_id, tx_type, tx_csr, tx_signer, tx_recipient, tx_started, \
                       req_fingerprint, ca_fingerprint, capabilities, next_attempt, attempts, \
                       created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ScepClientRecord> {
    let tx_id: Option<String> = r.get(15)?;
    let transaction = match tx_id {
        Some(transaction_id) => Some(ScepClientTransaction {
            transaction_id,
            message_type: r.get(16)?,
            csr: r.get(17)?,
            signer: r.get(18)?,
            recipient: r.get(19)?,
            started_at: r.get(20)?,
        }),
        None => None,
    };
    Ok(ScepClientRecord {
        id: r.get(0)?,
        client: NewScepClient {
            name: r.get(1)?,
            kind: r.get(2)?,
            url: r.get(3)?,
            ca_identity: r.get(4)?,
            properties: r.get(5)?,
            key_profile: r.get(6)?,
            refresh: r.get(7)?,
        },
        state: ScepClientState {
            status: r.get(8)?,
            detail: r.get(9)?,
            ca_id: r.get(10)?,
            next_ca_id: r.get(11)?,
            certificate_id: r.get(12)?,
            key_id: r.get(13)?,
            challenge: r.get(14)?,
            transaction,
            req_fingerprint: r.get(21)?,
            ca_fingerprint: r.get(22)?,
            capabilities: r.get(23)?,
            next_attempt: r.get(24)?,
            attempts: r.get(25)?,
        },
        created_at: r.get(26)?,
        updated_at: r.get(27)?,
    })
}

/// A time after `previous`, so that the compare-and-set token always changes.
fn next_stamp(previous: i64) -> i64 {
    now_micros().max(previous + 1)
}

impl ScepClientStore for SqliteTxn<'_> {
    fn scep_clients(&self) -> Result<Vec<ScepClientRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM scep_clients ORDER BY id"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn scep_client(&self, name: &str) -> Result<Option<ScepClientRecord>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM scep_clients WHERE name = ?1"
            ))?
            .query_row(params![name], from_row)
            .optional()?)
    }

    fn insert_scep_client(&mut self, c: &NewScepClient, s: &ScepClientState) -> Result<i64> {
        let now = now_micros();
        self.conn
            .prepare_cached(
                "INSERT INTO scep_clients(name, kind, url, ca_identity, properties, key_profile, \
                 refresh, status, detail, ca_id, next_ca_id, certificate_id, key_id, challenge, \
                 tx_id, tx_type, tx_csr, tx_signer, tx_recipient, tx_started, req_fingerprint, \
                 ca_fingerprint, capabilities, next_attempt, attempts, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?26)",
            )?
            .execute(params![
                c.name,
                c.kind,
                c.url,
                c.ca_identity,
                c.properties,
                c.key_profile,
                c.refresh,
                s.status,
                s.detail,
                s.ca_id,
                s.next_ca_id,
                s.certificate_id,
                s.key_id,
                s.challenge,
                s.transaction.as_ref().map(|t| &t.transaction_id),
                s.transaction.as_ref().map(|t| t.message_type),
                s.transaction.as_ref().map(|t| &t.csr),
                s.transaction.as_ref().map(|t| &t.signer),
                s.transaction.as_ref().map(|t| &t.recipient),
                s.transaction.as_ref().map(|t| t.started_at),
                s.req_fingerprint,
                s.ca_fingerprint,
                s.capabilities,
                s.next_attempt,
                s.attempts,
                now
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate("a SCEP client with this name")
                } else {
                    e.into()
                }
            })?;
        Ok(self.conn.last_insert_rowid())
    }

    fn update_scep_client(
        &mut self,
        id: i64,
        updated_at: i64,
        s: &ScepClientState,
    ) -> Result<Option<i64>> {
        let stamp = next_stamp(updated_at);
        let n = self
            .conn
            .prepare_cached(
                "UPDATE scep_clients SET status = ?3, detail = ?4, ca_id = ?5, next_ca_id = ?6, \
                 certificate_id = ?7, key_id = ?8, challenge = ?9, tx_id = ?10, tx_type = ?11, \
                 tx_csr = ?12, tx_signer = ?13, tx_recipient = ?14, tx_started = ?15, \
                 req_fingerprint = ?16, ca_fingerprint = ?17, capabilities = ?18, \
                 next_attempt = ?19, attempts = ?20, updated_at = ?21 \
                 WHERE id = ?1 AND updated_at = ?2",
            )?
            .execute(params![
                id,
                updated_at,
                s.status,
                s.detail,
                s.ca_id,
                s.next_ca_id,
                s.certificate_id,
                s.key_id,
                s.challenge,
                s.transaction.as_ref().map(|t| &t.transaction_id),
                s.transaction.as_ref().map(|t| t.message_type),
                s.transaction.as_ref().map(|t| &t.csr),
                s.transaction.as_ref().map(|t| &t.signer),
                s.transaction.as_ref().map(|t| &t.recipient),
                s.transaction.as_ref().map(|t| t.started_at),
                s.req_fingerprint,
                s.ca_fingerprint,
                s.capabilities,
                s.next_attempt,
                s.attempts,
                stamp
            ])?;
        Ok((n == 1).then_some(stamp))
    }

    fn delete_scep_client(&mut self, id: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM scep_clients WHERE id = ?1")?
            .execute(params![id])?;
        Ok(n == 1)
    }
}
