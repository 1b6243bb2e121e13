//! The store keeps software private keys sealed: no key material in clear in any store file,
//! private file modes, and a store opened under another machine id cannot use its keys.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// One DER TLV: (tag, content, rest).
fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
    assert!(b.len() >= 2, "truncated DER");
    let tag = b[0];
    let (len, hdr) = match b[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            assert!((1..=4).contains(&n) && b.len() >= 2 + n, "bad DER length");
            let len = b[2..2 + n]
                .iter()
                .fold(0usize, |acc, x| (acc << 8) | *x as usize);
            (len, 2 + n)
        }
    };
    assert!(b.len() >= hdr + len, "DER content overruns");
    (tag, &b[hdr..hdr + len], &b[hdr + len..])
}

/// The TLVs inside a constructed value.
fn children(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (t, c, rest) = tlv(b);
        out.push((t, c));
        b = rest;
    }
    out
}

fn strip_sign_byte(i: &[u8]) -> &[u8] {
    match i {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => i,
    }
}

/// The secret parts of a PKCS#8 PrivateKeyInfo: the EC scalar, the Ed25519 seed, or the RSA
/// private exponent and primes.
fn private_parts(pkcs8: &[u8]) -> Vec<Vec<u8>> {
    let (tag, info, _) = tlv(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let fields = children(info);
    assert_eq!(fields[0].0, 0x02, "version");
    assert_eq!(fields[1].0, 0x30, "algorithm");
    assert_eq!(fields[2].0, 0x04, "privateKey OCTET STRING");
    let inner = fields[2].1;
    let (itag, icontent, _) = tlv(inner);
    match itag {
        // Ed25519: CurvePrivateKey ::= OCTET STRING (the 32-byte seed)
        0x04 => {
            assert_eq!(icontent.len(), 32, "Ed25519 seed length");
            vec![icontent.to_vec()]
        }
        0x30 => {
            let parts = children(icontent);
            if parts.len() >= 9 {
                // RSAPrivateKey: version n e d p q dp dq qinv
                [3, 4, 5, 6, 7, 8]
                    .iter()
                    .map(|i| strip_sign_byte(parts[*i].1).to_vec())
                    .collect()
            } else {
                // ECPrivateKey: version, privateKey OCTET STRING, [0] params, [1] public key
                assert_eq!(parts[1].0, 0x04, "ECPrivateKey.privateKey");
                vec![parts[1].1.to_vec()]
            }
        }
        t => panic!("unexpected private key encoding, tag {t:#x}"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every file in the store directory (db, -wal, -shm, anything else).
fn store_files(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(store).expect("store dir") {
        let p = e.unwrap().path();
        if p.is_file() {
            let data = fs::read(&p).unwrap();
            out.push((p, data));
        }
    }
    out.sort();
    out
}

#[test]
fn store_holds_no_private_key_in_clear() {
    let env = Env::new();
    env.make_ca("rsaca", &["key-type=rsa", "key-size=2048"]);
    env.issue("ec384", "rsaca", &["key-type=ec", "key-size=secp384r1"]);
    env.issue("ec256", "rsaca", &["key-type=ec"]);
    env.issue("ed", "rsaca", &["key-type=ed25519"]);
    env.issue("rsa1k", "rsaca", &["key-type=rsa", "key-size=1024"]);
    let names = ["rsaca", "ec384", "ec256", "ed", "rsa1k"];

    // The keys as OpenSSL decrypts them from certman's export.
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let mut passphrases = Vec::new();
    for name in names {
        let pass = format!("export-{name}-{}", random_hex(6));
        let (crt, key) = env.export_with_key(name, &pass);
        assert_eq!(key_public_key(&key, &pass), cert_public_key(&crt), "{name}");
        let der = key_pkcs8_der(&key, &pass);
        assert!(der.len() >= 48, "{name}: PKCS#8 too short");
        let mid = der.len() / 2;
        secrets.push((format!("{name}: whole PKCS#8 DER"), der.clone()));
        secrets.push((
            format!("{name}: 32 bytes from the middle of the PKCS#8 DER"),
            der[mid - 16..mid + 16].to_vec(),
        ));
        let parts = private_parts(&der);
        assert!(parts.iter().all(|part| contains(&der, part)));
        for (i, part) in parts.into_iter().enumerate() {
            assert!(
                part.len() >= 32,
                "{name}: secret part {i} is {} bytes",
                part.len()
            );
            secrets.push((
                format!("{name}: secret part {i} as hex"),
                to_hex(&part).into_bytes(),
            ));
            secrets.push((format!("{name}: secret part {i}"), part));
        }
        // Control: the scan below does find these secrets in an unencrypted key file.
        let clear_pem = openssl(
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                key.to_str().unwrap(),
                "-passin",
                &format!("pass:{pass}"),
            ],
            Path::new("/"),
        );
        assert!(contains(clear_pem.as_bytes(), b"PRIVATE KEY"));
        passphrases.push(pass);
    }
    // The exports are not in the store, and the store is not in the working directory.
    assert!(!env.store.starts_with(&env.work) && !env.work.starts_with(&env.store));

    let files = store_files(&env.store);
    assert!(
        files
            .iter()
            .any(|(p, _)| p.file_name().unwrap() == "certman.db"),
        "no certman.db in {files:?}",
        files = files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
    );
    for (path, data) in &files {
        assert!(
            !data.is_empty() || path.extension().is_some(),
            "{}",
            path.display()
        );
        assert!(
            !contains(data, b"PRIVATE KEY"),
            "{} holds a PEM PRIVATE KEY marker",
            path.display()
        );
        for (what, secret) in &secrets {
            assert!(
                !contains(data, secret),
                "{} holds key material in clear: {what}",
                path.display()
            );
        }
        for pass in &passphrases {
            assert!(
                !contains(data, pass.as_bytes()),
                "{} holds an export passphrase",
                path.display()
            );
        }
    }

    // Private modes: directory 0700, every file 0600.
    assert_eq!(mode(&env.store), 0o700, "store directory mode");
    for (path, _) in &files {
        assert_eq!(mode(path), 0o600, "{} mode", path.display());
    }
    assert_eq!(mode(&env.store.join("certman.db")), 0o600);
}

#[test]
fn another_machine_id_cannot_use_the_keys() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.ok(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]);
    let before = env.snapshot();

    let other_id = env.root().join("other-machine-id");
    fs::write(&other_id, format!("{}\n", random_hex(16))).unwrap();
    let run_other = |args: &[&str]| {
        env.command(args)
            .env("CERTMAN_MACHINE_ID_FILE", &other_id)
            .output()
            .unwrap()
    };

    let out = run_other(&["sign", "leaf", "ca=ca"]);
    let err = assert_error(&out, EXIT_FAILED, "sign under another machine id");
    let lower = err.to_lowercase();
    assert!(
        lower.contains("sealed") && lower.contains("machine"),
        "error should say the keys are sealed to another machine: {err}"
    );
    assert_eq!(env.snapshot(), before, "a failed sign changed the store");

    let out = run_other(&["export-certificate", "ca", "export-passphrase=whatever1"]);
    let err = assert_error(&out, EXIT_FAILED, "export under another machine id");
    assert!(err.to_lowercase().contains("machine"), "{err}");
    assert!(
        env.work_files().is_empty(),
        "files written: {:?}",
        env.work_files()
    );
    assert_eq!(env.snapshot(), before);

    // Reading certificates needs no key: print still works under the other id.
    let out = run_other(&["print", "--json"]);
    assert_success(&out, "print under another machine id");

    // The right machine id still signs: the store was not damaged.
    env.ok(&["sign", "leaf", "ca=ca"]);
    assert_eq!(env.entry("leaf")["flags"], "KI");
    let ca = env.export_cert("ca");
    assert_verifies(&ca, &env.export_cert("leaf"));
}

#[test]
fn missing_machine_id_is_a_clear_error() {
    let env = Env::new();
    env.ok(&["add", "name=t", "common-name=t"]);
    let before = env.snapshot();
    let out = env
        .command(&["sign", "t"])
        .env(
            "CERTMAN_MACHINE_ID_FILE",
            env.root().join("no-such-machine-id"),
        )
        .output()
        .unwrap();
    let err = assert_error(&out, EXIT_FAILED, "sign without a machine id");
    assert!(err.contains("machine id"), "{err}");
    assert!(err.contains("CERTMAN_MACHINE_ID_FILE"), "{err}");
    assert_eq!(env.snapshot(), before);
}

/// A key file as the sealing key: two nodes with different machine ids but a copy of one key
/// file use one store's keys; a key file others may read, or a short one, is refused.
#[test]
fn a_shared_key_file_seals_for_every_node_that_has_it() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let key = env.root().join("seal.key");
    fs::write(&key, format!("{}\n", random_hex(32))).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let source = format!("file:{}", key.display());
    let node = |machine: &str| {
        let id = env.root().join(machine);
        if !id.exists() {
            fs::write(&id, format!("{}\n", random_hex(16))).unwrap();
        }
        let source = source.clone();
        move |env: &Env, args: &[&str]| {
            env.command(args)
                .env("CERTMAN_MACHINE_ID_FILE", &id)
                .env("CERTMAN_SEAL_KEY_SOURCE", &source)
                .output()
                .unwrap()
        }
    };
    let (a, b) = (node("machine-a"), node("machine-b"));
    for args in [
        &[
            "add",
            "name=ca-tpl",
            "common-name=ca",
            "key-usage=key-cert-sign,crl-sign",
            "key-type=ec",
        ][..],
        &["sign", "ca-tpl", "name=ca"],
        &["add", "name=leaf", "common-name=leaf", "key-type=ec"],
    ] {
        assert_success(&a(&env, args), &format!("node a: {args:?}"));
    }
    // node b signs with the CA key node a generated and sealed
    assert_success(&b(&env, &["sign", "leaf", "ca=ca"]), "node b signs");
    assert_verifies(&env.export_cert("ca"), &env.export_cert("leaf"));
    // without the key file (the machine id), the keys do not open
    let out = env
        .command(&["sign", "nothing-to-sign", "ca=ca"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = env
        .command(&["export-certificate", "ca", "export-passphrase=whatever1"])
        .output()
        .unwrap();
    let err = assert_error(&out, EXIT_FAILED, "export with the machine id");
    assert!(err.contains("seal-key-source"), "{err}");

    // a key file others may read, or too short, is refused with one line, and nothing changes
    let before = env.snapshot();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = a(&env, &["add", "name=x", "key-type=ec"]);
    let err = assert_error(&out, EXIT_FAILED, "a 0644 key file");
    assert!(err.contains("chmod 600"), "{err}");
    fs::write(&key, "short\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let out = a(&env, &["add", "name=x", "key-type=ec"]);
    let err = assert_error(&out, EXIT_FAILED, "a short key file");
    assert!(err.contains("at least 32"), "{err}");
    assert_eq!(env.snapshot(), before);
    let out = env
        .command(&["print"])
        .env("CERTMAN_SEAL_KEY_SOURCE", "bogus:x")
        .output()
        .unwrap();
    assert_error(&out, EXIT_FAILED, "an unknown seal-key-source");
}
