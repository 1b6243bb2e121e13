//! What a SCEP client does next (`scep_client_step`), the requests it makes (renewal,
//! enrolment under the next CA, `refresh=yes`), and what an answer changes
//! (`scep_client_answer`). Every change is a compare-and-set of the client's state, so two
//! processes working on one client cannot both apply an answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::Encode;

use super::add::{check_server_certificates, record_ca, ServerCertificates};
use super::{backoff, client_view, find_client, ScepClientKind, ScepClientStatus, ScepClientView};
use crate::error::{KeyError, ManagerError, Refusal, RequestFault, Result, StoreError};
use crate::keys::{KeyHandle, KeySigner, X509Signer};
use crate::manager::template::TemplateProperties;
use crate::manager::{signature_scheme_for, Manager};
use crate::seal::SealLabel;
use crate::secret::SecretBytes;
use crate::store::{
    NewCertificate, ScepClientRecord, ScepClientState, ScepClientTransaction, Transaction, TxnMode,
};
use crate::x509;

/// How long a pending request is polled before the client gives up.
const PATIENCE: Duration = Duration::from_secs(7 * 24 * 3600);
/// After a refusal of a renewal, the next try (the certificate is still valid).
const RENEWAL_RETRY: Duration = Duration::from_secs(6 * 3600);

/// The request a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// a new enrolment (signed by the temporary or current certificate)
    PkcsReq,
    /// a renewal (signed by the current certificate; the server advertises Renewal)
    RenewalReq,
}

impl ClientMessage {
    /// The messageType number.
    pub fn number(self) -> u8 {
        match self {
            ClientMessage::PkcsReq => 19,
            ClientMessage::RenewalReq => 17,
        }
    }

    fn from_number(n: u8) -> Result<Self> {
        match n {
            19 => Ok(ClientMessage::PkcsReq),
            17 => Ok(ClientMessage::RenewalReq),
            n => Err(ManagerError::Store(StoreError::Corrupt(format!(
                "a SCEP client request of messageType {n}"
            )))),
        }
    }
}

/// One exchange to make with a client's server.
#[derive(Clone)]
pub struct ClientJob {
    /// the client
    pub name: String,
    /// the server's URL
    pub url: String,
    /// `ca-identity`
    pub ca_identity: Option<String>,
    /// the request
    pub message: ClientMessage,
    /// send a CertPoll for it (the server said PENDING) rather than the request itself
    pub poll: bool,
    /// its transactionID
    pub transaction_id: String,
    /// the PKCS#10 request, DER
    pub csr: Vec<u8>,
    /// the certificate the message is signed with, DER
    pub signer_certificate: Vec<u8>,
    /// the certificate it is encrypted to, DER
    pub recipient: Vec<u8>,
    /// the CA, DER (CertReps are signed by it or by the recipient RA)
    pub ca_certificate: Vec<u8>,
    /// CertPoll's issuer: the CA's subject, DER
    pub poll_issuer: Vec<u8>,
    /// CertPoll's subject: the request's subject, DER
    pub poll_subject: Vec<u8>,
    handle: KeyHandle,
    public_key: spki::SubjectPublicKeyInfoOwned,
    /// the client's state stamp this job was made from
    updated_at: i64,
}

impl std::fmt::Debug for ClientJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientJob")
            .field("name", &self.name)
            .field("message", &self.message)
            .field("poll", &self.poll)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

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

/// What a client does next.
#[derive(Debug)]
pub enum ClientStep {
    /// nothing now
    Nothing,
    /// send (or poll) the request in flight
    Send(Box<ClientJob>),
    /// make a new request: a renewal, or (`refresh`) an enrolment after expiry
    Renew {
        /// the certificate expired: enrol again (PKCSReq, self-signed)
        refresh: bool,
    },
    /// the current CA is near its end and a next CA is recorded: switch, then enrol
    SwitchCa,
    /// look at the server's capabilities (is a next CA offered?)
    Check,
}

/// The client timers' pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTiming {
    /// the first poll and retry after this, doubled per attempt (at most an hour)
    pub retry_base: Duration,
    /// how often an issued certificate's server is looked at (next CA)
    pub check: Duration,
}

impl Default for ClientTiming {
    fn default() -> Self {
        ClientTiming {
            retry_base: Duration::from_secs(30),
            check: Duration::from_secs(3600),
        }
    }
}

