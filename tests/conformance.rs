//! The backend conformance suite: one list of checks every key provider must pass, run
//! against the software provider and against SoftHSM2 through the PKCS#11 provider
//! (and, when it lands, the virtual PIV card).
//!
//! SoftHSM is required when `CERTMAN_REQUIRE_TOKENS=1` (CI); elsewhere its runs are skipped
//! with a printed reason when it is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use certman::keys::pkcs11::{Pkcs11Options, Pkcs11Provider};
use certman::keys::soft::SoftProvider;
use certman::keys::{
    card_verify, verify::verify_signature, EcCurve, GenerateRequest, HashAlgorithm, KeyAlgorithm,
    KeyHandle, KeyProvider, KeyUri, SignatureScheme, X509Signer,
};
use certman::seal::Sealer;
use certman::x509::{self, CertificateSpec, SubjectFields};
use der::referenced::OwnedToRef;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Backend {
    name: &'static str,
    provider: Arc<dyn KeyProvider>,
    location: Option<KeyUri>,
    /// where the "other" key of a test goes (a PIV slot holds one key)
    other_location: Option<KeyUri>,
    algorithms: Vec<KeyAlgorithm>,
    /// the device reads a key's public half back (PIV: only from the slot's certificate)
    reads_public_keys: bool,
    /// keys can be destroyed (PIV slots are only overwritten)
    deletes_keys: bool,
}

fn soft() -> Backend {
    Backend {
        name: "software",
        provider: Arc::new(SoftProvider::new(Arc::new(
            Sealer::new(b"conformance-machine-id-0123456789", b"salt").unwrap(),
        ))),
        location: None,
        other_location: None,
        algorithms: vec![
            KeyAlgorithm::Rsa { bits: 2048 },
            KeyAlgorithm::Ec(EcCurve::P256),
            KeyAlgorithm::Ec(EcCurve::P384),
            KeyAlgorithm::Ed25519,
        ],
        reads_public_keys: true,
        deletes_keys: true,
    }
}

/// One SoftHSM token for the whole test process: SoftHSM reads SOFTHSM2_CONF once, when the
/// module is initialised.
fn softhsm_token() -> Option<&'static (tempfile::TempDir, PathBuf)> {
    static TOKEN: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let required = std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() == Ok("1");
            let have = Path::new(MODULE).exists()
                && Command::new("softhsm2-util").arg("--version").output().is_ok();
            if !have {
                assert!(
                    !required,
                    "CERTMAN_REQUIRE_TOKENS=1 but SoftHSM2 is missing ({MODULE}, softhsm2-util): run scripts/setup.sh"
                );
                eprintln!("skipping SoftHSM conformance: SoftHSM2 is not installed ({MODULE})");
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-config/init-token.sh");
            let out = Command::new(script)
                .arg(dir.path())
                .arg("conformance")
                .output()
                .unwrap();
            assert!(out.status.success(), "init-token.sh: {}", String::from_utf8_lossy(&out.stderr));
            std::env::set_var("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"));
            let pin = dir.path().join("user.pin");
            Some((dir, pin))
        })
        .as_ref()
}

/// The tests on the one SoftHSM token take turns: one of them has `pkcs11-tool` (another
/// process) write to the token, and SoftHSM's file store does not take writes from two
/// processes at once (CKR_GENERAL_ERROR on C_CreateObject, or the other's object not seen).
static SOFTHSM_TOKEN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_softhsm() -> std::sync::MutexGuard<'static, ()> {
    SOFTHSM_TOKEN.lock().unwrap_or_else(|p| p.into_inner())
}

fn softhsm() -> Option<Backend> {
    let (_, pin) = softhsm_token()?;
    let location: KeyUri = format!(
        "pkcs11:token=conformance?module-path={MODULE}&pin-source=file:{}",
        pin.display()
    )
    .parse()
    .unwrap();
    Some(Backend {
        name: "SoftHSM2 (PKCS#11)",
        provider: Arc::new(Pkcs11Provider::new(Pkcs11Options::default())),
        other_location: Some(location.clone()),
        location: Some(location),
        algorithms: vec![
            KeyAlgorithm::Rsa { bits: 2048 },
            KeyAlgorithm::Ec(EcCurve::P256),
            KeyAlgorithm::Ec(EcCurve::P384),
        ],
        reads_public_keys: true,
        deletes_keys: true,
    })
}

