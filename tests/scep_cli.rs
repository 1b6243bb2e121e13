//! The SCEP server against real clients: the seed's basic example run verbatim, then micromdm's
//! `scepclient` and certmonger enrolling under `certman serve` with one-time passwords; a
//! request without one waiting for `requests grant 0`; wrong, reused and expired passwords
//! refused with nothing issued; a renewal signed with the issued certificate; GetNextCACert
//! offered only while `next-ca-cert` is set; and the `scep-server` commands' rules.

mod common;

use std::time::{Duration, Instant};

use common::daemon::*;
use common::scep::*;
use common::*;
use serde_json::Value;

/// The seed's basic example, verbatim: a CA from a template without key-usage, and a SCEP
/// server for it.
fn seed_store() -> Env {
    let env = Env::new();
    env.ok(&["add", "common-name=ca", "name=ca-tpl"]);
    env.ok(&["sign", "ca-tpl", "name=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    env
}

fn issued_names(env: &Env) -> Vec<String> {
    env.json()
        .iter()
        .filter(|e| e["flags"].as_str().unwrap_or("").contains('I'))
        .map(|e| e["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn url(d: &Daemon) -> String {
    format!("http://127.0.0.1:{}/scep/test/pkiclient.exe", d.port)
}

fn fresh_dir(env: &Env, name: &str) -> std::path::PathBuf {
    let d = env.path(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_seed_example_enrols_scepclient_and_certmonger_with_otps() {
    if !peer(SCEPCLIENT, "scep") || !peer(SCEP_SUBMIT, "certmonger") {
        return;
    }
    let env = seed_store();
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let ca_crt = env.export_cert("ca");

    // /health lists the server.
    let (status, _, health) = d.get("/health");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&health).unwrap();
    assert_eq!(health["scep"][0]["path"], "/scep/test");
    assert_eq!(health["scep"][0]["ca-cert"], "ca");
    assert_eq!(health["scep"][0]["disabled"], false);

    // GetCACaps and GetCACert as RFC 8894 spells them.
    let (status, head, caps) = d.get("/scep/test/pkiclient.exe?operation=GetCACaps");
    assert_eq!(status, 200, "{head}");
    let caps = String::from_utf8(caps).unwrap();
    for c in [
        "AES",
        "DES3",
        "POSTPKIOperation",
        "Renewal",
        "SCEPStandard",
        "SHA-1",
        "SHA-256",
        "SHA-512",
    ] {
        assert!(caps.lines().any(|l| l == c), "{c} missing from {caps:?}");
    }
    assert!(!caps.contains("GetNextCACert"), "{caps:?}");
    let (status, head, ca_der) = d.get("/scep/test?operation=GetCACert");
    assert_eq!(status, 200);
    assert!(head.contains("application/x-x509-ca-cert"), "{head}");
    assert_eq!(
        ca_der,
        openssl_der(&ca_crt),
        "GetCACert is the CA certificate"
    );

    // micromdm scepclient with an OTP: issued at once.
    let pw1 = otp(&env, 10);
    let c1 = fresh_dir(&env, "client1");
    let out = scepclient(
        &c1,
        &url(&d),
        Some(&pw1),
        "tst-client",
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "scepclient: {}", said(&out));
    assert_verifies(&ca_crt, &c1.join("client.pem"));
    assert!(cert_text(&c1.join("client.pem")).contains("CN = tst-client"));

    // certmonger (AES-256, SHA-256, GET) with another OTP.
    let pw2 = otp(&env, 10);
    let cm = fresh_dir(&env, "certmonger");
    let (out, cert) = certmonger_enrol(&cm, &url(&d), &pw2, "cm-client", Some(&ca_crt));
    assert!(
        out.status.success() && cert.exists(),
        "certmonger: {}",
        said(&out)
    );
    assert_verifies(&ca_crt, &cert);
    let log = d.wait_for_log("Aes256Cbc", Duration::from_secs(10));
    assert!(
        log.lines().any(|l| l.contains("PkcsReq")
            && l.contains("Aes256Cbc")
            && l.contains("Sha256")
            && l.contains("SUCCESS")),
        "certmonger's request with AES-256 and SHA-256 is logged as issued:\n{log}"
    );
    assert!(
        !log.contains(&pw1) && !log.contains(&pw2),
        "a password reached the log"
    );

    // Both are issued entries of the CA (flag I), as the seed shows issued_N.
    let issued = issued_names(&env);
    assert_eq!(issued.len(), 2, "{issued:?}");
    assert!(
        issued.iter().all(|n| n.starts_with("issued_")),
        "{issued:?}"
    );
    let reqs = scep_requests(&env);
    assert_eq!(reqs.len(), 2);
    assert!(reqs
        .iter()
        .all(|r| r["status"] == "issued" && r["authority"] == "ca"));
    let otps: Value =
        serde_json::from_str(&env.ok(&["scep-server", "otp", "print", "--json"])).unwrap();
    assert!(otps
        .as_array()
        .unwrap()
        .iter()
        .all(|o| !o["used"].is_null()));

    // The store keeps no password in clear: not the OTPs, not the CSRs that carried them.
    let db: Vec<u8> = store_contents(&env).concat();
    for pw in [&pw1, &pw2] {
        assert!(
            !db.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "an OTP is in the store in clear"
        );
    }

    // A reused and a wrong password: FAILURE, nothing issued, nothing queued.
    for (name, pw) in [("reused", pw1.as_str()), ("wrong", "0123456789ABCDEF0123")] {
        let dir = fresh_dir(&env, name);
        let out = scepclient(&dir, &url(&d), Some(pw), name, Duration::from_secs(60));
        assert!(!out.status.success(), "{name} OTP enrolled: {}", said(&out));
        assert!(!dir.join("client.pem").exists());
    }
    assert_eq!(issued_names(&env).len(), 2);
    assert_eq!(scep_requests(&env).len(), 2);
    d.wait_for_log("FAILURE BadRequest", Duration::from_secs(10));

    // A renewal signed with the issued certificate: a new certificate, no challenge.
    let first_serial = openssl_serial(&c1.join("client.pem"));
    std::fs::remove_file(c1.join("csr.pem")).ok();
    let out = scepclient(&c1, &url(&d), None, "tst-client", Duration::from_secs(60));
    assert!(out.status.success(), "renewal: {}", said(&out));
    let renewed = openssl_serial(&c1.join("client.pem"));
    assert_ne!(
        renewed, first_serial,
        "the renewal issued a new certificate"
    );
    assert_verifies(&ca_crt, &c1.join("client.pem"));
    assert_eq!(issued_names(&env).len(), 3);
    d.stop();
}

#[test]
fn without_an_otp_the_request_waits_for_grant_0() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let env = seed_store();
    let d = Daemon::start(&env, "127.0.0.1:0");
    let ca_crt = env.export_cert("ca");
    let dir = fresh_dir(&env, "client");
    let client = {
        let dir = dir.clone();
        let url = url(&d);
        std::thread::spawn(move || {
            scepclient(&dir, &url, None, "tst-client", Duration::from_secs(100))
        })
    };
    // The request shows as pending, as in the seed.
    let start = Instant::now();
    loop {
        let r = scep_requests(&env);
        if r.first().is_some_and(|r| r["status"] == "pending") {
            assert_eq!(r[0]["#"], 0);
            assert_eq!(r[0]["common-name"], "tst-client");
            assert!(!r[0]["transaction-id"].as_str().unwrap().is_empty());
            assert_eq!(r[0]["req-fingerprint"].as_str().unwrap().len(), 64);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pending request: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = env.ok(&["scep-server", "requests", "print"]);
    assert!(
        table.contains("AUTHORITY") && table.contains("pending") && table.contains("tst-client"),
        "{table}"
    );
    assert!(issued_names(&env).is_empty());
    env.ok(&["scep-server", "requests", "grant", "0"]);
    assert_eq!(scep_requests(&env)[0]["status"], "granted");
    // The client's next poll (it re-sends every 30 s) gets the certificate.
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "scepclient after grant: {}",
        said(&out)
    );
    assert_verifies(&ca_crt, &dir.join("client.pem"));
    assert_eq!(scep_requests(&env)[0]["status"], "issued");
    assert_eq!(issued_names(&env).len(), 1);
    // Granting again is refused.
    let err = env.fail(&["scep-server", "requests", "grant", "0"], EXIT_REFUSED);
    assert!(err.contains("not pending"), "{err}");
    d.stop();
}

#[test]
fn a_rejected_request_fails_at_the_next_poll() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let env = seed_store();
    let d = Daemon::start(&env, "127.0.0.1:0");
    let dir = fresh_dir(&env, "client");
    let client = {
        let dir = dir.clone();
        let url = url(&d);
        std::thread::spawn(move || scepclient(&dir, &url, None, "nope", Duration::from_secs(100)))
    };
    let start = Instant::now();
    while scep_requests(&env).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no request arrived"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let txid = scep_requests(&env)[0]["transaction-id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.ok(&["scep-server", "requests", "reject", &txid]);
    let out = client.join().unwrap();
    assert!(
        !out.status.success(),
        "a rejected request enrolled: {}",
        said(&out)
    );
    assert!(!dir.join("client.pem").exists());
    assert_eq!(scep_requests(&env)[0]["status"], "denied");
    assert!(issued_names(&env).is_empty());
    d.stop();
}

#[test]
fn an_expired_otp_is_refused() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let env = seed_store();
    let pw = otp(&env, 1);
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    // minutes-valid is whole minutes: wait one out.
    std::thread::sleep(Duration::from_secs(61));
    let otps: Value =
        serde_json::from_str(&env.ok(&["scep-server", "otp", "print", "--json"])).unwrap();
    assert_eq!(otps[0]["flags"], "E");
    let dir = fresh_dir(&env, "late");
    let out = scepclient(&dir, &url(&d), Some(&pw), "late", Duration::from_secs(60));
    assert!(
        !out.status.success(),
        "an expired OTP enrolled: {}",
        said(&out)
    );
    assert!(issued_names(&env).is_empty());
    assert!(scep_requests(&env).is_empty());
    d.wait_for_log("one-time password has expired", Duration::from_secs(10));
    d.stop();
}

#[test]
fn get_next_ca_cert_is_offered_only_while_next_ca_cert_is_set() {
    let env = seed_store();
    env.make_ca("ca2", &[]);
    let d = Daemon::start(&env, "127.0.0.1:0");
    let caps = |d: &Daemon| {
        String::from_utf8(d.get("/scep/test/pkiclient.exe?operation=GetCACaps").2).unwrap()
    };
    assert!(!caps(&d).contains("GetNextCACert"));
    let (status, _, _) = d.get("/scep/test?operation=GetNextCACert");
    assert_eq!(status, 404);
    // Changed from the CLI while serve runs: answered at once.
    env.ok(&["scep-server", "set", "test", "next-ca-cert=ca2"]);
    assert!(
        caps(&d).lines().any(|l| l == "GetNextCACert"),
        "{}",
        caps(&d)
    );
    let (status, head, body) = d.get("/scep/test?operation=GetNextCACert");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/x-x509-next-ca-cert"), "{head}");
    // RFC 8894 §4.7.1: SignedData signed by the current CA, whose content is a degenerate
    // certificates-only SignedData with the next CA.
    std::fs::write(env.path("next.p7"), &body).unwrap();
    let ca_crt = env.export_cert("ca");
    let out = openssl_output(
        &[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            "next.p7",
            "-CAfile",
            ca_crt.to_str().unwrap(),
            "-purpose",
            "any",
            "-out",
            "inner.p7",
            "-binary",
        ],
        &env.path(""),
    );
    assert!(
        out.status.success(),
        "GetNextCACert signature: {}",
        stderr(&out)
    );
    let certs = openssl(
        &["pkcs7", "-inform", "DER", "-in", "inner.p7", "-print_certs"],
        &env.path(""),
    );
    assert!(certs.contains("subject=CN = ca2"), "{certs}");
    assert!(!certs.contains("subject=CN = ca\n"), "{certs}");
    env.ok(&["scep-server", "set", "test", "next-ca-cert=none"]);
    assert!(!caps(&d).contains("GetNextCACert"));
    d.stop();
}

#[test]
fn scep_server_commands_keep_routeros_rules() {
    let env = Env::new();
    env.make_ca("ca", &[]);
    env.ok(&["add", "name=leaf", "common-name=leaf"]);
    env.ok(&["sign", "leaf", "ca=ca"]);
    env.make_ca("ec", &["key-type=ec"]);
    // path must start with /scep/; the CA must be a CA; an EC CA needs an RSA RA.
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ca", "path=/other"],
        EXIT_USAGE,
    );
    assert!(err.contains("must start with /scep/"), "{err}");
    let err = env.fail(
        &["scep-server", "add", "ca-cert=leaf", "path=/scep/x"],
        EXIT_REFUSED,
    );
    assert!(err.contains("not a certificate authority"), "{err}");
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ec", "path=/scep/ec"],
        EXIT_REFUSED,
    );
    assert!(err.contains("ra-cert"), "{err}");
    // A CA whose RSA key is too small to decrypt needs an RA too.
    env.make_ca("small", &["key-size=1024"]);
    let err = env.fail(
        &["scep-server", "add", "ca-cert=small", "path=/scep/small"],
        EXIT_REFUSED,
    );
    assert!(err.contains("1024-bit") && err.contains("ra-cert"), "{err}");
    // An RA must not be a CA (the seed's warning).
    let err = env.fail(
        &[
            "scep-server",
            "add",
            "ca-cert=ca",
            "path=/scep/x",
            "ra-cert=ec",
        ],
        EXIT_REFUSED,
    );
    assert!(err.contains("must not be a CA"), "{err}");
    env.fail(
        &["scep-server", "add", "ca-cert=nope", "path=/scep/x"],
        EXIT_NOT_FOUND,
    );
    // Both spellings; print; disable (X), enable; remove.
    env.ok(&[
        "scep-server",
        "add",
        "--ca-cert",
        "ca",
        "--path",
        "/scep/one",
        "--days-valid",
        "30",
        "--request-lifetime",
        "1h",
    ]);
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ca", "path=/scep/one"],
        EXIT_REFUSED,
    );
    assert!(err.contains("another SCEP server has this path"), "{err}");
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ca", "path=/scep/one/two"],
        EXIT_REFUSED,
    );
    assert!(err.contains("overlaps"), "{err}");
    env.fail(
        &[
            "scep-server",
            "add",
            "ca-cert=ca",
            "path=/scep/two",
            "request-lifetime=1m",
        ],
        EXIT_USAGE,
    );
    env.ok(&["scep-server", "disable", "0"]);
    let v: Value = serde_json::from_str(&env.ok(&["scep-server", "print", "--json"])).unwrap();
    assert_eq!(v[0]["flags"], "X");
    assert_eq!(v[0]["days-valid"], 30);
    assert_eq!(v[0]["request-lifetime"], "1h");
    env.ok(&["scep-server", "enable", "one"]);
    // A CA in use by a server is not removed under it.
    let err = env.fail(&["remove", "ca"], EXIT_REFUSED);
    assert!(err.contains("used by the SCEP server"), "{err}");
    // The OTP is shown once; the store holds only its hash.
    let pw = otp(&env, 5);
    assert_eq!(pw.len(), 20);
    let printed = env.ok(&["scep-server", "otp", "print"]);
    assert!(!printed.contains(&pw), "{printed}");
    // every file of the store directory (the database and its WAL), or a dump of its database
    for bytes in store_contents(&env) {
        assert!(
            !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "the OTP is in the store in clear"
        );
    }
    env.ok(&["scep-server", "remove", "/scep/one"]);
    env.ok(&["remove", "ca"]);
}

