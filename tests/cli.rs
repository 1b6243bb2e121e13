//! End-to-end tests of the `certman` binary: RouterOS `/certificate` commands against a
//! temporary store, every certificate and key checked by OpenSSL.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

const DAY: i64 = 86_400;

/// The acceptance flow of the brief: a CA with a CRL host and a TLS server certificate it
/// issued. `extra` is appended to both `add`s (e.g. `key-type=ec` where RSA is not the point).
fn acceptance(env: &Env, extra: &[&str]) {
    let mut add_ca = vec![
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "days-valid=3650",
    ];
    add_ca.extend(extra);
    env.ok(&add_ca);
    let out = env.ok(&["sign", "ca-tpl", "name=ca", "ca-crl-host=127.0.0.1:8080"]);
    assert!(out.contains("ca"), "sign says what it signed: {out}");
    let mut add_srv = vec![
        "add",
        "name=srv",
        "common-name=srv.example",
        "subject-alt-name=DNS:srv.example,IP:127.0.0.1",
        "key-usage=digital-signature,key-encipherment,tls-server",
    ];
    add_srv.extend(extra);
    env.ok(&add_srv);
    env.ok(&["sign", "srv", "ca=ca"]);
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Bit length of a (non-negative) hex integer.
fn bit_len(hex: &str) -> usize {
    let t = hex.trim_start_matches('0');
    match t.chars().next() {
        None => 0,
        Some(c) => {
            let first = c.to_digit(16).expect("hex digit");
            (t.len() - 1) * 4 + (u32::BITS - first.leading_zeros()) as usize
        }
    }
}

/// Exports certificate and (encrypted) key of `name`, checks mode 0600, the PEM label, that
/// OpenSSL opens it with the passphrase and not without, and that its public key is the
/// certificate's.
fn assert_exported_key_matches(env: &Env, name: &str) {
    let pass = format!("pw-{name}-{}", random_hex(4));
    let (crt, key) = env.export_with_key(name, &pass);
    assert_eq!(mode(&key), 0o600, "{} mode", key.display());
    let pem = fs::read_to_string(&key).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
        "not an encrypted PKCS#8 PEM: {pem}"
    );
    assert!(!pem.contains("BEGIN PRIVATE KEY") && !pem.contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(
        key_public_key(&key, &pass),
        cert_public_key(&crt),
        "exported key of {name} is not the certificate's"
    );
    let wrong = openssl_output(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            "pass:not-the-passphrase",
            "-noout",
        ],
        Path::new("/"),
    );
    assert!(
        !wrong.status.success(),
        "openssl opened the key of {name} with a wrong passphrase"
    );
}

// ------------------------------------------------------------------ 1. acceptance: print