/// The suite. Every step names the backend and the algorithm in its failure message.
fn conformance(b: &Backend) {
    for alg in &b.algorithms {
        let ctx = format!("{} {alg}", b.name);
        // generate
        let g = b
            .provider
            .generate(&GenerateRequest {
                algorithm: *alg,
                label: format!("conf-{}", alg.key_size()),
                location: b.location.clone(),
            })
            .unwrap_or_else(|e| panic!("{ctx}: generate: {e}"));
        assert_eq!(g.algorithm, *alg, "{ctx}");
        assert!(
            !g.uri.to_string().contains("pin-value"),
            "{ctx}: URI holds a PIN"
        );
        let key = KeyHandle {
            uri: g.uri.clone(),
            sealed: g.sealed.clone(),
        };
        // public key read back (or, where the device cannot, the generated one)
        let pk = if b.reads_public_keys {
            b.provider
                .public_key(&key)
                .unwrap_or_else(|e| panic!("{ctx}: public_key: {e}"))
        } else {
            if let Some(objects) = b.provider.certificate_objects() {
                objects.delete_certificate(&key).unwrap();
            }
            assert!(
                b.provider.public_key(&key).is_err(),
                "{ctx}: no certificate yet"
            );
            g.public_key.clone()
        };
        assert_eq!(pk, g.public_key, "{ctx}: public key read back differs");
        assert_eq!(
            KeyAlgorithm::from_spki(pk.owned_to_ref()).unwrap(),
            *alg,
            "{ctx}"
        );
        // sign / verify, every digest the key offers
        let signer = b
            .provider
            .signer_with_public_key(&key, &pk)
            .unwrap_or_else(|e| panic!("{ctx}: signer: {e}"));
        let scheme = alg.signature_scheme(None).unwrap();
        let msg = b"conformance message";
        let sig = signer
            .sign(scheme, msg)
            .unwrap_or_else(|e| panic!("{ctx}: sign: {e}"));
        verify_signature(&pk, scheme, msg, &sig).unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
        assert!(
            verify_signature(&pk, scheme, b"other", &sig).is_err(),
            "{ctx}"
        );
        // RSA-PSS too, where the key is RSA and the backend offers it (PIV cards do raw RSA
        // only: certman pads PKCS#1 v1.5 for them, not PSS)
        let pss_offered = signer.supports(SignatureScheme::RsaPss(HashAlgorithm::Sha256));
        assert_eq!(
            pss_offered,
            b.name != "virtual PIV card" && matches!(alg, KeyAlgorithm::Rsa { .. }),
            "{ctx}"
        );
        if pss_offered {
            for h in [HashAlgorithm::Sha256, HashAlgorithm::Sha512] {
                let pss = SignatureScheme::RsaPss(h);
                let sig = signer
                    .sign(pss, msg)
                    .unwrap_or_else(|e| panic!("{ctx}: {pss}: {e}"));
                verify_signature(&pk, pss, msg, &sig)
                    .unwrap_or_else(|e| panic!("{ctx}: {pss}: {e}"));
                assert!(verify_signature(&pk, pss, b"other", &sig).is_err(), "{ctx}");
            }
            // …and a PSS-signed self-signed certificate OpenSSL accepts
            let x = X509Signer::new(
                signer.clone(),
                SignatureScheme::RsaPss(HashAlgorithm::Sha256),
            )
            .unwrap();
            let der = self_signed(&pk, &x, &ctx);
            openssl_self_verify(&der, &format!("{ctx} PSS"));
        }
        // self-signed CA through the X509Signer adapter, checked by OpenSSL
        let x = X509Signer::new(signer.clone(), scheme).unwrap();
        let der = self_signed(&pk, &x, &ctx);
        openssl_self_verify(&der, &ctx);
        let info = x509::inspect_certificate(&der).unwrap();
        assert!(info.is_ca && info.not_after > SystemTime::now() + Duration::from_secs(86_400));
        // RSA decryption, where offered (SCEP)
        if let (KeyAlgorithm::Rsa { .. }, Some(d)) = (alg, b.provider.decrypter()) {
            use aws_lc_rs::rsa::{Pkcs1PublicEncryptingKey, PublicEncryptingKey};
            use der::Encode;
            let public = PublicEncryptingKey::from_der(&pk.to_der().unwrap()).unwrap();
            let enc = Pkcs1PublicEncryptingKey::new(public).unwrap();
            let mut ct = vec![0u8; enc.ciphertext_size()];
            let ct = enc.encrypt(b"content-encryption key", &mut ct).unwrap();
            let plain = d
                .decrypt_pkcs1v15(&key, ct)
                .unwrap_or_else(|e| panic!("{ctx}: decrypt: {e}"));
            assert_eq!(plain.secret_bytes(), b"content-encryption key", "{ctx}");
            assert!(
                d.decrypt_pkcs1v15(&key, &[0u8; 256]).is_err(),
                "{ctx}: garbage decrypts"
            );
        }
        // card-verify
        let report = card_verify(b.provider.as_ref(), &key, &info.public_key)
            .unwrap_or_else(|e| panic!("{ctx}: card_verify: {e}"));
        let expected = if b.reads_public_keys {
            Some(true)
        } else {
            None
        };
        assert_eq!(report.public_key_matches, expected, "{ctx}");
        // certificate objects, where the backend keeps them
        if let Some(objects) = b.provider.certificate_objects() {
            assert_eq!(
                objects.load_certificate(&key).unwrap(),
                None,
                "{ctx}: fresh key has a cert"
            );
            objects
                .store_certificate(&key, &der)
                .unwrap_or_else(|e| panic!("{ctx}: store cert: {e}"));
            assert_eq!(
                objects.load_certificate(&key).unwrap().as_deref(),
                Some(&der[..]),
                "{ctx}"
            );
            // replacing keeps exactly one object
            objects.store_certificate(&key, &der).unwrap();
            assert_eq!(
                objects.load_certificate(&key).unwrap().as_deref(),
                Some(&der[..]),
                "{ctx}"
            );
            objects.delete_certificate(&key).unwrap();
            assert_eq!(
                objects.load_certificate(&key).unwrap(),
                None,
                "{ctx}: cert not deleted"
            );
        }
        // a different key's certificate fails card-verify
        let other = b
            .provider
            .generate(&GenerateRequest {
                algorithm: *alg,
                label: "conf-other".into(),
                location: b.other_location.clone(),
            })
            .unwrap();
        assert!(
            card_verify(b.provider.as_ref(), &key, &other.public_key).is_err(),
            "{ctx}"
        );
        // delete: the key is gone for good (software keys live only in their store row)
        let other_key = KeyHandle {
            uri: other.uri,
            sealed: other.sealed,
        };
        let deleted = b.provider.delete(&other_key);
        let deleted_key = b.provider.delete(&key);
        if b.deletes_keys {
            deleted.unwrap();
            deleted_key.unwrap_or_else(|e| panic!("{ctx}: delete: {e}"));
        } else {
            // the device says it cannot, but freed the slot (its certificate is gone)
            assert!(deleted.is_err() && deleted_key.is_err(), "{ctx}");
            if let Some(objects) = b.provider.certificate_objects() {
                assert_eq!(objects.load_certificate(&key).unwrap(), None, "{ctx}");
            }
        }
        if b.location.is_some() && b.deletes_keys {
            assert!(
                b.provider.signer(&key).is_err(),
                "{ctx}: key still there after delete"
            );
            assert!(b.provider.public_key(&key).is_err(), "{ctx}");
        }
    }
}

