//! The SCEP server with its keys on tokens, under `certman serve`, against real clients: a CA
//! whose RSA key is on SoftHSM decrypts the requests and signs the replies there; an EC P-256
//! CA on SoftHSM serves through an RSA RA certificate whose key is on the same token
//! (GetCACert answers RA + CA, micromdm's scepclient and certmonger enrol through it); the RA
//! rules (not a CA, RSA, issued by the server's CA, able to sign and decrypt); and on the
//! virtual PIV card, a CA with an RSA key in slot 9c, and an EC CA in 9c with an RSA RA in 9d.
//!
//! OpenSSL verifies every certificate and CertRep, `pkcs11-tool` and `yubico-piv-tool` witness
//! what is on the token and the card. Without SoftHSM, the card or a peer the tests skip with a
//! note on stderr, unless `CERTMAN_REQUIRE_TOKENS=1` (CI), where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use certman::protocols::scep::message::{
    ContentCipher, MessageDigest, MessageType, PkiStatus, ReplyPayload, RequestContent,
};
use common::daemon::*;
use common::piv::*;
use common::scep::*;
use common::softhsm::*;
use common::*;
use serde_json::Value;

const EC: &[&str] = &["key-type=ec", "key-size=prime256v1"];
const RSA2048: &[&str] = &["key-type=rsa", "key-size=2048"];
/// A CA that also signs SCEP replies itself (no RA): OpenSSL-based clients want
/// digital-signature on the CertRep's signer.
const CA_USAGE: &str = "key-usage=key-cert-sign,crl-sign,digital-signature";
/// What an RA needs: it signs the replies and decrypts the requests.
const RA_USAGE: &str = "key-usage=digital-signature,key-encipherment";
/// One enrolment with an OTP answers at once; this is only the bound of a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ helpers

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `add` a CA template `NAME-tpl` and self-sign it as `name`, its key where `placement` says.
fn token_ca(env: &Env, name: &str, key: &[&str], placement: &str) {
    let tpl = format!("{name}-tpl");
    let mut add = vec![
        "add".to_owned(),
        format!("name={tpl}"),
        format!("common-name={name}"),
        CA_USAGE.to_owned(),
    ];
    add.extend(key.iter().map(|s| s.to_string()));
    env.ok(&add);
    let mut sign = vec!["sign".to_owned(), tpl, format!("name={name}")];
    sign.extend(placement.split_whitespace().map(str::to_owned));
    env.ok(&sign);
}

/// `add` a certificate template `name` with `props` and sign it with `ca`, its key where
/// `placement` says (empty: in software).
fn issue_with(env: &Env, name: &str, ca: &str, props: &[&str], placement: &str) {
    let mut add = vec![
        "add".to_owned(),
        format!("name={name}"),
        format!("common-name={name}"),
    ];
    add.extend(props.iter().map(|s| s.to_string()));
    env.ok(&add);
    let mut sign = vec!["sign".to_owned(), name.to_owned(), format!("ca={ca}")];
    sign.extend(placement.split_whitespace().map(str::to_owned));
    env.ok(&sign);
}

/// An RSA-2048 RA certificate `name` issued by `ca` (digital-signature, key-encipherment).
fn issue_ra(env: &Env, name: &str, ca: &str, placement: &str) {
    issue_with(
        env,
        name,
        ca,
        &["key-type=rsa", "key-size=2048", RA_USAGE],
        placement,
    );
}