#[test]
fn acceptance_print_json_flags_and_table() {
    let env = Env::new();
    acceptance(&env, &[]);
    let all = env.json();
    let names: Vec<&str> = all.iter().map(|e| s(e, "name")).collect();
    assert_eq!(names, ["ca", "srv"], "templates are consumed by sign");
    assert!(all.iter().all(|e| e["template"] == false));

    let keys = [
        "name",
        "common-name",
        "subject",
        "issuer",
        "serial-number",
        "fingerprint",
        "invalid-before",
        "invalid-after",
        "expires-after",
        "key-type",
        "key-size",
        "key-usage",
        "subject-alt-name",
        "ca",
        "trusted",
        "private-key",
        "smart-card-key",
        "flags",
    ];
    for e in &all {
        for k in keys {
            assert!(e.get(k).is_some(), "{} has no {k}: {e}", s(e, "name"));
        }
        let fp = s(e, "fingerprint");
        assert!(fp.len() == 64 && is_hex(fp), "fingerprint {fp}");
        assert!(is_hex(s(e, "serial-number")));
        assert_eq!(e["private-key"], true);
        assert_eq!(e["smart-card-key"], "");
        assert!(!s(e, "expires-after").is_empty());
    }
    let (ca, srv) = (&all[0], &all[1]);
    assert_eq!(ca["flags"], "KAT");
    assert_eq!(srv["flags"], "KI");
    assert_eq!(ca["common-name"], "ca");
    assert_eq!(ca["subject"], "CN=ca");
    assert_eq!(ca["issuer"], "CN=ca");
    assert_eq!(ca["ca"], "");
    assert_eq!(ca["trusted"], true);
    assert_eq!(ca["key-type"], "rsa");
    assert_eq!(ca["key-size"], 2048, "RSA bits are a number");
    assert_eq!(ca["key-usage"], "key-cert-sign,crl-sign");
    assert_eq!(ca["ca-crl-host"], "127.0.0.1:8080");
    assert_eq!(
        json_time(ca, "invalid-after") - json_time(ca, "invalid-before"),
        3650 * DAY
    );
    assert_eq!(srv["common-name"], "srv.example");
    assert_eq!(srv["subject"], "CN=srv.example");
    assert_eq!(srv["issuer"], "CN=ca");
    assert_eq!(srv["ca"], "ca");
    assert_eq!(srv["trusted"], false);
    assert_eq!(srv["subject-alt-name"], "DNS:srv.example,IP:127.0.0.1");
    assert_eq!(
        srv["key-usage"],
        "digital-signature,key-encipherment,tls-server"
    );
    assert_eq!(
        srv["crl-distribution-point"],
        "http://127.0.0.1:8080/crl/ca.crl"
    );
    assert_eq!(
        json_time(srv, "invalid-after") - json_time(srv, "invalid-before"),
        365 * DAY
    );
    assert_ne!(ca["serial-number"], srv["serial-number"]);

    // The fingerprint is the SHA-256 of the DER, as OpenSSL computes it.
    for e in &all {
        let crt = env.export_cert(s(e, "name"));
        assert_eq!(openssl_fingerprint(&crt), s(e, "fingerprint"));
        assert_eq!(
            openssl_serial(&crt).to_ascii_uppercase(),
            s(e, "serial-number").to_ascii_uppercase()
        );
    }

    // The table: legend, header, one line per entry with the flag columns.
    let table = env.ok(&["print"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("Flags: K - private-key"), "{table}");
    assert!(lines[1].contains("NAME") && lines[1].contains("COMMON-NAME"));
    let ca_line = lines.iter().find(|l| l.contains(" ca ")).expect("ca line");
    assert!(ca_line.starts_with("0 K   A   T ca "), "{ca_line:?}");
    let srv_line = lines
        .iter()
        .find(|l| l.contains(" srv "))
        .expect("srv line");
    assert!(srv_line.starts_with("1 K    I    srv "), "{srv_line:?}");
    assert!(srv_line.contains("srv.example"));
    assert!(srv_line.contains(&s(srv, "fingerprint")[..16]));
    assert_eq!(lines.len(), 4, "{table}");
}

#[test]
fn print_selects_names_detail_and_sign_json() {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-type=ec",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    let out = env.ok(&["sign", "ca-tpl", "name=ca", "--json"]);
    let signed: Value = serde_json::from_str(&out).expect("sign --json is JSON");
    assert_eq!(signed["name"], "ca");
    assert_eq!(signed["flags"], "KAT");
    env.issue("leaf", "ca", &["key-type=ed25519"]);
    env.ok(&["add", "name=tpl", "common-name=t"]);

    let sel: Vec<Value> =
        serde_json::from_str(&env.ok(&["print", "--json", "leaf", "ca"])).unwrap();
    let names: Vec<&str> = sel.iter().map(|e| s(e, "name")).collect();
    assert_eq!(names, ["leaf", "ca"], "named entries in the order asked");
    let detail = env.ok(&["print", "detail", "leaf"]);
    assert!(detail.contains("name=\"leaf\""), "{detail}");
    assert!(detail.contains("ca=\"ca\""), "{detail}");
    assert!(!detail.contains("name=\"ca\""), "{detail}");
    let tpl = env.ok(&["print", "detail", "tpl"]);
    assert!(
        tpl.contains("template=yes") && tpl.contains("common-name=\"t\""),
        "{tpl}"
    );
    env.fail(&["print", "nope"], EXIT_NOT_FOUND);
    env.fail(&["print", "ca", "nope"], EXIT_NOT_FOUND);
}

// ------------------------------------------------------------------ 2. export + OpenSSL

#[test]
fn acceptance_exports_verify_with_openssl() {
    let env = Env::new();
    acceptance(&env, &[]);
    let ca = env.export_cert("ca");
    let srv = env.export_cert("srv");
    assert_eq!(
        env.work_files().into_iter().collect::<Vec<_>>(),
        ["cert_export_ca.crt", "cert_export_srv.crt"],
        "without a passphrase only the certificates are written"
    );
    assert_verifies(&ca, &srv);

    let ca_text = cert_text(&ca);
    let srv_text = cert_text(&srv);

    // CA: CA:TRUE critical, Certificate Sign + CRL Sign.
    assert!(extension_critical(&ca_text, "X509v3 Basic Constraints"));
    assert_eq!(
        extension_value(&ca_text, "X509v3 Basic Constraints"),
        "CA:TRUE"
    );
    assert_eq!(
        extension_value(&ca_text, "X509v3 Key Usage"),
        "Certificate Sign, CRL Sign"
    );
    assert!(extension_critical(&ca_text, "X509v3 Key Usage"));
    assert_eq!(signature_algorithm(&ca_text), "sha256WithRSAEncryption");
    assert!(ca_text.contains("Public-Key: (2048 bit)"));

    // Server: SAN, EKU, usages, CDP, AKI = CA's SKI.
    assert_eq!(
        extension_value(&srv_text, "X509v3 Subject Alternative Name"),
        "DNS:srv.example, IP Address:127.0.0.1"
    );
    assert_eq!(
        extension_value(&srv_text, "X509v3 Extended Key Usage"),
        "TLS Web Server Authentication"
    );
    assert_eq!(
        extension_value(&srv_text, "X509v3 Key Usage"),
        "Digital Signature, Key Encipherment"
    );
    assert_eq!(
        extension_value(&srv_text, "X509v3 Basic Constraints"),
        "CA:FALSE"
    );
    let cdp = extension_value(&srv_text, "X509v3 CRL Distribution Points");
    assert!(
        cdp.contains("URI:http://127.0.0.1:8080/crl/ca.crl"),
        "CDP: {cdp}"
    );
    let ski = norm_hex(&extension_value(&ca_text, "X509v3 Subject Key Identifier"));
    let aki = norm_hex(&extension_value(
        &srv_text,
        "X509v3 Authority Key Identifier",
    ));
    assert_eq!(ski.len(), 40, "SKI {ski}");
    assert_eq!(aki, ski, "AKI of srv must be the SKI of ca");
    assert!(srv_text.contains("Issuer: CN = ca"));
    assert!(srv_text.contains("Subject: CN = srv.example"));

    // Serials: positive, at least 64 bits, at most 20 octets.
    for crt in [&ca, &srv] {
        let serial = openssl_serial(crt);
        assert!(
            !serial.starts_with('-') && is_hex(&serial),
            "serial {serial}"
        );
        let bits = bit_len(&serial);
        assert!(
            (64..=159).contains(&bits),
            "serial {serial} has {bits} bits"
        );
    }
    assert_ne!(openssl_serial(&ca), openssl_serial(&srv));
}

#[test]
fn export_with_passphrase_writes_encrypted_key_of_the_certificate() {
    let env = Env::new();
    acceptance(&env, &[]);
    let before = env.work_files();
    assert!(before.is_empty());
    let out = env.ok(&[
        "export-certificate",
        "srv",
        "export-passphrase=correct horse",
    ]);
    assert!(out.contains("cert_export_srv.key"), "{out}");
    let key = env.path("cert_export_srv.key");
    let crt = env.path("cert_export_srv.crt");
    assert_eq!(mode(&key), 0o600);
    let pem = fs::read_to_string(&key).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{pem}"
    );
    assert!(pem
        .trim_end()
        .ends_with("-----END ENCRYPTED PRIVATE KEY-----"));
    assert_eq!(key_public_key(&key, "correct horse"), cert_public_key(&crt));
    // A wrong passphrase fails in OpenSSL.
    let wrong = openssl_output(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            "pass:correct horsf",
        ],
        Path::new("/"),
    );
    assert!(!wrong.status.success(), "opened with a wrong passphrase");
    // The CA key too, through the shared helper (mode, label, pubkey, wrong pass).
    assert_exported_key_matches(&env, "ca");
    assert_verifies(&env.path("cert_export_ca.crt"), &crt);
}

