//! Certificate requests end to end: `create-certificate-request` writes a PKCS#10 request that
//! OpenSSL verifies (and its key, encrypted, or keeps the key on a token), and
//! `sign-certificate-request` issues for a request OpenSSL made.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::softhsm::SoftHsm;
use common::*;

fn ca(env: &Env) {
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&["sign", "ca-tpl", "name=ca", "ca-crl-host=127.0.0.1:8080"]);
}

#[test]
fn a_certman_request_verifies_in_openssl_and_its_key_decrypts() {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=r",
        "common-name=req.example",
        "organization=Example",
        "subject-alt-name=DNS:req.example,IP:192.0.2.9",
        "key-usage=digital-signature,tls-server",
        "key-type=ec",
    ]);
    env.ok(&[
        "create-certificate-request",
        "template=r",
        "key-passphrase=pass-1234",
        "challenge-password=otp-42",
    ]);
    let csr = env.work.join("certificate-request.pem");
    let key = env.work.join("certificate-request_key.pem");
    let text = openssl(
        &[
            "req",
            "-in",
            csr.to_str().unwrap(),
            "-verify",
            "-noout",
            "-text",
        ],
        &env.work,
    );
    assert!(
        text.contains("CN = req.example") || text.contains("CN=req.example"),
        "{text}"
    );
    assert!(
        text.contains("DNS:req.example, IP Address:192.0.2.9"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("otp-42"), "challenge password: {text}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let k = std::fs::read_to_string(&key).unwrap();
    assert!(k.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    // the key in the file is the request's key
    let from_key = openssl(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            "pass:pass-1234",
            "-pubout",
        ],
        &env.work,
    );
    let from_csr = openssl(
        &["req", "-in", csr.to_str().unwrap(), "-noout", "-pubkey"],
        &env.work,
    );
    assert_eq!(from_key, from_csr);
    // the template was consumed
    assert!(env.names().is_empty(), "{:?}", env.names());
    // file-name= changes the base name
    env.ok(&[
        "add",
        "name=r2",
        "common-name=two.example",
        "key-type=ed25519",
    ]);
    let out = env
        .command(&[
            "create-certificate-request",
            "r2",
            "file-name=two",
            "key-passphrase-source=env:REQ_PASS",
        ])
        .env("REQ_PASS", "from-env-5678")
        .output()
        .unwrap();
    assert_success(&out, "create-certificate-request file-name=two");
    assert!(env.work.join("two.pem").exists() && env.work.join("two_key.pem").exists());
    openssl(
        &[
            "pkey",
            "-in",
            "two_key.pem",
            "-passin",
            "pass:from-env-5678",
            "-noout",
        ],
        &env.work,
    );
}

#[test]
fn a_software_key_request_needs_a_passphrase_and_changes_nothing_without_one() {
    let env = Env::new();
    env.ok(&["add", "name=r", "common-name=r.example", "key-type=ec"]);
    let before = env.snapshot();
    let err = env.fail(&["create-certificate-request", "r"], EXIT_USAGE);
    assert!(err.contains("key passphrase"), "{err}");
    assert_eq!(env.snapshot(), before);
    env.fail(
        &[
            "create-certificate-request",
            "nosuch",
            "key-passphrase=x1234",
        ],
        EXIT_NOT_FOUND,
    );
}

#[test]
fn an_openssl_request_is_issued_with_its_sans_and_verifies() {
    let env = Env::new();
    ca(&env);
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "o.key",
            "-subj",
            "/C=LV/O=Org/CN=openssl.example",
            "-addext",
            "subjectAltName=DNS:openssl.example,DNS:www.openssl.example,IP:198.51.100.4",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-out",
            "o.csr",
        ],
        &env.work,
    );
    env.ok(&[
        "sign-certificate-request",
        "ca=ca",
        "file-name=o.csr",
        "days-valid=30",
    ]);
    let crt = env.work.join("cert_export_openssl.example.crt");
    let ca_crt = env.export_cert("ca");
    assert_verifies(&ca_crt, &crt);
    let text = cert_text(&crt);
    assert!(
        text.contains("DNS:openssl.example, DNS:www.openssl.example, IP Address:198.51.100.4"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains("URI:http://127.0.0.1:8080/crl/ca.crl"),
        "{text}"
    );
    // the certificate is for the request's key
    let key_pub = openssl(&["pkey", "-in", "o.key", "-pubout"], &env.work);
    assert_eq!(cert_public_key(&crt), key_pub);
    let e = env.entry("openssl.example");
    assert_eq!(e["flags"], "I");
    assert_eq!(e["ca"], "ca");
    assert_eq!(e["days-valid"], 30);
    // again: the name is taken (4); with name= it issues a second certificate
    env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=o.csr"],
        EXIT_REFUSED,
    );
    env.ok(&[
        "sign-certificate-request",
        "ca=ca",
        "file-name=o.csr",
        "name=second",
    ]);
}