fn micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

fn secs(t: SystemTime) -> i64 {
    super::super::unix_secs(t)
}

/// The job for a client's request in flight.
pub(super) fn job_for(
    sealer: &crate::seal::Sealer,
    rec: &ScepClientRecord,
    ca: &[u8],
    handle: KeyHandle,
    public_key: spki::SubjectPublicKeyInfoOwned,
    poll: bool,
) -> Result<ClientJob> {
    let t = rec.state.transaction.as_ref().ok_or_else(|| {
        ManagerError::Failed(format!(
            "SCEP client \"{}\" has no request in flight",
            rec.client.name
        ))
    })?;
    let ca_info = x509::inspect_certificate_cached(ca)?;
    // kept sealed: it may carry the challenge password
    let request = sealer
        .open(SealLabel::ScepRequest(&rec.client.name), &t.csr)?
        .secret_bytes()
        .to_vec();
    let csr = x509::csr::parse_request(&request).map_err(|e| {
        ManagerError::Store(StoreError::Corrupt(format!("a SCEP client's request: {e}")))
    })?;
    let der = |n: &x509_cert::name::Name| {
        n.to_der()
            .map_err(|e| ManagerError::X509(crate::error::X509Error::from(e)))
    };
    Ok(ClientJob {
        name: rec.client.name.clone(),
        url: rec.client.url.clone(),
        ca_identity: rec.client.ca_identity.clone(),
        message: ClientMessage::from_number(t.message_type)?,
        poll,
        transaction_id: t.transaction_id.clone(),
        csr: request,
        signer_certificate: t.signer.clone(),
        recipient: t.recipient.clone(),
        ca_certificate: ca.to_vec(),
        poll_issuer: der(&ca_info.subject_name)?,
        poll_subject: der(&csr.subject)?,
        handle,
        public_key,
        updated_at: rec.updated_at,
    })
}

impl Manager {
    fn client_key(
        &self,
        txn: &dyn Transaction,
        rec: &ScepClientRecord,
    ) -> Result<(KeyHandle, spki::SubjectPublicKeyInfoOwned)> {
        let broken = |what: &str| {
            ManagerError::Store(StoreError::Corrupt(format!(
                "SCEP client \"{}\": {what} is missing",
                rec.client.name
            )))
        };
        let key_id = rec
            .state
            .key_id
            .as_deref()
            .ok_or_else(|| broken("its key"))?;
        let key = txn.key(key_id)?.ok_or_else(|| broken("its key"))?;
        let cert = txn
            .certificate_by_id(
                rec.state
                    .certificate_id
                    .ok_or_else(|| broken("its entry"))?,
            )?
            .ok_or_else(|| broken("its entry"))?;
        let info = x509::inspect_certificate_cached(&cert.cert.der)?;
        Ok((
            KeyHandle {
                uri: key.uri.parse()?,
                sealed: key.sealed,
            },
            info.public_key.clone(),
        ))
    }

    fn client_ca(&self, txn: &dyn Transaction, rec: &ScepClientRecord) -> Result<Vec<u8>> {
        let id = rec.state.ca_id.ok_or_else(|| {
            ManagerError::refused(
                Refusal::UnusableScepAnswer,
                format!(
                    "the CA of SCEP client \"{}\" was removed; add the client again",
                    rec.client.name
                ),
                None,
            )
        })?;
        Ok(txn
            .certificate_by_id(id)?
            .ok_or(StoreError::Conflict)?
            .cert
            .der)
    }

    /// The signer of a job's key (reaching it: token login, PIN).
    pub fn scep_client_signer(&self, job: &ClientJob) -> Result<Arc<dyn KeySigner>> {
        let signer = self
            .keys
            .provider(&job.handle.uri)?
            .signer_with_public_key(&job.handle, &job.public_key)?;
        Ok(signer)
    }

    /// RSA PKCS#1 v1.5 decryption of a CertRep's content key with the job's key.
    pub fn scep_client_decrypt(
        &self,
        job: &ClientJob,
        ciphertext: &[u8],
    ) -> std::result::Result<SecretBytes, KeyError> {
        let provider = self.keys.provider(&job.handle.uri)?;
        let decrypter = provider.decrypter().ok_or_else(|| {
            KeyError::Unsupported(format!("{} keys cannot decrypt", provider.name()))
        })?;
        decrypter.decrypt_pkcs1v15(&job.handle, ciphertext)
    }

