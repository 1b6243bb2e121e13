//! `certman serve` as a process: CRLs at their CDP paths (read from the store on every request,
//! so revocations from the CLI show at once), `/health`, SIGTERM; and a second store that
//! trusts the CA downloading its CRL (`crl download`, and the daemon's download timer),
//! `verify` using it, and a CRL with a bad signature refused and logged.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::daemon::*;
use common::*;

/// Store 1: CA `ca` (ca-crl-host=127.0.0.1:PORT) and a TLS server certificate `srv`.
fn ca_store(port: u16) -> Env {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&[
        "sign",
        "ca-tpl",
        "name=ca",
        &format!("ca-crl-host=127.0.0.1:{port}"),
    ]);
    env.issue(
        "srv",
        "ca",
        &[
            "key-type=ec",
            "key-usage=digital-signature,tls-server",
            "subject-alt-name=DNS:srv.example",
        ],
    );
    env
}

#[test]
fn serve_answers_the_cdp_with_the_stored_crl_and_follows_the_cli() {
    let env = ca_store(8080);
    let d = Daemon::start(&env, "127.0.0.1:0");

    let (status, head, body) = d.get("/crl/ca.crl");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/pkix-crl"),
        "{head}"
    );
    assert_eq!(body, crl_der(&env, "ca"), "served = stored");
    let served = env.path("served-1.crl");
    std::fs::write(&served, &body).unwrap();
    assert_eq!(crl_number(&served), 1);

    // A revocation from the CLI while the daemon runs: the next request serves the new CRL.
    env.ok(&["issued-revoke", "srv"]);
    let (status, _, after) = d.get("/crl/ca.crl");
    assert_eq!(status, 200);
    assert_ne!(after, body);
    assert_eq!(after, crl_der(&env, "ca"));
    // OpenSSL: the served CRL is number 2, signed by the CA, and rejects srv.
    let served = env.path("served-2.crl");
    std::fs::write(&served, &after).unwrap();
    assert_eq!(crl_number(&served), 2);
    let ca = env.export_cert("ca");
    let srv = env.export_cert("srv");
    assert_crl_signed_by(&served, &ca);
    let (ok, text) = openssl_verify_crl(&ca, &[], &[&served], &srv);
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    // The CDP in srv keeps working after the CA is renamed; the new name works too.
    env.ok(&["set", "ca", "name=root"]);
    assert_eq!(d.get("/crl/ca.crl").2, after);
    assert_eq!(d.get("/crl/root.crl").2, after);

    assert_eq!(d.get("/crl/nosuch.crl").0, 404);
    assert_eq!(d.get("/nothing").0, 404);
    let (status, _, health) = d.get("/health");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&health).expect("health JSON");
    assert_eq!(v["status"], "ok", "{v}");
    d.stop();
}

