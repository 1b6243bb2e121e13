//! The SCEP rules of the manager, without the wire: OTPs issue once, an expired or unknown one
//! is refused with nothing stored, a request without one waits for grant, renewals need a
//! valid certificate of the CA, and a request re-sent is answered from the queue.

use std::sync::Arc;

use super::*;
use crate::error::RequestFault;
use crate::keys::soft::SoftProvider;
use crate::keys::{GenerateRequest, KeyHandle, KeyProvider, KeyRouter, KeySigner, X509Signer};
use crate::manager::{ScepEnrolment, SignRequest};
use crate::seal::Sealer;
use crate::store::{now_micros, TxnMode};
use crate::x509::{CertificateSpec, SubjectFields};

fn manager(dir: &std::path::Path) -> Manager {
    let store =
        crate::app::open_store(&crate::app::StoreLocation::Sqlite { dir: dir.into() }).unwrap();
    let sealer = Arc::new(Sealer::new(b"scep-unit-test-machine-id-012345", store.salt()).unwrap());
    let router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
    Manager::with_parts(store, router, sealer)
}

/// The seed's basic example: CA `ca` (RSA, no key-usage) and a server at /scep/test.
fn seed(m: &Manager) -> ScepEndpoint {
    m.add_template("ca-tpl", None, &[("common-name".into(), "ca".into())])
        .unwrap();
    m.sign(&SignRequest {
        template: "ca-tpl".into(),
        name: Some("ca".into()),
        ..Default::default()
    })
    .unwrap();
    m.scep_server_add(&ScepServerChanges {
        ca_cert: Some("ca".into()),
        path: Some("/scep/test".into()),
        ..Default::default()
    })
    .unwrap();
    m.scep_endpoint("/scep/test/pkiclient.exe")
        .unwrap()
        .unwrap()
}

/// A device: its key, a self-signed certificate of it (the message signer) and CSRs.
struct Device {
    signer: Arc<dyn KeySigner>,
    certificate: Vec<u8>,
}

impl Device {
    fn new(cn: &str) -> Device {
        let soft = SoftProvider::new(Arc::new(
            Sealer::new(b"scep-device-machine-id-012345678", b"s").unwrap(),
        ));
        let g = soft
            .generate(&GenerateRequest {
                algorithm: crate::keys::KeyAlgorithm::Rsa { bits: 2048 },
                label: cn.into(),
                location: None,
            })
            .unwrap();
        let signer = soft
            .signer(&KeyHandle {
                uri: g.uri,
                sealed: g.sealed,
            })
            .unwrap();
        let (not_before, not_after) = CertificateSpec::validity_from_now(1).unwrap();
        let certificate = x509::build_certificate(
            &CertificateSpec {
                subject: name(cn),
                public_key: signer.public_key().clone(),
                serial: x509::random_serial().unwrap(),
                not_before,
                not_after,
                is_ca: false,
                key_usage: Default::default(),
                subject_alt_names: Vec::new(),
                crl_distribution_point: None,
                issuer: None,
            },
            &x509_signer(&signer),
        )
        .unwrap();
        Device {
            signer,
            certificate,
        }
    }

    fn csr(&self, cn: &str, challenge: Option<&str>) -> Vec<u8> {
        self.csr_asking(cn, challenge, false)
    }

    fn csr_asking(&self, cn: &str, challenge: Option<&str>, ca: bool) -> Vec<u8> {
        x509::csr::build_request(
            &x509::csr::RequestSpec {
                subject: name(cn),
                subject_alt_names: Vec::new(),
                key_usage: Default::default(),
                ca,
                challenge_password: challenge.map(str::to_owned),
                unstructured_address: None,
            },
            &x509_signer(&self.signer),
        )
        .unwrap()
    }
}

fn name(cn: &str) -> x509_cert::name::Name {
    SubjectFields {
        common_name: Some(cn.into()),
        ..Default::default()
    }
    .to_name()
    .unwrap()
}

fn x509_signer(key: &Arc<dyn KeySigner>) -> X509Signer {
    let scheme = key.algorithm().signature_scheme(None).unwrap();
    X509Signer::new(key.clone(), scheme).unwrap()
}

fn enrol(m: &Manager, ep: &ScepEndpoint, txid: &str, csr: &[u8], dev: &Device) -> EnrolOutcome {
    m.scep_enrol(
        ep,
        &ScepEnrolment {
            renewal: false,
            transaction_id: txid,
            csr,
            signer: &dev.certificate,
            signer_public_key: dev.signer.public_key(),
        },
    )
    .unwrap()
}