    /// The names of the clients the timers should look at now.
    pub fn scep_clients_due(&self) -> Result<Vec<String>> {
        let now = micros(self.client_now());
        let txn = self.store.begin(TxnMode::Read)?;
        Ok(txn
            .scep_clients()?
            .into_iter()
            .filter(|c| c.state.next_attempt <= now)
            .map(|c| c.client.name)
            .collect())
    }

    /// What client `name` does next; `force` (`scep-renew`) renews an issued certificate now.
    pub fn scep_client_step(
        &self,
        name: &str,
        force: bool,
        timing: &ClientTiming,
    ) -> Result<ClientStep> {
        let txn = self.store.begin(TxnMode::Read)?;
        let rec = find_client(txn.as_ref(), name)?;
        let status = ScepClientStatus::parse(&rec.state.status)?;
        let now = self.client_now();
        if let Some(t) = &rec.state.transaction {
            let (handle, public_key) = self.client_key(txn.as_ref(), &rec)?;
            let ca = self.client_ca(txn.as_ref(), &rec)?;
            let pending = status == ScepClientStatus::RequestingPendingCertificate;
            if pending && micros(now) - t.started_at > micros(PATIENCE.as_secs() as i64) {
                drop(txn);
                self.scep_client_settle(&rec, ScepClientStatus::GaveUp, "not granted in 7 days")?;
                return Ok(ClientStep::Nothing);
            }
            let pin_failed =
                status == ScepClientStatus::KeyUnavailable && rec.state.next_attempt == i64::MAX;
            if pin_failed && !force {
                return Ok(ClientStep::Nothing);
            }
            return Ok(ClientStep::Send(Box::new(job_for(
                &self.sealer,
                &rec,
                &ca,
                handle,
                public_key,
                pending,
            )?)));
        }
        let Some(cert_id) = rec.state.certificate_id else {
            return Ok(ClientStep::Nothing);
        };
        let cert = txn
            .certificate_by_id(cert_id)?
            .ok_or(StoreError::Conflict)?;
        let info = x509::inspect_certificate_cached(&cert.cert.der)?;
        if info.self_issued {
            // Never issued (refused, or given up): only the operator starts it again.
            return Ok(if force {
                ClientStep::Renew { refresh: true }
            } else {
                ClientStep::Nothing
            });
        }
        // The CA first: a client whose CA ends moves to the next one even when its own
        // certificate has ended too.
        if let (Some(ca_id), Some(_)) = (rec.state.ca_id, rec.state.next_ca_id) {
            if let Some(ca) = txn.certificate_by_id(ca_id)? {
                let ca = x509::inspect_certificate_cached(&ca.cert.der)?;
                let (cb, ce) = (secs(ca.not_before), secs(ca.not_after));
                if now < cb || now >= ce - (ce - cb) / 4 {
                    return Ok(ClientStep::SwitchCa);
                }
            }
        }
        let (nb, na) = (secs(info.not_before), secs(info.not_after));
        if now >= na {
            if rec.client.refresh || force {
                return Ok(ClientStep::Renew { refresh: true });
            }
            drop(txn);
            self.scep_client_settle(&rec, ScepClientStatus::Expired, "the certificate expired")?;
            return Ok(ClientStep::Nothing);
        }
        if force || now >= nb + (na - nb) * 3 / 4 {
            return Ok(ClientStep::Renew { refresh: false });
        }
        let _ = timing;
        Ok(ClientStep::Check)
    }

