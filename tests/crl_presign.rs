//! `crl presign` for an offline root on SoftHSM (issue 17): five CRLs signed ahead while the
//! token is present; then, with the token gone, `serve` under a test clock moved a day at a
//! time publishes each at its thisUpdate (checked by OpenSSL), never reaching for the token;
//! `/health` warns when few are left; a revocation (the token back) makes the rest stale.
//!
//! Without SoftHSM2 the test is skipped with a note on stderr, unless `CERTMAN_REQUIRE_TOKENS=1`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;
use common::softhsm::SoftHsm;
use common::{openssl, Env};

const DAY: i64 = 86_400;

/// `serve` with the manager's clock `offset` seconds ahead, a renewal look every second.
fn serve_at(env: &Env, offset: i64) -> Daemon {
    let file = env.path("serve.toml");
    std::fs::write(&file, "crl-renew-check = 1\n").unwrap();
    let offset = offset.to_string();
    Daemon::start_with(
        env,
        &["listen=127.0.0.1:0", &format!("config={}", file.display())],
        &[("CERTMAN_TEST_CLOCK_OFFSET", &offset)],
    )
}

/// The served CRL of `root`, checked by OpenSSL against the CA certificate: its number.
fn served_number(env: &Env, d: &Daemon, ca_pem: &Path, step: i64) -> u64 {
    let (status, head, body) = d.get("/crl/root.crl");
    assert_eq!(status, 200, "step {step}: {head}");
    let file = env.path(&format!("served-{step}.crl"));
    std::fs::write(&file, &body).unwrap();
    let file = file.display().to_string();
    let ca = ca_pem.display().to_string();
    let args = [
        "crl", "-inform", "DER", "-in", &file, "-noout", "-verify", "-CAfile", &ca,
    ];
    // OpenSSL says "verify OK" on stderr; a bad signature fails the command.
    openssl(&args, env.root());
    let out = openssl(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            &file,
            "-noout",
            "-crlnumber",
        ],
        env.root(),
    );
    let hex = out
        .trim()
        .trim_start_matches("crlNumber=")
        .trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{out:?}: {e}"))
}

/// `/health`: (status, reasons as (reason, ca)).
fn health(d: &Daemon) -> (u16, Vec<(String, String)>) {
    let (status, _, body) = d.get("/health");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reasons = common::daemon::health_reasons(&v);
    (status, reasons)
}

#[test]
fn a_presigned_series_is_served_one_by_one_with_the_token_absent() {
    common::require_openssl();
    let Some(hsm) = SoftHsm::new("presign") else {
        return;
    };
    let env = hsm.env();
    env.ok(&[
        "add",
        "name=root-t",
        "common-name=root",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&["sign", "root-t", "name=root", "on-smart-card=yes"]);
    env.issue("leaf", "root", &[]);
    let ca_pem = env.export_cert("root");

    // 1. Five CRLs ahead, numbers 2 to 6, a day apart.
    let out = env.ok(&["crl", "presign", "root", "count=5", "interval=1d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let numbers: Vec<u64> = v["crls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 3, 4, 5, 6], "{v}");

    // 2. The token goes to the safe: SoftHSM shows no token with that label.
    let tokens = hsm.conf.parent().unwrap().join("tokens");
    let away = hsm.root().join("safe");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    let e = env.fail(&["crl", "renew", "root"], 5);
    assert!(e.contains("is not present"), "{e}");

    // 3. Day by day: the served CRL is the one whose thisUpdate has come, verified; the
    // renewal timer leaves the CA alone (it would need the token).
    for step in 0..=5 {
        let d = serve_at(&env, step * DAY);
        let number = served_number(&env, &d, &ca_pem, step);
        assert_eq!(number, 1 + step as u64, "step {step}");
        // a few renewal looks
        std::thread::sleep(Duration::from_millis(2_500));
        let (status, reasons) = health(&d);
        let low: Vec<_> = reasons.iter().filter(|r| r.0 == "crl-series-low").collect();
        // left to publish: 5 - step; the default crl-series-low is 2
        if 5 - step < 2 {
            assert_eq!(status, 503, "step {step}: {reasons:?}");
            assert_eq!(low.len(), 1, "step {step}: {reasons:?}");
            assert_eq!(low[0].1, "root");
        } else {
            assert_eq!((status, reasons.clone()), (200, vec![]), "step {step}");
        }
        let log = d.stop();
        assert!(
            !log.contains("not renewed") && !log.contains("token-absent"),
            "step {step}: serve reached for the token:\n{log}"
        );
    }

    // 4. The token back, a revocation: the new CRL goes past the series, which is stale.
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    let out = env.run(&["issued-revoke", "leaf"]);
    common::assert_success(&out, "issued-revoke leaf");
    assert!(
        common::stdout(&out).contains("crl of root: number 7"),
        "{out:?}"
    );
    let warning = common::stderr(&out);
    assert!(
        warning.contains("warning: the presigned CRLs of root are stale now: 5 still"),
        "{warning}"
    );
    let print = env.ok(&["crl", "print"]);
    assert!(print.contains("2-6") && print.contains("stale"), "{print}");
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["crl", "print", "--json"])).unwrap();
    let series = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "presigned")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(series["stale"], true, "{series}");
    assert_eq!(series["left"], 5, "{series}");
    assert_eq!(series["count"], 5, "{series}");

    // Served two days on: not the stale series (the timer may renew meanwhile: the token is
    // back); health says stale.
    let d = serve_at(&env, 2 * DAY);
    assert!(served_number(&env, &d, &ca_pem, 100) >= 7);
    let (status, reasons) = health(&d);
    assert_eq!(status, 503);
    assert!(
        reasons.contains(&("crl-series-stale".into(), "root".into())),
        "{reasons:?}"
    );
    d.stop();

    // Presigning again follows the numbers on; the warning is gone.
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["crl", "print", "--json"])).unwrap();
    let current = list[0]["number"].as_u64().unwrap();
    let out = env.ok(&["crl", "presign", "root", "count=2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["crls"][0]["number"], current + 1, "{v}");
    assert_eq!(v["replaced"], 5, "{v}");
    let d = serve_at(&env, 0);
    assert_eq!(health(&d), (200, vec![]));
    d.stop();
}
