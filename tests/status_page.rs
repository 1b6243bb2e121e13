//! The status page of `certman serve` (`/` and `/status.json`) in a real browser: a store with
//! a CA (and one on a SoftHSM2 token, when SoftHSM2 is installed), certificates expiring in
//! 5, 20 and 60 days, a revoked one, a hostile name, a SCEP server with a pending request and
//! a SCEP client waiting for its grant. `/status.json` is checked for its structure; headless
//! Chromium (Debian `chromium`) renders `/`, the 5-day certificate must be inside the 7-day
//! band of the timeline, and a screenshot is kept in `target/test-artifacts/status-page.png`.
//!
//! Without Chromium the test is skipped with a note on stderr, unless
//! `CERTMAN_REQUIRE_TOKENS=1` (CI), where it fails instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::daemon::*;
use common::softhsm::{tokens_required, SoftHsm, PROFILE};
use common::*;
use serde_json::Value;

/// Chromium on `PATH`, or why the test cannot run.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if tokens_required() {
            panic!(
                "CERTMAN_REQUIRE_TOKENS=1 but chromium is not installed; run scripts/setup.sh \
                 (Debian package chromium)"
            );
        }
        eprintln!("skipping: chromium is not installed (Debian package chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args`; returns stdout. Its profile lives in a fresh
/// temporary directory; nothing of it may reach the network (closed here anyway).
fn headless(chromium: &Path, url: &str, args: &[&str]) -> String {
    let profile = tempfile::Builder::new()
        .prefix("certman-chromium-")
        .tempdir()
        .expect("temp dir");
    let started = Instant::now();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("chromium {args:?}: {:?}", started.elapsed());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The element whose start tag contains `marker`, up to its end tag `</tag>` (the first one
/// after it that closes it, counting nested elements of the same tag).
fn element<'a>(dom: &'a str, marker: &str, tag: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the DOM:\n{dom}"));
    let start = dom[..at].rfind(&format!("<{tag}")).expect("start tag");
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let next_open = dom[i + 1..].find(&open).map(|p| p + i + 1);
        let next_close = dom[i..].find(&close).map(|p| p + i).expect("end tag");
        match next_open {
            Some(o) if o < next_close => {
                depth += 1;
                i = o;
            }
            _ if depth == 0 => return &dom[start..next_close + close.len()],
            _ => {
                depth -= 1;
                i = next_close + 1;
            }
        }
    }
}

const HOSTILE: &str = "<i>x & \"y\"";

/// The page's store: CA `ca` with its SCEP server, leaves at 5/20/60 days, a revoked one, a
/// hostile name; and a CA on the SoftHSM token when there is one.
fn page_store(hsm: Option<&SoftHsm>) -> Env {
    let env = match hsm {
        Some(h) => h.env(),
        None => Env::new(),
    };
    env.make_ca("ca", &[]);
    env.issue("in-five-days", "ca", &["key-type=ec", "days-valid=5"]);
    env.issue("in-twenty-days", "ca", &["key-type=ec", "days-valid=20"]);
    env.issue("in-sixty-days", "ca", &["key-type=ec", "days-valid=60"]);
    env.issue("revoked-one", "ca", &["key-type=ec", "days-valid=20"]);
    env.ok(&["issued-revoke", "revoked-one"]);
    env.ok(&[
        "add",
        &format!("name={HOSTILE}"),
        "common-name=hostile",
        "key-type=ec",
        "days-valid=25",
    ]);
    env.ok(&["sign", HOSTILE, "ca=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    if hsm.is_some() {
        let tpl = "token-ca-tpl";
        env.ok(&[
            "add",
            &format!("name={tpl}"),
            "common-name=token-ca",
            "key-usage=key-cert-sign,crl-sign",
            "key-type=ec",
        ]);
        env.ok(&[
            "sign",
            tpl,
            "name=token-ca",
            &format!("ca-on-smart-card={PROFILE}"),
        ]);
    }
    env
}

/// A second store with its own CA and SCEP server: the page store's SCEP client enrols there.
fn upstream_store() -> Env {
    let env = Env::new();
    env.make_ca("upstream", &[]);
    env.ok(&["scep-server", "add", "ca-cert=upstream", "path=/scep/up"]);
    env
}

fn artefact_dir() -> PathBuf {
    // tests run in the package root; the target dir may be elsewhere
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artefact dir");
    dir
}

#[test]
fn the_status_page_renders_in_chromium_with_the_5_day_certificate_in_the_7_day_band() {
    let Some(chromium) = chromium() else { return };
    require_openssl();
    let hsm = SoftHsm::new("status");
    let env = page_store(hsm.as_ref());
    let d = Daemon::start(&env, "127.0.0.1:0");
    let upstream = upstream_store();
    let u = Daemon::start(&upstream, "127.0.0.1:0");

    // A client enrolling at the page's server without a challenge: a pending request there.
    let client = Env::new();
    client.ok(&["add", "common-name=device-7", "name=device-7"]);
    client.ok(&[
        "add-scep",
        "template=device-7",
        &format!(
            "scep-url=http://127.0.0.1:{}/scep/test/pkiclient.exe",
            d.port
        ),
    ]);
    // The page's own SCEP client, waiting for the upstream's grant.
    env.ok(&["add", "common-name=router-1", "name=router-1"]);
    env.ok(&[
        "add-scep",
        "template=router-1",
        &format!(
            "scep-url=http://operator:hunter2@127.0.0.1:{}/scep/up/pkiclient.exe",
            u.port
        ),
    ]);

    // /status.json: the structure, numbers as numbers, times as RFC 3339.
    let (status, head, body) = d.get("/status.json");
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    for h in [
        "content-type: application/json",
        "cache-control: no-store",
        "x-content-type-options: nosniff",
        "content-security-policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    ] {
        assert!(lower.contains(h), "{h} missing in\n{head}");
    }
    let v: Value = serde_json::from_slice(&body).expect("status.json is JSON");
    let text = String::from_utf8_lossy(&body);
    assert!(
        chrono_like(v["generated"].as_str().unwrap_or_default()),
        "{v}"
    );
    let band = |id: &str| -> Vec<String> {
        v["expiry"]["bands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("no band {id} in {v}"))["marks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(band("7"), ["in-five-days"]);
    assert_eq!(band("30"), ["in-twenty-days", HOSTILE]);
    assert_eq!(band("90"), ["in-sixty-days"]);
    assert_eq!(v["expiry"]["revoked"], 1, "{v}");
    let five = &v["expiry"]["bands"][1]["marks"][0];
    let left = five["expires-in"].as_i64().expect("a number");
    assert!(left > 4 * 86_400 && left <= 5 * 86_400, "{five}");
    assert!(chrono_like(five["not-after"].as_str().unwrap()), "{five}");
    let ca = &v["ca-tree"][0];
    assert_eq!(ca["name"], "ca");
    assert_eq!(ca["flags"], "KAT");
    let issued: Vec<&str> = ca["issued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        issued,
        [
            "in-five-days",
            "in-twenty-days",
            HOSTILE,
            "in-sixty-days",
            "revoked-one"
        ]
    );
    assert_eq!(ca["issued"][4]["flags"], "KIR");
    let crls = v["crls"].as_array().unwrap();
    let ca_crl = crls.iter().find(|c| c["ca"] == "ca").expect("ca's CRL");
    assert_eq!(ca_crl["number"], 2);
    assert_eq!(ca_crl["freshness"], "fresh");
    let server = &v["scep-servers"][0];
    assert_eq!(server["path"], "/scep/test");
    assert_eq!(server["pending"], 1, "{v}");
    let client = &v["scep-clients"][0];
    assert_eq!(client["name"], "router-1");
    assert_eq!(client["status"], "requesting-pending-certificate");
    assert_eq!(
        client["server"],
        format!("http://127.0.0.1:{}/scep/up/pkiclient.exe", u.port)
    );
    if let Some(h) = &hsm {
        let tokens = v["tokens"].as_array().unwrap();
        let t = tokens
            .iter()
            .find(|t| t["label"] == h.label.as_str())
            .unwrap_or_else(|| panic!("no token {} in {v}", h.label));
        assert_eq!(t["presence"], "present", "{t}");
        assert_eq!(t["pin"], "ok", "{t}");
        assert_eq!(t["cas"], serde_json::json!(["token-ca"]), "{t}");
        assert!(!text.contains(&h.pin), "the PIN leaked");
        assert!(
            !text.contains(&h.pin_file.display().to_string()),
            "a profile's path leaked"
        );
    }
    assert!(!text.contains("hunter2"), "the URL's password leaked");

    // The page in Chromium: rendered, the 5-day certificate in the 7-day band, the hostile
    // name as text, not markup.
    let url = format!("http://127.0.0.1:{}/", d.port);
    let dom = headless(&chromium, &url, &["--dump-dom"]);
    assert!(dom.contains("certman status"), "{dom}");
    let band7 = element(&dom, "id=\"band-7\"", "g");
    assert!(
        band7.contains("data-name=\"in-five-days\""),
        "the 7-day band lacks in-five-days:\n{band7}"
    );
    assert!(!band7.contains("in-twenty-days") && !band7.contains("in-sixty-days"));
    let band30 = element(&dom, "id=\"band-30\"", "g");
    assert!(band30.contains("data-name=\"in-twenty-days\""), "{band30}");
    assert!(element(&dom, "id=\"band-90\"", "g").contains("data-name=\"in-sixty-days\""));
    assert!(
        !dom.contains("</i>"),
        "the hostile name became markup:\n{dom}"
    );
    assert!(dom.contains("&lt;i&gt;x &amp;"), "{dom}");
    for section in ["tree", "tokens", "crls", "scep-servers", "scep-clients"] {
        assert!(dom.contains(&format!("id=\"{section}\"")), "no {section}");
    }

    let png = artefact_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    headless(
        &chromium,
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10 * 1024, "{} bytes only", bytes.len());
    println!("status page screenshot: {}", png.display());
    eprintln!("status page screenshot: {}", png.display());

    let log = d.stop();
    assert!(!log.contains("panicked"), "{log}");
    u.stop();
}

/// An RFC 3339 UTC time as the page writes it: `2026-01-02T03:04:05Z`.
fn chrono_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.chars().filter(|c| c.is_ascii_digit()).count() == 14
}

/// An empty store: the page says so (no browser needed), and it has no script.
#[test]
fn an_empty_store_s_page_says_so() {
    let env = Env::new();
    env.ok(&["--create", "print"]); // an empty store (serve refuses a missing one)
    let d = Daemon::start(&env, "127.0.0.1:0");
    let (status, head, body) = d.get("/");
    assert_eq!(status, 200, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/html; charset=utf-8"));
    let html = String::from_utf8_lossy(&body);
    for empty in [
        "No certificates yet.",
        "No token profiles, and no CA key on a token.",
        "No CRLs.",
        "No SCEP servers.",
        "No SCEP clients.",
    ] {
        assert!(html.contains(empty), "{empty:?} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");
    d.stop();
}