fn issued_count(m: &Manager) -> usize {
    let txn = m.store.begin(TxnMode::Read).unwrap();
    txn.certificates()
        .unwrap()
        .iter()
        .filter(|c| c.cert.issuer_id.is_some())
        .count()
}

fn rejected(o: &EnrolOutcome) -> RequestFault {
    match o {
        EnrolOutcome::Rejected(f, _) => *f,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn an_otp_issues_once_and_a_resent_request_gets_the_same_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path());
    let ep = seed(&m);
    let otp = m.scep_otp_generate(None, 5).unwrap();
    let pw = otp.password.secret_str().to_owned();
    let dev = Device::new("dev1");
    let csr = dev.csr("dev1", Some(&pw));
    let EnrolOutcome::Issued(cert) = enrol(&m, &ep, "t1", &csr, &dev) else {
        panic!("not issued")
    };
    let info = x509::inspect_certificate(&cert).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("dev1"));
    assert!(
        info.not_after
            .duration_since(info.not_before)
            .unwrap()
            .as_secs()
            <= 86_400 + 60
    );
    // The same request again (a lost reply, micromdm's polling): the same certificate.
    assert_eq!(enrol(&m, &ep, "t1", &csr, &dev), EnrolOutcome::Issued(cert));
    // The OTP again, for another device: refused, nothing stored.
    let other = Device::new("dev2");
    let o = enrol(&m, &ep, "t2", &other.csr("dev2", Some(&pw)), &other);
    assert_eq!(rejected(&o), RequestFault::BadRequest);
    let o = enrol(
        &m,
        &ep,
        "t3",
        &other.csr("dev2", Some("0000000000")),
        &other,
    );
    assert_eq!(rejected(&o), RequestFault::BadRequest);
    assert_eq!(issued_count(&m), 1);
    let reqs = m.scep_requests().unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status, ScepRequestStatus::Issued);
    assert!(reqs[0]
        .certificate
        .as_deref()
        .unwrap()
        .starts_with("issued_"));
    assert!(m.scep_otps().unwrap()[0].used.is_some());
}

#[test]
fn an_expired_otp_or_one_for_another_server_is_refused_with_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path());
    let ep = seed(&m);
    {
        let mut t = m.store.begin(TxnMode::Write).unwrap();
        t.insert_otp(
            None,
            &otp::otp_hash(m.store.salt(), "EXPIRED"),
            now_micros() - 1,
        )
        .unwrap();
        let other = t
            .insert_scep_server(&crate::store::NewScepServer {
                path: "/scep/other".into(),
                ..t.scep_servers().unwrap()[0].server.clone()
            })
            .unwrap();
        t.insert_otp(
            Some(other),
            &otp::otp_hash(m.store.salt(), "OTHER"),
            i64::MAX,
        )
        .unwrap();
        t.commit().unwrap();
    }
    assert!(m.scep_otps().unwrap()[0].expired);
    let dev = Device::new("dev");
    for pw in ["EXPIRED", "OTHER"] {
        let o = enrol(&m, &ep, pw, &dev.csr("dev", Some(pw)), &dev);
        assert_eq!(rejected(&o), RequestFault::BadRequest);
    }
    assert_eq!(issued_count(&m), 0);
    assert!(m.scep_requests().unwrap().is_empty());
}

