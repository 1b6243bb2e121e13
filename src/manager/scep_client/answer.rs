//! What an exchange with a SCEP client's server changes: the certificate stored in place of
//! the old one, or the status and the next try; and the small state changes after a look at
//! the server. Each is a compare-and-set of the client's row.

use std::time::Duration;

use super::steps::{micros, secs, ClientJob, ClientTiming};
use super::{backoff, client_view, find_client, ScepClientKind, ScepClientStatus, ScepClientView};
use crate::error::{ManagerError, Refusal, RequestFault, Result, StoreError};
use crate::manager::template::TemplateProperties;
use crate::manager::Manager;
use crate::store::{NewCertificate, ScepClientRecord, ScepClientState, Transaction, TxnMode};
use crate::x509;

/// After a refusal of a renewal, the next try (the certificate is still valid).
const RENEWAL_RETRY: Duration = Duration::from_secs(6 * 3600);

/// What came of an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAnswer {
    /// SUCCESS: the certificates of the reply (the issued one among them)
    Issued(Vec<Vec<u8>>),
    /// PENDING
    Pending,
    /// FAILURE, with its failInfo and failInfoText (or what certman read of it)
    Rejected(RequestFault, String),
    /// not reached, timed out, or HTTP 503
    Unreachable(String),
    /// an answer SCEP does not allow (garbage, a bad signature, a wrong nonce…)
    ServerError(String),
    /// the key could not sign or decrypt: token absent (`pin` false) or PIN failed
    KeyUnavailable {
        /// why
        why: String,
        /// a PIN failure: not tried again by the timers
        pin: bool,
    },
}

impl Manager {
    /// After a look at the server (`ClientStep::Check`): the next look, the capabilities.
    pub fn scep_client_checked(
        &self,
        name: &str,
        capabilities: &str,
        timing: &ClientTiming,
    ) -> Result<()> {
        let now = self.client_now();
        self.write(|txn| {
            let rec = find_client(txn, name)?;
            let mut state = rec.state.clone();
            state.capabilities = capabilities.to_owned();
            state.next_attempt = self.issued_next_attempt(txn, &state, now, timing)?;
            let status = ScepClientStatus::parse(&state.status)?;
            if state.transaction.is_none()
                && matches!(
                    status,
                    ScepClientStatus::ServerUnreachable | ScepClientStatus::ServerError
                )
            {
                state.status = ScepClientStatus::Issued.as_str().into();
                state.detail = "the server answers again".into();
                state.attempts = 0;
            }
            txn.update_scep_client(rec.id, rec.updated_at, &state)?
                .ok_or(StoreError::Conflict)?;
            Ok(())
        })
    }

    /// The server of client `name` could not be asked (a renewal or a look at it): the
    /// status says so, and the timers try again with back-off. A request in flight stays.
    pub fn scep_client_unreachable(
        &self,
        name: &str,
        why: &str,
        timing: &ClientTiming,
    ) -> Result<ScepClientView> {
        let now = self.client_now();
        self.write(|txn| {
            let rec = find_client(txn, name)?;
            let mut state = rec.state.clone();
            state.status = ScepClientStatus::ServerUnreachable.as_str().into();
            state.detail = why.to_owned();
            state.attempts += 1;
            state.next_attempt =
                micros(now) + backoff(timing.retry_base, state.attempts - 1).as_micros() as i64;
            let stamp = txn
                .update_scep_client(rec.id, rec.updated_at, &state)?
                .ok_or_else(|| changed_meanwhile(name))?;
            let mut rec = rec;
            rec.state = state;
            rec.updated_at = stamp;
            client_view(txn, &rec)
        })
    }

    /// When the timers look at an issued certificate next: at its renewal time, or after
    /// `timing.check`, whichever comes first (µs).
    fn issued_next_attempt(
        &self,
        txn: &dyn Transaction,
        state: &ScepClientState,
        now: i64,
        timing: &ClientTiming,
    ) -> Result<i64> {
        let check = now + timing.check.as_secs() as i64;
        let renew_at = match state.certificate_id {
            Some(id) => match txn.certificate_by_id(id)? {
                Some(c) => {
                    let info = x509::inspect_certificate_cached(&c.cert.der)?;
                    let (nb, na) = (secs(info.not_before), secs(info.not_after));
                    nb + (na - nb) * 3 / 4
                }
                None => check,
            },
            None => check,
        };
        Ok(micros(check.min(renew_at).max(now)))
    }