/// OpenSSL's PKCS#7 API (what certmonger and sscep use) verifies the server's CertRep with the
/// CA from GetCACert as the only trust anchor, with its default purpose (S/MIME signing).
#[test]
fn the_certrep_verifies_with_openssl_against_the_ca_alone() {
    let env = seed_store();
    let d = Daemon::start(&env, "127.0.0.1:0");
    let (_, _, ca_der) = d.get("/scep/test?operation=GetCACert");
    let dev = Device::new("wire");
    let pw = otp(&env, 5);
    let msg = dev.request(
        certman::protocols::scep::message::MessageType::PkcsReq,
        &certman::protocols::scep::message::RequestContent::CertificationRequest(
            dev.csr("wire", Some(&pw)),
        ),
        &ca_der,
        certman::protocols::scep::message::ContentCipher::Aes256Cbc,
        certman::protocols::scep::message::MessageDigest::Sha256,
    );
    let (status, head, reply) = http_post(
        d.port,
        "/scep/test/pkiclient.exe?operation=PKIOperation",
        &msg,
    );
    assert_eq!(status, 200, "{head}");
    let decoded = dev.read_reply(&reply, &ca_der);
    assert_eq!(
        decoded.status,
        certman::protocols::scep::message::PkiStatus::Success
    );
    std::fs::write(env.path("rep.der"), &reply).unwrap();
    let ca_crt = env.export_cert("ca");
    let out = openssl_output(
        &[
            "smime",
            "-verify",
            "-inform",
            "DER",
            "-in",
            "rep.der",
            "-CAfile",
            ca_crt.to_str().unwrap(),
            "-out",
            "/dev/null",
        ],
        &env.path(""),
    );
    assert!(
        out.status.success(),
        "openssl smime -verify: {}",
        stderr(&out)
    );
    d.stop();
}

