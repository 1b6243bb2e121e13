//! The SCEP server under attack: well over 1,000 malformed or hostile PKIOperation messages
//! (truncated, every length inflated, bytes flipped, wrong and unknown OIDs, bad signatures,
//! unknown message types, CertReps, envelopes for others, bad CSRs, wrong passwords, BER
//! bombs, HTTP-level abuse), by POST and by GET, against one `certman serve` on one store.
//! Every one must be answered with HTTP 4xx or a CertRep FAILURE — never 5xx, never SUCCESS or
//! PENDING — the daemon must live on with a stable RSS, and the store must be unchanged: the
//! valid one-time password the hostile messages were built around is still unused at the end,
//! and the valid message built at the start is then issued.
//!
//! Built by construction so that no variant can legitimately succeed: messages that carry the
//! valid OTP are mutated only where the server must notice (headers and OIDs it parses, the
//! signed attributes, the signature, the signed content, the signer's issuer, serial and key),
//! or re-signed around a fault; encodings the server is right to accept as the valid message
//! (BER forms, fields nobody checks) carry a wrong OTP instead and must come back as the valid
//! message would: CertRep FAILURE.

#[path = "../common/mod.rs"]
mod common;

mod crypto;
mod damage;
mod der;
mod equivalents;
mod fields;
mod http;
mod messages;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use certman::protocols::scep::message::{
    self, ContentCipher, MessageDigest, MessageLimits, MessageType, PkiStatus, RequestContent,
};
use serde_json::Value;

use crate::common::daemon::Daemon;
use crate::common::scep::Device;
use crate::common::Env;
use crate::der::Node;
use crate::http::{exchange, outcome, url_b64, Req, SCEP};
use crate::messages::Kit;
use crate::plan::{plan, Expect};

// ------------------------------------------------------------------ the store and the daemon

