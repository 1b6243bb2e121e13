//! The SCEP client's state machine: `add-scep` (GetCACaps, GetCACert, then the first
//! PKCSReq), and each later step of a client (`scep-renew`, and `certman serve`'s timer): send
//! or poll the request in flight, renew, move to the next CA, look for one. The wire is
//! [`super::client`]; the decisions and the state are the manager's, reached through the
//! [`ScepClients`] port. Every port call blocks (store, token): it runs on the blocking pool.

use std::sync::Arc;

use super::client::{CaCertificates, Capabilities, ClientError, ScepService};
use super::message::{
    self, FailInfo, MessageCertificate, MessageError, MessageLimits, MessageType, PkiRequest,
    PkiStatus, ReplyPayload, RequestContent,
};
use crate::error::{KeyError, ManagerError};
use crate::keys::KeySigner;
use crate::manager::{
    AddScep, ClientAnswer, ClientJob, ClientMessage, ClientStep, ClientTiming, Manager,
    ScepClientView, ServerCertificates,
};
use crate::protocols::fetch::Fetcher;
use crate::secret::SecretBytes;

/// What the SCEP client needs of the certificate manager (see `manager::scep_client`).
#[allow(missing_docs)]
pub trait ScepClients: Send + Sync {
    fn scep_client_check_add(&self, add: &AddScep) -> Result<(), ManagerError>;
    fn scep_client_add(
        &self,
        add: &AddScep,
        certs: &ServerCertificates,
        capabilities: &str,
    ) -> Result<ClientJob, ManagerError>;
    fn scep_client_signer(&self, job: &ClientJob) -> Result<Arc<dyn KeySigner>, ManagerError>;
    fn scep_client_decrypt(&self, job: &ClientJob, ct: &[u8]) -> Result<SecretBytes, KeyError>;
    fn scep_client_answer(
        &self,
        job: &ClientJob,
        answer: ClientAnswer,
        timing: &ClientTiming,
    ) -> Result<ScepClientView, ManagerError>;
    fn scep_clients_due(&self) -> Result<Vec<String>, ManagerError>;
    fn scep_client_step(
        &self,
        name: &str,
        force: bool,
        timing: &ClientTiming,
    ) -> Result<ClientStep, ManagerError>;
    fn scep_client_request(
        &self,
        name: &str,
        certs: &ServerCertificates,
        capabilities: &str,
        renewal_offered: bool,
        refresh: bool,
    ) -> Result<ClientJob, ManagerError>;
    fn scep_client_switch_ca(&self, name: &str) -> Result<(), ManagerError>;
    fn scep_client_record_next_ca(
        &self,
        name: &str,
        next: &ServerCertificates,
    ) -> Result<(), ManagerError>;
    fn scep_client_checked(
        &self,
        name: &str,
        capabilities: &str,
        timing: &ClientTiming,
    ) -> Result<(), ManagerError>;
    fn scep_client_unreachable(
        &self,
        name: &str,
        why: &str,
        timing: &ClientTiming,
    ) -> Result<ScepClientView, ManagerError>;
    fn scep_client(&self, name: &str) -> Result<ScepClientView, ManagerError>;
}

impl ScepClients for Manager {
    fn scep_client_check_add(&self, add: &AddScep) -> Result<(), ManagerError> {
        Manager::scep_client_check_add(self, add)
    }
    fn scep_client_add(
        &self,
        add: &AddScep,
        certs: &ServerCertificates,
        capabilities: &str,
    ) -> Result<ClientJob, ManagerError> {
        Manager::scep_client_add(self, add, certs, capabilities)
    }
    fn scep_client_signer(&self, job: &ClientJob) -> Result<Arc<dyn KeySigner>, ManagerError> {
        Manager::scep_client_signer(self, job)
    }
    fn scep_client_decrypt(&self, job: &ClientJob, ct: &[u8]) -> Result<SecretBytes, KeyError> {
        Manager::scep_client_decrypt(self, job, ct)
    }
    fn scep_client_answer(
        &self,
        job: &ClientJob,
        answer: ClientAnswer,
        timing: &ClientTiming,
    ) -> Result<ScepClientView, ManagerError> {
        Manager::scep_client_answer(self, job, answer, timing)
    }
    fn scep_clients_due(&self) -> Result<Vec<String>, ManagerError> {
        Manager::scep_clients_due(self)
    }
    fn scep_client_step(
        &self,
        name: &str,
        force: bool,
        timing: &ClientTiming,
    ) -> Result<ClientStep, ManagerError> {
        Manager::scep_client_step(self, name, force, timing)
    }
    fn scep_client_request(
        &self,
        name: &str,
        certs: &ServerCertificates,
        capabilities: &str,
        renewal_offered: bool,
        refresh: bool,
    ) -> Result<ClientJob, ManagerError> {
        Manager::scep_client_request(self, name, certs, capabilities, renewal_offered, refresh)
    }
    fn scep_client_switch_ca(&self, name: &str) -> Result<(), ManagerError> {
        Manager::scep_client_switch_ca(self, name)
    }
    fn scep_client_record_next_ca(
        &self,
        name: &str,
        next: &ServerCertificates,
    ) -> Result<(), ManagerError> {
        Manager::scep_client_record_next_ca(self, name, next)
    }
    fn scep_client_checked(
        &self,
        name: &str,
        capabilities: &str,
        timing: &ClientTiming,
    ) -> Result<(), ManagerError> {
        Manager::scep_client_checked(self, name, capabilities, timing)
    }
    fn scep_client_unreachable(
        &self,
        name: &str,
        why: &str,
        timing: &ClientTiming,
    ) -> Result<ScepClientView, ManagerError> {
        Manager::scep_client_unreachable(self, name, why, timing)
    }
    fn scep_client(&self, name: &str) -> Result<ScepClientView, ManagerError> {
        Manager::scep_client(self, name)
    }
}