#[test]
fn without_an_otp_a_request_waits_for_grant_and_the_poll_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path());
    let ep = seed(&m);
    let dev = Device::new("tst-client");
    let csr = dev.csr("tst-client", None);
    assert_eq!(enrol(&m, &ep, "tx", &csr, &dev), EnrolOutcome::Pending);
    assert_eq!(m.scep_poll(&ep, "tx").unwrap(), EnrolOutcome::Pending);
    let reqs = m.scep_requests().unwrap();
    assert_eq!(
        (reqs[0].number, reqs[0].status),
        (0, ScepRequestStatus::Pending)
    );
    assert_eq!(issued_count(&m), 0);
    let name = m.scep_grant("0").unwrap();
    assert!(name.starts_with("issued_"));
    assert_eq!(
        m.scep_requests().unwrap()[0].status,
        ScepRequestStatus::Granted
    );
    let EnrolOutcome::Issued(cert) = m.scep_poll(&ep, "tx").unwrap() else {
        panic!("not delivered")
    };
    assert_eq!(
        x509::inspect_certificate(&cert)
            .unwrap()
            .common_name
            .as_deref(),
        Some("tst-client")
    );
    assert_eq!(
        m.scep_requests().unwrap()[0].status,
        ScepRequestStatus::Issued
    );
    assert!(matches!(
        m.scep_grant("tx"),
        Err(ManagerError::Refused {
            reason: Refusal::NotPending,
            ..
        })
    ));
    assert_eq!(
        rejected(&m.scep_poll(&ep, "unknown").unwrap()),
        RequestFault::UnknownCertificate
    );
    // A rejected request fails at its poll.
    let dev2 = Device::new("other");
    enrol(&m, &ep, "tx2", &dev2.csr("other", None), &dev2);
    m.scep_reject("1").unwrap();
    assert_eq!(
        rejected(&m.scep_poll(&ep, "tx2").unwrap()),
        RequestFault::BadRequest
    );
    assert!(m.scep_reject("1").is_err());
    assert_eq!(issued_count(&m), 1);
}

#[test]
fn a_request_the_ca_refuses_fails_at_grant_and_at_its_poll() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path());
    let ep = seed(&m);
    let dev = Device::new("sub-ca");
    let csr = dev.csr_asking("sub-ca", None, true);
    assert_eq!(enrol(&m, &ep, "t", &csr, &dev), EnrolOutcome::Pending);
    assert!(matches!(
        m.scep_grant("0"),
        Err(ManagerError::Refused {
            reason: Refusal::CaRequestNotAllowed,
            ..
        })
    ));
    assert_eq!(
        m.scep_requests().unwrap()[0].status,
        ScepRequestStatus::Failed
    );
    assert_eq!(
        rejected(&m.scep_poll(&ep, "t").unwrap()),
        RequestFault::BadRequest
    );
    assert_eq!(issued_count(&m), 0);
    // With an OTP it is refused at once, the OTP left unused.
    let pw = m
        .scep_otp_generate(None, 5)
        .unwrap()
        .password
        .secret_str()
        .to_owned();
    let o = enrol(
        &m,
        &ep,
        "t2",
        &dev.csr_asking("sub-ca", Some(&pw), true),
        &dev,
    );
    assert_eq!(rejected(&o), RequestFault::BadRequest);
    assert!(m.scep_otps().unwrap()[0].used.is_none());
}

#[test]
fn a_renewal_needs_a_valid_unrevoked_certificate_of_this_ca_for_the_same_subject() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager(dir.path());
    let ep = seed(&m);
    let pw = m
        .scep_otp_generate(None, 5)
        .unwrap()
        .password
        .secret_str()
        .to_owned();
    let dev = Device::new("dev");
    let EnrolOutcome::Issued(cert) = enrol(&m, &ep, "t1", &dev.csr("dev", Some(&pw)), &dev) else {
        panic!("not issued")
    };
    let n = std::cell::Cell::new(0);
    let renew = |csr: &[u8], signer: &[u8], renewal: bool| {
        n.set(n.get() + 1);
        m.scep_enrol(
            &ep,
            &ScepEnrolment {
                renewal,
                transaction_id: &format!("renew-{}", n.get()),
                csr,
                signer,
                signer_public_key: dev.signer.public_key(),
            },
        )
        .unwrap()
    };
    // Signed by the issued certificate, no challenge: renewed (RenewalReq, or a PKCSReq as
    // macOS and sscep send it).
    assert!(matches!(
        renew(&dev.csr("dev", None), &cert, true),
        EnrolOutcome::Issued(_)
    ));
    assert!(matches!(
        renew(&dev.csr("dev", None), &cert, false),
        EnrolOutcome::Issued(_)
    ));
    // Another subject: refused.
    assert_eq!(
        rejected(&renew(&dev.csr("someone-else", None), &cert, true)),
        RequestFault::BadRequest
    );
    // A RenewalReq signed by a certificate this CA did not issue: refused.
    assert_eq!(
        rejected(&renew(&dev.csr("dev", None), &dev.certificate, true)),
        RequestFault::BadRequest
    );
    // Revoked: refused.
    let issued = m.scep_requests().unwrap()[0].certificate.clone().unwrap();
    m.revoke(&[issued], None).unwrap();
    assert_eq!(
        rejected(&renew(&dev.csr("dev", None), &cert, true)),
        RequestFault::BadRequest
    );
    assert_eq!(issued_count(&m), 3);
    // The first request re-sent: its certificate is revoked now, so it is not handed out.
    let o = enrol(&m, &ep, "t1", &dev.csr("dev", Some(&pw)), &dev);
    assert_eq!(rejected(&o), RequestFault::BadRequest);
}