fn servers(env: &Env) -> Vec<Value> {
    let out = env.ok(&["scep-server", "print", "--json"]);
    serde_json::from_str::<Value>(&out)
        .expect("scep-server print --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The certificates the SCEP server issued (`issued_N`, flag I).
fn issued_names(env: &Env) -> Vec<String> {
    env.json()
        .iter()
        .filter(|e| {
            e["flags"].as_str().unwrap_or("").contains('I')
                && e["name"].as_str().unwrap_or("").starts_with("issued_")
        })
        .map(|e| e["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn url(d: &Daemon, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}/pkiclient.exe", d.port)
}

fn fresh_dir(env: &Env, name: &str) -> PathBuf {
    let d = env.path(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// DER of a PEM certificate file.
fn pem_to_der(pem: &Path) -> Vec<u8> {
    let out = pem.with_extension("der");
    openssl(
        &["x509", "-in", p(pem), "-outform", "DER", "-out", p(&out)],
        Path::new("/"),
    );
    std::fs::read(out).unwrap()
}

/// Writes a DER certificate as PEM at `pem`; returns it.
fn der_to_pem(der: &[u8], pem: &Path) -> PathBuf {
    let tmp = pem.with_extension("der");
    std::fs::write(&tmp, der).unwrap();
    openssl(
        &["x509", "-inform", "DER", "-in", p(&tmp), "-out", p(pem)],
        Path::new("/"),
    );
    pem.to_owned()
}

/// The `flags` of `name` contain `C` (key on a token or card) and its `smart-card-key`
/// starts with `scheme`; returns the URI.
fn assert_key_on_device(env: &Env, name: &str, scheme: &str) -> String {
    let e = env.entry(name);
    let flags = e["flags"].as_str().unwrap_or_default();
    assert!(flags.contains('K') && flags.contains('C'), "{name}: {e}");
    let uri = e["smart-card-key"].as_str().unwrap_or_default().to_owned();
    assert!(uri.starts_with(scheme), "{name}: smart-card-key {uri:?}");
    uri
}

/// The private key `label` on the token: sensitive, never extractable, generated there
/// (no software copy can exist), and with `decrypt` in its usage exactly when `decrypts`.
fn assert_token_key(hsm: &SoftHsm, label: &str, decrypts: bool) {
    let key = hsm.token_only_key(label);
    let usage = key.attr("Usage").unwrap_or_default();
    assert!(usage.contains("sign"), "{label}: usage {usage:?}");
    assert_eq!(
        usage.split(',').any(|u| u.trim() == "decrypt"),
        decrypts,
        "{label}: usage {usage:?}"
    );
}

/// `openssl smime -verify` of a CertRep (DER file) with `ca` (PEM) as the only trust anchor,
/// as certmonger and sscep verify it; returns the signer's certificate (PEM) OpenSSL found.
fn assert_certrep_signed(rep: &Path, ca: &Path) -> PathBuf {
    let signer = rep.with_extension("signer.pem");
    let out = openssl_output(
        &[
            "smime",
            "-verify",
            "-inform",
            "DER",
            "-in",
            p(rep),
            "-CAfile",
            p(ca),
            "-signer",
            p(&signer),
            "-out",
            "/dev/null",
        ],
        Path::new("/"),
    );
    assert!(
        out.status.success(),
        "openssl smime -verify of the CertRep with {}: {}",
        ca.display(),
        stderr(&out)
    );
    signer
}

/// A wire-level enrolment of `cn` with a fresh OTP by certman's own message layer (AES-256,
/// SHA-256), the request encrypted to `recipient` (DER), the CertRep verified against
/// `signer` (DER) only. Returns (the CertRep as a file, the issued certificate as PEM).
fn device_enrol(
    env: &Env,
    d: &Daemon,
    path: &str,
    recipient: &[u8],
    signer: &[u8],
    cn: &str,
) -> (PathBuf, PathBuf) {
    let dev = Device::new(cn);
    let pw = otp(env, 5);
    let msg = dev.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(dev.csr(cn, Some(&pw))),
        recipient,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    );
    let (status, head, reply) = http_post(
        d.port,
        &format!("{path}/pkiclient.exe?operation=PKIOperation"),
        &msg,
    );
    assert_eq!(status, 200, "{head}\n{}", d.log());
    assert!(head.contains("application/x-pki-message"), "{head}");
    let decoded = dev.read_reply(&reply, signer);
    assert_eq!(decoded.status, PkiStatus::Success, "{}", d.log());
    let Some(ReplyPayload::Certificates(certs)) = decoded.payload else {
        panic!("a SUCCESS without certificates: {decoded:?}");
    };
    let rep = env.path(&format!("{cn}-rep.der"));
    std::fs::write(&rep, &reply).unwrap();
    let crt = der_to_pem(&certs[0], &env.path(&format!("{cn}.pem")));
    assert!(cert_text(&crt).contains(&format!("CN = {cn}")));
    (rep, crt)
}

/// micromdm's scepclient enrols `cn` with a fresh OTP; returns its certificate (PEM).
/// `recipient`: the SHA-256 fingerprint of the one GetCACert certificate to encrypt to
/// (`-ca-fingerprint`, for an RA), else it encrypts to every certificate it got.
fn scepclient_enrol(
    env: &Env,
    d: &Daemon,
    path: &str,
    cn: &str,
    recipient: Option<&str>,
) -> PathBuf {
    let pw = otp(env, 5);
    let dir = fresh_dir(env, cn);
    let out = match recipient {
        None => scepclient(&dir, &url(d, path), Some(&pw), cn, CLIENT_TIMEOUT),
        Some(fp) => {
            pkcs1_key(&dir);
            Command::new("timeout")
                .arg(CLIENT_TIMEOUT.as_secs().to_string())
                .arg(SCEPCLIENT)
                .args(["-private-key", "k.key", "-debug"])
                .arg(format!("-server-url={}", url(d, path)))
                .arg(format!("-cn={cn}"))
                .arg(format!("-challenge={pw}"))
                .arg(format!("-ca-fingerprint={fp}"))
                .current_dir(&dir)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run scepclient")
        }
    };
    assert!(
        out.status.success(),
        "scepclient: {}\nserve:\n{}",
        said(&out),
        d.log()
    );
    let crt = dir.join("client.pem");
    assert!(cert_text(&crt).contains(&format!("CN = {cn}")));
    crt
}

/// The issued certificate names `issuer` and is stored as an issued entry (`issued_N`, flag I).
fn assert_issued_by(env: &Env, crt: &Path, issuer: &str) {
    let text = cert_text(crt);
    assert!(
        text.contains(&format!("Issuer: CN = {issuer}")),
        "not issued by {issuer}:\n{text}"
    );
    let serial = openssl_serial(crt);
    let found = env.json().into_iter().any(|e| {
        e["name"].as_str().unwrap_or("").starts_with("issued_")
            && e["flags"].as_str().unwrap_or("").contains('I')
            && norm_hex(e["serial-number"].as_str().unwrap_or("")) == norm_hex(&serial)
    });
    assert!(
        found,
        "serial {serial} is no issued_N entry: {:?}",
        env.json()
    );
}

// ------------------------------------------------------------------ 1. RSA CA on SoftHSM

/// The CA's RSA key exists only on the token (sensitive, never extractable, flag C, a
/// `pkcs11:` URI): scepclient and a wire client enrol with OTPs; the requests were encrypted
/// to the CA certificate alone, the replies verify with it, so the token decrypted and
/// signed. With the key gone from the token the server can do neither.
#[test]
fn a_ca_on_softhsm_decrypts_and_signs_scep_on_the_token() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let Some(hsm) = SoftHsm::new("scep-rsa-ca") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", RSA2048, &format!("ca-on-smart-card={PROFILE}"));
    assert_key_on_device(&env, "ca", "pkcs11:");
    assert_token_key(&hsm, "ca", true);
    let ca = env.export_cert("ca");
    hsm.assert_key_matches_cert("ca", &ca);
    let ca_der = pem_to_der(&ca);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/tok"]);

    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let (status, head, body) = d.get("/scep/tok/pkiclient.exe?operation=GetCACert");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/x-x509-ca-cert"), "{head}");
    assert_eq!(body, ca_der, "GetCACert is the CA certificate");

    // micromdm's scepclient (encrypts to the CA certificate, its default cipher and digest)
    let crt = scepclient_enrol(&env, &d, "/scep/tok", "tok-client", None);
    assert_verifies(&ca, &crt);
    assert_issued_by(&env, &crt, "ca");

    // certman's own client: AES-256 and SHA-256; the CertRep verifies with the CA
    // certificate alone, in certman's reader and in OpenSSL's PKCS#7 API.
    let (rep, crt2) = device_enrol(&env, &d, "/scep/tok", &ca_der, &ca_der, "tok-wire");
    assert_verifies(&ca, &crt2);
    assert_issued_by(&env, &crt2, "ca");
    let signer = assert_certrep_signed(&rep, &ca);
    assert_eq!(openssl_fingerprint(&signer), openssl_fingerprint(&ca));
    // The log line is read from serve's stderr by another thread: wait for it.
    let log = (0..200)
        .find_map(|_| {
            let l = d.log();
            l.contains("Aes256Cbc").then_some(l).or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            })
        })
        .unwrap_or_else(|| d.log());
    assert!(
        log.lines()
            .any(|l| l.contains("PkcsReq") && l.contains("Aes256Cbc") && l.contains("SUCCESS")),
        "{log}"
    );
    assert_eq!(issued_names(&env).len(), 2);
    assert!(scep_requests(&env)
        .iter()
        .all(|r| r["status"] == "issued" && r["authority"] == "ca"));

    // The key leaves the token: the server can no longer open a request nor sign a reply,
    // and nothing more is issued (no copy of the key anywhere else did the work).
    hsm.pkcs11_ok(&["--delete-object", "--type", "privkey", "--label", "ca"]);
    let dev = Device::new("after");
    let pw = otp(&env, 5);
    let msg = dev.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(dev.csr("after", Some(&pw))),
        &ca_der,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    );
    let (status, _, reply) = http_post(
        d.port,
        "/scep/tok/pkiclient.exe?operation=PKIOperation",
        &msg,
    );
    assert_eq!(
        status,
        503,
        "without the token key: {}\n{}",
        String::from_utf8_lossy(&reply),
        d.log()
    );
    d.wait_for_log("unavailable: the responder's key", Duration::from_secs(10));
    assert_eq!(issued_names(&env).len(), 2, "issued without the token key");
    d.stop();
}

