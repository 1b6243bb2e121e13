//! `import`: formats found by content, the RouterOS counters, keys joining certificates, and
//! bad files reported per file with the store unchanged.

mod common;

use common::*;

fn counters(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            // `private-keys-imported: 1 (1 still encrypted: flag Q, run decrypt)`
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

fn expect(out: &str, want: [u64; 5]) {
    let got: Vec<u64> = counters(out).into_iter().map(|(_, v)| v).collect();
    let names: Vec<String> = counters(out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "certificates-imported",
            "private-keys-imported",
            "files-imported",
            "decryption-failures",
            "keys-with-no-certificate"
        ],
        "{out}"
    );
    assert_eq!(got, want, "{out}");
}

fn openssl_pair(env: &Env, kind: &str) {
    let newkey: &[&str] = match kind {
        "rsa" => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-subj",
        "/CN=imported",
        "-days",
        "30",
    ]);
    openssl(&args, &env.work);
}

#[test]
fn a_certificate_then_its_key_in_two_runs_gets_flag_k() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    expect(&env.ok(&["import", "file-name=c.pem"]), [1, 0, 1, 0, 0]);
    let e = &env.json()[0];
    assert_eq!(
        e["flags"], "A",
        "OpenSSL's self-signed certificate is a CA, not issued here"
    );
    expect(&env.ok(&["import", "file-name=k.pem"]), [0, 1, 1, 0, 0]);
    assert_eq!(env.json()[0]["flags"], "KA");
    // the same again: duplicates are not imported twice
    expect(&env.ok(&["import", "file-name=c.pem"]), [0, 0, 0, 0, 0]);
    assert_eq!(env.json().len(), 1);
    // the imported key signs: issue from the imported CA and verify with OpenSSL
    env.issue("leaf", "c_0", &["key-type=ec"]);
    assert_verifies(&env.work.join("c.pem"), &env.export_cert("leaf"));
}

#[test]
fn a_key_alone_has_no_certificate() {
    let env = Env::new();
    openssl_pair(&env, "rsa");
    expect(&env.ok(&["import", "file-name=k.pem"]), [0, 0, 0, 0, 1]);
    assert!(env.json().is_empty());
}

#[test]
fn pkcs1_sec1_and_der_inputs_are_read_by_content() {
    let env = Env::new();
    openssl_pair(&env, "rsa");
    openssl(
        &["rsa", "-in", "k.pem", "-traditional", "-out", "pkcs1.key"],
        &env.work,
    );
    openssl(
        &[
            "x509", "-in", "c.pem", "-outform", "DER", "-out", "cert.bin",
        ],
        &env.work,
    );
    expect(
        &env.ok(&["import", "file-name=cert.bin", "trusted=yes"]),
        [1, 0, 1, 0, 0],
    );
    expect(&env.ok(&["import", "file-name=pkcs1.key"]), [0, 1, 1, 0, 0]);
    assert_eq!(env.json()[0]["flags"], "KAT");
    let env2 = Env::new();
    openssl_pair(&env2, "ec");
    openssl(&["ec", "-in", "k.pem", "-out", "sec1.key"], &env2.work);
    openssl(
        &["ec", "-in", "k.pem", "-outform", "DER", "-out", "sec1.der"],
        &env2.work,
    );
    std::fs::remove_file(env2.work.join("k.pem")).unwrap();
    // a directory: both files of the pair, in one run
    std::fs::remove_file(env2.work.join("sec1.der")).unwrap();
    expect(&env2.ok(&["import"]), [1, 1, 2, 0, 0]);
    assert_eq!(env2.json()[0]["flags"], "KA");
}

