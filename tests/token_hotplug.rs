//! Tokens that come and go while `serve` runs (issue 17, hot-plug): a CA whose token is pulled
//! makes `/health` degraded naming it within 5 s, an operation needing its key fails at once
//! with "token absent" (exit 5), CRLs are still served; reinserted, the CA is back without a
//! restart, and no PIN try is spent beyond the ones the operations needed.
//!
//! PKCS#11: SoftHSM2 behind the test shim (`tests/fixtures/pkcs11-shim.c`), whose
//! `SHIM_ABSENT_FILE` pulls the token while the file exists (C_GetSlotList lists no token,
//! CKR_TOKEN_NOT_PRESENT / CKR_DEVICE_REMOVED, the real sessions closed), and whose login log
//! counts every C_Login.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::daemon::{http_get, Daemon};
use common::softhsm::*;
use common::*;

fn login_count(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The shim's environment: the real module, the login log, the file that pulls the token.
fn shim_vars(log: &Path, absent: &Path) -> Vec<(String, String)> {
    vec![
        ("SHIM_REAL_MODULE".into(), SOFTHSM_MODULE.into()),
        ("SHIM_LOGIN_LOG".into(), log.display().to_string()),
        ("SHIM_ABSENT_FILE".into(), absent.display().to_string()),
    ]
}

fn shim_run(env: &Env, log: &Path, absent: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = env
        .command(args)
        .envs(shim_vars(log, absent))
        .output()
        .expect("run certman");
    (out, started.elapsed())
}

/// The `key-state` of the one entry `print NAME --json` printed.
fn key_state(out: &Output) -> String {
    assert_success(out, "print --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["key-state"].as_str().unwrap_or_default().to_owned()
}

/// `GET /health`: (status, JSON).
fn health(port: u16) -> (u16, serde_json::Value) {
    let (status, head, body) = http_get(port, "/health");
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {head}"));
    (status, v)
}

fn reasons(v: &serde_json::Value) -> Vec<(String, String)> {
    common::daemon::health_reasons(v)
}

/// Polls `/health` until `want` holds; returns how long that took (panics after `limit`).
fn health_until(
    port: u16,
    limit: Duration,
    want: impl Fn(u16, &serde_json::Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, v) = health(port);
        if want(status, &v) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "/health not as wanted within {limit:?}: {status} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes every CRL due, so that the next renewal look of `serve` signs them.
fn age_crls(env: &Env) {
    let db = rusqlite::Connection::open(env.store.join("certman.db")).unwrap();
    db.execute("UPDATE crls SET this_update = this_update - 172800", [])
        .unwrap();
}

#[test]
fn a_pulled_pkcs11_token_fails_its_operations_at_once_and_comes_back() {
    let Some(hsm) = SoftHsm::new("hotplug") else {
        return;
    };
    let shim = shim_module();
    let pin_file = hsm.write_pin_file("pin.txt", USER_PIN);
    hsm.write_profile(
        "shim",
        &hsm.profile_toml(&shim, &hsm.label, &pin_file, false),
    );
    let env = hsm.env();
    let absent: PathBuf = hsm.root().join("token-pulled");
    let setup = hsm.root().join("setup.log");
    let run = |log: &Path, args: &[&str]| shim_run(&env, log, &absent, args);
    // A CA on the token (tca), one in software (soft); a leaf of each.
    for (ca, on_token) in [("tca", true), ("soft", false)] {
        let tpl = format!("name={ca}-t");
        let cn = format!("common-name={ca}");
        assert_success(&run(&setup, &["add", &tpl, &cn, "key-type=ec"]).0, "add");
        let mut sign = vec!["sign".to_owned(), format!("{ca}-t"), format!("name={ca}")];
        if on_token {
            sign.push("on-smart-card=shim".into());
        }
        let sign: Vec<&str> = sign.iter().map(String::as_str).collect();
        assert_success(&run(&setup, &sign).0, "sign");
        for leaf in [format!("{ca}-leaf1"), format!("{ca}-leaf2")] {
            let name = format!("name={leaf}");
            let cn = format!("common-name={leaf}");
            assert_success(&run(&setup, &["add", &name, &cn, "key-type=ec"]).0, "add");
            let ca_arg = format!("ca={ca}");
            assert_success(&run(&setup, &["sign", &leaf, &ca_arg]).0, "sign leaf");
        }
    }

    // serve, whose first renewal look signs the token CA's CRL (its login: one)
    age_crls(&env);
    let serve_log = hsm.root().join("serve.log");
    let config = env.path("serve.toml");
    std::fs::write(&config, "crl-renew-check = 1\n").unwrap();
    let vars = shim_vars(&serve_log, &absent);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut d = Daemon::start_with(
        &env,
        &[
            "listen=127.0.0.1:0",
            &format!("config={}", config.display()),
        ],
        &vars,
    );
    d.wait_for_log("CRL of tca renewed", Duration::from_secs(30));
    health_until(d.port, Duration::from_secs(5), |s, _| s == 200);
    assert_eq!(login_count(&serve_log), 1, "{}", d.log());

    // Pulled: /health names the CA within 5 s.
    std::fs::write(&absent, b"").unwrap();
    let pulled = Instant::now();
    let seen = health_until(d.port, Duration::from_secs(5), |s, v| {
        s == 503 && reasons(v).contains(&("token-absent".into(), "tca".into()))
    });
    eprintln!("hotplug: /health degraded {seen:?} after the pull");
    let (_, v) = health(d.port);
    assert_eq!(
        reasons(&v),
        [("token-absent".to_owned(), "tca".to_owned())],
        "only the token CA: {v}"
    );
    // An operation needing the key fails at once, with the state.
    let cli_log = hsm.root().join("cli.log");
    let (out, took) = run(&cli_log, &["issued-revoke", "tca-leaf1"]);
    let err = assert_error(&out, 5, "issued-revoke with the token pulled");
    assert!(err.contains("token absent"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    eprintln!("hotplug: issued-revoke refused in {took:?}");
    assert_eq!(login_count(&cli_log), 0);
    // `print detail` and `--json` show the key's state; the software CA has none
    assert_eq!(
        key_state(&run(&cli_log, &["print", "--json", "tca"]).0),
        "token-absent"
    );
    let (out, _) = run(&cli_log, &["print", "detail", "tca"]);
    assert!(
        stdout(&out).contains("key-state=\"token-absent\""),
        "{}",
        stdout(&out)
    );
    let (out, _) = run(&cli_log, &["print", "--json", "soft"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0].get("key-state").is_none(), "{v}");
    let (out, _) = run(&cli_log, &["token", "print"]);
    assert!(
        stdout(&out).contains("  tca: token-absent"),
        "{}",
        stdout(&out)
    );
    assert_eq!(login_count(&cli_log), 0, "looking costs no login");
    // Everything else goes on: the CRLs from the store, the software CA's operations.
    for ca in ["tca", "soft"] {
        let (status, _, body) = d.get(&format!("/crl/{ca}.crl"));
        assert_eq!(status, 200, "/crl/{ca}.crl");
        assert!(!body.is_empty());
    }
    assert_success(
        &run(&cli_log, &["issued-revoke", "soft-leaf1"]).0,
        "a software CA's revocation",
    );
    // serve's own renewal of the token CA finds it absent, without a login.
    age_crls(&env);
    d.wait_for_log("CRL of tca not renewed", Duration::from_secs(30));
    assert_eq!(login_count(&serve_log), 1, "{}", d.log());

    // Reinserted after 10 s: back without a restart.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(pulled.elapsed()));
    std::fs::remove_file(&absent).unwrap();
    let back = health_until(d.port, Duration::from_secs(5), |s, _| s == 200);
    eprintln!("hotplug: /health ok {back:?} after the reinsertion");
    let (out, took) = run(&cli_log, &["issued-revoke", "tca-leaf1"]);
    assert_success(&out, "issued-revoke with the token back");
    assert_eq!(
        key_state(&run(&cli_log, &["print", "--json", "tca"]).0),
        "online"
    );
    eprintln!("hotplug: issued-revoke with the token back in {took:?}");
    assert_eq!(login_count(&cli_log), 1, "the CLI's one login");
    // serve's renewal recovers (slot found again by serial, login again with the PIN from
    // its source, the operation retried once): one more login, no other.
    let before = d.log().matches("CRL of tca renewed").count();
    age_crls(&env);
    let started = Instant::now();
    while d.log().matches("CRL of tca renewed").count() == before {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(login_count(&serve_log), 2, "{}", d.log());
    health_until(d.port, Duration::from_secs(5), |s, _| s == 200);
    d.stop();
}

// ------------------------------------------------------------------------ the virtual PIV card

/// The virtual card's runner: `scripts/virtual-piv.sh start DIR` wrote its PID to
/// `DIR/card.pid` (DIR from `CERTMAN_PIV_STATE_DIR`, else the script's default).
fn card_pid() -> String {
    let dir = std::env::var("CERTMAN_PIV_STATE_DIR")
        .unwrap_or_else(|_| "/tmp/certman-virtual-piv".into());
    let text = std::fs::read_to_string(Path::new(&dir).join("card.pid"))
        .unwrap_or_else(|e| panic!("{dir}/card.pid (set CERTMAN_PIV_STATE_DIR): {e}"));
    text.chars().filter(char::is_ascii_digit).collect()
}

/// SIGUSR1 pulls the card from its reader, SIGUSR2 puts it back (tools/virtual-piv).
fn card_signal(sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &card_pid()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig}");
}

/// The card's PIN retry counter as yubico-piv-tool reads it. The virtual card keeps a
/// verified PIN across connections (status then says -1), so the counter is read after one
/// deliberate wrong VERIFY, and the right PIN then puts it back to full: what this shows is
/// the tries certman's operations left on the counter, not this probe's own one.
fn pin_tries(reader: &str) -> i32 {
    let _ = common::piv::piv_tool(reader, &["-a", "verify-pin", "-P", "000000"]);
    let out = common::piv::piv_tool(reader, &["-a", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let tries = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PIN tries in status: {text}"));
    let verify = common::piv::piv_tool(reader, &["-a", "verify-pin", "-P", common::piv::PIV_PIN]);
    assert!(verify.status.success(), "the card's PIN");
    tries
}

#[test]
fn a_pulled_piv_card_fails_its_operations_at_once_and_comes_back() {
    let Some(reader) = common::piv::piv_reader() else {
        return;
    };
    let verify = common::piv::piv_tool(&reader, &["-a", "verify-pin", "-P", common::piv::PIV_PIN]);
    assert!(verify.status.success(), "the card's PIN");
    for slot in ["9a", "9c", "9d"] {
        let _ = common::piv::piv_tool(&reader, &["-a", "delete-certificate", "-s", slot]);
    }
    let env = Env::new();
    let tokens = env.root().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let pin_file = env.root().join("pin");
    std::fs::write(&pin_file, format!("{}\n", common::piv::PIV_PIN)).unwrap();
    let mgm = env.root().join("mgm");
    std::fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").unwrap();
    std::fs::write(
        tokens.join("card.toml"),
        format!(
            "kind = \"piv\"\nreader = \"{}\"\nslot = \"9c\"\ndefault = true\n\
             pin-source = \"file:{}\"\nmanagement-key-source = \"file:{}\"\n",
            reader.replace('\\', "\\\\").replace('"', "\\\""),
            pin_file.display(),
            mgm.display()
        ),
    )
    .unwrap();
    let env = env.with_global_args(&["--tokens".to_owned(), tokens.display().to_string()]);
    for (ca, on_card) in [("pca", true), ("soft", false)] {
        env.ok(&[
            "add",
            &format!("name={ca}-t"),
            &format!("common-name={ca}"),
            "key-type=ec",
        ]);
        let mut sign = vec!["sign".to_owned(), format!("{ca}-t"), format!("name={ca}")];
        if on_card {
            sign.push("on-smart-card=card".into());
        }
        env.ok(&sign);
        env.issue(&format!("{ca}-leaf1"), ca, &["key-type=ec"]);
    }
    let tries_before = pin_tries(&reader);
    assert_eq!(tries_before, 2, "after the probe's one wrong try");

    let d = Daemon::start(&env, "127.0.0.1:0");
    health_until(d.port, Duration::from_secs(5), |s, _| s == 200);

    card_signal("-USR1");
    let pulled = Instant::now();
    let seen = health_until(d.port, Duration::from_secs(5), |s, v| {
        s == 503 && reasons(v).contains(&("token-absent".into(), "pca".into()))
    });
    eprintln!("hotplug(piv): /health degraded {seen:?} after the pull");
    let started = Instant::now();
    let out = env.run(&["issued-revoke", "pca-leaf1"]);
    let took = started.elapsed();
    let err = assert_error(&out, 5, "issued-revoke with the card pulled");
    assert!(err.contains("token absent"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    eprintln!("hotplug(piv): issued-revoke refused in {took:?}");
    for ca in ["pca", "soft"] {
        let (status, _, _) = d.get(&format!("/crl/{ca}.crl"));
        assert_eq!(status, 200, "/crl/{ca}.crl");
    }
    env.ok(&["issued-revoke", "soft-leaf1"]);

    std::thread::sleep(Duration::from_secs(10).saturating_sub(pulled.elapsed()));
    card_signal("-USR2");
    let back = health_until(d.port, Duration::from_secs(5), |s, _| s == 200);
    eprintln!("hotplug(piv): /health ok {back:?} after the reinsertion");
    let started = Instant::now();
    env.ok(&["issued-revoke", "pca-leaf1"]);
    eprintln!(
        "hotplug(piv): issued-revoke with the card back in {:?}",
        started.elapsed()
    );
    assert_eq!(pin_tries(&reader), tries_before, "no PIN try spent");
    d.stop();
}
