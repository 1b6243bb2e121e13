//! End-to-end tests of certman's PKCS#11 keys on SoftHSM2: keys generated on the token, the
//! certificate object written beside them, card-verify / card-reinstall, token print, remove
//! with and without the token key, and the PIN guards (wrong PIN, final try, locked, through the
//! shim module `tests/fixtures/pkcs11-shim.c`).
//!
//! OpenSC's `pkcs11-tool` is the independent witness of what is on the token, OpenSSL of every
//! certificate and signature. Each test makes its own token; without SoftHSM2 the tests skip
//! (with a note on stderr), unless `CERTMAN_REQUIRE_TOKENS=1`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::softhsm::*;
use common::*;
use serde_json::Value;

const EC: &[&str] = &["key-type=ec", "key-size=prime256v1"];
const RSA2048: &[&str] = &["key-type=rsa", "key-size=2048"];

/// `add` a CA template `NAME-tpl` and self-sign it as `name`, with the key generated where
/// `placement` says (`ca-on-smart-card=…`, `key=…`).
fn token_ca(env: &Env, name: &str, key: &[&str], placement: &str) {
    let tpl = format!("{name}-tpl");
    let mut add = vec![
        "add".to_owned(),
        format!("name={tpl}"),
        format!("common-name={name}"),
        "key-usage=key-cert-sign,crl-sign".to_owned(),
    ];
    add.extend(key.iter().map(|s| s.to_string()));
    env.ok(&add);
    env.ok(&["sign", &tpl, &format!("name={name}"), placement]);
}

/// `add` a leaf template `name` (EC).
fn add_leaf(env: &Env, name: &str) {
    let mut add = vec![
        "add".to_owned(),
        format!("name={name}"),
        format!("common-name={name}"),
    ];
    add.extend(EC.iter().map(|s| s.to_string()));
    env.ok(&add);
}

/// The `flags` of `name` in `print --json` contain every letter of `letters`.
fn assert_flags(env: &Env, name: &str, letters: &str) {
    let e = env.entry(name);
    let flags = e["flags"].as_str().unwrap_or_default();
    for c in letters.chars() {
        assert!(flags.contains(c), "{name}: flags {flags:?} lack {c}");
    }
}

/// The `smart-card-key` of `name`: a `pkcs11:` URI naming the token, never the PIN.
fn assert_smart_card_key(env: &Env, hsm: &SoftHsm, name: &str) -> String {
    let uri = env.entry(name)["smart-card-key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(uri.starts_with("pkcs11:"), "{name}: smart-card-key {uri:?}");
    assert!(
        uri.contains(&format!("token={}", hsm.label)),
        "{name}: smart-card-key {uri:?} does not name token {}",
        hsm.label
    );
    assert!(
        !uri.contains(&hsm.pin) && !uri.contains("pin-value"),
        "{name}: smart-card-key {uri:?} contains the PIN"
    );
    uri
}

/// SHA-256 fingerprint of a DER certificate by OpenSSL.
fn der_fingerprint(der: &Path) -> String {
    let out = openssl(
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            der.to_str().expect("utf-8 path"),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        Path::new("/"),
    );
    let (_, fp) = out.trim().split_once('=').expect("Fingerprint=…");
    norm_hex(fp)
}

/// The token holds the certificate object `name`, with the same CKA_ID as the private key
/// `name`, and it is byte for byte the certificate certman exports.
fn assert_cert_object(hsm: &SoftHsm, name: &str, crt: &Path) {
    let key = hsm.object("Private Key", name);
    let cert = hsm.object("Certificate", name);
    assert!(key.attr("ID").is_some_and(|id| !id.is_empty()), "{key:?}");
    assert_eq!(
        cert.attr("ID"),
        key.attr("ID"),
        "certificate object and key of {name} differ in CKA_ID"
    );
    assert_eq!(
        der_fingerprint(&hsm.read_object("cert", name)),
        openssl_fingerprint(crt),
        "the certificate object of {name} is not its certificate"
    );
}

/// A command that failed with some exit code ≠ 0 in the one-line error format; returns
/// stderr.
fn assert_failed(out: &Output, what: &str) -> String {
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code > 0,
        "{what}: expected a failure, got {:?}\nstdout:\n{}",
        out.status,
        stdout(out)
    );
    assert_error(out, code, what)
}

/// The lines of the shim's login log (none when it was never written).
fn login_log(log: &Path) -> Vec<String> {
    match fs::read_to_string(log) {
        Ok(s) => s.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", log.display()),
    }
}