#[test]
fn export_passphrase_sources_file_env_and_fd() {
    let env = Env::new();
    env.ok(&["add", "name=k", "common-name=k", "key-type=ec"]);
    env.ok(&["sign", "k"]);

    // file: (one trailing newline is not part of the passphrase), outside work/
    let pass_file = env.root().join("pass.txt");
    fs::write(&pass_file, "from-a-file\n").unwrap();
    env.ok(&[
        "export-certificate",
        "k",
        &format!("export-passphrase-source=file:{}", pass_file.display()),
        "file-name=viafile",
    ]);
    let crt = env.path("viafile.crt");
    assert_eq!(
        key_public_key(&env.path("viafile.key"), "from-a-file"),
        cert_public_key(&crt)
    );

    // env:
    let out = env
        .command(&[
            "export-certificate",
            "k",
            "export-passphrase-source=env:CERTMAN_IT_PASS",
            "file-name=viaenv",
        ])
        .env("CERTMAN_IT_PASS", "from-the-env")
        .output()
        .unwrap();
    assert_success(&out, "export with env: source");
    assert_eq!(
        key_public_key(&env.path("viaenv.key"), "from-the-env"),
        cert_public_key(&crt)
    );

    // fd:0 (stdin as the inherited descriptor)
    let mut child = env
        .command(&[
            "export-certificate",
            "k",
            "export-passphrase-source=fd:0",
            "file-name=viafd",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-a-descriptor")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "export with fd: source");
    assert_eq!(
        key_public_key(&env.path("viafd.key"), "from-a-descriptor"),
        cert_public_key(&crt)
    );
    for k in ["viafile.key", "viaenv.key", "viafd.key"] {
        assert_eq!(mode(&env.path(k)), 0o600, "{k}");
    }
}

#[test]
fn export_file_name_sets_both_file_names() {
    let env = Env::new();
    env.ok(&["add", "name=k", "common-name=k", "key-type=ec"]);
    env.ok(&["sign", "k"]);
    env.ok(&[
        "export-certificate",
        "k",
        "file-name=foo",
        "export-passphrase=foopass1",
    ]);
    assert_eq!(
        env.work_files().into_iter().collect::<Vec<_>>(),
        ["foo.crt", "foo.key"]
    );
    assert_eq!(
        key_public_key(&env.path("foo.key"), "foopass1"),
        cert_public_key(&env.path("foo.crt"))
    );
    // --long spelling, certificate only
    env.ok(&[
        "export-certificate",
        "k",
        "--file-name",
        "bar",
        "--type",
        "pem",
    ]);
    assert!(env.path("bar.crt").is_file());
    assert!(!env.path("bar.key").exists());
    assert_eq!(
        fs::read(env.path("bar.crt")).unwrap(),
        fs::read(env.path("foo.crt")).unwrap()
    );
}

// ------------------------------------------------------------------ 3. key types

fn chain_checked(env: &Env, ca: &str, leaf: &str) -> (String, String) {
    let ca_crt = env.export_cert(ca);
    let leaf_crt = env.export_cert(leaf);
    assert_verifies(&ca_crt, &leaf_crt);
    (cert_text(&ca_crt), cert_text(&leaf_crt))
}

#[test]
fn chain_ec_prime256v1() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec", "key-size=prime256v1"]);
    let (ca, srv) = chain_checked(&env, "ca", "srv");
    assert_eq!(signature_algorithm(&ca), "ecdsa-with-SHA256");
    assert_eq!(signature_algorithm(&srv), "ecdsa-with-SHA256");
    assert_eq!(public_key_algorithm(&srv), "id-ecPublicKey");
    assert!(ca.contains("ASN1 OID: prime256v1") && srv.contains("ASN1 OID: prime256v1"));
    let e = env.entry("srv");
    assert_eq!((s(&e, "key-type"), s(&e, "key-size")), ("ec", "prime256v1"));
    assert_exported_key_matches(&env, "srv");
    assert_exported_key_matches(&env, "ca");
}

#[test]
fn chain_ec_secp384r1() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec", "key-size=secp384r1"]);
    let (ca, srv) = chain_checked(&env, "ca", "srv");
    assert_eq!(signature_algorithm(&ca), "ecdsa-with-SHA384");
    assert_eq!(signature_algorithm(&srv), "ecdsa-with-SHA384");
    assert!(ca.contains("ASN1 OID: secp384r1") && srv.contains("ASN1 OID: secp384r1"));
    assert_eq!(env.entry("ca")["key-size"], "secp384r1");
    assert_exported_key_matches(&env, "srv");
}

#[test]
fn chain_rsa4096_ca_with_ed25519_leaf() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=rsa", "key-size=4096"]);
    env.issue(
        "leaf",
        "ca",
        &["key-type=ed25519", "subject-alt-name=DNS:leaf.example"],
    );
    let (ca, leaf) = chain_checked(&env, "ca", "leaf");
    assert!(ca.contains("Public-Key: (4096 bit)"), "{ca}");
    assert_eq!(signature_algorithm(&ca), "sha256WithRSAEncryption");
    assert_eq!(public_key_algorithm(&leaf), "ED25519");
    assert_eq!(signature_algorithm(&leaf), "sha256WithRSAEncryption");
    assert_eq!(
        extension_value(&leaf, "X509v3 Key Usage"),
        "Digital Signature",
        "the Ed25519 leaf default usage"
    );
    let e = env.entry("leaf");
    assert_eq!(
        (s(&e, "key-type"), e["flags"].as_str()),
        ("ed25519", Some("KI"))
    );
    assert_eq!(env.entry("ca")["key-size"], 4096);
    assert_exported_key_matches(&env, "leaf");
}

#[test]
fn chain_ed25519_ca() {
    let env = Env::new();
    env.make_ca("edca", &["key-type=ed25519"]);
    env.issue("leaf", "edca", &["key-type=ec"]);
    let (ca, leaf) = chain_checked(&env, "edca", "leaf");
    assert_eq!(public_key_algorithm(&ca), "ED25519");
    assert_eq!(signature_algorithm(&ca), "ED25519");
    assert_eq!(signature_algorithm(&leaf), "ED25519");
    assert_exported_key_matches(&env, "edca");
}

#[test]
fn secp521r1_and_rsa1024_leaves() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.issue("p521", "ca", &["key-type=ec", "key-size=secp521r1"]);
    env.issue("rsa1k", "ca", &["key-type=rsa", "key-size=1024"]);
    let (_, p521) = chain_checked(&env, "ca", "p521");
    assert!(p521.contains("ASN1 OID: secp521r1"), "{p521}");
    assert_eq!(signature_algorithm(&p521), "ecdsa-with-SHA256");
    let rsa_crt = env.export_cert("rsa1k");
    assert_verifies(&env.path("cert_export_ca.crt"), &rsa_crt);
    let rsa = cert_text(&rsa_crt);
    assert!(rsa.contains("Public-Key: (1024 bit)"), "{rsa}");
    assert_eq!(public_key_algorithm(&rsa), "rsaEncryption");
    assert_eq!(
        extension_value(&rsa, "X509v3 Key Usage"),
        "Digital Signature, Key Encipherment, Data Encipherment"
    );
    assert_eq!(env.entry("rsa1k")["key-size"], 1024);
    assert_eq!(env.entry("p521")["key-size"], "secp521r1");
    assert_exported_key_matches(&env, "p521");
    assert_exported_key_matches(&env, "rsa1k");
}

#[test]
fn p521_ca_signs_with_sha512() {
    let env = Env::new();
    env.make_ca("ca521", &["key-type=ec", "key-size=secp521r1"]);
    env.issue("leaf", "ca521", &["key-type=ec"]);
    let (ca, leaf) = chain_checked(&env, "ca521", "leaf");
    assert!(ca.contains("ASN1 OID: secp521r1"));
    assert_eq!(signature_algorithm(&ca), "ecdsa-with-SHA512");
    assert_eq!(signature_algorithm(&leaf), "ecdsa-with-SHA512");
    assert_exported_key_matches(&env, "ca521");
}

#[test]
fn digest_algorithm_chooses_the_rsa_signature_hash() {
    let env = Env::new();
    env.make_ca("rsaca", &[]);
    env.issue(
        "sha384",
        "rsaca",
        &["key-type=ec", "digest-algorithm=sha384"],
    );
    env.issue(
        "sha512",
        "rsaca",
        &["key-type=ec", "digest-algorithm=sha512"],
    );
    let (_, leaf) = chain_checked(&env, "rsaca", "sha384");
    assert_eq!(signature_algorithm(&leaf), "sha384WithRSAEncryption");
    assert_eq!(env.entry("sha384")["digest-algorithm"], "sha384");
    let (_, leaf) = chain_checked(&env, "rsaca", "sha512");
    assert_eq!(signature_algorithm(&leaf), "sha512WithRSAEncryption");
}