    pub(super) fn scep_client_cas(
        &self,
        rec: &ScepClientRecord,
        state: &ScepClientState,
    ) -> Result<i64> {
        self.write(|txn| {
            txn.update_scep_client(rec.id, rec.updated_at, state)?
                .ok_or_else(|| changed_meanwhile(&rec.client.name))
        })
    }

    /// Sets a client's status without a request in flight.
    pub(super) fn scep_client_settle(
        &self,
        rec: &ScepClientRecord,
        status: ScepClientStatus,
        detail: &str,
    ) -> Result<()> {
        let mut state = rec.state.clone();
        state.status = status.as_str().into();
        state.detail = detail.into();
        state.transaction = None;
        state.next_attempt = i64::MAX;
        self.scep_client_cas(rec, &state).map(|_| ())
    }

    /// Applies what an exchange came to: the certificate stored in place of the old one
    /// (which stays until then), or the status and the next try.
    pub fn scep_client_answer(
        &self,
        job: &ClientJob,
        answer: ClientAnswer,
        timing: &ClientTiming,
    ) -> Result<ScepClientView> {
        let now = self.client_now();
        let issued = match &answer {
            ClientAnswer::Issued(certs) => Some(self.pick_issued(job, certs)),
            _ => None,
        };
        let view = self.apply_answer(job, &answer, &issued, timing, now)?;
        // On a card, the issued certificate replaces the one beside the key (card-reinstall),
        // after the store has it; a failure leaves the older one there (the slot stays marked
        // in use) and is logged.
        if let Some(Ok(der)) = &issued {
            if job.handle.sealed.is_none() {
                let stored = self
                    .keys
                    .provider(&job.handle.uri)
                    .map_err(ManagerError::from)
                    .and_then(|p| match p.certificate_objects() {
                        Some(objects) => Ok(objects.store_certificate(&job.handle, der)?),
                        None => Ok(()),
                    });
                if let Err(e) = stored {
                    tracing::warn!(
                        "SCEP client {}: the issued certificate is stored, but not on the token \
                         beside its key ({e}); `certman card-reinstall {}` writes it",
                        job.name,
                        view.certificate.as_deref().unwrap_or(&job.name)
                    );
                }
            }
        }
        Ok(view)
    }