/// A server whose RA is revoked (or expired) after it was set up stops answering (503) and
/// says why in `print` and `/health`, instead of going on with a revoked RA.
#[test]
fn a_revoked_ra_takes_its_server_out_of_service() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.ok(&[
        "add",
        "name=ra",
        "common-name=ra",
        "key-type=rsa",
        "key-usage=digital-signature,key-encipherment",
    ]);
    env.ok(&["sign", "ra", "ca=ca"]);
    env.ok(&[
        "scep-server",
        "add",
        "ca-cert=ca",
        "path=/scep/x",
        "ra-cert=ra",
    ]);
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let (status, head, _) = d.get("/scep/x?operation=GetCACert");
    assert_eq!(status, 200);
    assert!(head.contains("application/x-x509-ca-ra-cert"), "{head}");
    env.ok(&["issued-revoke", "ra"]);
    let (status, _, _) = d.get("/scep/x?operation=GetCACert");
    assert_eq!(status, 503);
    let dev = Device::new("late");
    let (status, _, _) = http_post(d.port, "/scep/x?operation=PKIOperation", &dev.certificate);
    assert_eq!(status, 503);
    d.wait_for_log(
        "out of service: its RA \"ra\" is revoked",
        Duration::from_secs(10),
    );
    let v: Value = serde_json::from_str(&env.ok(&["scep-server", "print", "--json"])).unwrap();
    assert!(
        v[0]["warnings"][0].as_str().unwrap().contains("is revoked"),
        "{v}"
    );
    let (_, _, health) = d.get("/health");
    let health: Value = serde_json::from_slice(&health).unwrap();
    assert!(health["scep"][0]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("is revoked"));
    d.stop();
}