fn otp(env: &Env) -> String {
    let out = env.ok(&[
        "scep-server",
        "otp",
        "generate",
        "minutes-valid=60",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("otp json");
    v["password"].as_str().expect("password").to_owned()
}

/// Everything a hostile message could change: the certificates (`print --json`), the SCEP
/// requests, the OTPs (created, expires, used) and the servers.
fn store_state(env: &Env) -> String {
    format!(
        "{}\n--- scep-server requests\n{}\n--- scep-server otp\n{}\n--- scep-server\n{}",
        env.snapshot(),
        env.ok(&["scep-server", "requests", "print", "--json"]),
        env.ok(&["scep-server", "otp", "print", "--json"]),
        env.ok(&["scep-server", "print", "--json"]),
    )
}

/// The daemon's resident set, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// What the daemon's log line of a PKCSReq refused for its password says.
const WRONG_OTP_NOTE: &str = "(wrong one-time password)";

/// Waits (up to 10 s: the log is read by another thread) until `n` lines of the daemon's log
/// contain every one of `needles`.
fn wait_for_lines(d: &Daemon, needles: &[&str], n: usize) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let log = d.log();
        let found = log
            .lines()
            .filter(|l| needles.iter().all(|x| l.contains(x)))
            .count();
        if found >= n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let near: Vec<&str> = log.lines().filter(|l| l.contains(needles[0])).collect();
            return Err(format!(
                "FAILURE, but not logged as {needles:?} ({found} of {n} lines): {near:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn post_ok(port: u16, what: &str, body: &[u8]) -> Vec<u8> {
    let (status, reply) =
        exchange(port, &Req::Post(body.to_vec()).bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&reply));
    reply
}

#[test]
fn a_thousand_hostile_pki_operations_get_4xx_or_failure_and_change_nothing() {
    let env = Env::new();
    env.ok(&["add", "common-name=ca", "name=ca-tpl"]);
    env.ok(&["sign", "ca-tpl", "name=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    let pw = otp(&env);
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let port = d.port;
    let pid = d.child.id();
    let (status, _, ca_der) = d.get(&format!("{SCEP}?operation=GetCACert"));
    assert_eq!(status, 200, "GetCACert");

    // The building blocks, checked by the message layer itself: both base messages parse
    // and verify as PKCSReq.
    let kit = Kit::new(&ca_der, &pw);
    for (name, m) in [("valid", &kit.base_v), ("wrong-OTP", &kit.base_w)] {
        let r = message::parse_request(m, &MessageLimits::default())
            .unwrap_or_else(|e| panic!("the {name} message does not parse: {e}"));
        r.verify()
            .unwrap_or_else(|e| panic!("the {name} message does not verify: {e}"));
        assert_eq!(r.message_type, MessageType::PkcsReq);
        assert_eq!(Node::parse(m).der(), *m, "the {name} message is DER");
    }
    let before = store_state(&env);

    // Warm-up: 50 valid-shaped requests (the wrong OTP: read, verified, opened, refused).
    let mut certrep = Vec::new();
    for i in 0..50 {
        let req = if i % 2 == 0 {
            Req::Post(kit.base_w.clone())
        } else {
            Req::Get(url_b64(&kit.base_w))
        };
        let (status, body) =
            exchange(port, &req.bytes()).unwrap_or_else(|e| panic!("warm-up {i}: {e}"));
        assert_eq!(
            outcome(status, &body, &ca_der).as_deref(),
            Ok("FAILURE BadRequest"),
            "warm-up {i}"
        );
        certrep = body;
    }
    let rss_warm = rss_kib(pid);

    let plan = plan(&kit, &certrep);
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &plan.0 {
        *families.entry(v.family).or_default() += 1;
    }
    let posts = plan
        .0
        .iter()
        .filter(|v| !matches!(v.req, Req::Get(_)))
        .count();
    assert!(
        posts >= 1000,
        "only {posts} hostile messages besides GETs: {families:?}"
    );
    let labels: BTreeSet<&str> = plan.0.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(labels.len(), plan.0.len(), "variant labels are unique");

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut tally: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut processed: BTreeMap<String, usize> = BTreeMap::new();
    for v in &plan.0 {
        let got = match exchange(port, &v.req.bytes()) {
            Ok((status, body)) => outcome(status, &body, &ca_der),
            Err(e) => {
                if let Ok(Some(st)) = d.child.try_wait() {
                    panic!("certman serve died ({st}) at {}:\n{}", v.label, d.log());
                }
                Err(e)
            }
        };
        let verdict = match (got, &v.expect) {
            (Err(e), _) => Err(e),
            (Ok(o), Expect::Refused) => Ok(o),
            (Ok(o), Expect::Processed(txid)) if o == "FAILURE BadRequest" => {
                let n = processed.entry(txid.clone()).or_default();
                *n += 1;
                wait_for_lines(
                    &d,
                    &[&format!("transaction-id={txid} "), WRONG_OTP_NOTE],
                    *n,
                )
                .map(|()| o)
            }
            (Ok(o), Expect::Status(c)) if o == format!("HTTP {c}") => Ok(o),
            (Ok(o), e) => Err(format!("{o}, expected {e:?}")),
        };
        match verdict {
            Ok(o) => *tally.entry(v.family).or_default().entry(o).or_default() += 1,
            Err(why) => failures.push(format!("{}\n    -> {why}", v.label)),
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_kib(pid);

    println!(
        "{} requests ({} by GET) in {:.1} s; daemon RSS {} KiB after the warm-up, {} KiB after",
        plan.0.len(),
        plan.0.len() - posts,
        elapsed.as_secs_f64(),
        rss_warm,
        rss_after
    );
    for (family, outcomes) in &tally {
        println!("  {family:<10} {:>5}  {outcomes:?}", families[family]);
    }
    let log = d.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were answered wrongly:\n{}\nthe daemon's errors:\n{}",
        failures.len(),
        plan.0.len(),
        failures.join("\n"),
        errors.join("\n")
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "the hostile run took {elapsed:?}"
    );
    assert!(
        rss_after < rss_warm + 32 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_after} KiB"
    );

    // Nothing changed: no certificate, no request, the OTP still unused.
    let after = store_state(&env);
    assert_eq!(before, after, "the hostile messages changed the store");
    let otps: Value =
        serde_json::from_str(&env.ok(&["scep-server", "otp", "print", "--json"])).unwrap();
    assert!(
        otps.as_array().unwrap().iter().all(|o| o["used"].is_null()),
        "an OTP was used: {otps}"
    );

    // The daemon lives: /health, the valid message built at the start (its OTP unused all
    // along) is issued now, and so is a fresh enrolment.
    let (status, _, health) = d.get("/health");
    assert_eq!(status, 200, "/health: {}", String::from_utf8_lossy(&health));
    let reply = post_ok(port, "the valid message", &kit.base_v);
    assert_eq!(
        kit.a.read_reply(&reply, &ca_der).status,
        PkiStatus::Success,
        "the valid message, sent after the hostile ones"
    );
    let pw2 = otp(&env);
    let fresh = Device::new("after");
    let msg = fresh.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(fresh.csr("after", Some(&pw2))),
        &ca_der,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    );
    let reply = post_ok(port, "a fresh enrolment", &msg);
    assert_eq!(
        fresh.read_reply(&reply, &ca_der).status,
        PkiStatus::Success,
        "a fresh enrolment"
    );
    let issued = env
        .json()
        .iter()
        .filter(|e| e["flags"].as_str().unwrap_or("").contains('I'))
        .count();
    assert_eq!(issued, 2, "exactly the two valid enrolments were issued");
    let log = d.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    d.stop();
}