/// digest-algorithm=sha512 on a template issued by a P-256 CA: either the certificate is
/// signed with ecdsa-with-SHA512 (OpenSSL does that), or `sign` refuses it as a bad value
/// (exit 2) before anything happens, as it does for an Ed25519 CA — not a failure from
/// inside the certificate builder with exit 1.
#[test]
fn digest_algorithm_the_ec_ca_does_not_offer() {
    let env = Env::new();
    env.make_ca("ca256", &["key-type=ec"]);
    env.ok(&[
        "add",
        "name=sha512",
        "common-name=sha512",
        "key-type=ec",
        "digest-algorithm=sha512",
    ]);
    let before = env.snapshot();
    let out = env.run(&["sign", "sha512", "ca=ca256"]);
    // Software P-256 signs with SHA-256 only: refused up front as a bad value.
    let err = assert_error(&out, EXIT_USAGE, "sign sha512 ca=ca256");
    assert!(err.contains("digest-algorithm"), "{err}");
    assert!(
        !err.contains("certificate builder"),
        "refuse up front, not from inside the builder: {err}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn subject_fields_and_every_san_type() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.issue(
        "full",
        "ca",
        &[
            "key-type=ec",
            "country=LV",
            "state=Riga",
            "locality=Riga",
            "organization=Example Org",
            "unit=Ops",
            "subject-alt-name=DNS:a.example,IP:2001:db8::1,email:ops@a.example,URI:https://a.example/x",
            "key-usage=digital-signature,tls-client,tls-server",
        ],
    );
    let (_, text) = chain_checked(&env, "ca", "full");
    assert!(
        text.contains("Subject: C = LV, ST = Riga, L = Riga, O = Example Org, OU = Ops, CN = full"),
        "{text}"
    );
    assert_eq!(
        extension_value(&text, "X509v3 Subject Alternative Name"),
        "DNS:a.example, IP Address:2001:DB8:0:0:0:0:0:1, email:ops@a.example, URI:https://a.example/x"
    );
    let mut eku: Vec<String> = extension_value(&text, "X509v3 Extended Key Usage")
        .split(", ")
        .map(str::to_owned)
        .collect();
    eku.sort();
    assert_eq!(
        eku,
        [
            "TLS Web Client Authentication",
            "TLS Web Server Authentication"
        ]
    );
    let e = env.entry("full");
    assert_eq!(e["country"], "LV");
    assert_eq!(e["organization"], "Example Org");
    assert_eq!(e["unit"], "Ops");
    assert!(s(&e, "subject").contains("CN=full"));
}

// ------------------------------------------------------------------ 4. remove

#[test]
fn remove_issued_certificate_is_refused_and_changes_nothing() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    let before = env.snapshot();
    let raw_before = env.ok(&["print", "--json"]);
    let err = env.fail(&["remove", "srv"], EXIT_REFUSED);
    assert!(err.contains("issued-revoke"), "{err}");
    assert!(err.contains("srv"), "{err}");
    assert_eq!(env.snapshot(), before);
    // byte-identical except for the expires-after countdown
    let raw_after = env.ok(&["print", "--json"]);
    let strip = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.contains("\"expires-after\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&raw_after), strip(&raw_before));
}

#[test]
fn remove_ca_takes_its_issued_certificates() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    env.ok(&["add", "name=keep", "common-name=keep"]);
    env.make_ca("other", &["key-type=ec"]);
    let out = env.ok(&["remove", "ca", "--json"]);
    let report: Value = serde_json::from_str(&out).expect("remove --json");
    let mut removed: Vec<&str> = report["certificates-removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(removed.last(), Some(&"ca"), "issued before their CA");
    removed.sort();
    assert_eq!(removed, ["ca", "srv"]);
    assert_eq!(env.names(), ["keep", "other"]);
    env.fail(&["export-certificate", "srv"], EXIT_NOT_FOUND);
    // a CA given together with its issued certificate
    env.issue("o-leaf", "other", &["key-type=ec"]);
    env.ok(&["remove", "other", "o-leaf"]);
    assert_eq!(env.names(), ["keep"]);
}

#[test]
fn remove_root_of_intermediate_chain() {
    let env = Env::new();
    env.make_ca("root", &["key-type=ec"]);
    env.ok(&[
        "add",
        "name=inter",
        "common-name=inter",
        "key-type=ec",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    env.ok(&["sign", "inter", "ca=root"]);
    env.issue("leaf", "inter", &["key-type=ec"]);
    env.ok(&["add", "name=keep", "common-name=keep"]);

    let root = env.export_cert("root");
    let inter = env.export_cert("inter");
    let leaf = env.export_cert("leaf");
    assert_verifies_chain(&root, &[&inter], &leaf);
    let inter_text = cert_text(&inter);
    assert_eq!(
        extension_value(&inter_text, "X509v3 Basic Constraints"),
        "CA:TRUE"
    );
    assert_eq!(env.entry("inter")["flags"], "KAI");
    assert_eq!(env.entry("inter")["ca"], "root");
    assert_eq!(env.entry("leaf")["ca"], "inter");

    let before = env.snapshot();
    let err = env.fail(&["remove", "inter"], EXIT_REFUSED);
    assert!(err.contains("issued-revoke"), "{err}");
    env.fail(&["remove", "leaf"], EXIT_REFUSED);
    assert_eq!(env.snapshot(), before);

    let out = env.ok(&["remove", "root"]);
    for n in ["root", "inter", "leaf"] {
        assert!(out.contains(n), "remove output names {n}: {out}");
    }
    assert_eq!(env.names(), ["keep"]);
}

#[test]
fn remove_unknown_name_is_all_or_nothing() {
    let env = Env::new();
    env.ok(&["add", "name=t1", "common-name=t1"]);
    env.make_ca("ca", &["key-type=ec"]);
    let before = env.snapshot();
    for args in [
        vec!["remove", "t1", "ca", "nope"],
        vec!["remove", "nope", "t1"],
        vec!["remove", "ca", "nope"],
        vec!["remove", "t1", "nope"],
    ] {
        let err = env.fail(&args, EXIT_NOT_FOUND);
        assert!(err.contains("nope"), "{err}");
        assert_eq!(env.snapshot(), before, "{args:?} changed the store");
    }
    assert_eq!(env.names(), ["t1", "ca"]);
}

#[test]
fn remove_template() {
    let env = Env::new();
    env.ok(&["add", "name=t1", "common-name=t1"]);
    env.ok(&["add", "name=t2", "common-name=t2"]);
    let out = env.ok(&["remove", "t1"]);
    assert!(out.contains("t1"), "{out}");
    assert_eq!(env.names(), ["t2"]);
    env.fail(&["sign", "t1"], EXIT_NOT_FOUND);
    // the name is free again
    env.ok(&["add", "name=t1", "common-name=again"]);
    assert_eq!(env.entry("t1")["common-name"], "again");
}

// ------------------------------------------------------------------ 5. bad input

/// Runs each case, requiring its exit code, an error line containing `needle`, and no change.
fn refused_without_change(env: &Env, cases: &[(&[&str], i32, &str)]) {
    let before = env.snapshot();
    for (args, code, needle) in cases {
        let err = env.fail(args, *code);
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: error does not mention {needle:?}: {err}"
        );
        assert_eq!(
            env.snapshot(),
            before,
            "{args:?} changed the store or wrote files"
        );
    }
}

#[test]
fn bad_template_values_are_usage_errors() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    env.ok(&["add", "name=tpl", "common-name=tpl"]);
    refused_without_change(
        &env,
        &[
            (&["add", "name=x", "colour=red"], EXIT_USAGE, "colour"),
            (&["add", "name=x", "--colour", "red"], EXIT_USAGE, "colour"),
            (&["add", "name=x", "key-size=1000"], EXIT_USAGE, "key-size"),
            (
                &["add", "name=x", "key-type=rsa", "key-size=1000"],
                EXIT_USAGE,
                "key-size",
            ),
            (
                &["add", "name=x", "key-type=ec", "key-size=2048"],
                EXIT_USAGE,
                "key-size",
            ),
            (
                &["add", "name=x", "key-type=ed25519", "key-size=4096"],
                EXIT_USAGE,
                "key-size",
            ),
            (&["add", "name=x", "key-type=dsa"], EXIT_USAGE, "key-type"),
            (&["add", "name=x", "days-valid=0"], EXIT_USAGE, "days-valid"),
            (
                &["add", "name=x", "days-valid=ten"],
                EXIT_USAGE,
                "days-valid",
            ),
            (&["add", "name=x", "key-usage=bogus"], EXIT_USAGE, "bogus"),
            (
                &["add", "name=x", "key-usage=tls-server,flying"],
                EXIT_USAGE,
                "flying",
            ),
            (
                &["add", "name=x", "subject-alt-name=nodomainprefix"],
                EXIT_USAGE,
                "subject-alt-name",
            ),
            (
                &["add", "name=x", "subject-alt-name=IP:999.1.1.1"],
                EXIT_USAGE,
                "999.1.1.1",
            ),
            (&["add", "name=x", "country=LVA"], EXIT_USAGE, "LVA"),
            (&["add", "name=x", "trusted=maybe"], EXIT_USAGE, "trusted"),
            (
                &["add", "name=x", "digest-algorithm=md5"],
                EXIT_USAGE,
                "md5",
            ),
            (&["add", "name=a/b"], EXIT_USAGE, "a/b"),
            (&["add", "name=x", "copy-from=nope"], EXIT_NOT_FOUND, "nope"),
            (&["add", "name=srv", "common-name=dup"], EXIT_REFUSED, "srv"),
            (&["add", "name=tpl", "common-name=dup"], EXIT_REFUSED, "tpl"),
        ],
    );
}