    /// Makes a new request for client `name` with its key: a RenewalReq signed by the
    /// current certificate when the server offers Renewal and the certificate is the CA's,
    /// else a PKCSReq signed by the current certificate (or, `refresh`, a new temporary
    /// one). `certs` is what GetCACert answered now: the recorded CA, or the recorded next
    /// CA (the client switches to it), else the client stops with status ca-changed.
    pub fn scep_client_request(
        &self,
        name: &str,
        certs: &ServerCertificates,
        capabilities: &str,
        renewal_offered: bool,
        refresh: bool,
    ) -> Result<ClientJob> {
        check_server_certificates(certs)?;
        let rec = {
            let txn = self.store.begin(TxnMode::Read)?;
            find_client(txn.as_ref(), name)?
        };
        let fingerprint = x509::fingerprint(&certs.ca);
        let rec = if fingerprint == rec.state.ca_fingerprint {
            rec
        } else {
            let next_matches = {
                let txn = self.store.begin(TxnMode::Read)?;
                match rec.state.next_ca_id {
                    Some(id) => txn
                        .certificate_by_id(id)?
                        .is_some_and(|c| c.cert.fingerprint == fingerprint),
                    None => false,
                }
            };
            if !next_matches {
                self.scep_client_settle(
                    &rec,
                    ScepClientStatus::CaChanged,
                    &format!(
                        "the server now sends CA {fingerprint}, neither the recorded CA nor a \
                         next CA it announced"
                    ),
                )?;
                return Err(ManagerError::refused(
                    Refusal::CaFingerprintMismatch,
                    format!(
                        "SCEP client \"{}\": the server now sends another CA ({fingerprint})",
                        rec.client.name
                    ),
                    Some("check the server; remove the client and add it again to accept it"),
                ));
            }
            self.scep_client_switch_ca(&rec.client.name)?;
            let txn = self.store.begin(TxnMode::Read)?;
            find_client(txn.as_ref(), name)?
        };
        let txn = self.store.begin(TxnMode::Read)?;
        let (handle, public_key) = self.client_key(txn.as_ref(), &rec)?;
        let cert_id = rec.state.certificate_id.ok_or(StoreError::Conflict)?;
        let current = txn
            .certificate_by_id(cert_id)?
            .ok_or(StoreError::Conflict)?;
        drop(txn);
        let props = TemplateProperties::from_json(&rec.client.properties)?;
        let resolved = props.resolve()?;
        let provider = self.keys.provider(&handle.uri)?;
        let key = provider.signer_with_public_key(&handle, &public_key)?;
        let scheme = signature_scheme_for(key.as_ref(), resolved.digest, &rec.client.name)?;
        let signer = X509Signer::new(key, scheme)?;
        let ca_info = x509::inspect_certificate(&certs.ca)?;
        let current_info = x509::inspect_certificate_cached(&current.cert.der)?;
        let now = SystemTime::now();
        let current_usable = !refresh
            && !current_info.self_issued
            && current_info.not_before <= now
            && now < current_info.not_after;
        let by_this_ca = current_usable
            && x509::verify_certificate_signature(&current.cert.der, &ca_info.public_key).is_ok();
        let message = if renewal_offered && by_this_ca {
            ClientMessage::RenewalReq
        } else {
            ClientMessage::PkcsReq
        };
        let signer_certificate = if current_usable {
            current.cert.der.clone()
        } else {
            x509::build_certificate(
                &x509::CertificateSpec {
                    subject: current_info.subject_name.clone(),
                    public_key: public_key.clone(),
                    serial: x509::random_serial()?,
                    not_before: now - Duration::from_secs(3600),
                    not_after: now + Duration::from_secs(u64::from(resolved.days_valid) * 86_400),
                    is_ca: false,
                    key_usage: x509::KeyUsageSet::new(vec![
                        x509::KeyUsageName::DigitalSignature,
                        x509::KeyUsageName::KeyEncipherment,
                    ]),
                    subject_alt_names: Vec::new(),
                    crl_distribution_point: None,
                    issuer: None,
                },
                &signer,
            )?
        };
        // A renewal omits the challenge (RFC 8894 §3.3.1.2); a new enrolment carries it
        // while it is kept.
        let challenge = match (&rec.state.challenge, message) {
            (Some(sealed), ClientMessage::PkcsReq) => {
                let open = self
                    .sealer
                    .open(SealLabel::ScepChallenge(&rec.client.name), sealed)?;
                Some(
                    String::from_utf8(open.secret_bytes().to_vec())
                        .map_err(|_| StoreError::Corrupt("a SCEP challenge password".into()))?,
                )
            }
            _ => None,
        };
        let csr = x509::csr::build_request(
            &x509::csr::RequestSpec {
                subject: current_info.subject_name.clone(),
                subject_alt_names: resolved.subject_alt_names.clone(),
                key_usage: resolved.key_usage.clone(),
                ca: false,
                challenge_password: challenge,
            },
            &signer,
        )?;
        let mut state = rec.state.clone();
        state.transaction = Some(ScepClientTransaction {
            // a new transaction: the key is the same, so the ID carries the time
            transaction_id: format!(
                "{}-{}",
                x509::public_key_digest_hex(&public_key),
                crate::store::now_micros()
            ),
            message_type: message.number(),
            csr: self
                .sealer
                .seal(SealLabel::ScepRequest(&rec.client.name), &csr)?,
            signer: signer_certificate,
            recipient: certs.recipient().to_vec(),
            started_at: micros(self.client_now()),
        });
        state.status = ScepClientStatus::RequestingCertificate.as_str().into();
        state.detail = match message {
            ClientMessage::RenewalReq => "renewal being sent".into(),
            ClientMessage::PkcsReq if refresh => "enrolling again".into(),
            ClientMessage::PkcsReq => "new request being sent".into(),
        };
        state.req_fingerprint = x509::fingerprint(&csr);
        state.capabilities = capabilities.to_owned();
        state.attempts = 0;
        let updated_at = self.scep_client_cas(&rec, &state)?;
        let mut rec = rec;
        rec.state = state;
        rec.updated_at = updated_at;
        job_for(&self.sealer, &rec, &certs.ca, handle, public_key, false)
    }