#[test]
fn encrypted_keys_need_the_right_passphrase() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "k.pem",
            "-passout",
            "pass:right-pass",
            "-out",
            "enc.pem",
        ],
        &env.work,
    );
    env.ok(&["import", "file-name=c.pem"]);
    let before = env.snapshot();
    let out = env.run(&["import", "file-name=enc.pem", "passphrase=wrong-pass"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    expect(&stdout(&out), [0, 0, 0, 1, 0]);
    assert!(stderr(&out).contains("enc.pem"), "{}", stderr(&out));
    assert_eq!(env.snapshot(), before);
    expect(
        &env.ok(&["import", "file-name=enc.pem", "passphrase=right-pass"]),
        [0, 1, 1, 0, 0],
    );
}

#[test]
fn an_exported_certificate_and_key_round_trip_into_a_fresh_store() {
    let a = Env::new();
    a.make_ca("ca", &["key-type=ec"]);
    let (crt, key) = a.export_with_key("ca", "export-pass");
    let b = Env::new();
    std::fs::copy(&crt, b.work.join("ca.crt")).unwrap();
    std::fs::copy(&key, b.work.join("ca.key")).unwrap();
    expect(
        &b.ok(&["import", "passphrase=export-pass"]),
        [1, 1, 2, 0, 0],
    );
    let e = &b.json()[0];
    assert_eq!(e["fingerprint"], a.entry("ca")["fingerprint"]);
    assert!(e["flags"].as_str().unwrap().contains('K'));
}

#[test]
fn garbage_truncated_and_oversize_files_are_reported_and_change_nothing() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    let pem = std::fs::read_to_string(env.work.join("c.pem")).unwrap();
    std::fs::write(env.work.join("truncated.pem"), &pem[..pem.len() / 2]).unwrap();
    std::fs::write(env.work.join("garbage.bin"), b"\x30\x82\xff\xff garbage").unwrap();
    std::fs::write(env.work.join("huge.pem"), vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let before = env.snapshot();
    for f in ["truncated.pem", "garbage.bin", "huge.pem"] {
        let out = env.run(&["import", &format!("file-name={f}")]);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{f}");
        expect(&stdout(&out), [0, 0, 0, 0, 0]);
        assert!(stderr(&out).contains(f), "{f}: {}", stderr(&out));
    }
    assert_eq!(env.snapshot(), before);
    // in a directory import the good files still go in, and the bad ones are named
    let out = env.run(&["import"]);
    assert_eq!(out.status.code(), Some(0));
    expect(&stdout(&out), [1, 1, 2, 0, 0]);
    let err = stderr(&out);
    assert!(
        err.contains("truncated.pem") && err.contains("garbage.bin") && err.contains("huge.pem"),
        "{err}"
    );
}

#[test]
fn ca_set_passphrase_is_used_for_key_exports_and_is_sealed() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.issue("leaf", "ca", &["key-type=ec"]);
    env.ok(&["ca-set-passphrase", "ca", "passphrase=stored-secret-77"]);
    env.fail(
        &["ca-set-passphrase", "leaf", "passphrase=x1234"],
        EXIT_REFUSED,
    );
    env.fail(
        &["ca-set-passphrase", "nosuch", "passphrase=x1234"],
        EXIT_NOT_FOUND,
    );
    env.ok(&["export-certificate", "ca"]);
    let key = env.work.join("cert_export_ca.key");
    assert!(key.exists(), "the stored passphrase exports the key");
    openssl(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            "pass:stored-secret-77",
            "-noout",
        ],
        &env.work,
    );
    // never in clear in the store (nor hex-encoded, as a dump shows PostgreSQL's bytea)
    let hex: String = b"stored-secret-77"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for bytes in store_contents(&env) {
        assert!(!bytes.windows(16).any(|w| w == b"stored-secret-77"));
        assert!(!bytes.windows(32).any(|w| w == hex.as_bytes()));
    }
    // removing the CA takes its passphrase with it
    env.ok(&["remove", "ca"]);
}

fn p12_from_openssl(env: &Env, kind: &str, legacy: bool, out: &str) {
    openssl_pair(env, kind);
    let mut args = vec![
        "pkcs12",
        "-export",
        "-inkey",
        "k.pem",
        "-in",
        "c.pem",
        "-passout",
        "pass:p12-pass",
        "-out",
        out,
    ];
    if legacy {
        args.push("-legacy");
    }
    openssl(&args, &env.work);
}

