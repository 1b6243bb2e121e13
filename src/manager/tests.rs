//! Manager rules against a fake token provider (a token is not the point here: the
//! manager's routing, clean-up and transactions are).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use spki::SubjectPublicKeyInfoOwned;

use super::*;
use crate::error::KeyError;
use crate::keys::soft::SoftProvider;
use crate::keys::{GenerateRequest, GeneratedKey, KeyProvider, KeyUri};
use crate::keys::{KeyAlgorithm, Scheme, SignatureScheme};
use crate::store::TxnMode;

/// Pretends to be a PKCS#11 token: keys are soft keys kept in memory under `pkcs11:` URIs.
pub(super) struct FakeToken {
    soft: SoftProvider,
    keys: Mutex<HashMap<String, KeyHandle>>,
    deleted: AtomicUsize,
    pub(super) fail_signing: AtomicBool,
    /// `signer` fails as a wrong PIN does, counting the attempts
    pub(super) fail_pin: AtomicBool,
    pin_attempts: AtomicUsize,
}

struct FailingSigner(Arc<dyn KeySigner>);

impl KeySigner for FailingSigner {
    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        self.0.public_key()
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.0.algorithm()
    }
    fn sign(&self, _: SignatureScheme, _: &[u8]) -> std::result::Result<Vec<u8>, KeyError> {
        Err(KeyError::device("fake token", "device removed"))
    }
}

impl FakeToken {
    fn new() -> Self {
        FakeToken {
            soft: SoftProvider::new(Arc::new(
                Sealer::new(b"fake-token-machine-id-0123456789", b"s").unwrap(),
            )),
            keys: Mutex::new(HashMap::new()),
            deleted: AtomicUsize::new(0),
            fail_signing: AtomicBool::new(false),
            fail_pin: AtomicBool::new(false),
            pin_attempts: AtomicUsize::new(0),
        }
    }
    fn inner(&self, key: &KeyHandle) -> std::result::Result<KeyHandle, KeyError> {
        self.keys
            .lock()
            .unwrap()
            .get(&key.uri.to_string())
            .cloned()
            .ok_or_else(|| KeyError::NotFound(key.uri.to_string()))
    }
}