#[test]
fn sign_errors_leave_template_and_store_alone() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    env.make_ca("edca", &["key-type=ed25519"]);
    env.ok(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]);
    env.ok(&[
        "add",
        "name=hashed",
        "common-name=hashed",
        "key-type=ec",
        "digest-algorithm=sha384",
    ]);
    env.ok(&[
        "add",
        "name=notca",
        "common-name=notca",
        "key-type=ec",
        "key-usage=digital-signature",
    ]);
    refused_without_change(
        &env,
        &[
            (&["sign", "nope"], EXIT_NOT_FOUND, "nope"),
            (&["sign", "leaf", "ca=nope"], EXIT_NOT_FOUND, "nope"),
            (
                &["sign", "leaf", "ca=srv"],
                EXIT_REFUSED,
                "not a certificate authority",
            ),
            (&["sign", "leaf", "name=srv"], EXIT_REFUSED, "srv"),
            (&["sign", "leaf", "name=hashed"], EXIT_REFUSED, "hashed"),
            (
                &["sign", "leaf", "ca=ca", "ca-crl-host=127.0.0.1:8080"],
                EXIT_USAGE,
                "ca-crl-host",
            ),
            (
                &["sign", "notca", "ca-crl-host=127.0.0.1:8080"],
                EXIT_USAGE,
                "ca-crl-host",
            ),
            (
                &["sign", "leaf", "ca-crl-host=host/x"],
                EXIT_USAGE,
                "ca-crl-host",
            ),
            (
                &["sign", "leaf", "ca-crl-host=host:99999"],
                EXIT_USAGE,
                "ca-crl-host",
            ),
            (&["sign", "hashed", "ca=edca"], EXIT_USAGE, "ed25519"),
            (&["sign", "leaf", "on-smart-card=yes"], EXIT_TOKEN, "token"),
            (&["sign", "leaf", "template=leaf"], EXIT_USAGE, "template"),
            (&["sign", "leaf", "colour=red"], EXIT_USAGE, "colour"),
        ],
    );
    // and the templates still sign afterwards
    env.ok(&["sign", "leaf", "ca=ca"]);
    assert_eq!(env.entry("leaf")["flags"], "KI");
    // a CA without a private key cannot be made through the CLI yet (no import): not tested.
}

#[test]
fn set_errors_change_nothing() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    env.ok(&["add", "name=tpl", "common-name=tpl", "key-type=ec"]);
    refused_without_change(
        &env,
        &[
            (&["set", "ca", "common-name=x"], EXIT_REFUSED, "read-only"),
            (&["set", "ca", "days-valid=10"], EXIT_REFUSED, "read-only"),
            (
                &["set", "srv", "key-usage=tls-client"],
                EXIT_REFUSED,
                "read-only",
            ),
            (&["set", "ca", "name=srv"], EXIT_REFUSED, "srv"),
            (&["set", "ca", "name=tpl"], EXIT_REFUSED, "tpl"),
            (&["set", "tpl", "name=ca"], EXIT_REFUSED, "ca"),
            (&["set", "ca", "name=a/b"], EXIT_USAGE, "a/b"),
            (&["set", "nope", "trusted=no"], EXIT_NOT_FOUND, "nope"),
            (&["set", "ca", "trusted=maybe"], EXIT_USAGE, "trusted"),
            (&["set", "ca", "colour=red"], EXIT_USAGE, "colour"),
            (&["set", "ca"], EXIT_USAGE, "nothing to set"),
            (&["set", "tpl", "key-size=1000"], EXIT_USAGE, "key-size"),
            (&["set", "tpl", "days-valid=0"], EXIT_USAGE, "days-valid"),
            (&["set", "tpl", "country=LVA"], EXIT_USAGE, "LVA"),
            // one bad change spoils the whole set
            (
                &["set", "tpl", "common-name=new", "key-usage=bogus"],
                EXIT_USAGE,
                "bogus",
            ),
            (
                &["set", "ca", "trusted=no", "common-name=x"],
                EXIT_REFUSED,
                "read-only",
            ),
        ],
    );
}

#[test]
fn export_errors_write_nothing() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    env.ok(&["add", "name=tpl", "common-name=tpl"]);
    let missing = env.root().join("no-such-pass-file");
    let missing = format!("export-passphrase-source=file:{}", missing.display());
    refused_without_change(
        &env,
        &[
            (&["export-certificate", "nope"], EXIT_NOT_FOUND, "nope"),
            (&["export-certificate", "tpl"], EXIT_NOT_FOUND, "tpl"),
            (
                &[
                    "export-certificate",
                    "ca",
                    "export-passphrase-source=env:CERTMAN_IT_UNSET_VAR",
                ],
                EXIT_USAGE,
                "CERTMAN_IT_UNSET_VAR",
            ),
            (
                &["export-certificate", "ca", missing.as_str()],
                EXIT_USAGE,
                "no-such-pass-file",
            ),
            (
                &[
                    "export-certificate",
                    "ca",
                    "export-passphrase-source=pin:1234",
                ],
                EXIT_USAGE,
                "source",
            ),
            (
                &["export-certificate", "ca", "export-passphrase="],
                EXIT_USAGE,
                "empty",
            ),
            (
                &[
                    "export-certificate",
                    "ca",
                    "export-passphrase=x",
                    "export-passphrase-source=env:HOME",
                ],
                EXIT_USAGE,
                "export-passphrase",
            ),
            (&["export-certificate", "ca", "type=der"], EXIT_USAGE, "der"),
            (
                &["export-certificate", "ca", "colour=red"],
                EXIT_USAGE,
                "colour",
            ),
        ],
    );
    assert!(env.work_files().is_empty());
}