    /// Moves client `name` to its next CA: the current `<name>_CA` stays (it still verifies
    /// what it issued) as `<name>_old_CA`, the next one becomes `<name>_CA`.
    pub fn scep_client_switch_ca(&self, name: &str) -> Result<()> {
        self.write(|txn| {
            let rec = find_client(txn, name)?;
            let next = rec.state.next_ca_id.ok_or_else(|| {
                ManagerError::Failed(format!("SCEP client \"{name}\" has no next CA"))
            })?;
            let base = &rec.client.name;
            if let Some(old) = rec
                .state
                .ca_id
                .and_then(|id| txn.certificate_by_id(id).ok()?)
            {
                if old.cert.name == format!("{base}_CA") {
                    let mut target = format!("{base}_old_CA");
                    let mut n = 1;
                    while txn.name_in_use(&target)? {
                        n += 1;
                        target = format!("{base}_old{n}_CA");
                    }
                    txn.update_certificate(old.id, &target, old.cert.trusted)?;
                }
            }
            let next_rec = txn.certificate_by_id(next)?.ok_or(StoreError::Conflict)?;
            if !txn.name_in_use(&format!("{base}_CA"))? {
                txn.update_certificate(next, &format!("{base}_CA"), true)?;
            }
            let mut state = rec.state.clone();
            state.ca_id = Some(next);
            state.next_ca_id = None;
            state.ca_fingerprint = next_rec.cert.fingerprint.clone();
            state.detail = "moved to the next CA".into();
            txn.update_scep_client(rec.id, rec.updated_at, &state)?
                .ok_or(StoreError::Conflict)?;
            Ok(())
        })
    }

    /// Records the next CA a server announced (GetNextCACert, verified by the protocol
    /// against the current CA or RA) as `<name>_next_CA`.
    pub fn scep_client_record_next_ca(&self, name: &str, next: &ServerCertificates) -> Result<()> {
        let info = x509::inspect_certificate(&next.ca)?;
        if !info.is_ca {
            return Err(ManagerError::refused(
                Refusal::UnusableScepAnswer,
                "the next CA the SCEP server sent is not a CA",
                None,
            ));
        }
        self.write(|txn| {
            let rec = find_client(txn, name)?;
            if rec.state.ca_fingerprint == info.fingerprint {
                return Ok(());
            }
            let id = record_ca(
                txn,
                &format!("{}_next_CA", rec.client.name),
                &next.ca,
                &info,
            )?;
            let mut state = rec.state.clone();
            state.next_ca_id = Some(id);
            state.detail = format!("next CA recorded ({})", info.subject);
            txn.update_scep_client(rec.id, rec.updated_at, &state)?
                .ok_or(StoreError::Conflict)?;
            Ok(())
        })
    }

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

    fn scep_client_cas(&self, rec: &ScepClientRecord, state: &ScepClientState) -> Result<i64> {
        self.write(|txn| {
            txn.update_scep_client(rec.id, rec.updated_at, state)?
                .ok_or_else(|| changed_meanwhile(&rec.client.name))
        })
    }

    /// Sets a client's status without a request in flight.
    fn scep_client_settle(
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

fn changed_meanwhile(name: &str) -> ManagerError {
    ManagerError::refused(
        Refusal::ChangedMeanwhile,
        format!("SCEP client \"{name}\" changed meanwhile (another process works on it)"),
        None,
    )
}