// ------------------------------------------------------------------ 2. EC CA + RSA RA on SoftHSM

/// An EC P-256 CA on SoftHSM serves SCEP only through an RSA RA: refused without one;
/// with an RA issued by it, its key on the same token, GetCACert answers RA + CA, the clients
/// encrypt to the RA, the RA's key opens the requests and signs the replies on the token, and
/// the EC CA's key signs the certificates there.
#[test]
fn an_ec_ca_on_softhsm_serves_scep_through_an_rsa_ra_on_the_same_token() {
    if !peer(SCEPCLIENT, "scep") || !peer(SCEP_SUBMIT, "certmonger") {
        return;
    }
    let Some(hsm) = SoftHsm::new("scep-ec-ca-ra") else {
        return;
    };
    let env = hsm.env();
    token_ca(&env, "ca", EC, &format!("ca-on-smart-card={PROFILE}"));
    issue_ra(&env, "ra", "ca", &format!("on-smart-card={PROFILE}"));
    assert_key_on_device(&env, "ca", "pkcs11:");
    assert_key_on_device(&env, "ra", "pkcs11:");
    assert_token_key(&hsm, "ca", false);
    assert_token_key(&hsm, "ra", true);
    let ca = env.export_cert("ca");
    let ra = env.export_cert("ra");
    hsm.assert_key_matches_cert("ca", &ca);
    hsm.assert_key_matches_cert("ra", &ra);
    assert_verifies(&ca, &ra);
    assert!(
        public_key_algorithm(&cert_text(&ca)).contains("id-ecPublicKey"),
        "{}",
        cert_text(&ca)
    );
    let ra_der = pem_to_der(&ra);

    // Without an RA the EC CA cannot decrypt: refused, nothing added.
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ca", "path=/scep/ec"],
        EXIT_REFUSED,
    );
    assert!(err.contains("ra-cert"), "{err}");
    assert!(servers(&env).is_empty());
    env.ok(&[
        "scep-server",
        "add",
        "ca-cert=ca",
        "path=/scep/ec",
        "ra-cert=ra",
    ]);
    let s = servers(&env);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["ra-cert"], "ra", "{s:?}");
    assert_eq!(s[0]["ca-cert"], "ca", "{s:?}");

    let d = Daemon::start(&env, "127.0.0.1:0");
    // GetCACert: a degenerate SignedData of RA then CA.
    let (status, head, body) = d.get("/scep/ec/pkiclient.exe?operation=GetCACert");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/x-x509-ca-ra-cert"), "{head}");
    let p7 = env.path("getcacert.p7");
    std::fs::write(&p7, &body).unwrap();
    let certs = openssl(
        &["pkcs7", "-inform", "DER", "-in", p(&p7), "-print_certs"],
        Path::new("/"),
    );
    let subjects: Vec<&str> = certs
        .lines()
        .filter_map(|l| l.strip_prefix("subject="))
        .map(str::trim)
        .collect();
    assert_eq!(subjects, ["CN = ra", "CN = ca"], "{certs}");
    // degenerate: no signer, no digest algorithm
    let pkcs7_text = openssl(
        &["pkcs7", "-inform", "DER", "-in", p(&p7), "-print", "-noout"],
        Path::new("/"),
    );
    for field in ["md_algs:", "signer_info:"] {
        let next = pkcs7_text
            .lines()
            .skip_while(|l| l.trim() != field)
            .nth(1)
            .map(str::trim);
        assert_eq!(next, Some("<EMPTY>"), "{field} in:\n{pkcs7_text}");
    }

    // micromdm's scepclient. It encrypts to every certificate GetCACert gave it unless
    // -ca-fingerprint picks one, and its PKCS#7 library panics on the EC CA's key
    // ("interface {} is *ecdsa.PublicKey, not *rsa.PublicKey"): it is told the RA's
    // fingerprint, as for NDES, and then also verifies the CertRep against the RA alone.
    let crt = scepclient_enrol(
        &env,
        &d,
        "/scep/ec",
        "ec-client",
        Some(&openssl_fingerprint(&ra)),
    );
    assert_verifies(&ca, &crt);
    assert!(
        signature_algorithm(&cert_text(&crt)).contains("ecdsa-with-SHA256"),
        "{}",
        cert_text(&crt)
    );
    assert_issued_by(&env, &crt, "ca");

    // certman's client, encrypting to the RA: the CertRep is signed by the RA (certman's
    // reader accepts the RA alone as the signer; OpenSSL finds the RA as the signer and
    // chains it to the EC CA).
    let (rep, crt2) = device_enrol(&env, &d, "/scep/ec", &ra_der, &ra_der, "ec-wire");
    assert_verifies(&ca, &crt2);
    assert_issued_by(&env, &crt2, "ca");
    let signer = assert_certrep_signed(&rep, &ca);
    assert_eq!(
        openssl_fingerprint(&signer),
        openssl_fingerprint(&ra),
        "the CertRep was not signed by the RA"
    );

    // certmonger, without -N: the RA + CA of GetCACert give it the CA as root.
    let pw = otp(&env, 5);
    let cm = fresh_dir(&env, "certmonger");
    let (out, cert) = certmonger_enrol(&cm, &url(&d, "/scep/ec"), &pw, "cm-ec", None);
    assert!(
        out.status.success() && cert.exists(),
        "certmonger through the RA: {}\ncertmonger daemon log:\n{}\nserve:\n{}",
        said(&out),
        std::fs::read_to_string(cm.join("daemon.log")).unwrap_or_default(),
        d.log()
    );
    assert_verifies(&ca, &cert);
    assert_issued_by(&env, &cert, "ca");

    assert_eq!(
        issued_names(&env).len(),
        3,
        "{:?}\n{}",
        scep_requests(&env),
        d.log()
    );
    let reqs = scep_requests(&env);
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert!(reqs
        .iter()
        .all(|r| r["status"] == "issued" && r["authority"] == "ra"));
    d.stop();
}

