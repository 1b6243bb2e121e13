//! `store reseal seal-key-source=NEW`: every secret at rest moves from the current sealing
//! key to another in one transaction (or, when one does not open, nothing moves); afterwards
//! the new source opens everything and the old one nothing. And the `pkcs11:` source: a
//! secret key on a SoftHSM token that two "nodes" with different machine ids share; and the
//! `piv:` source: a data key wrapped to an RSA key on the virtual PIV card
//! (`scripts/virtual-piv.sh start`, its reader in `CERTMAN_PIV_READER`; skipped without it,
//! failed under `CERTMAN_REQUIRE_TOKENS=1`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::piv::*;
use common::softhsm::*;
use common::*;

/// A 0600 key file of 32 random bytes (hex) under the env's root.
fn key_file(env: &Env, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = env.root().join(name);
    fs::write(&key, format!("{}\n", random_hex(32))).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    key
}

/// certman in `env` with `source` as the current seal-key-source (and, if given, another
/// machine id: another node).
fn with_source(env: &Env, source: &str, machine_id: Option<&Path>, args: &[&str]) -> Output {
    let mut c = env.command(args);
    c.env("CERTMAN_SEAL_KEY_SOURCE", source);
    if let Some(m) = machine_id {
        c.env("CERTMAN_MACHINE_ID_FILE", m);
    }
    c.output().expect("run certman")
}

/// `name: value` lines of a report, as numbers.
fn counts(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a count")))
        .collect()
}

/// A store holding every kind of secret `store reseal` knows but the SCEP client's: a soft
/// CA key, its export passphrase, a key kept encrypted (flag Q), a soft leaf template.
fn store_with_secrets(env: &Env) {
    env.make_ca("ca", &["key-type=ec"]);
    env.ok(&["ca-set-passphrase", "ca", "passphrase=ca-export-pass1"]);
    let enc = env.path("enc.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes256",
            "-pass",
            "pass:imported-pass1",
            "-out",
            enc.to_str().unwrap(),
        ],
        Path::new("/"),
    );
    env.ok(&["import", "file-name=enc.pem"]);
    fs::remove_file(&enc).unwrap();
    env.ok(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]);
}

#[test]
fn machine_id_to_a_key_file_and_the_old_source_opens_nothing() {
    let env = Env::new();
    store_with_secrets(&env);
    let key = key_file(&env, "seal.key");
    let new = format!("file:{}", key.display());

    let out = env.ok(&["store", "reseal", &format!("seal-key-source={new}")]);
    assert_eq!(
        counts(&out),
        [
            ("soft-keys-resealed".to_owned(), 1),
            ("encrypted-keys-resealed".to_owned(), 1),
            ("ca-passphrases-resealed".to_owned(), 1),
            ("scep-challenges-resealed".to_owned(), 0),
            ("scep-requests-resealed".to_owned(), 0),
        ],
        "{out}"
    );

    // the old source (the machine id) opens nothing, with one clear line, and changes nothing
    let before = env.snapshot();
    let err = env.fail(&["sign", "leaf", "ca=ca"], EXIT_FAILED);
    assert!(err.contains("seal-key-source"), "{err}");
    let err = env.fail(&["export-certificate", "ca"], EXIT_FAILED);
    assert!(err.contains("cannot unseal"), "{err}");
    let err = env.fail(&["decrypt", "passphrase=imported-pass1"], EXIT_FAILED);
    assert!(err.contains("cannot unseal"), "{err}");
    assert_eq!(env.snapshot(), before);

    // the new one opens everything: the CA signs, its stored passphrase exports its key, the
    // key kept encrypted decrypts
    assert_success(
        &with_source(&env, &new, None, &["sign", "leaf", "ca=ca"]),
        "sign with the new source",
    );
    // (the CA's export takes its key along, with the stored passphrase)
    assert_success(
        &with_source(&env, &new, None, &["export-certificate", "ca"]),
        "export with the stored passphrase",
    );
    assert_verifies(&env.path("cert_export_ca.crt"), &env.export_cert("leaf"));
    let key_pem = env.path("cert_export_ca.key");
    assert_eq!(
        key_public_key(&key_pem, "ca-export-pass1"),
        cert_public_key(&env.path("cert_export_ca.crt"))
    );
    // (the key kept encrypted opens: it has no certificate here to join, which decrypt says)
    let out = with_source(&env, &new, None, &["decrypt", "passphrase=imported-pass1"]);
    let err = stderr(&out);
    assert!(err.contains("opens 1 private key"), "{err}");

    // and back (--json): the machine id again opens it all
    let out = with_source(
        &env,
        &new,
        None,
        &["--json", "store", "reseal", "machine-id"],
    );
    assert_success(&out, "reseal back");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["soft-keys-resealed"], 2, "{v}");
    assert_eq!(v["ca-passphrases-resealed"], 1, "{v}");
    env.ok(&["add", "name=leaf2", "common-name=leaf2"]);
    env.ok(&["sign", "leaf2", "ca=ca"]);
}