fn self_signed(pk: &spki::SubjectPublicKeyInfoOwned, x: &X509Signer, ctx: &str) -> Vec<u8> {
    let (nb, na) = CertificateSpec::validity_from_now(30).unwrap();
    let spec = CertificateSpec {
        subject: SubjectFields {
            common_name: Some(ctx.to_owned()),
            ..Default::default()
        }
        .to_name()
        .unwrap(),
        public_key: pk.clone(),
        serial: x509::random_serial().unwrap(),
        not_before: nb,
        not_after: na,
        is_ca: true,
        key_usage: "key-cert-sign,crl-sign".parse().unwrap(),
        subject_alt_names: vec![],
        crl_distribution_point: None,
        issuer: None,
    };
    x509::build_certificate(&spec, x).unwrap_or_else(|e| panic!("{ctx}: build: {e}"))
}

fn openssl_self_verify(der: &[u8], ctx: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("c.pem");
    std::fs::write(&pem, x509::certificate_pem(der).unwrap()).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(&pem)
        .arg(&pem)
        .output()
        .expect("openssl is needed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{ctx}: openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtual PIV card of `scripts/virtual-piv.sh`, named by `CERTMAN_PIV_READER` (the test
/// script starts it and exports the reader's name).
#[cfg(feature = "pcsc")]
fn piv() -> Option<Backend> {
    let required = std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() == Ok("1");
    let Ok(reader) = std::env::var("CERTMAN_PIV_READER") else {
        assert!(
            !required,
            "CERTMAN_REQUIRE_TOKENS=1 but CERTMAN_PIV_READER is not set: start the card with scripts/virtual-piv.sh start"
        );
        eprintln!("skipping PIV conformance: no virtual card (CERTMAN_PIV_READER unset)");
        return None;
    };
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "123456\n").unwrap();
    let at = |slot: &str| -> KeyUri {
        KeyUri::new(certman::keys::Scheme::Piv)
            .with_path("slot-id", slot)
            .with_path("reader", &reader)
            .with_query("pin-source", format!("file:{}", pin.display()))
    };
    Some(Backend {
        name: "virtual PIV card",
        provider: Arc::new(certman::keys::piv::PivProvider::new(Default::default())),
        location: Some(at("9a")),
        other_location: Some(at("9d")),
        algorithms: vec![
            KeyAlgorithm::Ec(EcCurve::P256),
            KeyAlgorithm::Rsa { bits: 2048 },
        ],
        reads_public_keys: false,
        deletes_keys: false,
    })
}

#[cfg(feature = "pcsc")]
#[test]
fn piv_backend_conforms() {
    if let Some(b) = piv() {
        let _card = take_card();
        conformance(&b);
    }
}

#[test]
fn software_backend_conforms() {
    conformance(&soft());
}

#[test]
fn softhsm_backend_conforms() {
    let _turn = take_softhsm();
    if let Some(b) = softhsm() {
        conformance(&b);
    }
}

#[test]
fn softhsm_inventory_lists_keys_and_certificates() {
    let _turn = take_softhsm();
    let Some((_, pin)) = softhsm_token() else {
        return;
    };
    let b = softhsm().unwrap();
    let g = b
        .provider
        .generate(&GenerateRequest {
            algorithm: KeyAlgorithm::Ec(EcCurve::P256),
            label: "listed".into(),
            location: b.location.clone(),
        })
        .unwrap();
    let p11 = Pkcs11Provider::new(Pkcs11Options::default());
    let inv = p11
        .inventory(
            Path::new(MODULE),
            &certman::keys::pkcs11::token::PinSpec {
                value: None,
                source: Some(format!("file:{}", pin.display()).parse().unwrap()),
            },
            true,
        )
        .unwrap();
    let t = inv
        .iter()
        .find(|t| t.label == "conformance")
        .expect("token listed");
    let id = hex::encode(g.uri.path_bytes("id").unwrap());
    assert!(
        t.objects
            .iter()
            .any(|o| o.class == "private-key" && o.id == id && o.label == "listed"),
        "{:?} {:?}",
        t.objects,
        t.note
    );
    b.provider
        .delete(&KeyHandle {
            uri: g.uri,
            sealed: None,
        })
        .unwrap();
}

#[test]
fn softhsm_refuses_what_tokens_cannot_do() {
    let _turn = take_softhsm();
    let Some(b) = softhsm() else {
        return;
    };
    let err = b
        .provider
        .generate(&GenerateRequest {
            algorithm: KeyAlgorithm::Ed25519,
            label: "x".into(),
            location: b.location.clone(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("Ed25519"), "{err}");
    let nosuch: KeyUri =
        format!("pkcs11:token=nosuch?module-path={MODULE}&pin-source=file:/dev/null")
            .parse()
            .unwrap();
    let err = b
        .provider
        .generate(&GenerateRequest {
            algorithm: KeyAlgorithm::Ec(EcCurve::P256),
            label: "x".into(),
            location: Some(nosuch),
        })
        .unwrap_err();
    assert!(err.to_string().contains("not present"), "{err}");
}

/// A key marked CKA_ALWAYS_AUTHENTICATE needs a context-specific login before every
/// signature; certman gives it (with the same PIN source) and signs.
#[test]
fn softhsm_always_authenticate_keys_sign_after_context_login() {
    let _turn = take_softhsm();
    let Some((dir, pin)) = softhsm_token() else {
        return;
    };
    let pin_text = std::fs::read_to_string(pin).unwrap();
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
        .args([
            "--module",
            MODULE,
            "--token-label",
            "conformance",
            "--login",
            "--pin",
        ])
        .arg(pin_text.trim())
        .args([
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--id",
            "a1a1",
            "--label",
            "always-auth",
            "--always-auth",
        ])
        .output();
    let Ok(out) = out else {
        assert!(
            std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() != Ok("1"),
            "pkcs11-tool (opensc) is needed: run scripts/setup.sh"
        );
        eprintln!("skipping: pkcs11-tool not installed");
        return;
    };
    assert!(
        out.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = softhsm().unwrap();
    let uri: KeyUri = format!(
        "pkcs11:token=conformance;object=always-auth;id=%a1%a1?module-path={MODULE}&pin-source=file:{}",
        pin.display()
    )
    .parse()
    .unwrap();
    let key = KeyHandle { uri, sealed: None };
    let signer = b.provider.signer(&key).unwrap();
    // RSA: the multi-part CKM_SHA256_RSA_PKCS that a context-specific login needs. (SoftHSM
    // has no CKM_ECDSA_SHA256, so an always-authenticate EC key cannot sign there; ykcs11,
    // where PIV slot 9c keys are always-authenticate, has it.)
    let scheme = SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256);
    for _ in 0..2 {
        let sig = signer.sign(scheme, b"needs a fresh login").unwrap();
        verify_signature(signer.public_key(), scheme, b"needs a fresh login", &sig).unwrap();
    }
    b.provider.delete(&key).unwrap();
}

/// The card is one device: the PIV tests of this file take turns.
#[cfg(feature = "pcsc")]
static PIV_CARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the card, and frees the slots the suite generates into (certman refuses to generate
/// over a slot in use).
#[cfg(feature = "pcsc")]
fn take_card() -> std::sync::MutexGuard<'static, ()> {
    let guard = PIV_CARD.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(reader) = std::env::var("CERTMAN_PIV_READER") {
        for slot in ["9a", "9d"] {
            let _ = std::process::Command::new("yubico-piv-tool")
                .args(["-r", &reader, "-a", "delete-certificate", "-s", slot])
                .output();
        }
    }
    guard
}

/// A key certman generated on the PIV card, reached through the card vendors' PKCS#11 modules
/// (Yubico's ykcs11 and OpenSC's) by certman's PKCS#11 provider: the same key, card-verified
/// and signing, whichever way it is reached.
#[cfg(feature = "pcsc")]
#[test]
fn piv_keys_sign_through_the_pkcs11_modules() {
    let Some(b) = piv() else {
        return;
    };
    let _card = take_card();
    let g = b
        .provider
        .generate(&GenerateRequest {
            algorithm: KeyAlgorithm::Ec(EcCurve::P256),
            label: "via-pkcs11".into(),
            location: b.location.clone(),
        })
        .unwrap();
    let key = KeyHandle {
        uri: g.uri.clone(),
        sealed: None,
    };
    let signer = b
        .provider
        .signer_with_public_key(&key, &g.public_key)
        .unwrap();
    let x = X509Signer::new(signer, SignatureScheme::Ecdsa(HashAlgorithm::Sha256)).unwrap();
    let der = self_signed(&g.public_key, &x, "via-pkcs11");
    b.provider
        .certificate_objects()
        .unwrap()
        .store_certificate(&key, &der)
        .unwrap();
    let pin = b
        .location
        .as_ref()
        .unwrap()
        .query_str("pin-source")
        .unwrap()
        .to_owned();
    let mut tried = 0;
    for module in [
        "/usr/lib/x86_64-linux-gnu/libykcs11.so",
        "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    ] {
        if !Path::new(module).exists() {
            assert!(
                std::env::var("CERTMAN_REQUIRE_TOKENS").as_deref() != Ok("1"),
                "{module} missing: run scripts/setup.sh"
            );
            continue;
        }
        tried += 1;
        let p11 = Pkcs11Provider::new(Pkcs11Options::default());
        let spec = certman::keys::PinSpec {
            value: None,
            source: Some(pin.parse().unwrap()),
        };
        // Slot 9a is CKA_ID 01 in both modules; find the token that holds it.
        let token = p11
            .inventory(Path::new(module), &spec, true)
            .unwrap()
            .into_iter()
            .find(|t| {
                t.objects
                    .iter()
                    .any(|o| o.class == "private-key" && o.id == "01")
            })
            .unwrap_or_else(|| panic!("{module}: no token shows the 9a key"));
        let uri = KeyUri::new(certman::keys::Scheme::Pkcs11)
            .with_path("token", &token.label)
            .with_path("id", [0x01u8])
            .with_query("module-path", module)
            .with_query("pin-source", &pin);
        let handle = KeyHandle { uri, sealed: None };
        let report = card_verify(&p11, &handle, &g.public_key)
            .unwrap_or_else(|e| panic!("{module}: card-verify: {e}"));
        assert_eq!(report.provider, "PKCS#11");
        let s = p11.signer(&handle).unwrap();
        let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
        let sig = s.sign(scheme, b"through the module").unwrap();
        verify_signature(&g.public_key, scheme, b"through the module", &sig)
            .unwrap_or_else(|e| panic!("{module}: {e}"));
        assert_eq!(
            p11.certificate_objects()
                .unwrap()
                .load_certificate(&handle)
                .unwrap()
                .as_deref(),
            Some(&der[..]),
            "{module}: the slot's certificate"
        );
    }
    eprintln!("PIV key checked through {tried} PKCS#11 module(s)");
    let _ = b
        .provider
        .certificate_objects()
        .unwrap()
        .delete_certificate(&key);
}