// ------------------------------------------------------------------ 3. RA rules

/// `ra-cert=` refuses a CA, an EC key, a certificate of another CA and one that cannot both
/// sign and decrypt (exit 4, naming the RA and the reason; nothing added); a proper RSA RA in
/// software serves an EC CA in software.
#[test]
fn an_ra_must_be_an_rsa_non_ca_certificate_of_the_servers_ca() {
    let env = Env::new();
    env.make_ca("ca", &["key-type=ec"]);
    env.make_ca("other", RSA2048);
    // a sub-CA with an RSA key, issued by ca: its only fault is being a CA
    issue_with(
        &env,
        "sub",
        "ca",
        &[
            "key-type=rsa",
            "key-size=2048",
            "key-usage=key-cert-sign,crl-sign",
        ],
        "",
    );
    issue_with(
        &env,
        "ec-ra",
        "ca",
        &["key-type=ec", "key-usage=digital-signature"],
        "",
    );
    issue_ra(&env, "foreign-ra", "other", "");
    issue_with(
        &env,
        "sign-only",
        "ca",
        &[
            "key-type=rsa",
            "key-size=2048",
            "key-usage=digital-signature",
        ],
        "",
    );
    issue_ra(&env, "ra", "ca", "");
    assert!(env.entry("sub")["flags"].as_str().unwrap().contains('A'));

    let before = env.snapshot();
    for (ra, why) in [
        ("sub", "must not be a CA"),
        ("ec-ra", "RSA"),
        ("foreign-ra", "issued by the server's CA \"ca\""),
        ("sign-only", "digital-signature and key-encipherment"),
    ] {
        let err = env.fail(
            &[
                "scep-server",
                "add",
                "ca-cert=ca",
                "path=/scep/x",
                &format!("ra-cert={ra}"),
            ],
            EXIT_REFUSED,
        );
        assert!(
            err.contains(&format!("ra-cert={ra}")) && err.contains(why),
            "ra-cert={ra}: {err}"
        );
    }
    assert!(servers(&env).is_empty());
    assert_eq!(env.snapshot(), before);

    // The same rules on `set`: a good RA is taken, a bad one refused, the good one stays.
    env.ok(&[
        "scep-server",
        "add",
        "ca-cert=ca",
        "path=/scep/x",
        "ra-cert=ra",
    ]);
    let err = env.fail(&["scep-server", "set", "x", "ra-cert=sub"], EXIT_REFUSED);
    assert!(err.contains("must not be a CA"), "{err}");
    let err = env.fail(&["scep-server", "set", "x", "ra-cert=none"], EXIT_REFUSED);
    assert!(err.contains("ra-cert"), "{err}");
    assert_eq!(servers(&env)[0]["ra-cert"], "ra");

    // The software RA serves the EC CA.
    let d = Daemon::start(&env, "127.0.0.1:0");
    let ca = env.export_cert("ca");
    let ra = env.export_cert("ra");
    let ra_der = pem_to_der(&ra);
    let (rep, crt) = device_enrol(&env, &d, "/scep/x", &ra_der, &ra_der, "soft-ra-wire");
    assert_verifies(&ca, &crt);
    let signer = assert_certrep_signed(&rep, &ca);
    assert_eq!(openssl_fingerprint(&signer), openssl_fingerprint(&ra));
    d.stop();
}