/// Runs certman in `env` with the shim's environment (`SHIM_TOKEN_FLAGS`, `SHIM_LOGIN_LOG`).
fn run_shim(env: &Env, flags: u64, log: &Path, args: &[&str]) -> Output {
    env.command(args)
        .env("SHIM_REAL_MODULE", SOFTHSM_MODULE)
        .env("SHIM_TOKEN_FLAGS", format!("{flags:#x}"))
        .env("SHIM_LOGIN_LOG", log)
        .output()
        .expect("run certman")
}

/// Every string leaf of a JSON value.
fn json_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            json_strings(x, out)
        }),
        _ => {}
    }
}

// --- the shim itself (needs SoftHSM2 and a C compiler, not the provider) ---

#[test]
fn shim_reports_pin_flags_and_logs_logins() {
    let Some(hsm) = SoftHsm::new("shim-self") else {
        return;
    };
    let shim = shim_module();
    let slots = |flags: Option<u64>| -> String {
        let mut c = hsm.pkcs11_command(&shim);
        c.arg("--list-token-slots").env_remove("SHIM_LOGIN_LOG");
        match flags {
            Some(f) => c.env("SHIM_TOKEN_FLAGS", format!("{f:#x}")),
            None => c.env_remove("SHIM_TOKEN_FLAGS"),
        };
        let out = c.output().expect("run pkcs11-tool");
        assert_success(&out, "pkcs11-tool --module libpkcs11shim.so -T");
        stdout(&out)
    };
    let plain = slots(None);
    assert!(plain.contains(&hsm.label), "{plain}");
    for text in [
        "final user PIN try",
        "user PIN locked",
        "user PIN count low",
    ] {
        assert!(
            !plain.contains(text),
            "{text} without SHIM_TOKEN_FLAGS:\n{plain}"
        );
    }
    for (flag, text) in [
        (CKF_USER_PIN_FINAL_TRY, "final user PIN try"),
        (CKF_USER_PIN_LOCKED, "user PIN locked"),
        (CKF_USER_PIN_COUNT_LOW, "user PIN count low"),
    ] {
        let t = slots(Some(flag));
        assert!(t.contains(text), "SHIM_TOKEN_FLAGS={flag:#x}:\n{t}");
        assert!(t.contains("token initialized"), "real flags kept:\n{t}");
    }

    let log = hsm.root().join("login.log");
    let login = |pin: &str| {
        hsm.pkcs11_command(&shim)
            .args(["--login", "--pin", pin, "--list-objects"])
            .env("SHIM_LOGIN_LOG", &log)
            .output()
            .expect("run pkcs11-tool")
    };
    assert_success(&login(&hsm.pin), "pkcs11-tool --login via the shim");
    assert_eq!(login_log(&log), [format!("login {CKU_USER}")]);
    assert!(!login("000000").status.success(), "a wrong PIN logs in");
    assert_eq!(login_log(&log).len(), 2, "the wrong try is logged too");
}

// --- a. a CA whose key is generated on the token ---

fn ca_on_token(label: &str, key: &[&str], bits: u32, placement: &str) {
    let Some(hsm) = SoftHsm::new(label) else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", key, placement);

    hsm.token_only_key("ca");
    assert_flags(&env, "ca", "KCA");
    assert_smart_card_key(&env, &hsm, "ca");

    // the key never leaves the token: an export with a key is refused, writes nothing
    env.fail(
        &["export-certificate", "ca", "export-passphrase=secret-pass"],
        EXIT_REFUSED,
    );
    assert!(
        env.work_files().is_empty(),
        "a refused export wrote {:?}",
        env.work_files()
    );
    let crt = env.export_cert("ca");
    assert!(!env.path("cert_export_ca.key").exists());

    let text = cert_text(&crt);
    assert!(
        text.contains(&format!("Public-Key: ({bits} bit)")),
        "not a {bits}-bit key:\n{text}"
    );
    assert_verifies(&crt, &crt);
    assert_cert_object(&hsm, "ca", &crt);
    hsm.assert_key_matches_cert("ca", &crt);
}

#[test]
fn ca_key_on_token_ec_p256() {
    ca_on_token("ca-ec", EC, 256, &format!("ca-on-smart-card={PROFILE}"));
}

#[test]
fn ca_key_on_token_rsa_2048_default_profile() {
    ca_on_token("ca-rsa", RSA2048, 2048, "ca-on-smart-card=yes");
}

// --- b. leaves issued by the token CA ---