#[test]
fn a_reseal_from_the_wrong_current_source_changes_nothing() {
    let env = Env::new();
    store_with_secrets(&env);
    let wrong = format!("file:{}", key_file(&env, "wrong.key").display());
    let new = format!("file:{}", key_file(&env, "new.key").display());
    let before = env.snapshot();
    let out = with_source(&env, &wrong, None, &["store", "reseal", &new]);
    let err = assert_error(&out, EXIT_FAILED, "reseal from the wrong source");
    assert!(
        err.contains("cannot unseal") && err.contains("seal-key-source"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);
    // nothing moved: the machine id still opens everything, the new key nothing
    let out = with_source(&env, &new, None, &["export-certificate", "ca"]);
    assert_error(&out, EXIT_FAILED, "export with the new key");
    env.ok(&["sign", "leaf", "ca=ca"]);
    env.ok(&["export-certificate", "ca"]);
    // a new source that cannot be had is refused before anything is opened
    let out = env.run(&["store", "reseal", "file:/no/such/seal.key"]);
    let err = assert_error(&out, EXIT_FAILED, "a missing key file");
    assert!(err.contains("/no/such/seal.key"), "{err}");
    let err = env.fail(&["store", "reseal", "bogus:x"], EXIT_FAILED);
    assert!(err.contains("seal-key-source"), "{err}");
}

/// The seal-key-source of the secret key `object` on the SoftHSM token, through `module`.
fn token_source(hsm: &SoftHsm, module: &Path, object: &str, pin_file: &Path) -> String {
    format!(
        "pkcs11:token={};object={object}?module-path={}&pin-source=file:{}",
        hsm.label,
        module.display(),
        pin_file.display()
    )
}

#[test]
fn a_token_secret_key_seals_for_a_second_node_reaching_the_same_token() {
    let Some(hsm) = SoftHsm::new("reseal") else {
        return;
    };
    let env = hsm.env();
    let source = token_source(&hsm, &hsm.module, "seal", &hsm.pin_file);

    // the key is made on the token, once; it cannot leave it
    let out = env.ok(&["store", "seal-key-generate", &source]);
    assert!(out.contains("seal-key-generated: yes"), "{out}");
    let err = env.fail(&["store", "seal-key-generate", &source], EXIT_REFUSED);
    assert!(err.contains("already holds"), "{err}");
    let key = hsm.object("Secret Key", "seal");
    let access = key.access();
    for want in ["sensitive", "never extractable", "local"] {
        assert!(access.iter().any(|a| a == want), "{want}: {key:?}");
    }

    // node A (machine id) makes the CA and moves the store to the token's key
    env.make_ca("ca", &["key-type=ec"]);
    env.ok(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]);
    let out = env.ok(&["store", "reseal", &format!("seal-key-source={source}")]);
    assert!(out.contains("soft-keys-resealed: 1"), "{out}");

    // node B: another machine id, the same store and token: the software CA key signs
    let node_b = env.root().join("machine-id-b");
    fs::write(&node_b, format!("{}\n", random_hex(16))).unwrap();
    let t = std::time::Instant::now();
    let out = with_source(&env, &source, Some(&node_b), &["sign", "leaf", "ca=ca"]);
    assert_success(
        &out,
        "node B signs with the CA key sealed under the token's key",
    );
    eprintln!(
        "sign on node B (seal key derived on SoftHSM): {:?}",
        t.elapsed()
    );
    assert_verifies(&env.export_cert("ca"), &env.export_cert("leaf"));
    // node B without the token's key (its machine id) opens nothing
    env.ok(&["add", "name=leaf2", "common-name=leaf2", "key-type=ec"]);
    let out = env
        .command(&["sign", "leaf2", "ca=ca"])
        .env("CERTMAN_MACHINE_ID_FILE", &node_b)
        .output()
        .unwrap();
    assert_error(&out, EXIT_FAILED, "node B with its machine id");

    // a key pkcs11-tool made works as well: the store moves to it
    hsm.pkcs11_ok(&[
        "--keygen",
        "--key-type",
        "GENERIC:32",
        "--label",
        "seal-tool",
        "--sensitive",
    ]);
    let tool = token_source(&hsm, &hsm.module, "seal-tool", &hsm.pin_file);
    let out = with_source(&env, &source, None, &["store", "reseal", &tool]);
    assert_success(&out, "reseal to the pkcs11-tool key");
    assert_success(
        &with_source(&env, &tool, Some(&node_b), &["sign", "leaf2", "ca=ca"]),
        "sign under the pkcs11-tool key",
    );
    assert_verifies(&env.export_cert("ca"), &env.export_cert("leaf2"));

    // one clear line when the key cannot be used (no such object, a key pair under the
    // label, no such token), and the store as it was; a profile may name token, module, PIN
    let before = env.snapshot();
    let missing = token_source(&hsm, &hsm.module, "nothing", &hsm.pin_file);
    let out = with_source(&env, &missing, None, &["print"]);
    let err = assert_error(&out, EXIT_TOKEN, "no such secret key");
    assert!(err.contains("no secret key \"nothing\""), "{err}");
    hsm.pkcs11_ok(&[
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "ecpair",
    ]);
    let pair = token_source(&hsm, &hsm.module, "ecpair", &hsm.pin_file);
    let out = with_source(&env, &pair, None, &["print"]);
    let err = assert_error(&out, EXIT_USAGE, "an EC key pair under the label");
    assert!(err.contains("not a secret key"), "{err}");
    let absent = tool.replace("token=reseal", "token=absent");
    let out = with_source(&env, &absent, None, &["print"]);
    let err = assert_error(&out, EXIT_TOKEN, "no such token");
    assert!(err.contains("not present"), "{err}");
    assert_eq!(env.snapshot(), before);
    let by_profile = format!("pkcs11:object=seal-tool?profile={PROFILE}");
    assert_success(
        &with_source(&env, &by_profile, None, &["export-certificate", "leaf2"]),
        "the token and PIN from the profile",
    );
}

