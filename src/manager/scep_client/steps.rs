//! What a SCEP client does next (`scep_client_step`) and the requests it makes (renewal,
//! enrolment under the next CA, `refresh=yes`); what an answer changes is in `answer.rs`.
//! Every change is a compare-and-set of the client's state, so two processes working on one
//! client cannot both apply an answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::Encode;

use super::add::{check_server_certificates, record_ca, ServerCertificates};
use super::{find_client, ScepClientStatus};
use crate::error::{KeyError, ManagerError, Refusal, Result, StoreError};
use crate::keys::{KeyHandle, KeySigner};
use crate::manager::template::TemplateProperties;
use crate::manager::Manager;
use crate::seal::SealLabel;
use crate::secret::SecretBytes;
use crate::store::{ScepClientRecord, ScepClientTransaction, Transaction, TxnMode};
use crate::x509;

/// How long a pending request is polled before the client gives up.
const PATIENCE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    pub(super) handle: KeyHandle,
    pub(super) public_key: spki::SubjectPublicKeyInfoOwned,
    /// the client's state stamp this job was made from
    pub(super) updated_at: i64,
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

pub(super) fn micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

pub(super) fn secs(t: SystemTime) -> i64 {
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
        let signer = self.x509_signer(
            provider,
            &handle,
            &public_key,
            resolved.digest,
            &rec.client.name,
        )?;
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
                unstructured_address: None,
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
}