#[test]
fn a_pending_request_expires_after_the_request_lifetime() {
    let record = crate::store::ScepRequestRecord {
        id: 1,
        request: crate::store::NewScepRequest {
            server_id: 1,
            transaction_id: "t".into(),
            status: "pending".into(),
            csr: Vec::new(),
            signer: Vec::new(),
            subject: String::new(),
            common_name: String::new(),
            subject_alt_name: String::new(),
            fingerprint: String::new(),
        },
        certificate_id: None,
        created_at: 0,
        updated_at: 0,
    };
    assert_eq!(
        queue::effective_status(&record, 300, 299_000_000),
        ScepRequestStatus::Pending
    );
    assert_eq!(
        queue::effective_status(&record, 300, 301_000_000),
        ScepRequestStatus::Expired
    );
    let granted = crate::store::ScepRequestRecord {
        request: crate::store::NewScepRequest {
            status: "granted".into(),
            ..record.request.clone()
        },
        ..record
    };
    assert_eq!(
        queue::effective_status(&granted, 300, i64::MAX),
        ScepRequestStatus::Granted
    );
}

/// Several `serve` nodes on one PostgreSQL store: a manager per node, each with its own store
/// handle, started together. Skipped (with a note) without the test server
/// (`$CERTMAN_TEST_POSTGRES_URL`, which `scripts/postgres.sh start DIR` prints); failed
/// without it in CI (`CERTMAN_REQUIRE_TOKENS=1`).
#[cfg(feature = "postgres")]
mod nodes {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    use super::super::enrol::MAX_PENDING;
    use super::*;
    use crate::store::NewScepRequest;

    const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
    const NODES: usize = 4;

    /// A fresh database of the test server, dropped with the value.
    struct Database {
        admin: String,
        name: String,
        url: String,
    }

