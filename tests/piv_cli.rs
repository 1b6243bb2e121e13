//! CLI tests on the virtual PIV card behind real pcscd (`scripts/virtual-piv.sh start`, whose
//! reader name the test script exports as `CERTMAN_PIV_READER`). The card is one shared
//! device: these tests take a lock and leave its PIN counter as they found it.
//! In CI (`CERTMAN_REQUIRE_TOKENS=1`) a missing card fails them; elsewhere they skip.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::piv::*;
use common::*;

static CARD: Mutex<()> = Mutex::new(());

/// PIN tries left, as yubico-piv-tool reads them.
fn pin_tries(reader: &str) -> u32 {
    let out = piv_tool(reader, &["-a", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PIN tries in status: {text}"))
}

/// Makes the card forget a verified PIN (the virtual card keeps it across connections): one
/// wrong VERIFY, which costs a try.
fn unverify(reader: &str) {
    let _ = piv_tool(reader, &["-a", "verify-pin", "-P", "000000"]);
}

/// Puts the PIN counter back to full with the right PIN.
fn restore_pin(reader: &str) {
    let out = piv_tool(reader, &["-a", "verify-pin", "-P", PIV_PIN]);
    assert!(
        out.status.success(),
        "restoring the PIN: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Card {
    env: Env,
    reader: String,
}

fn setup(pin: Option<&str>) -> Option<(std::sync::MutexGuard<'static, ()>, Card)> {
    let reader = piv_reader()?;
    let guard = CARD.lock().unwrap_or_else(|p| p.into_inner());
    // Whatever an earlier (failed) test did to the PIN counter, start from full; and free
    // the slots (certman refuses to generate over a key in use).
    restore_pin(&reader);
    for slot in ["9a", "9c", "9d"] {
        let _ = piv_tool(&reader, &["-a", "delete-certificate", "-s", slot]);
    }
    let env = Env::new();
    let tokens = env.root().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let mut profile = format!(
        "kind = \"piv\"\nreader = \"{}\"\nslot = \"9c\"\ndefault = true\n",
        reader.replace('\\', "\\\\").replace('"', "\\\"")
    );
    if let Some(p) = pin {
        let pin_file = env.root().join("pin");
        std::fs::write(&pin_file, format!("{p}\n")).unwrap();
        profile.push_str(&format!("pin-source = \"file:{}\"\n", pin_file.display()));
    }
    // The card's factory 3DES management key, given explicitly (without it certman warns).
    let mgm = env.root().join("mgm");
    std::fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").unwrap();
    profile.push_str(&format!(
        "management-key-source = \"file:{}\"\n",
        mgm.display()
    ));
    std::fs::write(tokens.join("piv-virtual.toml"), profile).unwrap();
    let env = env.with_global_args(&["--tokens".to_owned(), tokens.display().to_string()]);
    Some((guard, Card { env, reader }))
}

fn ca_on_card(c: &Card) {
    c.env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=piv-ca",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    c.env
        .ok(&["sign", "ca-tpl", "name=ca", "on-smart-card=piv-virtual"]);
}

fn same_cert(a: &Path, b: &Path) -> bool {
    let der = |p: &Path| {
        openssl(
            &["x509", "-in", p.to_str().unwrap(), "-outform", "DER"],
            Path::new("."),
        )
    };
    der(a) == der(b)
}

#[test]
fn ca_on_the_card_issues_and_its_certificate_is_in_slot_9c() {
    let Some((_g, c)) = setup(Some(PIV_PIN)) else {
        return;
    };
    ca_on_card(&c);
    let ca = c.env.entry("ca");
    assert!(ca["flags"].as_str().unwrap().contains('C'), "{ca}");
    let uri = ca["smart-card-key"].as_str().unwrap();
    assert!(uri.starts_with("piv:slot-id=9c;"), "{uri}");
    assert!(!uri.contains(PIV_PIN));
    // yubico-piv-tool reads the same certificate from slot 9c
    let out = piv_tool(&c.reader, &["-a", "read-certificate", "-s", "9c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_card = c.env.work.join("from-card.pem");
    std::fs::write(&from_card, &out.stdout).unwrap();
    let exported = c.env.export_cert("ca");
    assert!(
        same_cert(&from_card, &exported),
        "slot 9c holds another certificate"
    );
    // a leaf issued by it verifies
    c.env.issue(
        "leaf",
        "ca",
        &["key-type=ec", "subject-alt-name=DNS:leaf.example"],
    );
    let leaf = c.env.export_cert("leaf");
    assert_verifies(&exported, &leaf);
    // Its CRLs are signed on the card too: a revocation gives CRL 2, which OpenSSL verifies
    // with the CA certificate and uses to reject the leaf.
    c.env.ok(&["issued-revoke", "leaf"]);
    let crl = export_crl(&c.env, "ca", "1");
    assert_crl_signed_by(&crl, &exported);
    assert_eq!(crl_number(&crl), 2);
    let (ok, text) = openssl_verify_crl(&exported, &[], &[&crl], &leaf);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    // OpenSC's PKCS#11 module sees the key and the certificate
    let p11 = Command::new("pkcs11-tool")
        .args([
            "--module",
            "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
            "-O",
        ])
        .output()
        .expect("pkcs11-tool");
    let text = String::from_utf8_lossy(&p11.stdout);
    assert!(
        text.contains("Certificate Object") && text.contains("piv-ca"),
        "{text}"
    );
}

#[test]
fn an_explicit_key_uri_with_a_percent_encoded_reader_works() {
    let Some((_g, c)) = setup(None) else { return };
    let pin_file = c.env.root().join("explicit.pin");
    std::fs::write(&pin_file, format!("{PIV_PIN}\n")).unwrap();
    let reader_enc: String = c
        .reader
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let uri = format!(
        "piv:slot-id=9c;reader={reader_enc}?pin-source=file:{}",
        pin_file.display()
    );
    // No management-key-source: the factory default is used, with a warning.
    c.env.ok(&[
        "add",
        "name=t",
        "common-name=explicit",
        "key-usage=key-cert-sign",
        "key-type=ec",
    ]);
    let out = c
        .env
        .run(&["sign", "t", "name=explicit", &format!("key={uri}")]);
    assert_success(&out, "sign with key=piv:…");
    let err = stderr(&out);
    assert!(err.contains("FACTORY DEFAULT management key"), "{err}");
    let out = c.env.ok(&["card-verify", "explicit"]);
    assert!(out.contains("challenge: signed by the key"), "{out}");
}

#[test]
fn card_reinstall_puts_a_deleted_certificate_back() {
    let Some((_g, c)) = setup(Some(PIV_PIN)) else {
        return;
    };
    ca_on_card(&c);
    let out = piv_tool(&c.reader, &["-a", "delete-certificate", "-s", "9c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !piv_tool(&c.reader, &["-a", "read-certificate", "-s", "9c"])
            .status
            .success()
    );
    let v = c.env.ok(&["card-verify", "ca"]);
    assert!(v.contains("certificate object: missing"), "{v}");
    c.env.ok(&["card-reinstall", "ca"]);
    let out = piv_tool(&c.reader, &["-a", "read-certificate", "-s", "9c"]);
    assert!(out.status.success());
    let v = c.env.ok(&["card-verify", "ca"]);
    assert!(v.contains("present, equal"), "{v}");
    assert!(v.contains("challenge: signed by the key"), "{v}");
    assert!(v.contains("PIV card"), "{v}");
}

#[test]
fn wrong_pin_costs_exactly_one_try_and_the_last_try_is_not_spent() {
    let Some((_g, c)) = setup(Some("654321")) else {
        return;
    };
    restore_pin(&c.reader);
    unverify(&c.reader); // 3 -> 2, and the card is no longer verified
    assert_eq!(pin_tries(&c.reader), 2);
    c.env.ok(&[
        "add",
        "name=t",
        "common-name=t",
        "key-type=ec",
        "key-usage=key-cert-sign",
    ]);
    let before = c.env.snapshot();
    let err = c
        .env
        .fail(&["sign", "t", "on-smart-card=piv-virtual"], EXIT_TOKEN);
    assert!(
        err.contains("wrong PIN") && err.contains("1 try left"),
        "{err}"
    );
    assert_eq!(pin_tries(&c.reader), 1, "exactly one try spent");
    // one try left: refused without a VERIFY
    let err = c
        .env
        .fail(&["sign", "t", "on-smart-card=piv-virtual"], EXIT_TOKEN);
    assert!(
        err.contains("1 PIN try left") && err.contains("--force-last-pin-try"),
        "{err}"
    );
    assert_eq!(pin_tries(&c.reader), 1, "the last try was not spent");
    assert_eq!(c.env.snapshot(), before);
    // the right PIN resets the counter (yubico-piv-tool then reports the PIN as verified)
    restore_pin(&c.reader);
}

#[test]
fn no_pin_source_and_no_terminal_fails_without_guessing() {
    let Some((_g, c)) = setup(None) else { return };
    restore_pin(&c.reader);
    unverify(&c.reader);
    let tries = pin_tries(&c.reader);
    c.env.ok(&[
        "add",
        "name=t",
        "common-name=t",
        "key-type=ec",
        "key-usage=key-cert-sign",
    ]);
    let err = c
        .env
        .fail(&["sign", "t", "on-smart-card=piv-virtual"], EXIT_TOKEN);
    assert!(err.contains("not a terminal"), "{err}");
    assert_eq!(pin_tries(&c.reader), tries, "no PIN was tried");
    restore_pin(&c.reader);
}

#[test]
fn a_slot_holding_a_key_in_use_is_not_generated_over() {
    let Some((_g, c)) = setup(Some(PIV_PIN)) else {
        return;
    };
    ca_on_card(&c);
    c.env.ok(&[
        "add",
        "name=t2",
        "common-name=second",
        "key-type=ec",
        "key-usage=key-cert-sign",
    ]);
    let before = c.env.snapshot();
    let err = c
        .env
        .fail(&["sign", "t2", "on-smart-card=piv-virtual"], EXIT_REFUSED);
    assert!(err.contains("does not overwrite a key in use"), "{err}");
    assert_eq!(c.env.snapshot(), before);
    // the CA still signs with its key
    c.env.ok(&["card-verify", "ca"]);
    // remove --delete-key frees the slot (the card cannot delete the key itself: said so)
    let out = c.env.run(&["remove", "ca", "--delete-key"]);
    assert!(
        stderr(&out).contains("cannot delete a key"),
        "{}",
        stderr(&out)
    );
    assert!(c.env.json().iter().all(|e| e["name"] != "ca"));
    c.env.ok(&["sign", "t2", "on-smart-card=piv-virtual"]);
}

#[test]
fn a_certificate_request_can_keep_its_key_on_the_card() {
    let Some((_g, c)) = setup(Some(PIV_PIN)) else {
        return;
    };
    c.env.ok(&[
        "add",
        "name=r",
        "common-name=card-req.example",
        "key-type=ec",
    ]);
    c.env.ok(&[
        "create-certificate-request",
        "r",
        "on-smart-card=piv-virtual",
    ]);
    assert!(!c.env.work.join("certificate-request_key.pem").exists());
    openssl(
        &["req", "-in", "certificate-request.pem", "-verify", "-noout"],
        &c.env.work,
    );
}