#[test]
fn openssl_pkcs12_files_import_modern_and_legacy() {
    for (kind, legacy) in [("rsa", false), ("ec", false), ("rsa", true), ("ec", true)] {
        let env = Env::new();
        p12_from_openssl(&env, kind, legacy, "bundle.p12");
        let before = env.snapshot();
        let out = env.run(&["import", "file-name=bundle.p12", "passphrase=wrong"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_USAGE),
            "{kind} legacy={legacy}"
        );
        expect(&stdout(&out), [0, 0, 0, 1, 0]);
        assert_eq!(env.snapshot(), before);
        expect(
            &env.ok(&["import", "file-name=bundle.p12", "passphrase=p12-pass"]),
            [1, 1, 1, 0, 0],
        );
        let e = &env.json()[0];
        assert!(
            e["flags"].as_str().unwrap().contains('K'),
            "{kind} legacy={legacy}: {e}"
        );
    }
}

#[test]
fn pkcs12_export_opens_in_openssl_and_round_trips() {
    for legacy in [false, true] {
        let a = Env::new();
        a.make_ca("ca", &["key-type=ec"]);
        a.issue(
            "srv",
            "ca",
            &["key-type=rsa", "subject-alt-name=DNS:srv.example"],
        );
        let mut args = vec![
            "export-certificate",
            "srv",
            "type=pkcs12",
            "export-passphrase=p12-out",
        ];
        if legacy {
            args.push("legacy=yes");
        }
        a.ok(&args);
        let p12 = a.work.join("cert_export_srv.p12");
        // `-info` checks the MAC and decrypts every bag
        openssl(
            &[
                "pkcs12",
                "-info",
                "-noout",
                "-passin",
                "pass:p12-out",
                "-in",
                p12.to_str().unwrap(),
            ],
            &a.work,
        );
        let dump = openssl(
            &[
                "pkcs12",
                "-nodes",
                "-passin",
                "pass:p12-out",
                "-in",
                p12.to_str().unwrap(),
            ],
            &a.work,
        );
        assert_eq!(
            dump.matches("BEGIN CERTIFICATE").count(),
            2,
            "leaf + CA chain: {dump}"
        );
        assert!(dump.contains("PRIVATE KEY"), "{dump}");
        // into a fresh store: the certificates and the key come back
        let b = Env::new();
        std::fs::copy(&p12, b.work.join("in.p12")).unwrap();
        expect(
            &b.ok(&["import", "file-name=in.p12", "passphrase=p12-out"]),
            [2, 1, 1, 0, 0],
        );
        let fps: Vec<String> = b
            .json()
            .iter()
            .map(|e| e["fingerprint"].as_str().unwrap().to_owned())
            .collect();
        assert!(fps.contains(&a.entry("srv")["fingerprint"].as_str().unwrap().to_owned()));
        assert!(fps.contains(&a.entry("ca")["fingerprint"].as_str().unwrap().to_owned()));
    }
}

#[test]
fn keys_on_tokens_are_never_exported_in_pkcs12_either() {
    // A certificate without a key here: the passphrase asks for a key that is not there.
    let env = Env::new();
    openssl_pair(&env, "ec");
    env.ok(&["import", "file-name=c.pem"]);
    env.fail(
        &[
            "export-certificate",
            "c_0",
            "type=pkcs12",
            "export-passphrase=abcd1234",
        ],
        EXIT_REFUSED,
    );
    assert!(!env.work.join("cert_export_c_0.p12").exists());
}

