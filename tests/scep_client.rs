//! certman's SCEP client (`add-scep`, `scep-renew`, the `serve` timer) and RA mode
//! (`scep-server ra`) against certman's own SCEP server, two stores on one machine: the seed's
//! example end to end (pending, `requests grant 0`, the client's poll by `serve` picks it up);
//! an OTP issuing at once; a renewal by `serve` with a RenewalReq; a next CA recorded and
//! moved to; servers that cannot be reached, answer garbage or never grant; a certman RA in
//! front of a certman CA with micromdm's `scepclient` enrolling through it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use common::daemon::*;
use common::scep::*;
use common::*;
use serde_json::Value;

/// The seed's CA and SCEP server (`/scep/test`, 1-day certificates).
fn ca_store() -> Env {
    let env = Env::new();
    env.ok(&["add", "common-name=ca", "name=ca-tpl"]);
    env.ok(&["sign", "ca-tpl", "name=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    env
}

/// A client store with the seed's template `tpl_1`.
fn client_store() -> Env {
    let env = Env::new();
    env.ok(&["add", "common-name=tst-client", "name=tpl_1"]);
    env
}

fn url(d: &Daemon) -> String {
    format!("http://127.0.0.1:{}/scep/test/pkiclient.exe", d.port)
}

fn run_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = env.command(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("run certman")
}

fn status(env: &Env, name: &str) -> String {
    env.entry(name)["status"].as_str().unwrap_or("").to_owned()
}

fn serial(env: &Env, name: &str) -> String {
    env.entry(name)["serial-number"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A serve config whose SCEP client timer looks every second and retries after a second.
fn fast_config(env: &Env) -> String {
    let path = env.path("serve.toml");
    std::fs::write(
        &path,
        "scep-client-interval = 1\nscep-client-retry = 1\nscep-client-check = 1\n",
    )
    .unwrap();
    format!("config={}", path.display())
}

/// `tpl_1` verifies against the CA the client recorded, with OpenSSL.
fn assert_issued_by_recorded_ca(client: &Env, ca_name: &str) {
    let ca = client.export_cert(ca_name);
    let crt = client.export_cert("tpl_1");
    assert_verifies(&ca, &crt);
}

#[test]
fn the_seed_example_pending_then_granted_is_picked_up_by_serve() {
    require_openssl();
    let ca = ca_store();
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let client = client_store();
    let out = client.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
    ]);
    assert!(
        out.contains("status=requesting-pending-certificate"),
        "{out}"
    );
    // The operator compares the fingerprint printed with the CA's.
    let ca_crt = ca.export_cert("ca");
    let printed = out
        .split("ca-fingerprint=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(norm_hex(printed), norm_hex(&openssl_fingerprint(&ca_crt)));
    // As the seed shows it: tpl_1 (K, the key) with the client's status, tpl_1_CA (A T).
    let entry = client.entry("tpl_1");
    assert_eq!(entry["status"], "requesting-pending-certificate", "{entry}");
    assert!(entry["flags"].as_str().unwrap().contains('K'), "{entry}");
    assert_eq!(entry["scep-url"], url(&d));
    let ca_entry = client.entry("tpl_1_CA");
    let flags = ca_entry["flags"].as_str().unwrap();
    assert!(flags.contains('A') && flags.contains('T'), "{ca_entry}");
    let requests = scep_requests(&ca);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "pending");
    assert_eq!(requests[0]["common-name"], "tst-client");
    assert_eq!(requests[0]["req-fingerprint"], entry["req-fingerprint"]);

    // `serve` on the client polls; the operator grants; the next poll picks it up.
    let mut cd = Daemon::start_with(&client, &["listen=127.0.0.1:0", &fast_config(&client)], &[]);
    cd.wait_for_log(
        "SCEP client tpl_1: requesting-pending-certificate",
        Duration::from_secs(30),
    );
    ca.ok(&["scep-server", "requests", "grant", "0"]);
    cd.wait_for_log("SCEP client tpl_1: issued", Duration::from_secs(60));
    let log = cd.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(status(&client, "tpl_1"), "issued");
    assert_issued_by_recorded_ca(&client, "tpl_1_CA");
    assert_eq!(scep_requests(&ca)[0]["status"], "issued");
}

#[test]
fn with_an_otp_it_is_issued_at_once_and_the_password_is_kept_nowhere() {
    require_openssl();
    let ca = ca_store();
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let client = client_store();
    let pw = otp(&ca, 10);
    let out = client.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
        &format!("challenge-password={pw}"),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "issued", "{v}");
    assert!(v["expires-after"].is_string(), "{v}");
    assert_issued_by_recorded_ca(&client, "tpl_1_CA");
    // The key stayed (K), the temporary certificate is gone.
    let entry = client.entry("tpl_1");
    assert!(entry["flags"].as_str().unwrap().contains('K'), "{entry}");
    assert_ne!(entry["issuer"], entry["subject"], "{entry}");
    // Not in what print shows, nor in the store file (sealed while needed, then dropped).
    let shown = client.ok(&["print", "detail"]) + &client.ok(&["print", "--json"]);
    assert!(!shown.contains(&pw));
    for file in ["certman.db", "certman.db-wal"] {
        let bytes = std::fs::read(client.root().join("store").join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
            "{file}"
        );
    }
    // The client's CA stays while the client does; removing the certificate takes the
    // client with it, and then the CA may go.
    let err = client.fail(&["remove", "tpl_1_CA"], EXIT_REFUSED);
    assert!(err.contains("SCEP client tpl_1"), "{err}");
    client.ok(&["remove", "tpl_1"]);
    client.fail(&["scep-renew", "tpl_1"], EXIT_NOT_FOUND);
    client.ok(&["remove", "tpl_1_CA"]);
    assert!(client.names().is_empty(), "{:?}", client.names());
}

#[test]
fn serve_renews_at_three_quarters_with_a_renewal_req_and_the_old_one_stays_until_then() {
    require_openssl();
    let ca = ca_store();
    let mut d = Daemon::start(&ca, "127.0.0.1:0");
    let client = client_store();
    let pw = otp(&ca, 10);
    client.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
        &format!("challenge-password={pw}"),
    ]);
    let first = serial(&client, "tpl_1");
    // Not due yet: serve's first looks change nothing.
    let cd = Daemon::start_with(&client, &["listen=127.0.0.1:0", &fast_config(&client)], &[]);
    std::thread::sleep(Duration::from_secs(3));
    cd.stop();
    assert_eq!(serial(&client, "tpl_1"), first);
    // 19 hours later (a 1-day certificate renews after 18): serve renews it.
    let mut cd = Daemon::start_with(
        &client,
        &["listen=127.0.0.1:0", &fast_config(&client)],
        &[("CERTMAN_TEST_CLOCK_OFFSET", "68400")],
    );
    cd.wait_for_log("(renewed)", Duration::from_secs(60));
    cd.stop();
    let renewed = serial(&client, "tpl_1");
    assert_ne!(renewed, first);
    assert_eq!(status(&client, "tpl_1"), "issued");
    assert_issued_by_recorded_ca(&client, "tpl_1_CA");
    let log = d.wait_for_log("RenewalReq", Duration::from_secs(5));
    assert!(log.contains("RenewalReq transaction-id="), "{log}");
    // Every request at the server was answered with a certificate.
    let requests = scep_requests(&ca);
    assert!(requests.len() >= 2, "{requests:?}");
    assert!(
        requests.iter().all(|r| r["status"] == "issued"),
        "{requests:?}"
    );
}