#[test]
fn bad_request_files_are_refused_and_change_nothing() {
    let env = Env::new();
    ca(&env);
    std::fs::write(env.work.join("garbage.csr"), b"not a request").unwrap();
    std::fs::write(env.work.join("big.csr"), vec![b'A'; 70 * 1024]).unwrap();
    let before = env.snapshot();
    let err = env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=garbage.csr"],
        EXIT_USAGE,
    );
    assert!(err.contains("garbage.csr"), "{err}");
    let err = env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=big.csr"],
        EXIT_USAGE,
    );
    assert!(err.contains("too large"), "{err}");
    env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=missing.csr"],
        EXIT_FAILED,
    );
    assert_eq!(env.snapshot(), before);
    // a request whose signature does not verify
    env.ok(&[
        "add",
        "name=r",
        "common-name=tampered.example",
        "key-type=ec",
    ]);
    env.ok(&["create-certificate-request", "r", "key-passphrase=abcd1234"]);
    openssl(
        &[
            "req",
            "-in",
            "certificate-request.pem",
            "-outform",
            "DER",
            "-out",
            "t.der",
        ],
        &env.work,
    );
    let mut bytes = std::fs::read(env.work.join("t.der")).unwrap();
    let i = bytes.len() / 3;
    bytes[i] ^= 0x01;
    std::fs::write(env.work.join("t.der"), bytes).unwrap();
    let before2 = env.snapshot();
    let err = env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=t.der"],
        EXIT_USAGE,
    );
    assert!(err.contains("t.der"), "{err}");
    assert_eq!(env.snapshot(), before2);
}

#[test]
fn a_request_can_keep_its_key_on_a_token() {
    let Some(hsm) = SoftHsm::new("requests") else {
        return;
    };
    let env = hsm.env();
    env.ok(&["add", "name=r", "common-name=token.example", "key-type=ec"]);
    env.ok(&["create-certificate-request", "r", "on-smart-card=yes"]);
    assert!(env.work.join("certificate-request.pem").exists());
    assert!(
        !env.work.join("certificate-request_key.pem").exists(),
        "no key file for a token key"
    );
    openssl(
        &["req", "-in", "certificate-request.pem", "-verify", "-noout"],
        &env.work,
    );
}

#[test]
fn the_signed_certificate_of_a_request_joins_its_key_on_import() {
    // this store makes the request; another CA signs it; the certificate comes back
    let env = Env::new();
    env.ok(&[
        "add",
        "name=r",
        "common-name=back.example",
        "key-type=ec",
        "key-usage=tls-client",
    ]);
    env.ok(&["create-certificate-request", "r", "key-passphrase=abcd1234"]);
    let ca = Env::new();
    ca.make_ca("other-ca", &["key-type=ec"]);
    std::fs::copy(
        env.work.join("certificate-request.pem"),
        ca.work.join("req.pem"),
    )
    .unwrap();
    ca.ok(&[
        "sign-certificate-request",
        "ca=other-ca",
        "file-name=req.pem",
    ]);
    std::fs::copy(
        ca.work.join("cert_export_back.example.crt"),
        env.work.join("signed.crt"),
    )
    .unwrap();
    env.ok(&["import", "file-name=signed.crt", "name=back"]);
    let e = env.entry("back");
    assert_eq!(e["flags"], "K", "the certificate found its key: {e}");
    // and the key signs what the certificate says
    let v = env.ok(&["card-verify", "back"]);
    assert!(v.contains("equal to the certificate's"), "{v}");
}

#[test]
fn a_request_for_a_ca_needs_allow_ca() {
    let env = Env::new();
    ca(&env);
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "sub.key",
            "-subj",
            "/CN=sub-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "sub.csr",
        ],
        &env.work,
    );
    let before = env.snapshot();
    let err = env.fail(
        &["sign-certificate-request", "ca=ca", "file-name=sub.csr"],
        EXIT_REFUSED,
    );
    assert!(err.contains("CA certificate"), "{err}");
    assert_eq!(env.snapshot(), before);
    env.ok(&[
        "sign-certificate-request",
        "ca=ca",
        "file-name=sub.csr",
        "allow-ca=yes",
    ]);
    assert_eq!(env.entry("sub-ca")["flags"], "AI");
}