#[test]
fn keys_imported_encrypted_wait_for_decrypt_and_reset_drops_the_copy() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "k.pem",
            "-passout",
            "pass:v28-pass",
            "-out",
            "enc.pem",
        ],
        &env.work,
    );
    // the certificate and its encrypted key in one file, imported without a passphrase
    let both = std::fs::read_to_string(env.work.join("c.pem")).unwrap()
        + &std::fs::read_to_string(env.work.join("enc.pem")).unwrap();
    std::fs::write(env.work.join("both.pem"), both).unwrap();
    let out = env.run(&["import", "file-name=both.pem"]);
    assert_success(&out, "import without passphrase");
    // v2.8 counts the kept key as imported, and its certificate shows Q
    expect(&stdout(&out), [1, 1, 1, 0, 0]);
    assert!(
        stdout(&out).contains("private-keys-imported: 1 (1 still encrypted: flag Q, run decrypt)"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("decrypt"), "{}", stderr(&out));
    assert_eq!(env.json()[0]["flags"], "QA");
    // a wrong passphrase decrypts nothing: a failure, not a silent 0
    let e = env.fail(&["decrypt", "passphrase=wrong"], EXIT_FAILED);
    assert!(e.contains("opens none of the 1 private key"), "{e}");
    assert_eq!(env.json()[0]["flags"], "QA");
    assert!(env
        .ok(&["decrypt", "passphrase=v28-pass"])
        .contains("keys-decrypted: 1"));
    assert_eq!(env.json()[0]["flags"], "KA");
    // the decrypted key signs
    env.issue("leaf", "both_0", &["key-type=ec"]);
    assert_verifies(&env.work.join("c.pem"), &env.export_cert("leaf"));
    // reset-certificate-cache: back to Q, and decrypt brings K back
    env.ok(&["reset-certificate-cache"]);
    assert_eq!(env.entry("both_0")["flags"], "QA");
    assert!(env
        .ok(&["decrypt", "passphrase=v28-pass"])
        .contains("keys-decrypted: 1"));
    assert_eq!(env.entry("both_0")["flags"], "KA");
    // removing the CA takes everything with it
    env.ok(&["remove", "both_0"]);
}

#[test]
fn names_come_from_file_names_made_valid() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    std::fs::rename(env.work.join("c.pem"), env.work.join("-odd=name.pem")).unwrap();
    expect(
        &env.ok(&["import", "file-name=-odd=name.pem"]),
        [1, 0, 1, 0, 0],
    );
    assert_eq!(env.names(), ["odd_name_0"]);
    env.fail(&["import", "file-name=k.pem", "name=a=b"], EXIT_USAGE);
}

/// An encrypted key made the way operators make them: `openssl genpkey` then PKCS#8 v2 with
/// AES-256 (`openssl pkcs8 -topk8 -v2 aes256`); its certificate self-signed by OpenSSL.
fn openssl_encrypted_pair(env: &Env, stem: &str, cn: &str, pass: &str) {
    let key = format!("{stem}-plain.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
        &env.work,
    );
    openssl(
        &[
            "req",
            "-x509",
            "-key",
            &key,
            "-out",
            &format!("{stem}.crt"),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "30",
        ],
        &env.work,
    );
    openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes256",
            "-in",
            &key,
            "-passout",
            &format!("pass:{pass}"),
            "-out",
            &format!("{stem}.key"),
        ],
        &env.work,
    );
    std::fs::remove_file(env.work.join(&key)).unwrap();
}