    impl Database {
        fn create() -> Option<Database> {
            let Some(admin) = std::env::var("CERTMAN_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
            else {
                assert!(
                    std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() != Ok("1"),
                    "no PostgreSQL server: CERTMAN_TEST_POSTGRES_URL is unset"
                );
                eprintln!("skipped: no PostgreSQL server (CERTMAN_TEST_POSTGRES_URL is unset)");
                return None;
            };
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "certman_nodes_{}_{}_{}",
                std::process::id(),
                now_micros(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            psql(&admin, &format!("CREATE DATABASE {name}"));
            let (head, query) = admin.split_once('?').unwrap_or((&admin, ""));
            let (scheme, rest) = head.split_once("://").expect("a postgresql:// URL");
            let authority = rest.split('/').next().unwrap_or_default();
            let url = format!("{scheme}://{authority}/{name}?{query}");
            Some(Database { admin, name, url })
        }

        /// A node: a manager with its own connection to the store.
        fn node(&self) -> Manager {
            let location =
                crate::app::StoreLocation::parse(std::path::Path::new(&self.url)).unwrap();
            let store = crate::app::open_store(&location).unwrap();
            let sealer =
                Arc::new(Sealer::new(b"scep-unit-test-machine-id-012345", store.salt()).unwrap());
            let router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
            Manager::with_parts(store, router, sealer)
        }
    }

    impl Drop for Database {
        fn drop(&mut self) {
            psql(
                &self.admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }

    fn psql(url: &str, sql: &str) {
        let out = std::process::Command::new(PSQL)
            .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `op(node)` on every node's own thread, all released together; the results in order.
    fn at_once<T: Send>(nodes: &[Manager], op: impl Fn(&Manager) -> T + Sync) -> Vec<T> {
        let barrier = Barrier::new(nodes.len());
        std::thread::scope(|scope| {
            let threads: Vec<_> = nodes
                .iter()
                .map(|m| {
                    let (barrier, op) = (&barrier, &op);
                    scope.spawn(move || {
                        barrier.wait();
                        op(m)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }

    fn nodes(db: &Database) -> Vec<Manager> {
        (0..NODES).map(|_| db.node()).collect()
    }

    fn rows_of(m: &Manager, txid: &str) -> usize {
        let txn = m.store.begin(TxnMode::Read).unwrap();
        let rows = txn.scep_requests().unwrap();
        rows.iter()
            .filter(|r| r.request.transaction_id == txid)
            .count()
    }

    #[test]
    fn edits_of_one_server_on_several_nodes_lose_none() {
        let Some(db) = Database::create() else { return };
        let nodes = nodes(&db);
        seed(&nodes[0]);
        for round in 0..6u32 {
            let edits = [
                ScepServerChanges {
                    days_valid: Some(round + 2),
                    ..Default::default()
                },
                ScepServerChanges {
                    request_lifetime: Some(Duration::from_secs(600 + 60 * u64::from(round))),
                    ..Default::default()
                },
                ScepServerChanges {
                    disabled: Some(round % 2 == 0),
                    ..Default::default()
                },
            ];
            at_once(&nodes[..edits.len()], |m| {
                let i = nodes.iter().position(|n| std::ptr::eq(n, m)).unwrap();
                m.scep_server_set("/scep/test", &edits[i]).unwrap();
            });
            let s = nodes[3].scep_servers().unwrap().remove(0);
            assert_eq!(
                (s.days_valid, s.request_lifetime.as_secs(), s.disabled),
                (round + 2, 600 + 60 * u64::from(round), round % 2 == 0),
                "round {round}: an edit was lost"
            );
        }
    }

    #[test]
    fn the_pending_cap_holds_across_nodes() {
        let Some(db) = Database::create() else { return };
        let nodes = nodes(&db);
        let ep = seed(&nodes[0]);
        let room = 2;
        nodes[0]
            .write(|txn| {
                for i in 0..MAX_PENDING - room {
                    txn.insert_scep_request(
                        &NewScepRequest {
                            server_id: ep.server_id,
                            transaction_id: format!("filler-{i}"),
                            status: ScepRequestStatus::Pending.word().into(),
                            csr: Vec::new(),
                            signer: Vec::new(),
                            subject: "CN=filler".into(),
                            common_name: "filler".into(),
                            subject_alt_name: String::new(),
                            fingerprint: format!("{i:064x}"),
                        },
                        None,
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let dev = Device::new("dev");
        let csrs: Vec<Vec<u8>> = (0..NODES)
            .map(|i| dev.csr(&format!("dev{i}"), None))
            .collect();
        let outcomes = at_once(&nodes, |m| {
            let i = nodes.iter().position(|n| std::ptr::eq(n, m)).unwrap();
            enrol(m, &ep, &format!("tx-{i}"), &csrs[i], &dev)
        });
        let queued = outcomes
            .iter()
            .filter(|o| **o == EnrolOutcome::Pending)
            .count();
        assert_eq!(queued, room, "{outcomes:?}");
        let txn = nodes[0].store.begin(TxnMode::Read).unwrap();
        assert_eq!(
            txn.count_scep_requests(ep.server_id, ScepRequestStatus::Pending.word(), 0)
                .unwrap(),
            MAX_PENDING as i64
        );
    }

    #[test]
    fn a_request_sent_to_several_nodes_at_once_is_queued_once() {
        let Some(db) = Database::create() else { return };
        let nodes = nodes(&db);
        let ep = seed(&nodes[0]);
        let dev = Device::new("dev");
        let csr = dev.csr("dev", None);
        let outcomes = at_once(&nodes, |m| enrol(m, &ep, "tx-same", &csr, &dev));
        assert!(
            outcomes.iter().all(|o| *o == EnrolOutcome::Pending),
            "{outcomes:?}"
        );
        assert_eq!(rows_of(&nodes[0], "tx-same"), 1);
    }

    #[test]
    fn a_transaction_forwarded_by_several_nodes_is_one_row() {
        let Some(db) = Database::create() else { return };
        let nodes = nodes(&db);
        let ep = seed(&nodes[0]);
        let dev = Device::new("dev");
        let csr = dev.csr("dev", None);
        let enrolment = ScepEnrolment {
            renewal: false,
            transaction_id: "tx-fwd",
            csr: &csr,
            signer: &dev.certificate,
            signer_public_key: dev.signer.public_key(),
        };
        at_once(&nodes, |m| {
            m.scep_forwarded(&ep, "tx-fwd", Some(&enrolment), &EnrolOutcome::Pending)
                .unwrap()
        });
        assert_eq!(rows_of(&nodes[0], "tx-fwd"), 1);
    }
}