#[test]
fn leaves_issued_by_token_ca_verify() {
    let Some(hsm) = SoftHsm::new("leaves") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    let ca = env.export_cert("ca");

    // a software key, signed on the token
    env.issue("soft", "ca", EC);
    assert_flags(&env, "soft", "KI");
    let soft = env.entry("soft");
    assert!(
        !soft["flags"].as_str().unwrap_or_default().contains('C'),
        "software key flagged C: {soft}"
    );
    assert_eq!(soft["smart-card-key"], "");
    assert_verifies(&ca, &env.export_cert("soft"));
    assert!(hsm.objects_labelled("Private Key", "soft").is_empty());

    // a key on the token too (profile)
    add_leaf(&env, "tok");
    env.ok(&["sign", "tok", "ca=ca", &format!("on-smart-card={PROFILE}")]);
    assert_flags(&env, "tok", "KCI");
    assert_smart_card_key(&env, &hsm, "tok");
    let tok = env.export_cert("tok");
    assert_verifies(&ca, &tok);
    assert_cert_object(&hsm, "tok", &tok);
    hsm.assert_key_matches_cert("tok", &tok);

    // a key on the token at an explicit URI
    add_leaf(&env, "byuri");
    env.ok(&[
        "sign",
        "byuri",
        "ca=ca",
        &format!("key={}", hsm.key_uri("byuri")),
    ]);
    assert_flags(&env, "byuri", "KCI");
    let uri = assert_smart_card_key(&env, &hsm, "byuri");
    assert!(uri.contains("object=byuri"), "{uri}");
    let byuri = env.export_cert("byuri");
    assert_verifies(&ca, &byuri);
    hsm.assert_key_matches_cert("byuri", &byuri);
}

// --- c. card-reinstall ---

#[test]
fn card_reinstall_writes_the_certificate_back() {
    let Some(hsm) = SoftHsm::new("reinstall") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    let crt = env.export_cert("ca");

    hsm.pkcs11_ok(&["--delete-object", "--type", "cert", "--label", "ca"]);
    assert!(hsm.objects_labelled("Certificate", "ca").is_empty());

    env.ok(&["card-reinstall", "ca"]);
    assert_cert_object(&hsm, "ca", &crt);

    let out = env.ok(&["card-verify", "ca"]).to_lowercase();
    for what in ["public key", "challenge", "pin"] {
        assert!(
            out.contains(what),
            "card-verify does not mention {what}:\n{out}"
        );
    }

    // --force rewrites it without the check, and leaves one object
    env.ok(&["card-reinstall", "ca", "--force"]);
    assert_cert_object(&hsm, "ca", &crt);
}

// --- d. card-verify without the key ---

#[test]
fn card_verify_fails_when_the_token_key_is_gone() {
    let Some(hsm) = SoftHsm::new("keygone") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    env.ok(&["card-verify", "ca"]);

    hsm.pkcs11_ok(&["--delete-object", "--type", "privkey", "--label", "ca"]);
    assert!(hsm.objects_labelled("Private Key", "ca").is_empty());

    let err = assert_failed(&env.run(&["card-verify", "ca"]), "card-verify ca").to_lowercase();
    assert!(
        err.contains("key"),
        "card-verify does not say the key is missing: {err}"
    );
    // card-reinstall checks first
    assert_failed(&env.run(&["card-reinstall", "ca"]), "card-reinstall ca");
}

// --- e. PIN guards ---

#[test]
fn wrong_pin_is_exit_5() {
    let Some(hsm) = SoftHsm::new("wrongpin") else {
        return;
    };
    let env = hsm.env();
    // at key generation, through a profile with a wrong PIN file
    let bad = hsm.write_pin_file("bad.pin", "999999");
    hsm.write_profile(
        "badpin",
        &hsm.profile_toml(&hsm.module, &hsm.label, &bad, false),
    );
    add_leaf(&env, "leaf");
    let before = env.snapshot();
    let err = env.fail(&["sign", "leaf", "on-smart-card=badpin"], EXIT_TOKEN);
    assert!(err.to_lowercase().contains("pin"), "{err}");
    assert!(!err.contains("999999"), "the error shows the PIN: {err}");
    assert_eq!(env.snapshot(), before, "a failed sign changed something");
    assert!(hsm.objects_labelled("Private Key", "leaf").is_empty());

    // using an existing token key, after its PIN file went wrong
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    fs::write(&hsm.pin_file, "999999\n").expect("overwrite PIN file");
    let err = env.fail(&["card-verify", "ca"], EXIT_TOKEN);
    assert!(err.to_lowercase().contains("pin"), "{err}");
}

