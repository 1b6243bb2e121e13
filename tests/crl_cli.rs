//! Revocation and CRLs through the binary: `issued-revoke`, `crl print|renew|export|flush`,
//! `settings`, every CRL checked by OpenSSL (`openssl crl -verify`, `openssl verify -crl_check`).

mod common;

use std::path::Path;

use common::*;

fn ca_and_server(env: &Env) {
    env.make_ca("ca", &["days-valid=3650"]);
    // make_ca does not pass ca-crl-host; re-make with it for the CDP checks where needed.
    env.issue(
        "srv",
        "ca",
        &[
            "key-usage=digital-signature,key-encipherment,tls-server",
            "subject-alt-name=DNS:srv.example",
        ],
    );
}

fn ski(crt: &Path) -> String {
    norm_hex(&extension_value(
        &cert_text(crt),
        "X509v3 Subject Key Identifier",
    ))
}

fn crl_aki(crl: &Path) -> String {
    let text = crl_text(crl);
    let i = text
        .find("X509v3 Authority Key Identifier")
        .unwrap_or_else(|| panic!("no AKI in CRL:\n{text}"));
    let line = text[i..].lines().nth(1).expect("AKI value line").trim();
    norm_hex(line.trim_start_matches("keyid:"))
}

#[test]
fn issued_revoke_renews_the_crl_and_openssl_reports_the_certificate_revoked() {
    let env = Env::new();
    ca_and_server(&env);
    let ca = env.export_cert("ca");
    let srv = env.export_cert("srv");

    // A new CA gets its first CRL at once; before the revocation srv passes a CRL check.
    let before = export_crl(&env, "ca", "before");
    assert_eq!(crl_number(&before), 1);
    assert_crl_signed_by(&before, &ca);
    let (ok, text) = openssl_verify_crl(&ca, &[], &[&before], &srv);
    assert!(ok, "srv verifies with the empty CRL: {text}");

    let out = env.ok(&["issued-revoke", "srv", "reason=key-compromise"]);
    assert!(out.contains("revoked srv"), "{out}");
    assert!(out.contains("crl of ca: number 2"), "{out}");

    let after = export_crl(&env, "ca", "after");
    assert_eq!(crl_number(&after), crl_number(&before) + 1);
    assert_crl_signed_by(&after, &ca);
    let (ok, text) = openssl_verify_crl(&ca, &[], &[&after], &srv);
    assert!(!ok, "a revoked certificate must not verify: {text}");
    assert!(text.contains("certificate revoked"), "{text}");

    // The CRL is v2, names srv's serial with the reason, and has both update times.
    let t = crl_text(&after);
    assert!(t.contains("Version 2"), "{t}");
    assert!(t.contains(&openssl_serial(&srv)), "serial in CRL:\n{t}");
    assert!(t.contains("Key Compromise"), "{t}");
    assert!(t.contains("Next Update"), "{t}");
    assert_eq!(crl_aki(&after), ski(&ca));

    // Flag R and the revocation's time and reason.
    let e = env.entry("srv");
    assert!(s_flags(&e).contains('R'), "{e}");
    assert_eq!(e["revocation-reason"], "key-compromise");
    assert!(e["revoked-at"].is_string(), "{e}");
    // L is RouterOS's "CRL downloaded" flag: a local CA's own CRL does not set it.
    assert!(!s_flags(&env.entry("ca")).contains('L'));

    // crl print lists it with its number and one entry.
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["crl", "print", "--json"])).unwrap();
    assert_eq!(list[0]["ca"], "ca");
    assert_eq!(list[0]["number"], 2);
    assert_eq!(list[0]["entries"], 1);
    assert_eq!(list[0]["source"], "local");
}

