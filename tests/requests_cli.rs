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