#[test]
fn final_pin_try_is_refused_without_login_unless_forced() {
    let Some(hsm) = SoftHsm::new("finaltry") else {
        return;
    };
    let shim = shim_module();
    hsm.write_profile(
        "shim",
        &hsm.profile_toml(&shim, &hsm.label, &hsm.pin_file, false),
    );
    let log = hsm.root().join("login.log");
    let env = hsm.env();
    add_leaf(&env, "leaf");

    let before = env.snapshot();
    let args = ["sign", "leaf", "on-smart-card=shim"];
    let out = run_shim(&env, CKF_USER_PIN_FINAL_TRY, &log, &args);
    let err = assert_error(&out, EXIT_TOKEN, "sign on a token at its final PIN try");
    assert!(err.to_lowercase().contains("pin"), "{err}");
    assert!(
        login_log(&log).is_empty(),
        "certman tried a login at the final PIN try: {:?}",
        login_log(&log)
    );
    assert_eq!(env.snapshot(), before, "a refused sign changed something");

    let out = run_shim(
        &env,
        CKF_USER_PIN_FINAL_TRY,
        &log,
        &["sign", "leaf", "on-smart-card=shim", "--force-last-pin-try"],
    );
    assert_success(&out, "sign … --force-last-pin-try");
    assert_eq!(login_log(&log), [format!("login {CKU_USER}")]);
    assert_flags(&env, "leaf", "KC");
    hsm.object("Private Key", "leaf");

    // card-verify is guarded the same way
    let out = run_shim(&env, CKF_USER_PIN_FINAL_TRY, &log, &["card-verify", "leaf"]);
    assert_error(&out, EXIT_TOKEN, "card-verify at the final PIN try");
    assert_eq!(login_log(&log).len(), 1, "card-verify tried a login");
    let out = run_shim(
        &env,
        CKF_USER_PIN_FINAL_TRY,
        &log,
        &["card-verify", "leaf", "--force-last-pin-try"],
    );
    assert_success(&out, "card-verify … --force-last-pin-try");
    assert!(
        stdout(&out).to_lowercase().contains("pin"),
        "{}",
        stdout(&out)
    );
    assert_eq!(login_log(&log).len(), 2);
}

#[test]
fn locked_pin_is_refused() {
    let Some(hsm) = SoftHsm::new("locked") else {
        return;
    };
    let shim = shim_module();
    hsm.write_profile(
        "shim",
        &hsm.profile_toml(&shim, &hsm.label, &hsm.pin_file, false),
    );
    let log = hsm.root().join("login.log");
    let env = hsm.env();
    add_leaf(&env, "leaf");
    let before = env.snapshot();
    let out = run_shim(
        &env,
        CKF_USER_PIN_LOCKED,
        &log,
        &["sign", "leaf", "on-smart-card=shim"],
    );
    let err = assert_error(&out, EXIT_TOKEN, "sign on a token with a locked PIN");
    assert!(err.to_lowercase().contains("locked"), "{err}");
    assert!(login_log(&log).is_empty(), "certman tried a locked PIN");
    assert_eq!(env.snapshot(), before);
}

// --- f. remove and the token key ---

#[test]
fn remove_keeps_the_token_key_unless_delete_key() {
    let Some(hsm) = SoftHsm::new("remove") else {
        return;
    };
    let env = hsm.env();
    let placement = format!("ca-on-smart-card={PROFILE}");
    for ca in ["ca1", "ca2", "ca3"] {
        token_ca(&env, ca, EC, &placement);
    }

    env.ok(&["remove", "ca1"]);
    assert!(!env.names().contains(&"ca1".to_owned()));
    assert_eq!(
        hsm.objects_labelled("Private Key", "ca1").len(),
        1,
        "remove destroyed the token key"
    );

    env.ok(&["remove", "ca2", "--delete-key"]);
    assert!(!env.names().contains(&"ca2".to_owned()));
    assert!(
        hsm.objects_labelled("Private Key", "ca2").is_empty(),
        "--delete-key left the token key"
    );

    env.ok(&["remove", "ca3", "delete-key=yes"]);
    assert!(hsm.objects_labelled("Private Key", "ca3").is_empty());
    assert_eq!(hsm.objects_labelled("Private Key", "ca1").len(), 1);
}