impl KeyProvider for FakeToken {
    fn name(&self) -> &'static str {
        "fake token"
    }
    fn generate(&self, req: &GenerateRequest) -> std::result::Result<GeneratedKey, KeyError> {
        let mut g = self.soft.generate(req)?;
        let n = self.keys.lock().unwrap().len();
        let uri = KeyUri::new(Scheme::Pkcs11)
            .with_path("token", "fake")
            .with_path("object", &req.label)
            .with_path("id", [n as u8]);
        self.keys.lock().unwrap().insert(
            uri.to_string(),
            KeyHandle {
                uri: g.uri.clone(),
                sealed: g.sealed.take(),
            },
        );
        g.uri = uri;
        g.token_serial = Some("FAKE0001".into());
        Ok(g)
    }
    fn public_key(
        &self,
        key: &KeyHandle,
    ) -> std::result::Result<SubjectPublicKeyInfoOwned, KeyError> {
        self.soft.public_key(&self.inner(key)?)
    }
    fn signer(&self, key: &KeyHandle) -> std::result::Result<Arc<dyn KeySigner>, KeyError> {
        let s = self.soft.signer(&self.inner(key)?)?;
        if self.fail_pin.load(Ordering::SeqCst) {
            self.pin_attempts.fetch_add(1, Ordering::SeqCst);
            return Err(KeyError::Pin("wrong PIN (2 tries left)".into()));
        }
        if self.fail_signing.load(Ordering::SeqCst) {
            return Ok(Arc::new(FailingSigner(s)));
        }
        Ok(s)
    }
    fn delete(&self, key: &KeyHandle) -> std::result::Result<(), KeyError> {
        if self.fail_pin.load(Ordering::SeqCst) {
            self.pin_attempts.fetch_add(1, Ordering::SeqCst);
            return Err(KeyError::Pin("wrong PIN (2 tries left)".into()));
        }
        self.keys.lock().unwrap().remove(&key.uri.to_string());
        self.deleted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A store in `dir` (the embedded kind, opened as the composition root opens it).
fn open_store(dir: &std::path::Path) -> Box<dyn Store> {
    crate::app::open_store(&crate::app::StoreLocation::Sqlite { dir: dir.into() }).unwrap()
}

/// A manager over a store in `dir` with software keys only.
fn soft_manager(dir: &std::path::Path) -> Manager {
    let store = open_store(dir);
    let sealer = Arc::new(Sealer::new(b"unit-test-machine-id-0123456789ab", store.salt()).unwrap());
    let router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
    Manager::with_parts(store, router, sealer)
}

pub(super) fn manager_with_token() -> (tempfile::TempDir, Manager, Arc<FakeToken>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let sealer = Arc::new(Sealer::new(b"unit-test-machine-id-0123456789ab", store.salt()).unwrap());
    let mut router = KeyRouter::new(Arc::new(SoftProvider::new(sealer.clone())));
    let token = Arc::new(FakeToken::new());
    router.register(Scheme::Pkcs11, token.clone());
    (dir, Manager::with_parts(store, router, sealer), token)
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn token_location() -> KeyLocation {
    KeyLocation::Uri("pkcs11:token=fake".parse().unwrap())
}

/// An EC CA named "ca", its key where `location` says.
pub(super) fn make_ca(m: &Manager, location: KeyLocation) -> Entry {
    m.add_template(
        "ca-tpl",
        None,
        &props(&[
            ("common-name", "ca"),
            ("key-usage", "key-cert-sign,crl-sign"),
            ("key-type", "ec"),
        ]),
    )
    .unwrap();
    m.sign(&SignRequest {
        template: "ca-tpl".into(),
        name: Some("ca".into()),
        key_location: location,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_ca_on_a_token_issues_and_shows_flag_c() {
    let (_d, m, token) = manager_with_token();
    let ca = make_ca(&m, token_location());
    assert_eq!(ca.flags.to_string(), "KCAT");
    assert!(ca
        .text("smart-card-key")
        .unwrap()
        .starts_with("pkcs11:token=fake"));
    m.add_template(
        "leaf",
        None,
        &props(&[("common-name", "leaf"), ("key-type", "ed25519")]),
    )
    .unwrap();
    let leaf = m
        .sign(&SignRequest {
            template: "leaf".into(),
            ca: Some("ca".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(leaf.flags.to_string(), "KI");
    assert_eq!(token.deleted.load(Ordering::SeqCst), 0);
    // card_verify through the router finds the token key matching the certificate
    let handle = m.key_handle("ca").unwrap().unwrap();
    let info = x509::inspect_certificate(&m.certificate_record("ca").unwrap().cert.der).unwrap();
    let report = crate::keys::card_verify(
        m.keys().provider(&handle.uri).unwrap(),
        &handle,
        &info.public_key,
    )
    .unwrap();
    assert_eq!(report.provider, "fake token");
}

#[test]
fn a_failed_sign_deletes_the_token_key_and_keeps_the_template() {
    let (_d, m, token) = manager_with_token();
    m.add_template(
        "t",
        None,
        &props(&[("common-name", "t"), ("key-type", "ec")]),
    )
    .unwrap();
    token.fail_signing.store(true, Ordering::SeqCst);
    let before = m.entries(&[]).unwrap();
    let err = m
        .sign(&SignRequest {
            template: "t".into(),
            key_location: token_location(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("device removed"), "{err}");
    assert_eq!(
        token.deleted.load(Ordering::SeqCst),
        1,
        "half-made key cleaned up"
    );
    assert!(token.keys.lock().unwrap().is_empty());
    let after = m.entries(&[]).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(after[0].template);
}

#[test]
fn a_token_key_remove_cannot_delete_keeps_its_pin_kind_and_exit_code() {
    let (_d, m, token) = manager_with_token();
    make_ca(&m, token_location());
    m.add_template(
        "t2",
        None,
        &props(&[
            ("common-name", "ca2"),
            ("key-type", "ec"),
            ("key-usage", "key-cert-sign,crl-sign"),
        ]),
    )
    .unwrap();
    m.sign(&SignRequest {
        template: "t2".into(),
        name: Some("ca2".into()),
        key_location: token_location(),
        ..Default::default()
    })
    .unwrap();
    token.fail_pin.store(true, Ordering::SeqCst);
    let report = m.remove(&["ca".into(), "ca2".into()], true).unwrap();
    // the rows went (committed first); both token keys stayed, one error says so
    assert_eq!(report.certificates, ["ca", "ca2"]);
    assert!(report.token_keys_deleted.is_empty());
    let e = report.token_key_error.expect("the key deletions failed");
    assert!(
        matches!(
            &e,
            ManagerError::TokenKeyNotDeleted {
                source: KeyError::Pin(_),
                more: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), crate::error::ExitCode::Token);
    assert!(e.to_string().contains("nor 1 more token key"), "{e}");
    assert_eq!(token.keys.lock().unwrap().len(), 2);
}

#[test]
fn a_profile_without_a_provider_is_a_token_error() {
    let (_d, m, _t) = manager_with_token();
    m.add_template("t", None, &props(&[("common-name", "t")]))
        .unwrap();
    let err = m
        .sign(&SignRequest {
            template: "t".into(),
            key_location: KeyLocation::Profile("softhsm".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.exit_code(), crate::error::ExitCode::Token);
    let piv = m
        .sign(&SignRequest {
            template: "t".into(),
            key_location: KeyLocation::Uri("piv:slot-id=9c".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(piv.to_string().contains("without PC/SC support"), "{piv}");
    assert!(m.entries(&[]).unwrap()[0].template);
}

#[test]
fn issue_batch_is_all_or_nothing_on_names() {
    let (_d, m, _t) = manager_with_token();
    m.add_template(
        "ca",
        None,
        &props(&[
            ("common-name", "ca"),
            ("key-type", "ec"),
            ("key-usage", "key-cert-sign"),
        ]),
    )
    .unwrap();
    m.sign(&SignRequest {
        template: "ca".into(),
        ..Default::default()
    })
    .unwrap();
    let mut leaf = TemplateProperties::default();
    leaf.set("key-type", "ec").unwrap();
    leaf.set("common-name", "leaf").unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("leaf-{i}")).collect();
    assert_eq!(m.issue_batch("ca", &leaf, &names, 2).unwrap(), 20);
    assert_eq!(m.entries(&[]).unwrap().len(), 21);
    // a duplicate inside the batch, or an existing name, refuses the whole batch
    let dup = vec!["x".to_owned(), "x".to_owned()];
    assert!(m.issue_batch("ca", &leaf, &dup, 1).is_err());
    assert!(m
        .issue_batch("ca", &leaf, &["y".into(), "leaf-3".into()], 1)
        .is_err());
    assert_eq!(m.entries(&[]).unwrap().len(), 21);
    // serials are unique per CA
    let serials: std::collections::HashSet<String> = m
        .entries(&[])
        .unwrap()
        .iter()
        .map(|e| e.text("serial-number").unwrap().to_owned())
        .collect();
    assert_eq!(serials.len(), 21);
}

#[test]
fn signing_with_a_ca_without_private_key_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = soft_manager(dir.path());
    for ca in ["ca", "public-ca"] {
        m.add_template(
            ca,
            None,
            &props(&[
                ("common-name", ca),
                ("key-type", "ec"),
                ("key-usage", "key-cert-sign"),
            ]),
        )
        .unwrap();
        m.sign(&SignRequest {
            template: ca.into(),
            ..Default::default()
        })
        .unwrap();
    }
    // A CA certificate without its key, as an import of a public CA would leave it.
    let raw = open_store(dir.path());
    let id = m.certificate_record("public-ca").unwrap().id;
    let mut txn = raw.begin(TxnMode::Write).unwrap();
    txn.clear_certificate_key(id).unwrap();
    txn.commit().unwrap();

    m.add_template(
        "leaf",
        None,
        &props(&[("common-name", "leaf"), ("key-type", "ec")]),
    )
    .unwrap();
    let before = m.entries(&[]).unwrap().len();
    let err = m
        .sign(&SignRequest {
            template: "leaf".into(),
            ca: Some("public-ca".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.exit_code(), crate::error::ExitCode::Refused);
    assert!(err.to_string().contains("no private key"), "{err}");
    let after = m.entries(&[]).unwrap();
    assert_eq!(after.len(), before);
    assert!(after.iter().any(|e| e.name == "leaf" && e.template));
    assert_eq!(
        after
            .iter()
            .find(|e| e.name == "public-ca")
            .unwrap()
            .flags
            .to_string(),
        "AT"
    );
}

#[test]
fn scheduled_crl_renewal_does_not_retry_a_wrong_pin_but_retries_an_absent_token() {
    let (_d, m, token) = manager_with_token();
    make_ca(&m, token_location());
    let number = |m: &Manager| m.crl_of("ca").unwrap().0;
    assert_eq!(number(&m), 1, "a new CA has CRL 1");
    // Due (max age 0): renewed.
    let r = m.renew_due_crls(std::time::Duration::ZERO);
    assert_eq!(r.len(), 1);
    assert_eq!(*r[0].result.as_ref().unwrap(), 2);
    // Not due within a day.
    assert!(m
        .renew_due_crls(std::time::Duration::from_secs(86_400))
        .is_empty());

    // A device error is reported and tried again at the next tick.
    token.fail_signing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let r = m.renew_due_crls(std::time::Duration::ZERO);
        assert_eq!(r.len(), 1);
        assert!(r[0].result.is_err());
    }
    assert_eq!(number(&m), 2, "a failed renewal stores nothing");
    token.fail_signing.store(false, Ordering::SeqCst);

    // A PIN failure: reported once, then this process leaves the CA alone.
    token.fail_pin.store(true, Ordering::SeqCst);
    let r = m.renew_due_crls(std::time::Duration::ZERO);
    let err = r[0].result.as_ref().unwrap_err().to_string();
    assert!(err.contains("not tried again"), "{err}");
    assert!(m.renew_due_crls(std::time::Duration::ZERO).is_empty());
    assert!(m.renew_due_crls(std::time::Duration::ZERO).is_empty());
    assert_eq!(token.pin_attempts.load(Ordering::SeqCst), 1);
    // The operator's own command still tries (and fails) once.
    assert!(m.renew_crl("ca").is_err());
    assert_eq!(token.pin_attempts.load(Ordering::SeqCst), 2);
    assert_eq!(number(&m), 2);
}

#[test]
fn an_expired_revoked_certificate_leaves_the_crl_after_a_crl_listed_it_past_expiry() {
    let (dir, m, _token) = manager_with_token();
    make_ca(&m, KeyLocation::Software);
    for n in ["gone", "kept"] {
        m.add_template(n, None, &props(&[("common-name", n), ("key-type", "ec")]))
            .unwrap();
        m.sign(&SignRequest {
            template: n.into(),
            ca: Some("ca".into()),
            ..Default::default()
        })
        .unwrap();
    }
    m.revoke(&["gone".into(), "kept".into()], None).unwrap();
    let entries = |m: &Manager| {
        let (_, der) = m.crl_of("ca").unwrap();
        x509::crl::inspect_crl(&der).unwrap().entries
    };
    assert_eq!(entries(&m), 2);
    // "gone" expired a minute ago (a certificate cannot be made expired through the CLI).
    let conn = rusqlite::Connection::open(dir.path().join(crate::store::sqlite::DB_FILE)).unwrap();
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 60;
    conn.execute(
        "UPDATE revocations SET not_after = ?1 WHERE certificate_id = \
         (SELECT id FROM certificates WHERE name = 'gone')",
        [past],
    )
    .unwrap();
    drop(conn);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The previous CRL (of the revocation) was made after the expiry but in the second of the
    // revocation itself: the rebuild keeps the entry once more (RFC 5280 §3.3).
    m.renew_crl("ca").unwrap();
    assert_eq!(entries(&m), 2);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Now a CRL made after the expiry and after the revocation has listed it: it goes.
    m.renew_crl("ca").unwrap();
    assert_eq!(entries(&m), 1);
    // The revocation itself stays.
    assert!(m.entry("gone").unwrap().flags.revoked);
}

/// A PKCS#10 request for `cn` with a fresh software key, parsed and verified.
fn request_for(cn: &str, ca: bool) -> x509::csr::RequestInfo {
    let soft = SoftProvider::new(Arc::new(
        Sealer::new(b"request-test-machine-id-01234567", b"s").unwrap(),
    ));
    let g = soft
        .generate(&GenerateRequest {
            algorithm: KeyAlgorithm::Ec(crate::keys::EcCurve::P256),
            label: cn.into(),
            location: None,
        })
        .unwrap();
    let key = soft
        .signer(&KeyHandle {
            uri: g.uri.clone(),
            sealed: g.sealed.clone(),
        })
        .unwrap();
    let scheme = key.algorithm().signature_scheme(None).unwrap();
    let der = x509::csr::build_request(
        &x509::csr::RequestSpec {
            subject: x509::SubjectFields {
                common_name: Some(cn.into()),
                ..Default::default()
            }
            .to_name()
            .unwrap(),
            subject_alt_names: Vec::new(),
            key_usage: Default::default(),
            ca,
            challenge_password: None,
            unstructured_address: None,
        },
        &crate::keys::X509Signer::new(key, scheme).unwrap(),
    )
    .unwrap();
    x509::csr::parse_request(&der).unwrap()
}

#[test]
fn the_issuance_core_issues_a_verified_request_once_by_its_rules() {
    let (dir, m, _token) = manager_with_token();
    make_ca(&m, KeyLocation::Software);
    let info = request_for("device.example", false);
    let req = IssueRequest {
        ca: "ca",
        request: &info,
        name: None,
        days_valid: Some(30),
        allow_ca: false,
    };
    let issued = m.issue_request(&req).unwrap();
    assert_eq!(issued.entry.name, "device.example");
    assert_eq!(issued.entry.flags.to_string(), "I");
    let cert = x509::inspect_certificate(&issued.der).unwrap();
    assert_eq!(cert.public_key, info.public_key);
    assert_eq!(
        m.certificate_record("device.example").unwrap().cert.der,
        issued.der
    );
    // the name is taken now: refused by rule, before the CA's key is reached
    let e = m.issue_request(&req).unwrap_err();
    assert_eq!(e.refusal(), Some(crate::error::Refusal::NameInUse), "{e:?}");
    // a request for a CA without allow-ca
    let sub = request_for("sub-ca", true);
    let e = m
        .issue_request(&IssueRequest {
            request: &sub,
            name: None,
            ..req
        })
        .unwrap_err();
    assert_eq!(
        e.refusal(),
        Some(crate::error::Refusal::CaRequestNotAllowed),
        "{e:?}"
    );
    // certified but not stored (the CA revoked meanwhile, by another process): refused when
    // stored, and nothing stored
    let other = request_for("late.example", false);
    let certified = m
        .certify_request(&IssueRequest {
            request: &other,
            ..req
        })
        .unwrap();
    let parent = m.certificate_record("ca").unwrap();
    let store = open_store(dir.path());
    let mut txn = store.begin(TxnMode::Write).unwrap();
    txn.insert_revocation(&crate::store::RevocationRecord {
        ca_id: parent.id,
        certificate_id: parent.id,
        serial: vec![1],
        revoked_at: 1,
        reason: None,
        not_after: parent.cert.not_after,
        entry: vec![0x30, 0x00],
    })
    .unwrap();
    txn.commit().unwrap();
    let e = m.store_certified(certified).unwrap_err();
    assert_eq!(e.refusal(), Some(crate::error::Refusal::CaRevoked), "{e:?}");
    assert!(m.certificate_record("late.example").is_err());
}

#[test]
fn key_generation_on_a_token_is_reported_to_the_progress_sink_and_quick_soft_keys_are_not() {
    let (_d, m, _token) = manager_with_token();
    let recorder = Arc::new(progress::Recorder::default());
    let m = m.with_progress(recorder.clone());
    make_ca(&m, token_location());
    assert_eq!(
        recorder.events(),
        [
            "start generating EC prime256v1 key on token 'fake'",
            "finish"
        ]
    );
    // an EC key in software takes no time: nothing to watch
    m.add_template(
        "leaf",
        None,
        &props(&[("common-name", "leaf"), ("key-type", "ec")]),
    )
    .unwrap();
    m.sign(&SignRequest {
        template: "leaf".into(),
        ca: Some("ca".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(recorder.events().len(), 2, "{:?}", recorder.events());
}

#[test]
fn slow_generations_are_those_on_devices_and_big_rsa_in_software() {
    use crate::keys::{EcCurve, KeyAlgorithm};
    let soft = KeyLocation::Software;
    let rsa = |bits| KeyAlgorithm::Rsa { bits };
    assert_eq!(super::issue::slow_generation(&soft, rsa(2048)), None);
    assert_eq!(
        super::issue::slow_generation(&soft, KeyAlgorithm::Ec(EcCurve::P384)),
        None
    );
    assert_eq!(
        super::issue::slow_generation(&soft, rsa(4096)).as_deref(),
        Some("generating RSA-4096 key")
    );
    assert_eq!(
        super::issue::slow_generation(&soft, rsa(8192)).as_deref(),
        Some("generating RSA-8192 key")
    );
    let card = KeyLocation::Uri("piv:slot-id=9c;serial=1".parse().unwrap());
    assert_eq!(
        super::issue::slow_generation(&card, rsa(2048)).as_deref(),
        Some("generating RSA-2048 key on the card (slot 9c)")
    );
    let token = KeyLocation::Uri("pkcs11:token=CA%0A".parse().unwrap());
    assert_eq!(
        super::issue::slow_generation(&token, KeyAlgorithm::Ed25519).as_deref(),
        Some("generating Ed25519 key on token 'CA\\x0a'"),
        "names from outside are escaped"
    );
}
