//! `certman serve` under hostile clients: slow sockets closed by the header timeout while
//! `/health` stays fast, a connection over the cap refused, oversized bodies refused before
//! they are read; `/health` degraded (503) by a CRL past its nextUpdate; no core dumps from any
//! certman process.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;

/// A store with an EC CA `ca` and its CRL (number 1).
fn ca_store() -> Env {
    let env = Env::new();
    env.ok(&[
        "add",
        "name=ca-tpl",
        "common-name=ca",
        "key-usage=key-cert-sign,crl-sign",
        "key-type=ec",
    ]);
    env.ok(&["sign", "ca-tpl", "name=ca", "ca-crl-host=127.0.0.1:8080"]);
    env
}

/// `certman serve` on a free port with `config` as its config file, `vars` in its environment.
fn serve(env: &Env, config: &str, vars: &[(&str, &str)]) -> Daemon {
    let file = env.path("serve.toml");
    std::fs::write(&file, config).unwrap();
    Daemon::start_with(
        env,
        &["listen=127.0.0.1:0", &format!("config={}", file.display())],
        vars,
    )
}

/// `GET /health`: (status, JSON, how long it took).
fn health(port: u16) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let (status, head, body) = http_get(port, "/health");
    let took = started.elapsed();
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {head}"));
    (status, v, took)
}

/// Sends `head` and reads the answer's status line (`""` if the server closed first).
fn status_line(port: u16, head: &str) -> (String, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    (
        text.lines().next().unwrap_or("").to_owned(),
        started.elapsed(),
    )
}