#[test]
fn remove_delete_key_with_a_wrong_pin_is_exit_5_and_says_the_certificate_went() {
    let Some(hsm) = SoftHsm::new("removepin") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    // The PIN file goes wrong: the key cannot be reached to destroy it.
    fs::write(&hsm.pin_file, "999999\n").expect("overwrite PIN file");
    let err = env.fail(&["remove", "ca", "--delete-key"], EXIT_TOKEN);
    assert!(err.contains("removed \"ca\" from the store"), "{err}");
    assert!(err.to_lowercase().contains("pin"), "{err}");
    assert!(!err.contains("999999"), "the error shows the PIN: {err}");
    // the store row went (one transaction, committed); the key stays on the token
    assert!(!env.names().contains(&"ca".to_owned()));
    assert_eq!(hsm.objects_labelled("Private Key", "ca").len(), 1);
}

// --- g. token print ---

#[test]
fn token_print_shows_token_and_keys() {
    let Some(hsm) = SoftHsm::new("tokprint") else {
        return;
    };
    // the profile directory through the environment this time
    let env = Env::new()
        .with_env("SOFTHSM2_CONF", &hsm.conf)
        .with_env("CERTMAN_TOKENS", &hsm.tokens_dir);
    let name = "root-7f3e";
    token_ca(&env, name, EC, &format!("ca-on-smart-card={PROFILE}"));
    let serial = hsm.serial();

    let all = env.ok(&["token", "print"]);
    for want in [PROFILE, hsm.label.as_str(), serial.as_str(), name] {
        assert!(all.contains(want), "token print lacks {want:?}:\n{all}");
    }
    let one = env.ok(&["token", "print", PROFILE]);
    for want in [hsm.label.as_str(), name] {
        assert!(
            one.contains(want),
            "token print {PROFILE} lacks {want:?}:\n{one}"
        );
    }
    assert!(!all.contains(&hsm.pin) && !one.contains(&hsm.pin));

    let text = env.ok(&["token", "print", "--json"]);
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("token print --json is not JSON: {e}\n{text}"));
    let mut strings = Vec::new();
    json_strings(&json, &mut strings);
    for want in [hsm.label.as_str(), serial.as_str(), "SoftHSM v2"] {
        assert!(
            strings.iter().any(|s| s.trim() == want),
            "token print --json lacks {want:?}:\n{text}"
        );
    }
    assert!(
        strings
            .iter()
            .any(|s| s == name || s.contains(&format!("object={name}"))),
        "token print --json lacks the key {name}:\n{text}"
    );
}

// --- h. a token that is not there ---

#[test]
fn missing_token_is_exit_5() {
    let Some(hsm) = SoftHsm::new("present") else {
        return;
    };
    hsm.write_profile(
        "nosuch",
        &hsm.profile_toml(&hsm.module, "nosuch", &hsm.pin_file, false),
    );
    let env = hsm.env();
    add_leaf(&env, "leaf");
    let before = env.snapshot();
    let err = env.fail(&["sign", "leaf", "on-smart-card=nosuch"], EXIT_TOKEN);
    assert!(
        err.contains("nosuch"),
        "the error does not name the token: {err}"
    );
    assert_eq!(env.snapshot(), before);
}

// --- CRLs of a CA whose key is on the token ---

#[test]
fn a_token_ca_signs_its_crl_on_the_token() {
    let Some(hsm) = SoftHsm::new("crl") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", RSA2048, &format!("ca-on-smart-card={PROFILE}"));
    env.issue("srv", "ca", EC);
    let ca = env.export_cert("ca");
    let srv = env.export_cert("srv");
    // The CA's private key exists only on the token, sensitive and never extractable: any
    // signature that verifies with the CA's certificate was made there.
    let key = hsm.object("Private Key", "ca");
    let access = key.access();
    assert!(
        access.iter().any(|a| a == "sensitive") && access.iter().any(|a| a == "never extractable"),
        "CA key access: {access:?}"
    );

    env.ok(&["issued-revoke", "srv", "reason=superseded"]);
    let crl = export_crl(&env, "ca", "1");
    assert_crl_signed_by(&crl, &ca);
    assert_eq!(crl_number(&crl), 2);
    let (ok, text) = openssl_verify_crl(&ca, &[], &[&crl], &srv);
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    // With the token's PIN gone wrong, a revocation fails as a PIN problem and changes
    // nothing: the certificate is not marked revoked without its CRL.
    env.issue("other", "ca", EC);
    let before = env.snapshot();
    let crls_before = env.ok(&["crl", "print", "--json"]);
    fs::write(&hsm.pin_file, "999999\n").expect("overwrite PIN file");
    let err = env.fail(&["issued-revoke", "other"], EXIT_TOKEN);
    assert_eq!(env.ok(&["crl", "print", "--json"]), crls_before);
    assert!(err.to_lowercase().contains("pin"), "{err}");
    assert_eq!(
        env.snapshot(),
        before,
        "a failed revocation changed something"
    );
}