#[test]
fn missing_required_argument_is_named() {
    let env = Env::new();
    let err = env.fail(&["add", "common-name=x"], EXIT_USAGE);
    assert!(err.contains("name"), "{err}");
    let err = env.fail(&["remove"], EXIT_USAGE);
    assert!(err.contains("NAME"), "{err}");
    let err = env.fail(&["sign"], EXIT_USAGE);
    assert!(err.contains("TEMPLATE"), "{err}");
    assert!(env.names().is_empty());
}

// ------------------------------------------------------------------ 6. set

#[test]
fn set_renames_certificate_and_issued_follow() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    let fp_ca = env.entry("ca")["fingerprint"].clone();
    let fp_srv = env.entry("srv")["fingerprint"].clone();
    env.ok(&["set", "ca", "name=root"]);
    assert_eq!(env.names(), ["root", "srv"]);
    let root = env.entry("root");
    assert_eq!(root["flags"], "KAT");
    assert_eq!(root["fingerprint"], fp_ca, "renaming does not re-sign");
    let srv = env.entry("srv");
    assert_eq!(srv["ca"], "root");
    assert_eq!(srv["fingerprint"], fp_srv);
    // the renamed CA signs under its new name only
    env.ok(&["add", "name=l2", "common-name=l2", "key-type=ec"]);
    env.fail(&["sign", "l2", "ca=ca"], EXIT_NOT_FOUND);
    env.ok(&["sign", "l2", "ca=root"]);
    assert_eq!(env.entry("l2")["ca"], "root");
    let root_crt = env.export_cert("root");
    assert_verifies(&root_crt, &env.export_cert("l2"));
    assert_verifies(&root_crt, &env.export_cert("srv"));
    // the certificate issued before the rename is unchanged, CDP included
    assert_eq!(
        srv["crl-distribution-point"],
        "http://127.0.0.1:8080/crl/ca.crl"
    );
    // rename an issued certificate
    env.ok(&["set", "srv", "--name", "web"]);
    assert_eq!(env.names(), ["root", "web", "l2"]);
    assert_eq!(env.entry("web")["ca"], "root");
}

#[test]
fn set_trusted_toggles_t() {
    let env = Env::new();
    acceptance(&env, &["key-type=ec"]);
    let fp = env.entry("ca")["fingerprint"].clone();
    env.ok(&["set", "ca", "trusted=no"]);
    let ca = env.entry("ca");
    assert_eq!(ca["flags"], "KA");
    assert_eq!(ca["trusted"], false);
    assert_eq!(ca["fingerprint"], fp);
    let table = env.ok(&["print"]);
    assert!(
        table.lines().any(|l| l.starts_with("0 K   A     ca ")),
        "{table}"
    );
    env.ok(&["set", "srv", "trusted=yes"]);
    assert_eq!(env.entry("srv")["flags"], "KIT");
    env.ok(&["set", "ca", "--trusted", "yes"]);
    assert_eq!(env.entry("ca")["flags"], "KAT");
}

#[test]
fn set_changes_template_properties() {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=t",
        "common-name=a",
        "key-type=ec",
        "country=LV",
    ]);
    let t = env.entry("t");
    assert_eq!(t["template"], true);
    assert_eq!(t["flags"], "");
    assert_eq!(t["common-name"], "a");
    env.ok(&[
        "set",
        "t",
        "common-name=b",
        "days-valid=30",
        "key-usage=digital-signature,tls-client",
        "subject-alt-name=DNS:b.example",
        "country=",
    ]);
    let t = env.entry("t");
    assert_eq!(t["template"], true);
    assert_eq!(t["flags"], "");
    assert_eq!(t["common-name"], "b");
    assert_eq!(t["days-valid"], 30);
    assert_eq!(t["key-usage"], "digital-signature,tls-client");
    assert_eq!(t["subject-alt-name"], "DNS:b.example");
    assert_eq!(t["key-type"], "ec");
    assert!(t.get("country").is_none(), "an empty value clears: {t}");

    env.ok(&["set", "t", "name=t2"]);
    assert_eq!(env.names(), ["t2"]);
    env.ok(&["sign", "t2"]);
    let c = env.entry("t2");
    assert_eq!(c["template"], false);
    assert_eq!(
        c["flags"], "K",
        "self-signed with a non-CA key-usage: no A, no T"
    );
    assert_eq!(c["common-name"], "b");
    let crt = env.export_cert("t2");
    let text = cert_text(&crt);
    assert!(text.contains("Subject: CN = b"), "{text}");
    assert_eq!(
        extension_value(&text, "X509v3 Extended Key Usage"),
        "TLS Web Client Authentication"
    );
    assert_eq!(
        extension_value(&text, "X509v3 Basic Constraints"),
        "CA:FALSE"
    );
    let (nb, na) = openssl_dates(&crt);
    assert_eq!(na - nb, 30 * DAY);
}

// ------------------------------------------------------------------ 7. copy-from

#[test]
fn copy_from_template_keeps_its_properties() {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "days-valid=3650",
        "key-type=ec",
    ]);
    env.ok(&["add", "name=t2", "copy-from=ca-tpl", "common-name=other"]);
    let t2 = env.entry("t2");
    assert_eq!(t2["common-name"], "other");
    assert_eq!(t2["key-usage"], "key-cert-sign,crl-sign");
    assert_eq!(t2["days-valid"], 3650);
    assert_eq!(t2["key-type"], "ec");
    assert_eq!(env.entry("ca-tpl")["common-name"], "ca", "source unchanged");
    env.ok(&["sign", "t2"]);
    let crt = env.export_cert("t2");
    let (nb, na) = openssl_dates(&crt);
    assert_eq!(na - nb, 3650 * DAY);
    let text = cert_text(&crt);
    assert!(text.contains("Subject: CN = other"));
    assert_eq!(
        extension_value(&text, "X509v3 Key Usage"),
        "Certificate Sign, CRL Sign"
    );
}

#[test]
fn copy_from_certificate_takes_what_it_was_made_of() {
    let env = Env::new();
    env.make_ca(
        "ca",
        &["key-type=ec", "key-size=secp384r1", "days-valid=700"],
    );
    env.ok(&["add", "name=again", "copy-from=ca"]);
    let t = env.entry("again");
    assert_eq!(t["template"], true);
    assert_eq!(t["common-name"], "ca");
    assert_eq!(t["key-usage"], "key-cert-sign,crl-sign");
    assert_eq!(t["key-type"], "ec");
    assert_eq!(t["key-size"], "secp384r1");
    assert_eq!(t["days-valid"], 700);
}

// ------------------------------------------------------------------ 8. both spellings