#[test]
fn a_second_store_downloads_the_crl_and_verify_reports_revoked() {
    let port = free_port();
    let issuer = ca_store(port);
    let daemon = Daemon::start(&issuer, &format!("127.0.0.1:{port}"));
    let ca = issuer.export_cert("ca");
    let srv = issuer.export_cert("srv");

    let relying = Env::new();
    std::fs::copy(&ca, relying.work.join("ca.crt")).unwrap();
    std::fs::copy(&srv, relying.work.join("srv.crt")).unwrap();
    relying.ok(&["import", "file-name=ca.crt", "name=ca", "trusted=yes"]);
    relying.ok(&["settings", "set", "crl-download=yes", "crl-use=yes"]);

    // Not revoked yet: the CRL downloads, and srv is valid.
    let out = relying.ok(&["crl", "download"]);
    assert!(out.contains("stored"), "{out}");
    let flags = relying.entry("ca")["flags"].as_str().unwrap().to_owned();
    assert!(flags.contains('L'), "flag L after the download: {flags}");
    let out = relying.ok(&["verify", "srv.crt", "--purpose", "tls-server"]);
    assert!(out.contains("verdict: valid"), "{out}");

    // Revoked at the CA; the next download brings it, and verify says so (exit 1).
    issuer.ok(&["issued-revoke", "srv", "reason=key-compromise"]);
    relying.ok(&["crl", "download"]);
    let list: serde_json::Value =
        serde_json::from_str(&relying.ok(&["crl", "print", "--json"])).unwrap();
    assert_eq!(list[0]["ca"], "ca");
    assert_eq!(list[0]["entries"], 1);
    assert!(list[0]["source"].as_str().unwrap().ends_with("/crl/ca.crl"));
    let out = relying.run(&["verify", "srv.crt"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.to_lowercase().contains("revoked"), "{text}");
    // With crl-use=no the CRL is not consulted.
    relying.ok(&["settings", "set", "crl-use=no"]);
    relying.ok(&["verify", "srv.crt"]);

    // The relying store's own daemon downloads it by itself (crl-download=yes).
    relying.ok(&["settings", "set", "crl-use=yes"]);
    relying.ok(&["crl", "flush"]);
    assert!(!relying.entry("ca")["flags"].as_str().unwrap().contains('L'));
    let mut d2 = Daemon::start(&relying, "127.0.0.1:0");
    d2.wait_for_log("stored", Duration::from_secs(40));
    assert!(relying.entry("ca")["flags"].as_str().unwrap().contains('L'));
    d2.stop();
    daemon.stop();
}

/// Serves `body` to every connection on `listener` (a CDP answering a forged CRL).
fn serve_bytes(listener: TcpListener, body: Vec<u8>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
}

#[test]
fn a_crl_with_a_bad_signature_is_refused_and_logged() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer = ca_store(port);
    issuer.ok(&["issued-revoke", "srv"]);
    let mut forged = crl_der(&issuer, "ca");
    let last = forged.len() - 1;
    forged[last] ^= 0x01; // the signature's last octet
    serve_bytes(listener, forged);

    let relying = Env::new();
    std::fs::copy(issuer.export_cert("ca"), relying.work.join("ca.crt")).unwrap();
    relying.ok(&["import", "file-name=ca.crt", "name=ca", "trusted=yes"]);
    relying.ok(&["settings", "set", "crl-download=yes", "crl-use=yes"]);
    let out = relying.run(&["crl", "download"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED));
    let err = stderr(&out);
    assert!(
        err.contains("refused") && err.contains("signature"),
        "{err}"
    );
    assert!(!relying.entry("ca")["flags"].as_str().unwrap().contains('L'));
    assert_eq!(relying.ok(&["crl", "print", "--json"]).trim(), "[]");

    let mut d = Daemon::start(&relying, "127.0.0.1:0");
    let log = d.wait_for_log("refused", Duration::from_secs(40));
    assert!(log.contains("signature"), "{log}");
    d.stop();
}

#[test]
fn the_daemon_and_concurrent_cli_writers_share_the_store() {
    let env = ca_store(8080);
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for n in &names {
        env.issue(n, "ca", &["key-type=ec"]);
    }
    let d = Daemon::start(&env, "127.0.0.1:0");
    let port = d.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader polling the CDP while eight CLI processes revoke at once.
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (status, _, body) = http_get(port, "/crl/ca.crl");
                assert_eq!(status, 200);
                seen.push(body);
            }
            seen
        })
    };
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            env.command(&["issued-revoke", n])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().unwrap();
    // Eight revocations in eight processes: CRL numbers 2..=9, each one used once.
    let last = crl_der(&env, "ca");
    let info = certman::x509::crl::inspect_crl(&last).unwrap();
    assert_eq!(info.number, Some(9));
    assert_eq!(info.entries, 8);
    // Every CRL the daemon served in the meantime is whole, and the numbers never go back.
    let mut prev = 0;
    for body in &seen {
        let n = certman::x509::crl::inspect_crl(body)
            .expect("a served CRL parses")
            .number
            .unwrap();
        assert!(n >= prev, "served CRL numbers went back: {prev} then {n}");
        prev = n;
    }
    assert!(!seen.is_empty());
    assert_eq!(d.get("/crl/ca.crl").2, last);
    d.stop();
}
