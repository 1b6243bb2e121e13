//! `token inventory` and `token lost` end to end on a real SoftHSM2 token: a root CA with a
//! software key, an intermediate CA whose key is on token T, three leaves with keys on T
//! (issued by the root and by the intermediate) and one leaf with a software key.
//! OpenSSL verifies every CRL and checks the revocations; without SoftHSM2 the tests skip
//! (with a note on stderr), unless `CERTMAN_REQUIRE_TOKENS=1`.

mod common;

use std::path::{Path, PathBuf};

use common::softhsm::*;
use common::*;
use serde_json::Value;

const EC: &[&str] = &["key-type=ec", "key-size=prime256v1"];

/// The store of the scenario: `root` (software key), `inter` (key on T, issued by root),
/// `leaf-r` (T, by root), `leaf-i1`, `leaf-i2` (T, by inter), `soft-leaf` (software, by root).
fn scenario(hsm: &SoftHsm) -> Env {
    let env = hsm.env();
    env.make_ca("root", EC);
    env.ok(&[
        "add",
        "name=inter-tpl",
        "common-name=inter",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
        "key-size=prime256v1",
    ]);
    env.ok(&[
        "sign",
        "inter-tpl",
        "name=inter",
        "ca=root",
        &format!("on-smart-card={PROFILE}"),
    ]);
    for (name, ca) in [
        ("leaf-r", "root"),
        ("leaf-i1", "inter"),
        ("leaf-i2", "inter"),
    ] {
        env.ok(&[
            "add",
            &format!("name={name}"),
            &format!("common-name={name}"),
            "key-type=ec",
            "key-size=prime256v1",
        ]);
        env.ok(&[
            "sign",
            name,
            &format!("ca={ca}"),
            &format!("on-smart-card={PROFILE}"),
        ]);
    }
    env.issue("soft-leaf", "root", EC);
    env
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `crl print --json` without what ticks.
fn crls(env: &Env) -> Value {
    json(&env.ok(&["crl", "print", "--json"]))
}

fn crl_numbers(env: &Env) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = crls(env)
        .as_array()
        .expect("crl print --json is an array")
        .iter()
        .map(|c| {
            (
                c["ca"].as_str().unwrap_or_default().to_owned(),
                c["number"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

fn pem(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `openssl verify -crl_check -CAfile CA -CRLfile CRL crt` (the leaf's issuer's CRL only).
fn verify_with_crl(ca: &Path, crl: &Path, crt: &Path) -> (bool, String) {
    let crl = crl_pem(crl);
    let out = openssl_output(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            pem(ca),
            "-CRLfile",
            pem(&crl),
            pem(crt),
        ],
        Path::new("/"),
    );
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// The certificates `token inventory SERIAL --json` lists for the token.
fn inventory_names(env: &Env, serial: &str) -> Vec<String> {
    let v = json(&env.ok(&["token", "inventory", serial, "--json"]));
    let tokens = v.as_array().expect("an array of tokens");
    assert_eq!(tokens.len(), 1, "{v}");
    assert_eq!(tokens[0]["serial"], serial);
    let mut names: Vec<String> = tokens[0]["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn token_lost_revokes_everything_on_the_token() {
    let Some(hsm) = SoftHsm::new("lost") else {
        return;
    };
    let env = scenario(&hsm);
    let serial = hsm.serial();
    let root_crt = env.export_cert("root");
    let inter_crt = env.export_cert("inter");
    let leaf_r = env.export_cert("leaf-r");
    let leaf_i1 = env.export_cert("leaf-i1");
    let soft_leaf = env.export_cert("soft-leaf");

    // inventory: the four certificates on T, with their slot/object; not the software ones
    assert_eq!(
        inventory_names(&env, &serial),
        ["inter", "leaf-i1", "leaf-i2", "leaf-r"]
    );
    let v = json(&env.ok(&["token", "inventory", "--json"]));
    let inter = v[0]["certificates"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "inter"))
        .cloned()
        .expect("inter in the inventory");
    assert_eq!(inter["issuer"], "root", "{inter}");
    assert!(
        inter["flags"].as_str().unwrap_or_default().contains('C'),
        "{inter}"
    );
    assert!(
        inter["slot"].as_str().is_some_and(|s| !s.is_empty()),
        "{inter}"
    );
    let text = env.ok(&["token", "inventory"]);
    assert!(text.contains(&serial) && text.contains("leaf-i2"), "{text}");
    env.fail(&["token", "inventory", "no-such-serial"], 3);

    // dry-run: says what it would do, changes nothing
    let before = (env.snapshot(), crls(&env));
    let out = env.ok(&["token", "lost", &serial, "dry-run"]);
    assert!(out.contains("would revoke 4"), "{out}");
    assert!(out.contains("inter: would be marked compromised"), "{out}");
    let dry = json(&env.ok(&["token", "lost", &serial, "--dry-run", "--json"]));
    assert_eq!(dry["dry-run"], true);
    assert_eq!(dry["revoked"], 4, "{dry}");
    assert_eq!(
        (env.snapshot(), crls(&env)),
        before,
        "dry-run changed the store"
    );
    let numbers_before = crl_numbers(&env);

    // the real thing
    let report = json(&env.ok(&["token", "lost", &serial, "--json"]));
    assert_eq!(report["revoked"], 4, "{report}");
    assert_eq!(report["skipped"], 0, "{report}");
    assert_eq!(report["reason"], "key-compromise");
    assert_eq!(report["compromised"][0]["ca"], "inter", "{report}");
    for ca in report["cas"].as_array().expect("cas") {
        assert_eq!(ca["crl"]["renewed"], true, "{ca}");
    }
    for name in ["inter", "leaf-r", "leaf-i1", "leaf-i2"] {
        let e = env.entry(name);
        assert_eq!(e["revoked"], true, "{name}: {e}");
        assert_eq!(e["revocation-reason"], "key-compromise", "{name}: {e}");
    }
    assert_eq!(env.entry("soft-leaf")["revoked"], false);
    let inter_entry = env.entry("inter");
    assert_eq!(inter_entry["compromised"], true, "{inter_entry}");
    assert!(inter_entry["compromised-at"].is_string(), "{inter_entry}");
    assert_eq!(env.entry("root")["compromised"], false);

    // both CRLs renewed (one number up each), signed by their CA, listing what was revoked
    let numbers_after = crl_numbers(&env);
    for ((ca, n0), (ca1, n1)) in numbers_before.iter().zip(&numbers_after) {
        assert_eq!(ca, ca1);
        assert_eq!(*n1, n0 + 1, "CRL of {ca}: {n0} -> {n1}");
    }
    let root_crl = export_crl(&env, "root", "after");
    let inter_crl = export_crl(&env, "inter", "after");
    assert_crl_signed_by(&root_crl, &root_crt);
    assert_crl_signed_by(&inter_crl, &inter_crt);
    let root_text = crl_text(&root_crl);
    for crt in [&inter_crt, &leaf_r] {
        let serial = openssl_serial(crt);
        assert!(root_text.contains(&serial), "{serial} not in\n{root_text}");
    }
    assert!(root_text.contains("Key Compromise"), "{root_text}");
    assert!(
        crl_text(&inter_crl).contains(&openssl_serial(&leaf_i1)),
        "leaf-i1 not on inter's CRL"
    );

    // OpenSSL refuses the revoked leaf and accepts the unrelated one
    let (ok, text) = verify_with_crl(&root_crt, &root_crl, &leaf_r);
    assert!(!ok && text.contains("revoked"), "{text}");
    let (ok, text) = verify_with_crl(&root_crt, &root_crl, &soft_leaf);
    assert!(ok, "{text}");

    // the compromised intermediate issues nothing more (exit 4), and a second run skips all
    env.ok(&["add", "name=late", "common-name=late", "key-type=ec"]);
    let err = env.fail(&["sign", "late", "ca=inter"], 4);
    assert!(err.contains("compromised"), "{err}");
    let again = json(&env.ok(&["token", "lost", &serial, "--json"]));
    assert_eq!(again["revoked"], 0, "{again}");
    assert_eq!(again["skipped"], 4, "{again}");
    assert_eq!(again["compromised"][0]["newly"], false, "{again}");
    assert_eq!(
        crl_numbers(&env),
        numbers_after,
        "a run with nothing new renewed a CRL"
    );
}

/// With T absent, the intermediate (key on T) cannot sign: its revocations are recorded
/// anyway, its CRL is left and the output says so; once T is back, `crl renew` lists them, and
/// a later revocation by it does not lose them.
#[test]
fn token_lost_with_the_token_gone() {
    let Some(hsm) = SoftHsm::new("gone") else {
        return;
    };
    let env = scenario(&hsm);
    env.issue("soft-i", "inter", EC);
    let serial = hsm.serial();
    let inter_crt = env.export_cert("inter");
    let leaf_i1 = env.export_cert("leaf-i1");
    let leaf_i2 = env.export_cert("leaf-i2");
    let soft_i = env.export_cert("soft-i");
    let inter_before = crl_numbers(&env)
        .into_iter()
        .find(|(ca, _)| ca == "inter")
        .expect("inter has a CRL")
        .1;

    // a SoftHSM configuration without T: the token is gone
    let empty: PathBuf = hsm.root().join("empty-tokens");
    std::fs::create_dir(&empty).expect("dir");
    let conf = hsm.root().join("gone.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            empty.display()
        ),
    )
    .expect("conf");
    let out = env
        .command(&["token", "lost", &serial])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("run certman");
    assert_success(&out, "token lost with the token gone");
    let text = stdout(&out);
    assert!(text.contains("crl of inter: NOT renewed"), "{text}");
    assert!(text.contains("revoked 4"), "{text}");
    for name in ["inter", "leaf-r", "leaf-i1", "leaf-i2"] {
        assert_eq!(env.entry(name)["revoked"], true, "{name}");
    }
    let stale = crl_numbers(&env)
        .into_iter()
        .find(|(ca, _)| ca == "inter")
        .expect("inter's CRL")
        .1;
    assert_eq!(stale, inter_before, "inter's CRL changed without its key");

    // T is back: a revocation by the compromised CA makes a CRL that lists them all (it is
    // rebuilt from the rows, not appended to the stale one)
    env.ok(&["issued-revoke", "soft-i"]);
    let crl = export_crl(&env, "inter", "later");
    assert_crl_signed_by(&crl, &inter_crt);
    let listed = crl_text(&crl);
    for crt in [&leaf_i1, &leaf_i2, &soft_i] {
        let serial = openssl_serial(crt);
        assert!(listed.contains(&serial), "{serial} not on inter's CRL");
    }
}