#[test]
fn the_client_records_the_next_ca_and_moves_to_it_when_the_current_one_ends() {
    require_openssl();
    let ca = ca_store();
    ca.ok(&["add", "common-name=ca2", "name=ca2-tpl"]);
    ca.ok(&["sign", "ca2-tpl", "name=ca2"]);
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let client = client_store();
    let pw = otp(&ca, 10);
    client.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
        &format!("challenge-password={pw}"),
    ]);
    // The server announces ca2; the client's next step records it (and renews under ca).
    ca.ok(&["scep-server", "set", "test", "next-ca-cert=ca2"]);
    client.ok(&["scep-renew", "tpl_1"]);
    let next = client.entry("tpl_1_next_CA");
    assert_eq!(next["common-name"], "ca2", "{next}");
    assert_issued_by_recorded_ca(&client, "tpl_1_CA");
    // The server rolls over; 300 days later, the client's CA is near its end: it moves to ca2
    // and enrols there (a new request: no renewal by a certificate ca2 never issued).
    ca.ok(&[
        "scep-server",
        "set",
        "test",
        "ca-cert=ca2",
        "next-ca-cert=none",
    ]);
    let later = [("CERTMAN_TEST_CLOCK_OFFSET", "25920000")];
    let out = run_with(&client, &["scep-renew", "tpl_1"], &later);
    assert_success(&out, "scep-renew after the roll-over");
    assert!(
        stdout(&out).contains("requesting-pending-certificate"),
        "{}",
        said(&out)
    );
    assert_eq!(client.entry("tpl_1_CA")["common-name"], "ca2");
    assert_eq!(client.entry("tpl_1_old_CA")["common-name"], "ca");
    let pending = scep_requests(&ca)
        .into_iter()
        .find(|r| r["status"] == "pending")
        .expect("a pending request at ca2");
    ca.ok(&[
        "scep-server",
        "requests",
        "grant",
        pending["transaction-id"].as_str().unwrap(),
    ]);
    let out = run_with(&client, &["scep-renew", "tpl_1"], &later);
    assert_success(&out, "the poll after the grant");
    assert_eq!(status(&client, "tpl_1"), "issued");
    assert_eq!(client.entry("tpl_1")["issuer"], "CN=ca2");
    assert_issued_by_recorded_ca(&client, "tpl_1_CA");
}