/// Why a step could not even start (nothing was changed): the server's CA could not be read
/// for `add-scep`, or the manager refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// The server could not be asked (add-scep: nothing stored).
    #[error("SCEP server {url}: {source}")]
    Server {
        /// the server
        url: String,
        /// what went wrong
        source: ClientError,
    },
    /// The manager refused or failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// A blocking call could not run.
    #[error("{0}")]
    Internal(String),
}

/// The client machine: the port, the HTTP client, the limits and the pacing.
#[derive(Clone)]
pub struct Enroller {
    /// the certificate manager
    pub port: Arc<dyn ScepClients>,
    /// outbound HTTP
    pub fetcher: Fetcher,
    /// message bounds
    pub limits: MessageLimits,
    /// retry and check pacing
    pub timing: ClientTiming,
}

impl Enroller {
    async fn call<T, F>(&self, f: F) -> Result<T, EnrolError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn ScepClients) -> Result<T, ManagerError> + Send + 'static,
    {
        let port = self.port.clone();
        tokio::task::spawn_blocking(move || f(port.as_ref()))
            .await
            .map_err(|e| EnrolError::Internal(format!("SCEP client: {e}")))?
            .map_err(EnrolError::from)
    }

    fn service(&self, url: &str, ca_identity: Option<&str>) -> Result<ScepService, EnrolError> {
        ScepService::new(self.fetcher.clone(), url, ca_identity).map_err(|source| {
            EnrolError::Server {
                url: url.to_owned(),
                source,
            }
        })
    }

    /// `add-scep`: checks what can be checked locally, reads the server's capabilities and
    /// CA (a failure here stores nothing), then makes and sends the first request.
    pub async fn add(&self, add: AddScep) -> Result<ScepClientView, EnrolError> {
        let add = Arc::new(add);
        let a = add.clone();
        self.call(move |p| p.scep_client_check_add(&a)).await?;
        let service = self.service(&add.url, add.ca_identity.as_deref())?;
        let server = |source| EnrolError::Server {
            url: add.url.clone(),
            source,
        };
        let caps = service.capabilities().await.map_err(server)?;
        let certs = service
            .ca_certificates(&self.limits)
            .await
            .map_err(server)?;
        let summary = caps.summary();
        let (a, certs2) = (add.clone(), server_certificates(&certs));
        let job = self
            .call(move |p| p.scep_client_add(&a, &certs2, &summary))
            .await?;
        self.exchange(&service, &caps, job).await
    }

    /// One step of client `name`; `force` (`scep-renew`) renews now. `None` when there was
    /// nothing to do.
    pub async fn step(
        &self,
        name: &str,
        force: bool,
    ) -> Result<Option<ScepClientView>, EnrolError> {
        let (n, timing) = (name.to_owned(), self.timing);
        let step = self
            .call(move |p| p.scep_client_step(&n, force, &timing))
            .await?;
        let view = {
            let n = name.to_owned();
            self.call(move |p| p.scep_client(&n)).await?
        };
        let service = self.service(&view.url, view.ca_identity.as_deref())?;
        match step {
            ClientStep::Nothing => Ok(None),
            ClientStep::Send(job) => {
                let caps = match service.capabilities().await {
                    Ok(c) => c,
                    Err(e) => {
                        let why = describe(&e);
                        let answer = ClientAnswer::Unreachable(why);
                        return self.answer(*job, answer).await.map(Some);
                    }
                };
                self.exchange(&service, &caps, *job).await.map(Some)
            }
            ClientStep::SwitchCa => {
                let n = name.to_owned();
                self.call(move |p| p.scep_client_switch_ca(&n)).await?;
                self.renew(name, &service, false).await.map(Some)
            }
            ClientStep::Renew { refresh } => self.renew(name, &service, refresh).await.map(Some),
            ClientStep::Check => self.check(name, &view, &service).await,
        }
    }

    async fn unreachable(&self, name: &str, e: &ClientError) -> Result<ScepClientView, EnrolError> {
        let (n, why, timing) = (name.to_owned(), describe(e), self.timing);
        self.call(move |p| p.scep_client_unreachable(&n, &why, &timing))
            .await
    }

    async fn renew(
        &self,
        name: &str,
        service: &ScepService,
        refresh: bool,
    ) -> Result<ScepClientView, EnrolError> {
        let caps = match service.capabilities().await {
            Ok(c) => c,
            Err(e) => return self.unreachable(name, &e).await,
        };
        let certs = match service.ca_certificates(&self.limits).await {
            Ok(c) => c,
            Err(e) => return self.unreachable(name, &e).await,
        };
        self.look_for_next_ca(name, &caps, &certs).await?;
        let (n, certs, summary, renewal) = (
            name.to_owned(),
            server_certificates(&certs),
            caps.summary(),
            caps.renewal,
        );
        let job = self
            .call(move |p| p.scep_client_request(&n, &certs, &summary, renewal, refresh))
            .await?;
        self.exchange(service, &caps, job).await
    }

    /// Looks at the server of an issued certificate: records a next CA it announces.
    async fn check(
        &self,
        name: &str,
        view: &ScepClientView,
        service: &ScepService,
    ) -> Result<Option<ScepClientView>, EnrolError> {
        let caps = match service.capabilities().await {
            Ok(c) => c,
            Err(e) => return self.unreachable(name, &e).await.map(Some),
        };
        if caps.next_ca && view.next_ca.is_none() {
            match service.ca_certificates(&self.limits).await {
                Ok(current) => self.look_for_next_ca(name, &caps, &current).await?,
                Err(e) => return self.unreachable(name, &e).await.map(Some),
            }
        }
        let (n, summary, timing) = (name.to_owned(), caps.summary(), self.timing);
        self.call(move |p| p.scep_client_checked(&n, &summary, &timing))
            .await?;
        let n = name.to_owned();
        Ok(Some(self.call(move |p| p.scep_client(&n)).await?))
    }

    /// Records the next CA the server announces (GetNextCACert, signed by the CA or RA it
    /// sends now), once. A next CA that cannot be read is logged, not fatal.
    async fn look_for_next_ca(
        &self,
        name: &str,
        caps: &Capabilities,
        current: &CaCertificates,
    ) -> Result<(), EnrolError> {
        if !caps.next_ca {
            return Ok(());
        }
        let n = name.to_owned();
        let view = self.call(move |p| p.scep_client(&n)).await?;
        // Only a next CA signed by the CA the client trusts now is taken.
        if view.next_ca.is_some() || crate::x509::fingerprint(&current.ca) != view.ca_fingerprint {
            return Ok(());
        }
        let service = self.service(&view.url, view.ca_identity.as_deref())?;
        let signers = current.signers();
        match service.next_ca_certificates(&signers, &self.limits).await {
            Ok(next) => {
                let (n, next) = (name.to_owned(), server_certificates(&next));
                self.call(move |p| p.scep_client_record_next_ca(&n, &next))
                    .await
            }
            Err(e) => {
                tracing::warn!(
                    "SCEP client {name}: the next CA the server announces could not be read: {}",
                    describe(&e)
                );
                Ok(())
            }
        }
    }

    async fn answer(
        &self,
        job: ClientJob,
        answer: ClientAnswer,
    ) -> Result<ScepClientView, EnrolError> {
        let timing = self.timing;
        self.call(move |p| p.scep_client_answer(&job, answer, &timing))
            .await
    }

    /// Sends a job's request (or its CertPoll) and applies the answer.
    async fn exchange(
        &self,
        service: &ScepService,
        caps: &Capabilities,
        job: ClientJob,
    ) -> Result<ScepClientView, EnrolError> {
        let answer = self.talk(service, caps, &job).await?;
        self.answer(job, answer).await
    }

    async fn talk(
        &self,
        service: &ScepService,
        caps: &Capabilities,
        job: &ClientJob,
    ) -> Result<ClientAnswer, EnrolError> {
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| EnrolError::Internal("the random generator failed".into()))?;
        let (cipher, digest) = (caps.cipher(), caps.digest());
        let built = {
            let job = job.clone();
            let port = self.port.clone();
            tokio::task::spawn_blocking(
                move || -> Result<Result<Vec<u8>, ClientAnswer>, EnrolError> {
                    let signer = match port.scep_client_signer(&job) {
                        Ok(s) => s,
                        Err(ManagerError::Key(e)) => return Ok(Err(key_unavailable(&e))),
                        Err(e) => return Err(e.into()),
                    };
                    let recipient = match MessageCertificate::parse(&job.recipient) {
                        Ok(r) => r,
                        Err(e) => {
                            return Ok(Err(ClientAnswer::ServerError(format!(
                                "the certificate to encrypt to: {e}"
                            ))))
                        }
                    };
                    let (message_type, content) = if job.poll {
                        (
                            MessageType::CertPoll,
                            RequestContent::IssuerAndSubject {
                                issuer: job.poll_issuer.clone(),
                                subject: job.poll_subject.clone(),
                            },
                        )
                    } else {
                        (
                            match job.message {
                                ClientMessage::PkcsReq => MessageType::PkcsReq,
                                ClientMessage::RenewalReq => MessageType::RenewalReq,
                            },
                            RequestContent::CertificationRequest(job.csr.clone()),
                        )
                    };
                    let request = PkiRequest {
                        message_type,
                        transaction_id: &job.transaction_id,
                        sender_nonce: &nonce,
                        content: &content,
                        cipher,
                        digest,
                        recipient: &recipient,
                    };
                    match message::encode_request(
                        &request,
                        signer.as_ref(),
                        &job.signer_certificate,
                    ) {
                        Ok(m) => Ok(Ok(m)),
                        Err(MessageError::Key(e)) => Ok(Err(key_unavailable(&e))),
                        Err(e) => Err(EnrolError::Internal(format!("writing the request: {e}"))),
                    }
                },
            )
            .await
            .map_err(|e| EnrolError::Internal(format!("SCEP client: {e}")))??
        };
        let message = match built {
            Ok(m) => m,
            Err(answer) => return Ok(answer),
        };
        let body = match service.pki_operation(caps, &message).await {
            Ok(b) => b,
            Err(e @ (ClientError::Unreachable(_) | ClientError::Unavailable)) => {
                return Ok(ClientAnswer::Unreachable(describe(&e)))
            }
            Err(e) => return Ok(ClientAnswer::ServerError(describe(&e))),
        };
        let (job2, port, limits) = (job.clone(), self.port.clone(), self.limits);
        let decoded = tokio::task::spawn_blocking(move || {
            let signers = [job2.recipient.as_slice(), job2.ca_certificate.as_slice()];
            message::decode_cert_rep(
                &body,
                &signers,
                &mut |ct| port.scep_client_decrypt(&job2, ct),
                &limits,
            )
        })
        .await
        .map_err(|e| EnrolError::Internal(format!("SCEP client: {e}")))?;
        let rep = match decoded {
            Ok(r) => r,
            Err(MessageError::Key(e)) => return Ok(key_unavailable(&e)),
            Err(e) => {
                return Ok(ClientAnswer::ServerError(format!(
                    "the server's CertRep: {e}"
                )))
            }
        };
        if rep.transaction_id != job.transaction_id {
            return Ok(ClientAnswer::ServerError(
                "the CertRep is for another transaction".into(),
            ));
        }
        if rep.recipient_nonce != nonce {
            return Ok(ClientAnswer::ServerError(
                "the CertRep does not answer this request (recipientNonce)".into(),
            ));
        }
        Ok(match rep.status {
            PkiStatus::Success => match rep.payload {
                Some(ReplyPayload::Certificates(certs)) => ClientAnswer::Issued(certs),
                _ => ClientAnswer::ServerError("a SUCCESS CertRep without a certificate".into()),
            },
            PkiStatus::Pending => ClientAnswer::Pending,
            PkiStatus::Failure(info) => {
                let mut why = format!("the server refused the request ({})", info_name(info));
                if info == FailInfo::BadAlg && caps.weak_digests_only() {
                    why.push_str("; it offers only SHA-1/MD5, which certman does not sign with");
                }
                ClientAnswer::Rejected(super::ra::fault_of(info), why)
            }
        })
    }
}

fn info_name(info: FailInfo) -> &'static str {
    match info {
        FailInfo::BadAlg => "badAlg",
        FailInfo::BadMessageCheck => "badMessageCheck",
        FailInfo::BadRequest => "badRequest",
        FailInfo::BadTime => "badTime",
        FailInfo::BadCertId => "badCertId",
    }
}

fn key_unavailable(e: &KeyError) -> ClientAnswer {
    ClientAnswer::KeyUnavailable {
        why: crate::error::key_detail(e),
        pin: matches!(e, KeyError::Pin(_)),
    }
}

fn describe(e: &ClientError) -> String {
    e.to_string()
}

fn server_certificates(c: &CaCertificates) -> ServerCertificates {
    ServerCertificates {
        ca: c.ca.clone(),
        ra: c.ra.clone(),
    }
}