#[test]
fn two_hundred_slow_sockets_are_closed_within_the_header_timeout_while_health_stays_fast() {
    let env = ca_store();
    let d = serve(&env, "header-timeout = 2\nidle-timeout = 60\n", &[]);
    let (status, v, _) = health(d.port);
    assert_eq!((status, &v["status"]), (200, &"ok".into()), "{v}");

    // 200 sockets, each with half a request line, then nothing. Each one's closing is timed
    // from its own opening (a connect may wait for a SYN sent again on a busy machine).
    let started = Instant::now();
    let mut slowest_connect = Duration::ZERO;
    let mut slow: Vec<(TcpStream, Instant, Option<Duration>)> = (0..200)
        .map(|_| {
            let opened = Instant::now();
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            slowest_connect = slowest_connect.max(opened.elapsed());
            s.write_all(b"GET /crl/ca.crl HT").unwrap();
            s.set_nonblocking(true).unwrap();
            (s, opened, None)
        })
        .collect();
    let opened = started.elapsed();

    // /health keeps answering while they are held, and they are all closed by the server.
    let mut latencies = Vec::new();
    let mut buf = [0u8; 64];
    while slow.iter().any(|(_, _, closed)| closed.is_none()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of 200 slow sockets still open after 10 s",
            slow.iter().filter(|(_, _, c)| c.is_none()).count()
        );
        let (status, v, took) = health(d.port);
        assert_eq!(status, 200, "{v}");
        latencies.push(took);
        for (s, opened, closed) in slow.iter_mut().filter(|(_, _, c)| c.is_none()) {
            match s.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // EOF or a reset: closed by the server, without an answer
                Ok(0) | Err(_) => *closed = Some(opened.elapsed()),
                Ok(n) => panic!("a slow socket got an answer: {:?}", &buf[..n]),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = slow.iter().filter_map(|(_, _, c)| *c).min().unwrap();
    let last = slow.iter().filter_map(|(_, _, c)| *c).max().unwrap();
    let all = started.elapsed();
    let slowest = latencies.iter().max().unwrap();
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    eprintln!(
        "200 slow sockets opened in {opened:?} (slowest connect {slowest_connect:?}), each \
         closed {first:?} to {last:?} after it opened (header-timeout 2 s), all within \
         {all:?}; /health {} times meanwhile: mean {mean:?}, slowest {slowest:?}",
        latencies.len()
    );
    assert!(
        first >= Duration::from_millis(1_500),
        "closed early: {first:?}"
    );
    assert!(last < Duration::from_millis(3_000), "closed late: {last:?}");
    assert!(
        *slowest < Duration::from_secs(1),
        "/health took {slowest:?}"
    );
    assert!(latencies.len() >= 10, "{latencies:?}");
    // The service is as it was.
    assert_eq!(d.get("/crl/ca.crl").0, 200);
    d.stop();
}

#[test]
fn a_connection_over_the_cap_is_answered_503_and_closed() {
    let env = ca_store();
    let mut d = serve(&env, "max-connections = 4\nheader-timeout = 20\n", &[]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(b"GET /health HT").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The fifth: told so at once, and closed.
    let started = Instant::now();
    let (status, head, body) = http_get(d.port, "/health");
    let took = started.elapsed();
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(body, b"too many connections\n");
    assert!(took < Duration::from_millis(500), "{took:?}");
    d.wait_for_log(
        "max-connections=4 reached: 1 connection(s) refused (503)",
        Duration::from_secs(5),
    );
    // A slot freed: served again.
    drop(held);
    let started = Instant::now();
    loop {
        let (status, _, _) = http_get(d.port, "/health");
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "still refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stop();
}

#[test]
fn an_oversized_body_is_refused_413_on_every_route_without_being_read() {
    let env = ca_store();
    let d = serve(&env, "", &[]);
    for (method, path, length) in [
        ("GET", "/crl/ca.crl", 1 << 30),
        ("POST", "/crl/ca.crl", 1 << 30),
        ("GET", "/health", 1 << 30),
        ("GET", "/health", 1),
        ("POST", "/scep/any?operation=PKIOperation", 1 << 30),
        ("POST", "/scep/any?operation=PKIOperation", 64 * 1024 + 1),
        ("GET", "/scep/any?operation=GetCACaps", 1 << 30),
        ("POST", "/nothing-here", 1 << 30),
    ] {
        // The length announced, not one byte of the body sent: the answer comes at once.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
        );
        let (line, took) = status_line(d.port, &head);
        assert_eq!(
            line, "HTTP/1.1 413 Payload Too Large",
            "{method} {path} {length}"
        );
        assert!(took < Duration::from_secs(1), "{method} {path}: {took:?}");
    }
    // A head over 96 KiB is refused too.
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_eq!(
        status_line(d.port, &head).0,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(d.get("/crl/ca.crl").0, 200);
    d.stop();
}

#[test]
fn an_expired_crl_makes_health_503_degraded_naming_the_ca() {
    let env = ca_store();
    // The CRL is valid for two days; the daemon's health clock three days on. (Its renewal
    // timer judges by that clock too and renews the CRL, but a renewed CRL is valid for two
    // days of the real clock: still past its nextUpdate to the health clock.)
    let later = (3 * 86_400).to_string();
    let d = serve(&env, "", &[("CERTMAN_TEST_CLOCK_OFFSET", &later)]);
    let (status, v, _) = health(d.port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["store"], "ok", "{v}");
    let reasons = v["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{v}");
    assert_eq!(reasons[0]["reason"], "crl-expired");
    assert_eq!(reasons[0]["ca"], "ca");
    let message = reasons[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the CRL of CA \"ca\" is past its nextUpdate (20"),
        "{message}"
    );
    // The CDP still serves the CRL it has.
    assert_eq!(d.get("/crl/ca.crl").0, 200);
    d.stop();

    // The same store on today's clock: ok.
    let d = serve(&env, "", &[]);
    let (status, v, _) = health(d.port);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reasons"], serde_json::json!([]));
    d.stop();
}

/// The "Max core file size" line of /proc/PID/limits: (soft, hard).
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("{limits}"));
    let mut words = line["Max core file size".len()..].split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

/// (real uid of PID, owner of /proc/PID/status): a process that is not dumpable has its /proc
/// files owned by root whatever its uid.
fn uid_and_proc_owner(pid: u32) -> (u32, u32) {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap();
    (uid, std::fs::metadata(&path).unwrap().uid())
}

#[test]
fn serve_runs_without_core_dumps() {
    let env = ca_store();
    let d = serve(&env, "", &[]);
    assert_eq!(core_limit(d.child.id()), ("0".into(), "0".into()));
    let (uid, owner) = uid_and_proc_owner(d.child.id());
    if uid != 0 {
        assert_eq!(owner, 0, "serve is dumpable: /proc/PID owned by {owner}");
    }
    d.stop();
}

/// As an unprivileged user (when the tests run as root, `setpriv` to nobody): `serve` is not
/// dumpable (its /proc files are root's), and the CLI still writes files the way it does
/// (O_TMPFILE linked through /proc/self/fd, which a process that is not dumpable may still use).
#[test]
fn an_unprivileged_certman_is_not_dumpable_and_still_writes_its_files() {
    let me = uid_and_proc_owner(std::process::id()).0;
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if me == 0 && !setpriv.exists() {
        eprintln!("skipped: running as root without setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let machine_id = dir.path().join("machine-id");
    std::fs::write(&machine_id, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&machine_id, std::fs::Permissions::from_mode(0o644)).unwrap();
    let command = |args: &[&str]| {
        let mut c = if me == 0 {
            let mut c = Command::new(setpriv);
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                CERTMAN,
            ]);
            c
        } else {
            Command::new(CERTMAN)
        };
        c.args(args)
            .current_dir(dir.path())
            .env("CERTMAN_STORE", dir.path().join("store"))
            .env("CERTMAN_MACHINE_ID_FILE", &machine_id)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env_remove("CERTMAN_TOKENS")
            .env("CERTMAN_LOG", "info")
            .stdin(Stdio::null());
        c
    };
    let run = |args: &[&str]| {
        let out = command(args).output().unwrap();
        assert_success(&out, &args.join(" "));
    };
    run(&["add", "name=t", "common-name=t", "key-type=ec"]);
    run(&["sign", "t"]);
    run(&[
        "export-certificate",
        "t",
        "export-passphrase=a-long-passphrase",
    ]);
    for file in ["cert_export_t.crt", "cert_export_t.key"] {
        assert!(dir.path().join(file).is_file(), "{file} not written");
    }

    let mut child = command(&["serve", "listen=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut log = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&log).contains("listening on") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "serve ended: {}", String::from_utf8_lossy(&log));
        log.extend_from_slice(&buf[..n]);
    }
    let pid = child.id();
    let (uid, owner) = uid_and_proc_owner(pid);
    assert_ne!(uid, 0, "serve runs as root");
    assert_eq!(
        owner, 0,
        "serve (uid {uid}) is dumpable: its /proc files are its own"
    );
    assert_eq!(core_limit(pid), ("0".into(), "0".into()));
    let _ = child.kill();
    let _ = child.wait();
}

/// A store with a software CA `soft` and a CA `card` whose key is on a SoftHSM token (the
/// default profile), both CRLs aged two days in the store so that serve's first renewal look
/// renews them (as tests/pin_economy.rs does). `None` without SoftHSM.
fn card_and_soft_cas() -> Option<(common::softhsm::SoftHsm, Env)> {
    let hsm = common::softhsm::SoftHsm::new("health")?;
    let env = hsm.env();
    for (ca, card) in [("soft", false), ("card", true)] {
        env.ok(&[
            "add",
            &format!("name={ca}-t"),
            &format!("common-name={ca}"),
            "key-usage=key-cert-sign,crl-sign",
            "key-type=ec",
        ]);
        let mut sign = vec!["sign".to_owned(), format!("{ca}-t"), format!("name={ca}")];
        if card {
            sign.push("on-smart-card=yes".into());
        }
        env.ok(&sign);
    }
    let db = rusqlite::Connection::open(env.store.join("certman.db")).unwrap();
    db.execute("UPDATE crls SET this_update = this_update - 172800", [])
        .unwrap();
    Some((hsm, env))
}

fn reasons(v: &serde_json::Value) -> Vec<(String, String)> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_owned(),
                r["ca"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_ca_whose_token_is_absent_makes_health_degraded_while_this_daemon_cannot_reach_it() {
    let Some((hsm, env)) = card_and_soft_cas() else {
        return;
    };
    // The token's files moved away: SoftHSM shows no token with that label.
    let tokens = hsm.conf.parent().unwrap().join("tokens");
    let away = hsm.root().join("away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    let mut d = serve(&env, "crl-renew-check = 1\n", &[]);
    d.wait_for_log("CRL of card not renewed", Duration::from_secs(30));
    let (status, v, _) = health(d.port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "degraded");
    assert_eq!(reasons(&v), [("token-absent".into(), "card".into())], "{v}");
    assert!(
        v["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the token of CA \"card\" is absent"),
        "{v}"
    );
    // The token back and the CRL renewed by the CLI: the next look finds nothing due, but
    // this daemon still cannot reach the token (SoftHSM reads its token directory once, at
    // C_Initialize), and /health says so from the token's live state: token-absent, only.
    // (A token that really comes back is tests/token_hotplug.rs.)
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    env.ok(&["crl", "renew", "card"]);
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, v, _) = health(d.port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(reasons(&v), [("token-absent".into(), "card".into())], "{v}");
    assert!(
        v["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the token of CA \"card\" is absent"),
        "{v}"
    );
    d.stop();
}

#[test]
fn a_ca_whose_pin_fails_makes_health_degraded_until_restart() {
    let Some((hsm, env)) = card_and_soft_cas() else {
        return;
    };
    std::fs::write(&hsm.pin_file, "wrong-pin-000\n").unwrap();
    let mut d = serve(&env, "crl-renew-check = 1\n", &[]);
    d.wait_for_log("CRL of card not renewed", Duration::from_secs(30));
    // Looks go on (the software CA renewed, the card CA left alone): still pin-failed.
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, v, _) = health(d.port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(reasons(&v), [("pin-failed".into(), "card".into())], "{v}");
    d.stop();
}