// ------------------------------------------------------------------ 4. the virtual PIV card

/// The card is one shared device: one test at a time in this binary. `scripts/test.sh` runs
/// the test binaries one after another (`cargo test --tests`), so never beside `piv_cli`'s.
static CARD: Mutex<()> = Mutex::new(());

/// The virtual card's PIN retry counter when full.
const PIV_PIN_TRIES: u32 = 3;

/// PIN tries left, as yubico-piv-tool reads them. It prints -1 while the PIN is verified
/// (the virtual card keeps that across connections): no wrong try since the last right one,
/// which reset the counter, so the counter is full.
fn pin_tries(reader: &str) -> u32 {
    let out = piv_tool(reader, &["-a", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let tries: i32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PIN tries in status: {text}"));
    if tries < 0 {
        PIV_PIN_TRIES
    } else {
        tries as u32
    }
}

/// The virtual card, locked for one test, with its PIN counter full and slots 9a/9c/9d free,
/// and an [`Env`] with the profiles `piv-virtual` (slot 9c, the default) and `piv-9d`.
struct Card {
    _lock: std::sync::MutexGuard<'static, ()>,
    reader: String,
    env: Env,
    full: u32,
}

impl Card {
    fn new() -> Option<Card> {
        let reader = piv_reader()?;
        let lock = CARD.lock().unwrap_or_else(|e| e.into_inner());
        // Start from a full counter, as piv_cli does (the right PIN resets it).
        if pin_tries(&reader) < PIV_PIN_TRIES {
            let out = piv_tool(&reader, &["-a", "verify-pin", "-P", PIV_PIN]);
            assert_success(&out, "yubico-piv-tool verify-pin");
        }
        let full = pin_tries(&reader);
        assert_eq!(full, PIV_PIN_TRIES);
        // certman does not generate over a key in use (a slot with a certificate)
        for slot in ["9a", "9c", "9d"] {
            let _ = piv_tool(&reader, &["-a", "delete-certificate", "-s", slot]);
        }
        let env = Env::new();
        let tokens = env.root().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let pin_file = env.root().join("pin");
        std::fs::write(&pin_file, format!("{PIV_PIN}\n")).unwrap();
        let mgm = env.root().join("mgm");
        std::fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").unwrap();
        for (name, slot, default) in [("piv-virtual", "9c", true), ("piv-9d", "9d", false)] {
            std::fs::write(
                tokens.join(format!("{name}.toml")),
                format!(
                    "kind = \"piv\"\nreader = \"{}\"\nslot = \"{slot}\"\ndefault = {default}\n\
                     pin-source = \"file:{}\"\nmanagement-key-source = \"file:{}\"\n",
                    reader.replace('\\', "\\\\").replace('"', "\\\""),
                    pin_file.display(),
                    mgm.display()
                ),
            )
            .unwrap();
        }
        let env = env.with_global_args(&["--tokens".to_owned(), tokens.display().to_string()]);
        Some(Card {
            _lock: lock,
            reader,
            env,
            full,
        })
    }

    /// The certificate in `slot`, as yubico-piv-tool reads it (PEM file).
    fn read_certificate(&self, slot: &str) -> PathBuf {
        let out = piv_tool(&self.reader, &["-a", "read-certificate", "-s", slot]);
        assert_success(&out, &format!("yubico-piv-tool read-certificate -s {slot}"));
        let pem = self.env.root().join(format!("slot-{slot}.pem"));
        std::fs::write(&pem, &out.stdout).unwrap();
        pem
    }

    /// yubico-piv-tool, independently of certman: the key in `slot` passes `action`
    /// (`test-decipher`, `test-signature`) against the certificate `crt`.
    fn assert_key_passes(&self, slot: &str, action: &str, crt: &Path) {
        let out = Command::new("yubico-piv-tool")
            .args(["-r", &self.reader, "-P", PIV_PIN, "-a", "verify-pin"])
            .args(["-a", action, "-s", slot, "-i", p(crt)])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("yubico-piv-tool");
        assert_success(&out, &format!("yubico-piv-tool -a {action} -s {slot}"));
    }

    /// The PIN counter is as the test found it (full); slots 9c and 9d are free again.
    fn finish(self) {
        assert_eq!(
            pin_tries(&self.reader),
            self.full,
            "the PIN counter changed"
        );
        for slot in ["9c", "9d"] {
            let _ = piv_tool(&self.reader, &["-a", "delete-certificate", "-s", slot]);
        }
    }
}

/// A CA with an RSA-2048 key generated in slot 9c of the virtual card: scepclient and a wire
/// client enrol with OTPs; the card opened the requests (encrypted to the CA alone) and signed
/// the replies and the certificates; the PIN counter is as it was.
#[test]
fn a_ca_on_the_piv_card_decrypts_and_signs_scep_on_the_card() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let Some(card) = Card::new() else {
        return;
    };
    let env = &card.env;
    token_ca(env, "ca", RSA2048, "ca-on-smart-card=piv-virtual");
    let uri = assert_key_on_device(env, "ca", "piv:slot-id=9c;");
    assert!(!uri.contains(PIV_PIN), "{uri}");
    let ca = env.export_cert("ca");
    assert!(cert_text(&ca).contains("Public-Key: (2048 bit)"));
    // the card holds the CA certificate in slot 9c
    assert_eq!(
        openssl_fingerprint(&card.read_certificate("9c")),
        openssl_fingerprint(&ca)
    );
    let ca_der = pem_to_der(&ca);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/card"]);

    let d = Daemon::start(env, "127.0.0.1:0");
    let crt = scepclient_enrol(env, &d, "/scep/card", "card-client", None);
    assert_verifies(&ca, &crt);
    assert_issued_by(env, &crt, "ca");
    let (rep, crt2) = device_enrol(env, &d, "/scep/card", &ca_der, &ca_der, "card-wire");
    assert_verifies(&ca, &crt2);
    assert_issued_by(env, &crt2, "ca");
    let signer = assert_certrep_signed(&rep, &ca);
    assert_eq!(openssl_fingerprint(&signer), openssl_fingerprint(&ca));
    assert_eq!(issued_names(env).len(), 2);
    let log = d.stop();
    assert!(!log.contains(PIV_PIN), "the PIN reached the log");

    // the key in slot 9c deciphers and signs for the CA's certificate
    card.assert_key_passes("9c", "test-decipher", &ca);
    card.assert_key_passes("9c", "test-signature", &ca);
    card.finish();
}

/// An EC P-256 CA in slot 9c and an RSA RA in slot 9d (key management) of the virtual card:
/// the RA's key on the card opens the requests and signs the replies, the CA's signs the
/// certificates.
#[test]
fn an_ec_ca_on_the_piv_card_serves_scep_through_an_rsa_ra_on_the_card() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    let Some(card) = Card::new() else {
        return;
    };
    let env = &card.env;
    token_ca(env, "ca", EC, "ca-on-smart-card=piv-virtual");
    issue_ra(env, "ra", "ca", "on-smart-card=piv-9d");
    assert_key_on_device(env, "ca", "piv:slot-id=9c;");
    assert_key_on_device(env, "ra", "piv:slot-id=9d;");
    let ca = env.export_cert("ca");
    let ra = env.export_cert("ra");
    assert_verifies(&ca, &ra);
    assert_eq!(
        openssl_fingerprint(&card.read_certificate("9d")),
        openssl_fingerprint(&ra)
    );
    let ra_der = pem_to_der(&ra);
    let err = env.fail(
        &["scep-server", "add", "ca-cert=ca", "path=/scep/card"],
        EXIT_REFUSED,
    );
    assert!(err.contains("ra-cert"), "{err}");
    env.ok(&[
        "scep-server",
        "add",
        "ca-cert=ca",
        "path=/scep/card",
        "ra-cert=ra",
    ]);

    let d = Daemon::start(env, "127.0.0.1:0");
    let (status, head, _) = d.get("/scep/card/pkiclient.exe?operation=GetCACert");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/x-x509-ca-ra-cert"), "{head}");
    let crt = scepclient_enrol(
        env,
        &d,
        "/scep/card",
        "card-ra-client",
        Some(&openssl_fingerprint(&ra)),
    );
    assert_verifies(&ca, &crt);
    assert_issued_by(env, &crt, "ca");
    let (rep, crt2) = device_enrol(env, &d, "/scep/card", &ra_der, &ra_der, "card-ra-wire");
    assert_verifies(&ca, &crt2);
    assert_issued_by(env, &crt2, "ca");
    let signer = assert_certrep_signed(&rep, &ca);
    assert_eq!(
        openssl_fingerprint(&signer),
        openssl_fingerprint(&ra),
        "the CertRep was not signed by the RA"
    );
    assert_eq!(issued_names(env).len(), 2);
    assert!(scep_requests(env)
        .iter()
        .all(|r| r["status"] == "issued" && r["authority"] == "ra"));
    let log = d.stop();
    assert!(!log.contains(PIV_PIN), "the PIN reached the log");

    card.assert_key_passes("9d", "test-decipher", &ra);
    card.finish();
}