/// A one-thread HTTP server on loopback answering `reply(request head)` to every request.
fn fake_server(reply: impl Fn(&str) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&got).into_owned();
            let body = reply(&head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    port
}

#[test]
fn unreachable_garbage_and_never_granting_servers_give_clear_statuses() {
    require_openssl();
    let client = client_store();
    let before = client.names();
    // Nothing listens: one line, nothing stored, the template kept.
    let port = free_port();
    let err = client.fail(
        &[
            "add-scep",
            "template=tpl_1",
            &format!("scep-url=http://127.0.0.1:{port}/scep/x/pkiclient.exe"),
        ],
        EXIT_FAILED,
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(client.names(), before);
    // Garbage for everything: refused at GetCACert, nothing stored.
    let garbage = fake_server(|_| b"<html>not SCEP</html>".to_vec());
    let err = client.fail(
        &[
            "add-scep",
            "template=tpl_1",
            &format!("scep-url=http://127.0.0.1:{garbage}/cgi-bin/pkiclient.exe"),
        ],
        EXIT_FAILED,
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(client.names(), before);
    // A real CA, but garbage to PKIOperation: the client is kept, status server-error.
    let ca = ca_store();
    let ca_der = openssl_der(&ca.export_cert("ca"));
    let half = fake_server(move |head| {
        if head.contains("GetCACaps") {
            b"POSTPKIOperation\nSHA-256\nAES\n".to_vec()
        } else if head.contains("GetCACert") {
            ca_der.clone()
        } else {
            b"\x30\x03\x02\x01\x00 garbage".to_vec()
        }
    });
    let out = client.run(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url=http://127.0.0.1:{half}/scep/pkiclient.exe"),
    ]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED), "{}", said(&out));
    assert!(stderr(&out).contains("server-error"), "{}", said(&out));
    assert_eq!(status(&client, "tpl_1"), "server-error");
    let out = client.run(&["scep-renew", "tpl_1"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED), "{}", said(&out));
    assert_eq!(status(&client, "tpl_1"), "server-error");

    // A server that never grants: pending, polled, and given up after 7 days.
    let ca = ca_store();
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let other = client_store();
    other.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
    ]);
    let out = other.ok(&["scep-renew", "tpl_1"]);
    assert!(out.contains("requesting-pending-certificate"), "{out}");
    let out = run_with(
        &other,
        &["scep-renew", "tpl_1"],
        &[("CERTMAN_TEST_CLOCK_OFFSET", "691200")],
    );
    assert_eq!(out.status.code(), Some(EXIT_FAILED), "{}", said(&out));
    assert_eq!(status(&other, "tpl_1"), "gave-up");
}