#[test]
fn both_spellings_are_equivalent() {
    let env = Env::new();
    env.ok(&[
        "add",
        "--name",
        "x",
        "--common-name",
        "y",
        "--key-type",
        "ec",
        "--key-usage",
        "key-cert-sign,crl-sign",
    ]);
    env.ok(&[
        "add",
        "name=x2",
        "common-name=y",
        "key-type=ec",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    let strip = |mut v: Value| {
        let m = v.as_object_mut().unwrap();
        m.remove("name");
        m.remove("#");
        v
    };
    assert_eq!(strip(env.entry("x")), strip(env.entry("x2")));

    env.ok(&["sign", "template=x"]);
    env.ok(&["sign", "--template", "x2"]);
    let (a, b) = (env.entry("x"), env.entry("x2"));
    for k in [
        "flags",
        "common-name",
        "key-type",
        "key-size",
        "key-usage",
        "subject",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(a["flags"], "KAT");
    assert_eq!(a["key-type"], "ec");

    // issuing with --ca and ca= alike, mixed spellings in one command
    env.ok(&[
        "add",
        "--name=l1",
        "common-name=l1",
        "--key-type",
        "ed25519",
    ]);
    env.ok(&["sign", "l1", "--ca", "x", "--name", "leaf1"]);
    env.ok(&["add", "name=l2", "--common-name", "l2", "key-type=ed25519"]);
    env.ok(&["sign", "template=l2", "ca=x2", "name=leaf2"]);
    assert_eq!(env.entry("leaf1")["ca"], "x");
    assert_eq!(env.entry("leaf2")["ca"], "x2");
    assert_eq!(env.names(), ["x", "x2", "leaf1", "leaf2"]);
}

#[test]
fn global_store_option_before_or_after_the_command() {
    let env = Env::new();
    let other = env.root().join("other-store");
    let other_s = other.to_str().unwrap();
    env.ok(&["--store", other_s, "add", "name=elsewhere", "common-name=e"]);
    env.ok(&["add", "name=here", "common-name=h"]);
    assert_eq!(env.names(), ["here"]);
    let out = env.ok(&["print", "--json", "--store", other_s]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "elsewhere");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(other.join("certman.db").is_file());
}

#[test]
fn a_missing_store_is_refused_unless_the_command_makes_one() {
    let env = Env::new();
    let typo = env.root().join("stroe");
    let typo_s = typo.to_str().unwrap();
    // Commands that read or change what is there: exit 3, one line and a hint, nothing made.
    for args in [
        &["print"][..],
        &["print", "detail"],
        &["sign", "t"],
        &["remove", "t"],
        &["set", "t", "trusted=yes"],
        &["settings", "print"],
        &["crl", "print"],
        &["scep-server", "print"],
        &["export-certificate", "t"],
    ] {
        let err = env.fail(&[&["--store", typo_s][..], args].concat(), EXIT_NOT_FOUND);
        assert!(
            err.contains(&format!("no store at {typo_s}")),
            "{args:?}: {err}"
        );
        assert!(err.contains("--create"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} made {}", typo.display());
    }
    // An existing directory without a store is no store either, and keeps its mode.
    let plain = env.root().join("plain");
    fs::create_dir(&plain).unwrap();
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    let before = mode(&plain);
    env.fail(
        &["--store", plain.to_str().unwrap(), "print"],
        EXIT_NOT_FOUND,
    );
    assert_eq!(fs::read_dir(&plain).unwrap().count(), 0);
    assert_eq!(mode(&plain), before);
    // --create makes it, for any command (before or after the command).
    env.ok(&["settings", "print", "--create", "--store", typo_s]);
    assert!(typo.join("certman.db").is_file());
    assert_eq!(mode(&typo), 0o700);
    env.ok(&["--store", typo_s, "print"]);
    // add (and import) make the store they are the first thing in.
    let fresh = env.root().join("fresh");
    let fresh_s = fresh.to_str().unwrap();
    env.ok(&["--store", fresh_s, "add", "name=t", "common-name=t"]);
    env.ok(&["--store", fresh_s, "sign", "t"]);
    let imported = env.root().join("imported");
    env.ok(&["--store", fresh_s, "export-certificate", "t"]);
    env.ok(&[
        "--store",
        imported.to_str().unwrap(),
        "import",
        "file-name=cert_export_t.crt",
    ]);
    assert!(imported.join("certman.db").is_file());
}

// ------------------------------------------------------------------ 9. defaults

#[test]
fn defaults_self_signed_without_key_usage_is_a_ca_for_365_days() {
    let env = Env::new();
    env.ok(&["add", "name=d", "common-name=d"]);
    env.ok(&["sign", "d"]);
    let d = env.entry("d");
    assert_eq!(d["flags"], "KAT");
    assert_eq!(d["authority"], true);
    assert_eq!(d["trusted"], true);
    assert_eq!(d["key-type"], "rsa", "default key type");
    assert_eq!(d["key-size"], 2048, "default key size");
    assert_eq!(d["days-valid"], 365);
    assert_eq!(
        json_time(&d, "invalid-after") - json_time(&d, "invalid-before"),
        365 * DAY
    );
    let crt = env.export_cert("d");
    let (nb, na) = openssl_dates(&crt);
    assert_eq!(na - nb, 365 * DAY);
    assert_eq!(nb, json_time(&d, "invalid-before"));
    let text = cert_text(&crt);
    assert!(text.contains("Public-Key: (2048 bit)"));
    assert!(extension_critical(&text, "X509v3 Basic Constraints"));
    assert_eq!(
        extension_value(&text, "X509v3 Basic Constraints"),
        "CA:TRUE"
    );
    // digitalSignature too: such a CA signs SCEP replies, and OpenSSL-based SCEP clients
    // refuse a reply signer without it (the seed's basic SCEP example uses this CA).
    assert_eq!(
        extension_value(&text, "X509v3 Key Usage"),
        "Digital Signature, Certificate Sign, CRL Sign"
    );
}

#[test]
fn defaults_issued_leaf_gets_key_type_usages() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.issue("e", "ca", &["key-type=ec"]);
    let e = env.entry("e");
    assert_eq!(e["flags"], "KI");
    assert_eq!(e["authority"], false);
    assert_eq!(e["trusted"], false);
    let (_, text) = chain_checked(&env, "ca", "e");
    assert_eq!(
        extension_value(&text, "X509v3 Basic Constraints"),
        "CA:FALSE"
    );
    assert_eq!(
        extension_value(&text, "X509v3 Key Usage"),
        "Digital Signature, Key Agreement"
    );
    assert!(extension(&text, "X509v3 Extended Key Usage").is_none());
}

/// RouterOS takes days-valid up to 4294967295. A value whose end lies after 9999-12-31 is
/// either refused by `add` as a bad value (exit 2), or `sign` caps it / refuses it as a bad
/// value (exit 2, template kept) — not an "operation failed" (exit 1) from a template that
/// `add` accepted.
#[test]
fn days_valid_beyond_year_9999() {
    let env = Env::new();
    let before = env.snapshot();
    let out = env.run(&[
        "add",
        "name=big",
        "common-name=big",
        "key-type=ec",
        "days-valid=4000000000",
    ]);
    // Refused at `add`: the certificate would end after 9999-12-31.
    let err = assert_error(&out, EXIT_USAGE, "add days-valid=4000000000");
    assert!(err.contains("days-valid"), "{err}");
    assert_eq!(env.snapshot(), before);
}

/// Two processes sign the same template at once: one certificate, the other command fails
/// cleanly (the template is gone or the name is taken), nothing half-done.
#[test]
fn concurrent_signs_of_one_template_make_one_certificate() {
    let env = Env::new();
    env.ok(&["add", "name=race", "common-name=race"]); // RSA 2048: a wide window
    let spawn = || {
        env.command(&["sign", "race"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one sign succeeds");
    let loser = outs.iter().find(|o| !o.status.success()).unwrap();
    let code = loser.status.code().unwrap();
    assert!(
        code == EXIT_NOT_FOUND || code == EXIT_REFUSED,
        "the other sign fails as not found / refused, got {code}: {}",
        stderr(loser)
    );
    assert_error(loser, code, "losing sign");
    assert_eq!(env.names(), ["race"]);
    assert_eq!(env.entry("race")["flags"], "KAT");
    assert_exported_key_matches(&env, "race");
}

/// Colours: none off a terminal; `CLICOLOR_FORCE` forces them, `NO_COLOR` wins over it — in
/// clap's help and in `serve`'s log lines alike.
#[test]
fn no_color_is_honoured_by_help_and_serve_logs() {
    let env = Env::new();
    env.ok(&["add", "name=t", "common-name=t"]); // serve needs a store
    let run = |args: &[&str], vars: &[(&str, &str)]| {
        let mut c = env.command(args);
        c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        assert_success(&out, &format!("{args:?}"));
        stdout(&out)
    };
    const ESC: char = '\u{1b}';
    assert!(!run(&["--help"], &[]).contains(ESC));
    assert!(run(&["--help"], &[("CLICOLOR_FORCE", "1")]).contains(ESC));
    assert!(!run(&["--help"], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains(ESC));

    let log = |vars: &[(&str, &str)]| {
        let all: Vec<(&str, &str)> = [("NO_COLOR", ""), ("CLICOLOR_FORCE", "")]
            .into_iter()
            .chain(vars.iter().copied())
            .collect();
        let d = common::daemon::Daemon::start_with(&env, &["listen=127.0.0.1:0"], &all);
        d.stop()
    };
    let plain = log(&[]);
    assert!(!plain.contains(ESC), "{plain:?}");
    let forced = log(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains(ESC), "{forced:?}");
    let no_color = log(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!no_color.contains(ESC), "{no_color:?}");
}

/// Templates whose `print` output is far larger than a pipe holds (64 KiB on Linux), so that
/// certman is still writing when the reader goes away.
fn many_long_entries(env: &Env) {
    let san: Vec<String> = (0..400)
        .map(|i| format!("DNS:host-{i:04}.a-rather-long-subdomain-name.example"))
        .collect();
    let san = format!("subject-alt-name={}", san.join(","));
    for i in 0..16 {
        env.ok(&[
            "add",
            &format!("name=t{i}"),
            &format!("common-name=t{i}"),
            &san,
        ]);
    }
}

#[test]
fn print_into_a_pipe_closed_early_exits_0_quietly() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    many_long_entries(&env);
    for args in [&["print", "detail"][..], &["print", "--json"], &["print"]] {
        let whole = env.ok(args);
        let mut child = env
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn certman");
        // `| head -1`: one line, then the read end is closed
        let mut first = String::new();
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        reader.read_line(&mut first).expect("first line");
        drop(reader);
        let out = child.wait_with_output().expect("wait");
        assert_eq!(first, format!("{}\n", whole.lines().next().unwrap()));
        assert_eq!(
            out.status.code(),
            Some(0),
            "certman {args:?} into a closed pipe: {:?}\nstderr:\n{}",
            out.status,
            stderr(&out)
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
        // the output was larger than the pipe: certman was still writing when it closed
        if args != ["print"] {
            assert!(
                whole.len() > 256 * 1024,
                "{args:?}: only {} bytes",
                whole.len()
            );
        }
    }
}

#[test]
fn print_to_a_full_disk_is_an_error() {
    let env = Env::new();
    env.ok(&["add", "name=t", "common-name=t"]);
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = env.command(&["print"]).stdout(full).output().expect("run");
    let err = assert_error(&out, EXIT_FAILED, "print > /dev/full");
    assert!(err.contains("cannot write to standard output"), "{err}");
}

#[test]
fn help_shows_the_name_value_form_and_examples() {
    let env = Env::new();
    let help = env.ok(&["add", "--help"]);
    assert!(help.contains("name=value"), "{help}");
    assert!(help.contains("Example"), "{help}");
    assert!(
        help.contains("certman add name=ca common-name=\"My CA\""),
        "{help}"
    );
    for args in [
        &["--help"][..],
        &["sign", "--help"],
        &["scep-server", "otp", "generate", "--help"],
        &["crl", "export", "--help"],
    ] {
        let help = env.ok(args);
        assert!(
            help.contains("name=value") && help.contains("Examples:\n  certman "),
            "certman {args:?}:\n{help}"
        );
    }
}

#[test]
fn bash_completion_sources_and_completes_subcommands() {
    if !common::scep::peer("bash", "bash") {
        return;
    }
    let env = Env::new();
    let script = env.ok(&["completions", "bash"]);
    let file = env.path("certman.bash");
    fs::write(&file, &script).unwrap();
    // what bash does on TAB: COMP_WORDS/COMP_CWORD set, then the function `complete` names
    let complete = |line: &str| -> Vec<String> {
        let out = std::process::Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(
                r#"set -e
source "$1"
spec=$(complete -p certman)
fn=${spec#*-F }; fn=${fn%% *}
read -r -a COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
"$fn" certman "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#,
            )
            .arg("bash")
            .arg(&file)
            .arg(line)
            .output()
            .expect("run bash");
        assert_success(&out, &format!("completing {line:?}"));
        let mut v: Vec<String> = stdout(&out)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    };
    assert_eq!(complete("certman si"), ["sign", "sign-certificate-request"]);
    assert_eq!(complete("certman scep-server ot"), ["otp"]);
    assert!(complete("certman crl ").contains(&"renew".to_owned()));
    assert!(complete("certman add --common").contains(&"--common-name".to_owned()));
    // zsh and fish get their own scripts
    assert!(env
        .ok(&["completions", "zsh"])
        .starts_with("#compdef certman"));
    assert!(env
        .ok(&["completions", "fish"])
        .contains("complete -c certman"));
}

#[test]
fn man_page_renders_with_man() {
    if !common::scep::peer("man", "man-db") {
        return;
    }
    let env = Env::new();
    let page = env.ok(&["man"]);
    assert!(
        page.starts_with(".TH certman 1") || page.starts_with(".ie"),
        "{page:.200}"
    );
    let file = env.path("certman.1");
    fs::write(&file, &page).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C")
        .output()
        .expect("run man");
    assert_success(&out, "man -l certman.1");
    // justified text: blanks collapsed
    let text = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.stderr.is_empty(), "man -l warns: {}", stderr(&out));
    for needle in [
        "certman - ",
        "GLOBAL OPTIONS",
        "--store",
        "COMMANDS",
        "CERTMAN SIGN-CERTIFICATE-REQUEST Issue a certificate",
        "CERTMAN SCEP-SERVER OTP GENERATE",
        "--minutes-valid",
        "certman add name=ca",
    ] {
        assert!(text.contains(needle), "man page lacks {needle:?}:\n{text}");
    }
}