fn s_flags(e: &serde_json::Value) -> String {
    e["flags"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn an_intermediate_ca_signs_its_crl_with_its_own_key_identifier() {
    let env = Env::new();
    env.make_ca("root", &["days-valid=3650", "key-type=ec"]);
    env.ok(&[
        "add",
        "name=inter",
        "common-name=inter",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&["sign", "inter", "ca=root"]);
    env.issue("leaf", "inter", &["key-usage=digital-signature,tls-client"]);
    let root = env.export_cert("root");
    let inter = env.export_cert("inter");
    let leaf = env.export_cert("leaf");
    env.ok(&["issued-revoke", "leaf"]);
    let crl = export_crl(&env, "inter", "1");
    assert_crl_signed_by(&crl, &inter);
    // AKI of the CRL = the intermediate's SKI (the signing key), not the root's.
    assert_eq!(crl_aki(&crl), ski(&inter));
    assert_ne!(crl_aki(&crl), ski(&root));
    let root_crl = export_crl(&env, "root", "1");
    let (ok, text) = openssl_verify_crl(&root, &[&inter], &[&root_crl, &crl], &leaf);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    // No reason given: no reasonCode (RFC 5280 §5.3.1).
    assert!(!crl_text(&crl).contains("CRL Reason Code"));

    // Revoking the intermediate goes into the root's CRL.
    env.ok(&["issued-revoke", "inter", "reason=ca-compromise"]);
    let root_crl2 = export_crl(&env, "root", "2");
    assert_eq!(crl_number(&root_crl2), crl_number(&root_crl) + 1);
    assert!(crl_text(&root_crl2).contains(&openssl_serial(&inter)));
    // A revoked CA issues no more, but still signs CRLs for what it issued.
    env.ok(&["add", "name=leaf2", "common-name=leaf2"]);
    env.fail(&["sign", "leaf2", "ca=inter"], EXIT_REFUSED);
    let out = env.ok(&["crl", "renew", "inter"]);
    assert!(out.contains("crl of inter: number 3"), "{out}");
}

#[test]
fn revocation_rules_refuse_and_change_nothing() {
    let env = Env::new();
    ca_and_server(&env);
    env.issue("other", "ca", &[]);
    let before = env.snapshot();
    // Not issued here (self-signed CA): refused.
    let err = env.fail(&["issued-revoke", "ca"], EXIT_REFUSED);
    assert!(err.contains("not issued by a CA here"), "{err}");
    // Unknown name: not found, and the known one in the same command is not revoked.
    let err = env.fail(&["issued-revoke", "other", "nosuch"], EXIT_NOT_FOUND);
    assert!(err.contains("nosuch"), "{err}");
    // Bad reason, and certificate-hold (revocations here are final).
    env.fail(&["issued-revoke", "srv", "reason=bogus"], EXIT_USAGE);
    let err = env.fail(
        &["issued-revoke", "srv", "reason=certificate-hold"],
        EXIT_USAGE,
    );
    assert!(err.contains("final"), "{err}");
    assert_eq!(env.snapshot(), before, "failed revocations change nothing");
    assert_eq!(crl_number(&export_crl(&env, "ca", "x")), 1);

    // Two at once: one CRL for the CA, numbered once.
    let out = env.ok(&["issued-revoke", "srv", "other"]);
    assert!(out.contains("crl of ca: number 2"), "{out}");
    let crl = export_crl(&env, "ca", "y");
    let t = crl_text(&crl);
    assert_eq!(t.matches("Serial Number:").count(), 2, "{t}");
    // Again: refused, already revoked.
    let err = env.fail(&["issued-revoke", "srv"], EXIT_REFUSED);
    assert!(err.contains("already revoked"), "{err}");
    // Issued certificates stay (seed v6): remove is still refused for a revoked one.
    env.fail(&["remove", "srv"], EXIT_REFUSED);
}

#[test]
fn crl_numbers_only_grow_and_removing_the_ca_takes_its_crls() {
    let env = Env::new();
    ca_and_server(&env);
    let ca = env.export_cert("ca");
    let mut last = 1;
    for _ in 0..3 {
        let out = env.ok(&["crl", "renew", "ca"]);
        let crl = export_crl(&env, "ca", "r");
        let n = crl_number(&crl);
        assert_eq!(n, last + 1, "{out}");
        assert_crl_signed_by(&crl, &ca);
        last = n;
    }
    env.ok(&["issued-revoke", "srv"]);
    assert_eq!(crl_number(&export_crl(&env, "ca", "r")), last + 1);
    // A full rebuild keeps the revoked (unexpired) certificate.
    env.ok(&["crl", "renew"]);
    let t = crl_text(&export_crl(&env, "ca", "full"));
    assert_eq!(t.matches("Serial Number:").count(), 1, "{t}");

    env.ok(&["remove", "ca"]);
    let list = env.ok(&["crl", "print", "--json"]);
    assert_eq!(list.trim(), "[]", "the CA's CRLs went with it");
    env.fail(&["crl", "export", "ca"], EXIT_NOT_FOUND);
    // A new CA of the same name starts again at 1 (it is another CA).
    env.make_ca("ca", &[]);
    assert_eq!(crl_number(&export_crl(&env, "ca", "new")), 1);
}

#[test]
fn the_crl_path_survives_a_rename_and_is_not_taken_by_another_ca() {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    env.ok(&["sign", "ca-tpl", "name=ca", "ca-crl-host=127.0.0.1:8080"]);
    env.issue("srv", "ca", &[]);
    let ca = env.export_cert("ca");
    // The CA made with ca-crl-host names its own CRL (where a trusting store downloads it).
    let cdp = extension_value(&cert_text(&ca), "X509v3 CRL Distribution Points");
    assert!(cdp.contains("http://127.0.0.1:8080/crl/ca.crl"), "{cdp}");
    env.ok(&["set", "ca", "name=root"]);
    env.issue("srv2", "root", &[]);
    let srv2 = env.export_cert("srv2");
    let cdp = extension_value(&cert_text(&srv2), "X509v3 CRL Distribution Points");
    assert!(cdp.contains("/crl/root.crl"), "{cdp}");
    // Another CA may not take the old path: srv's CDP must keep naming root's CRL.
    env.ok(&[
        "add",
        "name=ca2-tpl",
        "common-name=ca2",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    let err = env.fail(
        &["sign", "ca2-tpl", "name=ca", "ca-crl-host=127.0.0.1:8080"],
        EXIT_REFUSED,
    );
    assert!(err.contains("/crl/ca.crl"), "{err}");
}

#[test]
fn settings_print_and_set() {
    let env = Env::new();
    // a new store's defaults (settings print makes no store of itself: --create)
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["settings", "print", "--json", "--create"])).unwrap();
    assert_eq!(v["crl-download"], false);
    assert_eq!(v["crl-use"], false);
    let out = env.ok(&["settings", "set", "crl-download=yes", "crl-use=yes"]);
    assert!(
        out.contains("crl-download: yes") && out.contains("crl-use: yes"),
        "{out}"
    );
    env.ok(&["settings", "set", "--crl-use", "no"]);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["settings", "print", "--json"])).unwrap();
    assert_eq!(v["crl-download"], true);
    assert_eq!(v["crl-use"], false);
    env.fail(&["settings", "set", "crl-use=maybe"], EXIT_USAGE);
    env.fail(&["settings", "set", "crl-store=x"], EXIT_USAGE);
    env.fail(&["settings", "set"], EXIT_USAGE);
}

#[test]
fn verify_builds_the_chain_from_trusted_certificates_and_uses_own_crls() {
    let env = Env::new();
    ca_and_server(&env);
    env.issue("inter", "ca", &["key-usage=key-cert-sign,crl-sign"]);
    env.issue(
        "leaf",
        "inter",
        &["key-usage=digital-signature,tls-client", "key-type=ec"],
    );
    env.export_cert("srv");
    env.export_cert("leaf");
    let out = env.ok(&["verify", "cert_export_srv.crt", "--purpose", "tls-server"]);
    assert!(out.contains("verdict: valid"), "{out}");
    assert!(out.lines().count() >= 3, "the chain and the verdict: {out}");
    // The intermediate comes from the store (untrusted there, but chained to the trusted CA).
    let out = env.ok(&[
        "verify",
        "file-name=cert_export_leaf.crt",
        "purpose=tls-client",
    ]);
    assert!(
        out.contains("inter") && out.contains("verdict: valid"),
        "{out}"
    );
    // Wrong purpose: exit 1, the reason on stdout's verdict line and stderr's error line.
    let o = env.run(&["verify", "cert_export_leaf.crt", "--purpose", "tls-server"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED));
    assert!(stdout(&o).contains("verdict: INVALID"), "{}", stdout(&o));

    // With crl-use=yes, the CA's own CRL counts.
    env.ok(&["issued-revoke", "inter"]);
    env.ok(&["verify", "cert_export_leaf.crt"]);
    env.ok(&["settings", "set", "crl-use=yes"]);
    let o = env.run(&["verify", "cert_export_leaf.crt", "--json"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    assert_eq!(v["valid"], false);
    assert!(v["reason"].as_str().unwrap().contains("revoked"), "{v}");
    env.ok(&["verify", "cert_export_srv.crt"]);

    // No trusted anchor: unknown issuer.
    env.ok(&["set", "ca", "trusted=no"]);
    let o = env.run(&["verify", "cert_export_srv.crt"]);
    assert_eq!(o.status.code(), Some(EXIT_FAILED));
    assert!(stdout(&o).contains("unknown issuer"), "{}", stdout(&o));

    // Bad input: one line, nothing else.
    std::fs::write(env.path("junk.crt"), b"not a certificate").unwrap();
    env.fail(&["verify", "junk.crt"], EXIT_USAGE);
    env.fail(&["verify", "missing.crt"], EXIT_FAILED);
}

#[test]
fn an_imported_ca_with_its_key_gets_no_crl_of_its_own_until_asked() {
    let issuer = Env::new();
    issuer.make_ca("ext", &["key-type=ec"]);
    let (crt, key) = issuer.export_with_key("ext", "import-pass-1");
    let env = Env::new();
    std::fs::copy(&crt, env.path("ext.crt")).unwrap();
    std::fs::copy(&key, env.path("ext.key")).unwrap();
    env.ok(&["import", "file-name=ext.crt", "name=ext", "trusted=yes"]);
    env.ok(&["import", "file-name=ext.key", "passphrase=import-pass-1"]);
    assert!(s_flags(&env.entry("ext")).contains('K'));
    // Its CRLs are its real issuer's business: no CRL here, `crl renew` leaves it alone…
    env.ok(&["crl", "renew"]);
    assert_eq!(env.ok(&["crl", "print", "--json"]).trim(), "[]");
    // …unless the operator asks for one (or revokes a certificate it issued here).
    let out = env.ok(&["crl", "renew", "ext"]);
    assert!(out.contains("crl of ext: number 1"), "{out}");
    env.issue("leaf", "ext", &["key-type=ec"]);
    env.ok(&["issued-revoke", "leaf"]);
    assert_eq!(crl_number(&export_crl(&env, "ext", "1")), 2);
}