#[test]
fn a_wrong_ca_fingerprint_is_refused_before_anything_is_made() {
    let ca = ca_store();
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let client = client_store();
    let before = client.snapshot();
    let err = client.fail(
        &[
            "add-scep",
            "template=tpl_1",
            &format!("scep-url={}", url(&d)),
            &format!("ca-fingerprint={}", "0".repeat(64)),
        ],
        EXIT_REFUSED,
    );
    assert!(err.contains("fingerprint"), "{err}");
    assert_eq!(client.snapshot(), before);
    assert!(scep_requests(&ca).is_empty());
    // The right one, with colons and in upper case, is accepted.
    let fp = openssl_fingerprint(&ca.export_cert("ca"))
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let out = client.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", url(&d)),
        &format!("ca-fingerprint={fp}"),
    ]);
    assert!(out.contains("requesting-pending-certificate"), "{out}");
    // An EC template is refused before the server is asked.
    client.ok(&["add", "common-name=ec", "name=ec-tpl", "key-type=ec"]);
    let err = client.fail(
        &[
            "add-scep",
            "template=ec-tpl",
            &format!("scep-url={}", url(&d)),
        ],
        EXIT_REFUSED,
    );
    assert!(err.contains("RSA"), "{err}");
}

#[test]
fn a_certman_ra_in_front_of_a_certman_ca_serves_micromdm_scepclient() {
    if !peer(SCEPCLIENT, "scep") {
        return;
    }
    require_openssl();
    let ca = ca_store();
    let d = Daemon::start(&ca, "127.0.0.1:0");
    let ra = Env::new();
    ra.ok(&[
        "add",
        "name=ra-tpl",
        "common-name=ra1",
        "key-usage=digital-signature,key-encipherment",
    ]);
    let pw = otp(&ca, 10);
    let out = ra.ok(&[
        "scep-server",
        "ra",
        "add",
        "name=ra1",
        &format!("server-url={}", url(&d)),
        "template=ra-tpl",
        &format!("challenge-password={pw}"),
    ]);
    assert!(out.contains("status=issued"), "{out}");
    let listed = ra.ok(&["scep-server", "ra", "print"]);
    assert!(
        listed.contains("ra1") && listed.contains("issued"),
        "{listed}"
    );
    let servers: Value = serde_json::from_str(&ra.ok(&["scep-server", "print", "--json"])).unwrap();
    assert_eq!(servers[0]["path"], "/scep/ra1", "{servers}");
    // A CA template for the RA is refused: the RA certificate must not be a CA.
    ra.ok(&[
        "add",
        "name=ca-like",
        "common-name=ra2",
        "key-usage=key-cert-sign,crl-sign",
    ]);
    let pw2 = otp(&ca, 10);
    let out = ra.run(&[
        "scep-server",
        "ra",
        "add",
        "name=ra2",
        &format!("server-url={}", url(&d)),
        "template=ca-like",
        &format!("challenge-password={pw2}"),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", said(&out));

    let rd = Daemon::start(&ra, "127.0.0.1:0");
    let dir = ra.path("device");
    std::fs::create_dir_all(&dir).unwrap();
    let device_pw = otp(&ca, 10);
    let out = scepclient(
        &dir,
        &format!("http://127.0.0.1:{}/scep/ra1/pkiclient.exe", rd.port),
        Some(&device_pw),
        "dev1",
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", said(&out));
    assert_verifies(&ca.export_cert("ca"), &dir.join("client.pem"));
    // The RA's queue shows the forwarded request; the CA issued it.
    let at_ra = scep_requests(&ra);
    assert_eq!(at_ra.len(), 1, "{at_ra:?}");
    assert_eq!(at_ra[0]["authority"], "ra");
    assert_eq!(at_ra[0]["status"], "issued");
    assert_eq!(at_ra[0]["common-name"], "dev1");
    assert!(scep_requests(&ca)
        .iter()
        .any(|r| r["common-name"] == "dev1" && r["status"] == "issued"));
}
