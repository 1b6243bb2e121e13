//! One PIN try per token per process, counted by the PKCS#11 shim's login log
//! (`tests/fixtures/pkcs11-shim.c` over SoftHSM2): with a wrong PIN in the profile that three
//! CAs share, `crl renew` tries it once, `serve` at start once, `token print` never (and
//! `--login` once); a key made from a profile follows the profile's pin-source (a moved PIN
//! file is not fatal once the profile says where it went); a key made from an explicit URI
//! keeps its own, and `set NAME pin-source=` changes it; a PIN source that yields nothing
//! usable is refused before any C_Login.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::daemon::Daemon;
use common::softhsm::*;
use common::*;

fn login_count(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn shim_run(env: &Env, log: &Path, args: &[&str]) -> Output {
    env.command(args)
        .env("SHIM_REAL_MODULE", SOFTHSM_MODULE)
        .env("SHIM_LOGIN_LOG", log)
        .output()
        .expect("run certman")
}

/// A SoftHSM token behind the shim, its profile `shim` (the default) reading `pin.txt`, and
/// three CAs whose keys are on it.
fn three_cas() -> Option<(SoftHsm, Env, std::path::PathBuf)> {
    let hsm = SoftHsm::new("pineco")?;
    let shim = shim_module();
    let pin_file = hsm.write_pin_file("pin.txt", USER_PIN);
    hsm.write_profile(
        "shim",
        &hsm.profile_toml(&shim, &hsm.label, &pin_file, false),
    );
    let env = hsm.env();
    let log = hsm.root().join("setup.log");
    for ca in ["ca1", "ca2", "ca3"] {
        assert_success(
            &shim_run(
                &env,
                &log,
                &[
                    "add",
                    &format!("name={ca}-t"),
                    &format!("common-name={ca}"),
                    "key-type=ec",
                ],
            ),
            "add",
        );
        assert_success(
            &shim_run(
                &env,
                &log,
                &[
                    "sign",
                    &format!("{ca}-t"),
                    &format!("name={ca}"),
                    "on-smart-card=shim",
                ],
            ),
            "sign on the token",
        );
    }
    Some((hsm, env, pin_file))
}

#[test]
fn a_wrong_pin_shared_by_three_cas_is_tried_once_per_process() {
    let Some((hsm, env, pin_file)) = three_cas() else {
        return;
    };
    std::fs::write(&pin_file, "wrong-pin-000\n").unwrap();
    let log = hsm.root().join("renew.log");
    let out = shim_run(&env, &log, &["crl", "renew"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(login_count(&log), 1, "crl renew: {}", stderr(&out));
    assert!(stderr(&out).contains("not tried again"), "{}", stderr(&out));

    // a script is one process: its lines that need the token (renewals, a card-verify, a CRL
    // download's manager) share one PIN try
    let script = hsm.root().join("renew.rsc");
    std::fs::write(
        &script,
        "/certificate crl renew ca1\n/certificate crl renew ca2\ncard-verify ca3\ncrl download\n",
    )
    .unwrap();
    let log = hsm.root().join("script.log");
    let out = shim_run(
        &env,
        &log,
        &["script", "--continue", script.to_str().unwrap()],
    );
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(login_count(&log), 1, "script: {}", stderr(&out));
    assert!(stderr(&out).contains("renew.rsc:2"), "{}", stderr(&out));

    // serve: its first renewal look at start tries the PIN once, for all three CAs (made
    // due by ageing their CRLs two days in the store)
    let db = rusqlite::Connection::open(env.root().join("store/certman.db")).unwrap();
    db.execute("UPDATE crls SET this_update = this_update - 172800", [])
        .unwrap();
    drop(db);
    let log = hsm.root().join("serve.log");
    let mut d = Daemon::start_with(
        &env,
        &["listen=127.0.0.1:0"],
        &[
            ("SHIM_REAL_MODULE", SOFTHSM_MODULE),
            ("SHIM_LOGIN_LOG", log.to_str().unwrap()),
        ],
    );
    let text = d.wait_for_log("CRL of ca3 not renewed", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    drop(d);
    assert_eq!(login_count(&log), 1, "serve: {text}");

    // token print looks without logging in; --login logs in (once)
    let log = hsm.root().join("print.log");
    let out = shim_run(&env, &log, &["token", "print"]);
    assert_success(&out, "token print");
    assert!(stdout(&out).contains(&hsm.label), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ca1"),
        "certificate objects are public: {}",
        stdout(&out)
    );
    assert_eq!(login_count(&log), 0, "token print logged in");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    let out = shim_run(&env, &log, &["token", "print", "--login"]);
    assert_success(&out, "token print --login");
    assert_eq!(login_count(&log), 1);
    assert!(stdout(&out).contains("private-key"), "{}", stdout(&out));
}

#[test]
fn profile_keys_follow_the_profile_and_uri_keys_their_set_pin_source() {
    let Some((hsm, env, pin_file)) = three_cas() else {
        return;
    };
    // the PIN file moves; the profile says where it went: the CA still signs
    let moved = hsm.write_pin_file("moved-pin.txt", USER_PIN);
    std::fs::remove_file(&pin_file).unwrap();
    let shim = shim_module();
    hsm.write_profile("shim", &hsm.profile_toml(&shim, &hsm.label, &moved, false));
    let log = hsm.root().join("moved.log");
    assert_success(
        &shim_run(&env, &log, &["crl", "renew", "ca1"]),
        "renew after the move",
    );

    // a profile's key does not take set pin-source=
    let out = shim_run(&env, &log, &["set", "ca1", "pin-source=file:/nowhere"]);
    let err = assert_error(&out, EXIT_REFUSED, "set pin-source on a profile key");
    assert!(err.contains("profile"), "{err}");

    // a key made from an explicit URI keeps that URI's pin-source …
    let uri_pin = hsm.write_pin_file("uri-pin.txt", USER_PIN);
    let uri = format!(
        "pkcs11:token={};object=uri-ca?module-path={}&pin-source=file:{}",
        hsm.label,
        shim.display(),
        uri_pin.display()
    );
    assert_success(
        &shim_run(
            &env,
            &log,
            &["add", "name=u-t", "common-name=u", "key-type=ec"],
        ),
        "add",
    );
    assert_success(
        &shim_run(
            &env,
            &log,
            &["sign", "u-t", "name=u", &format!("key={uri}")],
        ),
        "sign at a URI",
    );
    // … the file moves: renewal fails until set pin-source= says where
    let uri_moved = hsm.write_pin_file("uri-pin-moved.txt", USER_PIN);
    std::fs::remove_file(&uri_pin).unwrap();
    let out = shim_run(&env, &log, &["crl", "renew", "u"]);
    assert_ne!(out.status.code(), Some(0));
    assert_success(
        &shim_run(
            &env,
            &log,
            &[
                "set",
                "u",
                &format!("pin-source=file:{}", uri_moved.display()),
            ],
        ),
        "set pin-source",
    );
    assert_success(
        &shim_run(&env, &log, &["crl", "renew", "u"]),
        "renew after set",
    );
}

#[test]
fn a_pin_source_with_nothing_usable_is_refused_before_any_login() {
    let Some((hsm, env, pin_file)) = three_cas() else {
        return;
    };
    for (what, content) in [
        ("empty", Vec::new()),
        ("too long", vec![b'1'; 5000]),
        ("not text", vec![0xff, 0xfe, 0x31, 0x32]),
        ("longer than the token takes", b"1234567890".repeat(30)),
    ] {
        std::fs::write(&pin_file, &content).unwrap();
        let log = hsm.root().join(format!("{}.log", what.replace(' ', "-")));
        let out = shim_run(&env, &log, &["crl", "renew", "ca1"]);
        assert_ne!(out.status.code(), Some(0), "{what}");
        assert_eq!(login_count(&log), 0, "{what}: {}", stderr(&out));
    }
}