/// The lines of `openssl req -text` that a request's fields show in: subject, key size and
/// attributes.
fn request_fields(env: &Env, csr: &str) -> Vec<String> {
    let text = openssl(
        &["req", "-in", csr, "-verify", "-noout", "-text"],
        &env.work,
    );
    text.lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Subject:")
                || l.starts_with("Public-Key:")
                || l.starts_with("challengePassword")
                || l.starts_with("unstructuredAddress")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn routeros_v2_8_names_make_the_same_request_as_todays() {
    let env = Env::new();
    // v2.8's dialogue, as properties, with no template
    env.ok(&[
        "create-certificate-request",
        "certificate-request-file-name=v28.csr",
        "file-name=v28.key",
        "passphrase=v28-passphrase",
        "rsa-key-bits=2048",
        "country-name=LV",
        "state-or-province-name=Riga region",
        "locality-name=Riga",
        "organization-name=MikroTik",
        "organization-unit-name=QA",
        "common-name=router.example",
        "email-address=admin@example.lv",
        "challenge-password=otp-2804",
        "unstructured-address=Brivibas iela 1",
    ]);
    let v28 = request_fields(&env, "v28.csr");
    assert_eq!(
        v28.len(),
        4,
        "subject, key size, challengePassword, unstructuredAddress: {v28:?}"
    );
    for want in [
        "C = LV, ST = Riga region, L = Riga, O = MikroTik, OU = QA, CN = router.example, emailAddress = admin@example.lv",
        "(2048 bit)",
        "otp-2804",
        "Brivibas iela 1",
    ] {
        assert!(v28.iter().any(|l| l.contains(want)), "{want}: {v28:?}");
    }
    // the key file is where v2.8's "file name" said, encrypted with its passphrase
    let key_pub = openssl(
        &[
            "pkey",
            "-in",
            "v28.key",
            "-passin",
            "pass:v28-passphrase",
            "-pubout",
        ],
        &env.work,
    );
    let csr_pub = openssl(&["req", "-in", "v28.csr", "-noout", "-pubkey"], &env.work);
    assert_eq!(key_pub, csr_pub);
    // today's names (a template, properties over it) give the same fields
    env.ok(&[
        "add",
        "name=today",
        "common-name=router.example",
        "country=LV",
        "state=Riga region",
        "locality=Riga",
        "organization=MikroTik",
        "key-type=rsa",
    ]);
    env.ok(&[
        "create-certificate-request",
        "template=today",
        "unit=QA",
        "key-size=2048",
        "email-address=admin@example.lv",
        "key-passphrase=today-passphrase",
        "challenge-password=otp-2804",
        "unstructured-address=Brivibas iela 1",
        "file-name=today",
    ]);
    assert_eq!(request_fields(&env, "today.pem"), v28);
    assert!(env.work.join("today_key.pem").exists());
    // the template was consumed; the v2.8 request consumed none
    assert!(env.names().is_empty(), "{:?}", env.names());
}

#[test]
fn v2_8_request_fields_are_checked_and_a_request_needs_something_to_say() {
    let env = Env::new();
    let before = env.snapshot();
    let e = env.fail(
        &["create-certificate-request", "key-passphrase=x1234"],
        EXIT_USAGE,
    );
    assert!(e.contains("template="), "{e}");
    let e = env.fail(
        &[
            "create-certificate-request",
            "common-name=a",
            "email-address=not an address",
            "passphrase=x1234",
        ],
        EXIT_USAGE,
    );
    assert!(e.contains("not an email address"), "{e}");
    let e = env.fail(
        &[
            "create-certificate-request",
            "common-name=a",
            "rsa-key-bits=1000",
            "passphrase=x1234",
        ],
        EXIT_USAGE,
    );
    assert!(e.contains("key-size=1000"), "{e}");
    // rsa-key-bits says the key type itself
    env.fail(
        &[
            "create-certificate-request",
            "common-name=a",
            "rsa-key-bits=2048",
            "key-type=ec",
            "passphrase=x1234",
        ],
        EXIT_USAGE,
    );
    assert_eq!(env.snapshot(), before);
}