    fn apply_answer(
        &self,
        job: &ClientJob,
        answer: &ClientAnswer,
        issued: &Option<std::result::Result<Vec<u8>, String>>,
        timing: &ClientTiming,
        now: i64,
    ) -> Result<ScepClientView> {
        self.write(|txn| {
            let rec = find_client(txn, &job.name)?;
            if rec.updated_at != job.updated_at {
                return Err(changed_meanwhile(&job.name));
            }
            let mut state = rec.state.clone();
            let renewal = state
                .certificate_id
                .and_then(|id| txn.certificate_by_id(id).ok().flatten())
                .map(|c| x509::inspect_certificate_cached(&c.cert.der))
                .transpose()?
                .is_some_and(|i| !i.self_issued);
            let retry = |state: &mut ScepClientState| {
                state.attempts += 1;
                state.next_attempt =
                    micros(now) + backoff(timing.retry_base, state.attempts - 1).as_micros() as i64;
            };
            match (answer, issued) {
                (ClientAnswer::Issued(_), Some(Ok(der))) => {
                    let info = x509::inspect_certificate(der)?;
                    let entry = state.certificate_id.ok_or(StoreError::Conflict)?;
                    let old = txn.certificate_by_id(entry)?.ok_or(StoreError::Conflict)?;
                    let props = TemplateProperties::from_json(&rec.client.properties)?;
                    let trusted = props.resolve()?.trusted.unwrap_or(false);
                    txn.replace_certificate(
                        entry,
                        &NewCertificate {
                            name: old.cert.name.clone(),
                            der: der.clone(),
                            serial: info.serial_hex.clone(),
                            fingerprint: info.fingerprint.clone(),
                            key_id: old.cert.key_id.clone(),
                            issuer_id: None,
                            trusted,
                            ca_crl_host: None,
                            properties: old.cert.properties.clone(),
                            not_after: secs(info.not_after),
                        },
                    )?;
                    state.status = ScepClientStatus::Issued.as_str().into();
                    state.detail = format!(
                        "issued by {}, serial {}{}",
                        info.issuer,
                        info.serial_hex,
                        if renewal { " (renewed)" } else { "" }
                    );
                    state.transaction = None;
                    // kept only while a request may still need it
                    state.challenge = None;
                    state.attempts = 0;
                    state.next_attempt = 0;
                    state.next_attempt = self.issued_next_attempt(txn, &state, now, timing)?;
                }
                (ClientAnswer::Issued(_), Some(Err(why))) => {
                    state.status = ScepClientStatus::ServerError.as_str().into();
                    state.detail = why.clone();
                    retry(&mut state);
                }
                (ClientAnswer::Issued(_), None) => unreachable!("picked above"),
                (ClientAnswer::Pending, _) => {
                    state.status = ScepClientStatus::RequestingPendingCertificate
                        .as_str()
                        .into();
                    state.detail = "the server queued the request for its operator".into();
                    retry(&mut state);
                }
                (ClientAnswer::Rejected(fault, why), _) => {
                    state.status = ScepClientStatus::Rejected(*fault).as_str().into();
                    state.detail = why.clone();
                    state.transaction = None;
                    state.attempts = 0;
                    state.next_attempt = if renewal {
                        micros(now) + RENEWAL_RETRY.as_secs() as i64 * 1_000_000
                    } else {
                        i64::MAX
                    };
                }
                (ClientAnswer::Unreachable(why), _) => {
                    state.status = ScepClientStatus::ServerUnreachable.as_str().into();
                    state.detail = why.clone();
                    retry(&mut state);
                }
                (ClientAnswer::ServerError(why), _) => {
                    state.status = ScepClientStatus::ServerError.as_str().into();
                    state.detail = why.clone();
                    retry(&mut state);
                }
                (ClientAnswer::KeyUnavailable { why, pin }, _) => {
                    state.status = ScepClientStatus::KeyUnavailable.as_str().into();
                    state.detail = why.clone();
                    if *pin {
                        // a PIN is never tried again unasked: `scep-renew` does
                        state.next_attempt = i64::MAX;
                    } else {
                        retry(&mut state);
                    }
                }
            }
            let stamp = txn
                .update_scep_client(rec.id, rec.updated_at, &state)?
                .ok_or_else(|| changed_meanwhile(&job.name))?;
            let mut rec = rec;
            rec.state = state;
            rec.updated_at = stamp;
            client_view(txn, &rec)
        })
    }

    /// The issued certificate among a SUCCESS reply's: for the job's key, signed by the CA;
    /// for an RA, not a CA.
    fn pick_issued(
        &self,
        job: &ClientJob,
        certs: &[Vec<u8>],
    ) -> std::result::Result<Vec<u8>, String> {
        let ca =
            x509::inspect_certificate_cached(&job.ca_certificate).map_err(|e| e.to_string())?;
        let kind = {
            let txn = self.store.begin(TxnMode::Read).map_err(|e| e.to_string())?;
            find_client(txn.as_ref(), &job.name)
                .ok()
                .map(|c| c.client.kind)
        };
        for der in certs {
            let Ok(info) = x509::inspect_certificate(der) else {
                continue;
            };
            if info.public_key != job.public_key {
                continue;
            }
            x509::verify_certificate_signature(der, &ca.public_key).map_err(|e| {
                format!("the issued certificate does not verify with the recorded CA: {e}")
            })?;
            if kind.as_deref() == Some(ScepClientKind::Ra.as_str()) && info.is_ca {
                return Err(
                    "the server issued a CA certificate; an RA certificate must not be one".into(),
                );
            }
            return Ok(der.clone());
        }
        Err("the SUCCESS reply holds no certificate for the request's key".into())
    }
}

pub(super) fn changed_meanwhile(name: &str) -> ManagerError {
    ManagerError::refused(
        Refusal::ChangedMeanwhile,
        format!("SCEP client \"{name}\" changed meanwhile (another process works on it)"),
        None,
    )
}