/// One login per token per process: the sealing key and a CA key on the same token (through
/// the login-counting shim), the PIN read once from its pin-source file, no prompt.
#[test]
fn the_sealing_key_and_a_token_ca_share_one_login() {
    let Some(hsm) = SoftHsm::new("reseal-login") else {
        return;
    };
    let shim = shim_module();
    let pin_file = hsm.write_pin_file("pin.txt", USER_PIN);
    hsm.write_profile(
        "shim",
        &hsm.profile_toml(&shim, &hsm.label, &pin_file, false),
    );
    let env = hsm.env().with_env("SHIM_REAL_MODULE", SOFTHSM_MODULE);
    let source = token_source(&hsm, &shim, "seal", &pin_file);
    env.ok(&["store", "seal-key-generate", &source]);
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&["sign", "ca-tpl", "name=ca", "on-smart-card=shim"]);
    assert_success(
        &with_source(&env, &source, None, &["store", "reseal", &source]),
        "a store with nothing sealed yet moves to the token's key",
    );
    let log = hsm.root().join("logins.log");
    let run = |args: &[&str]| {
        env.command(args)
            .env("CERTMAN_SEAL_KEY_SOURCE", &source)
            .env("SHIM_LOGIN_LOG", &log)
            .output()
            .unwrap()
    };
    assert_success(
        &run(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]),
        "add",
    );
    let _ = fs::remove_file(&log);
    // the leaf's soft key is made and sealed (the HMAC on the token), the CA signs on the token
    assert_success(&run(&["sign", "leaf", "ca=ca"]), "sign");
    let logins = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(logins.lines().count(), 1, "logins: {logins}");
    assert_verifies(&env.export_cert("ca"), &env.export_cert("leaf"));
}