#[test]
fn an_encrypted_key_imported_alone_after_its_certificate_shows_q_and_is_counted() {
    let env = Env::new();
    openssl_encrypted_pair(&env, "srv", "srv.example", "enc-pass");
    expect(&env.ok(&["import", "file-name=srv.crt"]), [1, 0, 1, 0, 0]);
    assert_eq!(env.entry("srv_0")["flags"], "A");
    // no passphrase: kept encrypted, counted, and Q right after
    let out = env.ok(&["import", "file-name=srv.key"]);
    expect(&out, [0, 1, 1, 0, 0]);
    assert!(
        out.contains("(1 still encrypted: flag Q, run decrypt)"),
        "{out}"
    );
    assert_eq!(env.entry("srv_0")["flags"], "QA");
    let json = env.ok(&["import", "file-name=srv.key", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["keys-still-encrypted"], 1, "{json}");
    // decrypt: a wrong passphrase is a failure (exit 1), the right one gives K
    let e = env.fail(&["decrypt", "passphrase=not-it"], EXIT_FAILED);
    assert!(e.contains("nothing was decrypted"), "{e}");
    assert_eq!(env.entry("srv_0")["flags"], "QA");
    assert!(env
        .ok(&["decrypt", "passphrase=enc-pass"])
        .contains("keys-decrypted: 1"));
    assert_eq!(env.entry("srv_0")["flags"], "KA");
    // nothing left to decrypt (the second kept copy opens to the same key, already
    // given): a failure too, with its reason
    let e = env.fail(&["decrypt", "passphrase=enc-pass"], EXIT_FAILED);
    assert!(
        e.contains("none belongs to a certificate without a key"),
        "{e}"
    );
    // the decrypted key signs: issue from it and verify with OpenSSL
    env.issue("leaf", "srv_0", &["key-type=ec"]);
    assert_verifies(&env.work.join("srv.crt"), &env.export_cert("leaf"));
}

#[test]
fn decrypt_with_nothing_imported_encrypted_fails() {
    let env = Env::new();
    env.ok(&["add", "name=t", "common-name=t"]); // a store, with nothing imported
    let e = env.fail(&["decrypt", "passphrase=anything"], EXIT_FAILED);
    assert!(e.contains("no private key waits to be decrypted"), "{e}");
}

#[test]
fn a_directory_of_pairs_gives_each_encrypted_key_to_its_own_certificate() {
    let env = Env::new();
    openssl_encrypted_pair(&env, "a", "a.example", "pass-a");
    openssl_encrypted_pair(&env, "b", "b.example", "pass-b");
    // two certificates without keys: only the file names can tell which key is whose
    let out = env.ok(&["import"]);
    expect(&out, [2, 2, 4, 0, 0]);
    // one import numbers its certificates in turn
    assert_eq!(env.names(), ["a_0", "b_1"]);
    assert_eq!(env.entry("a_0")["flags"], "QA");
    assert_eq!(env.entry("b_1")["flags"], "QA");
    // each passphrase opens its own key, for its own certificate
    assert!(env
        .ok(&["decrypt", "passphrase=pass-b"])
        .contains("keys-decrypted: 1"));
    assert_eq!(env.entry("a_0")["flags"], "QA");
    assert_eq!(env.entry("b_1")["flags"], "KA");
}

#[test]
fn an_encrypted_key_with_no_certificate_to_show_it_is_counted_as_such() {
    let env = Env::new();
    openssl_encrypted_pair(&env, "x", "x.example", "pass-x");
    // a trust anchor without a key is never taken for the key's certificate
    openssl_encrypted_pair(&env, "root", "root.example", "pass-r");
    env.ok(&["import", "file-name=root.crt", "trusted=yes"]);
    let out = env.ok(&["import", "file-name=x.key"]);
    expect(&out, [0, 0, 1, 0, 1]);
    assert!(
        out.contains("keys-with-no-certificate: 1 (1 still encrypted, run decrypt)"),
        "{out}"
    );
    assert_eq!(env.entry("root_0")["flags"], "AT");
    // its certificate coming later: decrypt finds it by public key
    env.ok(&["import", "file-name=x.crt"]);
    assert!(env
        .ok(&["decrypt", "passphrase=pass-x"])
        .contains("keys-decrypted: 1"));
    assert_eq!(env.entry("x_0")["flags"], "KA");
}

#[test]
fn pem_with_openssl_text_before_and_after_the_block_imports() {
    let env = Env::new();
    openssl_pair(&env, "ec");
    // `openssl x509 -text` writes the dump, then the PEM block (as `openssl ca` does)
    openssl(
        &["x509", "-in", "c.pem", "-text", "-out", "dump.pem"],
        &env.work,
    );
    let dump = std::fs::read_to_string(env.work.join("dump.pem")).unwrap();
    assert!(
        dump.starts_with("Certificate:") && dump.contains("-----BEGIN CERTIFICATE-----"),
        "{dump}"
    );
    let with_trailer = format!("{dump}\nissued by the test CA, see above\n");
    std::fs::write(env.work.join("dump.pem"), with_trailer).unwrap();
    expect(&env.ok(&["import", "file-name=dump.pem"]), [1, 0, 1, 0, 0]);
    assert_eq!(
        env.entry("dump_0")["fingerprint"].as_str().map(norm_hex),
        Some(openssl_fingerprint(&env.work.join("c.pem")))
    );
    // its key joins it as usual
    expect(&env.ok(&["import", "file-name=k.pem"]), [0, 1, 1, 0, 0]);
    assert_eq!(env.entry("dump_0")["flags"], "KA");
}