/// The virtual PIV card: one test at a time.
static CARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// PIN tries left (yubico-piv-tool prints -1 while the PIN is verified: the counter is full).
fn piv_pin_tries(reader: &str) -> i32 {
    let out = piv_tool(reader, &["-a", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let tries: i32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PIN tries in status: {text}"));
    if tries < 0 {
        3
    } else {
        tries
    }
}

/// An RSA-2048 key made in slot 9d (key management) of the card by certman, issued a
/// certificate (by a CA of another store) that certman writes into the slot.
fn piv_rsa_key_in_9d(reader: &str, pin_file: &Path) {
    let _ = piv_tool(reader, &["-a", "delete-certificate", "-s", "9d"]);
    let setup = Env::new();
    let tokens = setup.root().join("tokens");
    fs::create_dir_all(&tokens).unwrap();
    let mgm = setup.root().join("mgm");
    fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").unwrap();
    fs::write(
        tokens.join("piv-9d.toml"),
        format!(
            "kind = \"piv\"\nreader = \"{}\"\nslot = \"9d\"\npin-source = \"file:{}\"\n\
             management-key-source = \"file:{}\"\n",
            reader.replace('\\', "\\\\").replace('"', "\\\""),
            pin_file.display(),
            mgm.display()
        ),
    )
    .unwrap();
    let setup = setup.with_global_args(&["--tokens".to_owned(), tokens.display().to_string()]);
    setup.make_ca("setup-ca", &["key-type=ec"]);
    setup.ok(&[
        "add",
        "name=seal",
        "common-name=certman seal",
        "key-type=rsa",
        "key-size=2048",
        "key-usage=key-encipherment",
    ]);
    setup.ok(&["sign", "seal", "ca=setup-ca", "on-smart-card=piv-9d"]);
}

/// The seal-key-source of the RSA key in `slot` of the card in `reader`.
fn piv_source(reader: &str, slot: &str, pin_file: &Path) -> String {
    format!(
        "piv:slot-id={slot};reader={}?pin-source=file:{}",
        reader.replace('%', "%25").replace(' ', "%20"),
        pin_file.display()
    )
}

#[test]
fn a_data_key_wrapped_to_a_piv_card_seals_for_a_second_node_with_the_card() {
    let Some(reader) = piv_reader() else {
        return;
    };
    let _card = CARD.lock().unwrap_or_else(|p| p.into_inner());
    if piv_pin_tries(&reader) < 3 {
        assert!(piv_tool(&reader, &["-a", "verify-pin", "-P", PIV_PIN])
            .status
            .success());
    }
    let env = Env::new();
    let pin_file = env.root().join("piv.pin");
    fs::write(&pin_file, format!("{PIV_PIN}\n")).unwrap();
    piv_rsa_key_in_9d(&reader, &pin_file);
    let source = piv_source(&reader, "9d", &pin_file);

    // node A (machine id) moves the store to the card's key: a data key is made, wrapped to
    // the certificate's public key, and kept with the re-sealed secrets
    store_with_secrets(&env);
    let out = env.ok(&["store", "reseal", &format!("seal-key-source={source}")]);
    assert!(out.contains("soft-keys-resealed: 1"), "{out}");
    assert!(out.contains("ca-passphrases-resealed: 1"), "{out}");

    // node B: another machine id, the same store and the card: the software CA key signs,
    // and OpenSSL verifies what it signed
    let node_b = env.root().join("machine-id-b");
    fs::write(&node_b, format!("{}\n", random_hex(16))).unwrap();
    let t = std::time::Instant::now();
    let out = with_source(&env, &source, Some(&node_b), &["sign", "leaf", "ca=ca"]);
    assert_success(
        &out,
        "node B signs with the CA key sealed under the card's data key",
    );
    eprintln!(
        "sign on node B (data key unwrapped on the card): {:?}",
        t.elapsed()
    );
    assert!(!stderr(&out).contains(PIV_PIN), "the PIN reached stderr");
    // (the CA's export takes its key along, with its passphrase stored sealed)
    assert_success(
        &with_source(&env, &source, Some(&node_b), &["export-certificate", "ca"]),
        "node B exports the CA with its stored passphrase",
    );
    assert_verifies(&env.path("cert_export_ca.crt"), &env.export_cert("leaf"));

    // the old source (node A's machine id) opens nothing
    let err = env.fail(&["export-certificate", "ca"], EXIT_FAILED);
    assert!(err.contains("cannot unseal"), "{err}");

    // the card not there, or a slot without a certificate: one clear line, nothing changed
    let before = env.snapshot();
    let absent = piv_source("no such reader", "9d", &pin_file);
    let out = with_source(&env, &absent, Some(&node_b), &["print"]);
    let err = assert_error(&out, EXIT_TOKEN, "a card that is not there");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no such reader") && err.contains("9d"),
        "{err}"
    );
    let _ = piv_tool(&reader, &["-a", "delete-certificate", "-s", "9a"]);
    let no_cert = piv_source(&reader, "9a", &pin_file);
    let out = with_source(&env, &no_cert, Some(&node_b), &["print"]);
    let err = assert_error(&out, EXIT_REFUSED, "a slot without a certificate");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("put the key's certificate in the slot"),
        "{err}"
    );
    assert_eq!(env.snapshot(), before);

    // from the card to a key file: the file opens everything, the card nothing
    let key = key_file(&env, "seal.key");
    let file = format!("file:{}", key.display());
    let out = with_source(&env, &source, Some(&node_b), &["store", "reseal", &file]);
    assert_success(&out, "reseal from the card to a key file");
    assert!(
        stdout(&out).contains("soft-keys-resealed: 2"),
        "{}",
        stdout(&out)
    );
    env.ok(&["add", "name=leaf2", "common-name=leaf2", "key-type=ec"]);
    let out = with_source(&env, &file, Some(&node_b), &["sign", "leaf2", "ca=ca"]);
    assert_success(&out, "sign under the key file");
    let out = with_source(&env, &source, Some(&node_b), &["export-certificate", "ca"]);
    let err = assert_error(&out, EXIT_FAILED, "the card's data key after the reseal");
    assert!(err.contains("cannot unseal"), "{err}");

    // a store whose secrets the card never sealed gets no data key on first use: nothing is
    // written, and `store reseal` is named
    let other = Env::new();
    store_with_secrets(&other);
    let before = other.snapshot();
    let out = with_source(&other, &source, None, &["print"]);
    let err = assert_error(&out, EXIT_FAILED, "first use on a store sealed otherwise");
    assert!(err.contains("store reseal"), "{err}");
    assert_eq!(other.snapshot(), before);

    // a new store on the card from its first command: the data key is made then, and kept
    let fresh = Env::new().with_env("CERTMAN_SEAL_KEY_SOURCE", &source);
    fresh.make_ca("ca", &["key-type=ec"]);
    fresh.ok(&["add", "name=leaf", "common-name=leaf", "key-type=ec"]);
    let out = fresh
        .command(&["sign", "leaf", "ca=ca"])
        .env("CERTMAN_MACHINE_ID_FILE", &node_b)
        .output()
        .unwrap();
    assert_success(&out, "a second node on a store that began on the card");
    assert_verifies(&fresh.export_cert("ca"), &fresh.export_cert("leaf"));

    // no PIN try was spent
    assert_eq!(piv_pin_tries(&reader), 3, "the PIN counter changed");
    let _ = piv_tool(&reader, &["-a", "delete-certificate", "-s", "9d"]);
}
