//! certman's SCEP client (`add-scep`) against real servers: micromdm's `scepserver` (Debian
//! `scep`) enrols a software key and a key generated on SoftHSM, refuses a wrong challenge, and
//! a wrong `ca-fingerprint=` is refused before any key is made; certman's own SCEP server
//! (`certman serve`) enrols a key generated on the virtual PIV card, which `card-verify` and
//! `yubico-piv-tool` then prove to be on the card, and which no later key generation in its
//! slot may overwrite.
//!
//! OpenSSL verifies every certificate against the CA the server holds (micromdm's depot
//! `ca.pem`, certman's exported CA) and reads every fingerprint; micromdm's depot, its log,
//! `pkcs11-tool` and `yubico-piv-tool` witness what happened on the server and on the tokens.
//! micromdm binds every interface, so its tests re-run themselves in a private network
//! namespace (`unshare -n`, only `lo`). Without a peer, SoftHSM or the card the tests skip with
//! a note on stderr, unless `CERTMAN_REQUIRE_TOKENS=1` (CI), where they fail.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{free_port, Daemon};
use common::piv::*;
use common::scep::*;
use common::softhsm::*;
use common::*;
use serde_json::Value;

/// micromdm's server.
const SCEPSERVER: &str = "scepserver";
/// micromdm's static challenge (`-challenge`).
const CHALLENGE: &str = "peer-challenge-5b2e";
/// Marks the re-run of a test inside its private network namespace.
const NETNS_MARK: &str = "CERTMAN_TEST_SCEP_CLIENT_NETNS";

// ------------------------------------------------------------------ helpers

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// micromdm binds every interface, so its tests run in a private network namespace. Outside
/// one, this re-runs `test` under `unshare -n` and returns false (the re-run did the work; its
/// output is printed and its result asserted here). Inside, it brings `lo` up and returns
/// true. Where no namespace is permitted the test is skipped (a failure under
/// `CERTMAN_REQUIRE_TOKENS=1`).
fn in_private_network(test: &str) -> bool {
    if std::env::var_os(NETNS_MARK).is_some() {
        let st = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(st.is_ok_and(|s| s.success()), "ip link set lo up failed");
        return true;
    }
    for flags in [&["-n"][..], &["-r", "-n"][..]] {
        let probe = Command::new("unshare")
            .args(flags)
            .arg("true")
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            continue;
        }
        let out = Command::new("unshare")
            .args(flags)
            .arg(std::env::current_exe().expect("current exe"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(NETNS_MARK, "1")
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        // through the harness's capture: shown with --nocapture or on failure
        print!("{}", stdout(&out));
        eprint!("{}", stderr(&out));
        assert!(
            out.status.success() && stdout(&out).contains("1 passed"),
            "{test} in a private network namespace (unshare {}) failed: see its output above",
            flags.join(" ")
        );
        return false;
    }
    // micromdm would listen on every interface: not outside a private network.
    assert!(
        !tokens_required(),
        "CERTMAN_REQUIRE_TOKENS=1 but unshare -n is not permitted: {test} cannot run micromdm \
         in a private network namespace"
    );
    eprintln!("skipping {test}: unshare -n is not permitted (micromdm binds every interface)");
    false
}

/// A running micromdm `scepserver` with its own RSA-2048 CA in a file depot, the static
/// challenge [`CHALLENGE`], path `/scep`; killed by PID on drop.
struct MicroMdm {
    child: Child,
    port: u16,
    depot: PathBuf,
    log: PathBuf,
}

impl MicroMdm {
    fn start(dir: &Path) -> MicroMdm {
        let depot = dir.join("micromdm-depot");
        let init = Command::new(SCEPSERVER)
            .args("ca -init -keySize 2048 -organization certman-peer -depot".split(' '))
            .arg(&depot)
            .stdin(Stdio::null())
            .output()
            .expect("run scepserver ca -init");
        assert_success(&init, "scepserver ca -init");
        let port = free_port();
        let log = dir.join("micromdm.log");
        let child = Command::new(SCEPSERVER)
            .args(["-port", &port.to_string(), "-challenge", CHALLENGE])
            .args(["-allowrenew", "0", "-depot"])
            .arg(&depot)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("micromdm.err")).unwrap())
            .spawn()
            .expect("start scepserver");
        let mut mdm = MicroMdm {
            child,
            port,
            depot,
            log,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = mdm.child.try_wait() {
                panic!("scepserver exited ({st}) at start:\n{}", mdm.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "scepserver not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mdm
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/scep", self.port)
    }

    /// micromdm's CA certificate (PEM), as its depot holds it.
    fn ca(&self) -> PathBuf {
        self.depot.join("ca.pem")
    }

    /// The certificates micromdm issued for `cn` (its depot keeps them as `CN.SERIAL.pem`).
    fn issued(&self, cn: &str) -> Vec<PathBuf> {
        let prefix = format!("{cn}.");
        std::fs::read_dir(&self.depot)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&prefix) && name.ends_with(".pem")
            })
            .collect()
    }

    /// Everything micromdm logged (it logs every operation, stdout and stderr).
    fn log(&self) -> String {
        let read = |f: &Path| std::fs::read_to_string(f).unwrap_or_default();
        read(&self.log) + &read(&self.log.with_extension("err"))
    }

    /// How many PKIOperations micromdm has answered.
    fn pki_operations(&self) -> usize {
        self.log().matches("op=PKIOperation").count()
    }
}

impl Drop for MicroMdm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RSA-2048 template `name` for the subject `CN=cn`.
fn template(env: &Env, name: &str, cn: &str) {
    let (n, c) = (format!("name={name}"), format!("common-name={cn}"));
    env.ok(&["add", &n, &c, "key-type=rsa", "key-size=2048"]);
}

/// `add-scep template=TPL scep-url=URL ARGS… --json`, which must succeed; the client as JSON.
fn add_scep_json(env: &Env, tpl: &str, url: &str, args: &[&str]) -> Value {
    let mut all = vec!["add-scep".to_owned(), format!("template={tpl}")];
    all.push(format!("scep-url={url}"));
    all.extend(args.iter().map(|a| a.to_string()));
    all.push("--json".into());
    let out = env.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("add-scep --json: {e}: {out}"))
}

/// The entry `name` has flags K (and C when `on_token`), status issued and `ca_fp` as its
/// CA fingerprint; `NAME_CA` holds the server's CA with flags A T. Exports both, requires
/// `openssl verify` of the certificate by that CA, and that the CA is `server_ca` (PEM, as the
/// server holds it). Returns the certificate (PEM).
fn assert_enrolled(
    env: &Env,
    name: &str,
    on_token: bool,
    server_ca: &Path,
    ca_fp: &str,
) -> PathBuf {
    let e = env.entry(name);
    let flags = e["flags"].as_str().unwrap_or_default();
    assert!(flags.contains('K'), "{name}: {e}");
    assert_eq!(flags.contains('C'), on_token, "{name}: flag C: {e}");
    assert_eq!(e["status"], "issued", "{name}: {e}");
    assert_eq!(e["ca-fingerprint"], ca_fp, "{name}: {e}");
    let ca_name = format!("{name}_CA");
    let ca_entry = env.entry(&ca_name);
    let ca_flags = ca_entry["flags"].as_str().unwrap_or_default();
    assert!(
        ca_flags.contains('A') && ca_flags.contains('T'),
        "{ca_entry}"
    );
    let ca = env.export_cert(&ca_name);
    assert_eq!(openssl_fingerprint(&ca), openssl_fingerprint(server_ca));
    assert_eq!(openssl_fingerprint(&ca), ca_fp);
    let crt = env.export_cert(name);
    assert_verifies(&ca, &crt);
    assert_verifies(server_ca, &crt);
    assert_eq!(
        norm_hex(e["fingerprint"].as_str().unwrap()),
        openssl_fingerprint(&crt)
    );
    crt
}

/// The single certificate micromdm issued for `cn` is `crt`.
fn assert_micromdm_issued(mdm: &MicroMdm, cn: &str, crt: &Path) {
    let issued = mdm.issued(cn);
    assert_eq!(issued.len(), 1, "micromdm issued for {cn}: {issued:?}");
    assert_eq!(openssl_fingerprint(&issued[0]), openssl_fingerprint(crt));
    assert!(cert_text(crt).contains(&format!("Subject: CN = {cn}")));
}

/// Rows in the store's `keys` table (software keys and token key records alike).
fn stored_keys(env: &Env) -> i64 {
    let conn = rusqlite::Connection::open(env.store.join("certman.db")).unwrap();
    conn.query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap()
}

// ------------------------------------------------------------------ 1. micromdm, software key

/// A software key enrols at micromdm with its static challenge: issued, the CA recorded as
/// `tpl_1_CA` (A T) with the fingerprint printed, the certificate micromdm issued for the
/// entry's key. A wrong challenge: micromdm answers FAILURE, the client keeps
/// rejected-bad-request and the command fails with exit 1.
#[test]
fn add_scep_enrols_at_micromdm_scepserver_with_a_software_key() {
    if !peer(SCEPSERVER, "scep")
        || !in_private_network("add_scep_enrols_at_micromdm_scepserver_with_a_software_key")
    {
        return;
    }
    let env = Env::new();
    let mdm = MicroMdm::start(env.root());
    let ca_fp = openssl_fingerprint(&mdm.ca());
    template(&env, "tpl_1", "peer-soft");
    let t = Instant::now();
    let out = env.ok(&[
        "add-scep",
        "template=tpl_1",
        &format!("scep-url={}", mdm.url()),
        &format!("challenge-password={CHALLENGE}"),
    ]);
    eprintln!("add-scep at micromdm (software key): {:?}", t.elapsed());
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("SCEP client tpl_1: status=issued "),
        "{out}"
    );
    let printed = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ca-fingerprint="))
        .unwrap_or_else(|| panic!("no ca-fingerprint= in {out}"));
    assert_eq!(norm_hex(printed), ca_fp, "{out}");

    let crt = assert_enrolled(&env, "tpl_1", false, &mdm.ca(), &ca_fp);
    assert_micromdm_issued(&mdm, "peer-soft", &crt);
    assert!(!out.contains(CHALLENGE) && !env.ok(&["print", "detail"]).contains(CHALLENGE));
    // the certificate is for the entry's own key
    let (_, key) = env.export_with_key("tpl_1", "export-pass-1");
    assert_eq!(cert_public_key(&crt), key_public_key(&key, "export-pass-1"));

    // A wrong challenge: micromdm answers FAILURE (badRequest).
    template(&env, "tpl_2", "peer-wrong");
    let before = mdm.pki_operations();
    let out = env.run(&[
        "add-scep",
        "template=tpl_2",
        &format!("scep-url={}", mdm.url()),
        &format!("challenge-password=not-{CHALLENGE}"),
    ]);
    let err = assert_error(&out, EXIT_FAILED, "add-scep with a wrong challenge");
    assert!(err.contains("rejected-bad-request"), "{err}");
    assert_eq!(mdm.pki_operations(), before + 1, "{}", mdm.log());
    assert!(mdm.issued("peer-wrong").is_empty());
    let e = env.entry("tpl_2");
    assert_eq!(e["status"], "rejected-bad-request", "{e}");
    assert_eq!(
        e["issuer"], e["subject"],
        "tpl_2 holds more than its temporary certificate: {e}"
    );
    // the issued client is untouched
    assert_eq!(env.entry("tpl_1")["status"], "issued");
}

// ------------------------------------------------------------------ 2. micromdm, SoftHSM key

/// The key is generated on SoftHSM (`on-smart-card=softhsm`) and never leaves it: sensitive,
/// never extractable, generated there; it decrypted micromdm's answer and is the key of the
/// certificate micromdm issued (pkcs11-tool signs, OpenSSL verifies with the certificate).
#[test]
fn add_scep_enrols_at_micromdm_with_a_key_on_softhsm() {
    if !peer(SCEPSERVER, "scep")
        || !in_private_network("add_scep_enrols_at_micromdm_with_a_key_on_softhsm")
    {
        return;
    }
    let Some(hsm) = SoftHsm::new("scep-client") else {
        return;
    };
    let env = hsm.env();
    let mdm = MicroMdm::start(env.root());
    let ca_fp = openssl_fingerprint(&mdm.ca());
    template(&env, "tpl_1", "peer-hsm");
    let t = Instant::now();
    let v = add_scep_json(
        &env,
        "tpl_1",
        &mdm.url(),
        &[
            &format!("challenge-password={CHALLENGE}"),
            "on-smart-card=softhsm",
        ],
    );
    eprintln!("add-scep at micromdm (SoftHSM key): {:?}", t.elapsed());
    assert_eq!(v["name"], "tpl_1", "{v}");
    assert_eq!(v["status"], "issued", "{v}");
    assert_eq!(v["ca-fingerprint"], ca_fp.as_str(), "{v}");
    assert_eq!(v["on-smart-card"], "softhsm", "{v}");

    let crt = assert_enrolled(&env, "tpl_1", true, &mdm.ca(), &ca_fp);
    assert_micromdm_issued(&mdm, "peer-hsm", &crt);
    let uri = env.entry("tpl_1")["smart-card-key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("pkcs11:"), "{uri}");
    assert!(!uri.contains(USER_PIN), "{uri}");
    hsm.token_only_key("tpl_1");
    hsm.assert_key_matches_cert("tpl_1", &crt);
    // no software copy: an export with the key is refused
    let export = [
        "export-certificate",
        "tpl_1",
        "export-passphrase=x-pass-123",
    ];
    env.fail(&export, EXIT_REFUSED);
    assert!(!env.path("cert_export_tpl_1.key").exists());
}

// ------------------------------------------------------------------ 3. the virtual PIV card

/// The card is one shared device: one test at a time in this binary (`scripts/test.sh` runs
/// the test binaries one after another).
static CARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// PIN tries left (yubico-piv-tool prints -1 while the card holds the PIN verified: then no
/// wrong try has happened since the last right one, so the counter is full).
fn pin_tries(reader: &str) -> i32 {
    let text = stdout(&piv_tool(reader, &["-a", "status"]));
    let n: i32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PIN tries left:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PIN tries in status: {text}"));
    if n < 0 {
        3
    } else {
        n
    }
}

/// certman's own SCEP server (an RSA CA that signs its replies, `/scep/test`, under `certman
/// serve`) and a client [`Env`] with the profile `piv-9a` (slot 9a of the virtual card, PIN
/// and management key from files), the card's PIN counter full and slot 9a free.
struct PivSetup {
    _lock: std::sync::MutexGuard<'static, ()>,
    reader: String,
    server: Env,
    daemon: Daemon,
    /// the server's CA (PEM)
    ca: PathBuf,
    env: Env,
    tries: i32,
}

impl PivSetup {
    fn new() -> Option<PivSetup> {
        let reader = piv_reader()?;
        let lock = CARD.lock().unwrap_or_else(|e| e.into_inner());
        let server = Env::new();
        let usage = "key-usage=key-cert-sign,crl-sign,digital-signature";
        server.ok(&[
            "add",
            "name=ca-tpl",
            "common-name=scep-ca",
            "key-type=rsa",
            usage,
        ]);
        server.ok(&["sign", "ca-tpl", "name=ca"]);
        server.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
        let ca = server.export_cert("ca");
        let daemon = Daemon::start(&server, "127.0.0.1:0");
        if pin_tries(&reader) < 3 {
            let out = piv_tool(&reader, &["-a", "verify-pin", "-P", PIV_PIN]);
            assert_success(&out, "yubico-piv-tool verify-pin");
        }
        let tries = pin_tries(&reader);
        // certman does not generate over a key in use (a slot with a certificate)
        let _ = piv_tool(&reader, &["-a", "delete-certificate", "-s", "9a"]);
        let env = Env::new();
        let tokens = env.root().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let (pin, mgm) = (env.root().join("pin"), env.root().join("mgm"));
        std::fs::write(&pin, format!("{PIV_PIN}\n")).unwrap();
        std::fs::write(&mgm, "010203040506070801020304050607080102030405060708\n").unwrap();
        let profile = format!(
            "kind = \"piv\"\nreader = \"{}\"\nslot = \"9a\"\ndefault = false\n\
             pin-source = \"file:{}\"\nmanagement-key-source = \"file:{}\"\n",
            reader.replace('\\', "\\\\").replace('"', "\\\""),
            pin.display(),
            mgm.display()
        );
        std::fs::write(tokens.join("piv-9a.toml"), profile).unwrap();
        let env = env.with_global_args(&["--tokens".to_owned(), tokens.display().to_string()]);
        Some(PivSetup {
            _lock: lock,
            reader,
            server,
            daemon,
            ca,
            env,
            tries,
        })
    }

    /// `add-scep` of a fresh RSA template `tpl` (CN `cn`) with a fresh OTP, its key in 9a.
    fn enrol(&self, tpl: &str, cn: &str) -> Value {
        template(&self.env, tpl, cn);
        let pw = format!("challenge-password={}", otp(&self.server, 10));
        let v = add_scep_json(&self.env, tpl, &self.url(), &[&pw, "on-smart-card=piv-9a"]);
        assert_eq!(v["status"], "issued", "{v}\n{}", self.daemon.log());
        v
    }

    /// The server's SCEP URL.
    fn url(&self) -> String {
        let port = self.daemon.port;
        format!("http://127.0.0.1:{port}/scep/test/pkiclient.exe")
    }

    /// `card-verify NAME` passes: the card signs a challenge for the certificate.
    fn card_verify(&self, name: &str) {
        let out = self.env.ok(&["card-verify", name]);
        assert!(out.contains("challenge: signed by the key"), "{out}");
        assert!(out.contains("PIV card"), "{out}");
    }

    /// Stops the server (no secret in its log); the PIN counter is as it was; slot 9a free.
    fn finish(self) {
        let log = self.daemon.stop();
        assert!(!log.contains(PIV_PIN), "the PIN reached the log");
        assert_eq!(
            pin_tries(&self.reader),
            self.tries,
            "the PIN counter changed"
        );
        let _ = piv_tool(&self.reader, &["-a", "delete-certificate", "-s", "9a"]);
    }
}

/// The key is generated in slot 9a of the virtual card and enrols at certman's own SCEP
/// server with a one-time password; `card-verify` proves the card signs for the issued
/// certificate, and yubico-piv-tool, independently, that slot 9a holds its key (it signs and
/// deciphers for it). The PIN counter is as the test found it.
#[test]
fn a_key_on_the_virtual_piv_card_enrols_and_card_verify_passes() {
    let Some(s) = PivSetup::new() else {
        return;
    };
    let t = Instant::now();
    let v = s.enrol("tpl_1", "piv-dev");
    eprintln!("add-scep at certman serve (PIV key): {:?}", t.elapsed());
    let crt = assert_enrolled(&s.env, "tpl_1", true, &s.ca, &openssl_fingerprint(&s.ca));
    let uri = s.env.entry("tpl_1")["smart-card-key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("piv:slot-id=9a;"), "{uri}");
    assert!(!uri.contains(PIV_PIN), "{uri}");
    // the server issued it for the request the client sent
    let reqs = scep_requests(&s.server);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["status"], "issued", "{reqs:?}");
    assert_eq!(
        reqs[0]["req-fingerprint"], v["req-fingerprint"],
        "{reqs:?}\n{v}"
    );

    s.card_verify("tpl_1");
    for action in ["test-signature", "test-decipher"] {
        let out = Command::new("yubico-piv-tool")
            .args(["-r", &s.reader, "-P", PIV_PIN, "-a", "verify-pin"])
            .args(["-a", action, "-s", "9a", "-i", p(&crt)])
            .stdin(Stdio::null())
            .output()
            .expect("yubico-piv-tool");
        assert_success(&out, &format!("yubico-piv-tool -a {action} -s 9a"));
    }
    s.finish();
}

/// The SCEP client's key in slot 9a is a key in use: generating another key in that slot
/// (`sign … on-smart-card=`, a second `add-scep`) is refused with the store unchanged, and the
/// client's key still signs for its certificate afterwards.
#[test]
fn the_scep_clients_key_on_the_card_is_not_generated_over() {
    let Some(s) = PivSetup::new() else {
        return;
    };
    s.enrol("tpl_1", "piv-dev");
    s.card_verify("tpl_1");
    template(&s.env, "other", "other");
    let before = s.env.snapshot();
    let err = s
        .env
        .fail(&["sign", "other", "on-smart-card=piv-9a"], EXIT_REFUSED);
    assert!(err.contains("key in use"), "{err}");
    assert_eq!(s.env.snapshot(), before);
    template(&s.env, "tpl_2", "piv-dev-2");
    let (before, url) = (s.env.snapshot(), format!("scep-url={}", s.url()));
    let pw = format!("challenge-password={}", otp(&s.server, 10));
    let add = [
        "add-scep",
        "template=tpl_2",
        &url,
        &pw,
        "on-smart-card=piv-9a",
    ];
    let err = s.env.fail(&add, EXIT_REFUSED);
    assert!(err.contains("key in use"), "{err}");
    assert_eq!(s.env.snapshot(), before);
    s.card_verify("tpl_1");
    s.finish();
}

// ------------------------------------------------------------------ 4. a wrong fingerprint

/// `ca-fingerprint=` that is not micromdm's CA: refused (exit 4, one line naming the CA's real
/// fingerprint) after GetCACert and before any key or request: the store is as it was (the
/// template still there, no key record), micromdm saw no PKIOperation, and on SoftHSM no
/// object appeared. The right fingerprint, written as OpenSSL prints it, then enrols.
#[test]
fn a_wrong_fingerprint_is_refused_before_any_key_is_made() {
    if !peer(SCEPSERVER, "scep")
        || !in_private_network("a_wrong_fingerprint_is_refused_before_any_key_is_made")
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mdm = MicroMdm::start(root.path());
    let ca_fp = openssl_fingerprint(&mdm.ca());
    let zeros = "0".repeat(64);
    let url = format!("scep-url={}", mdm.url());
    let challenge = format!("challenge-password={CHALLENGE}");
    let wrong = format!("ca-fingerprint={zeros}");

    let refuse = |env: &Env, extra: &[&str]| {
        let (before, keys) = (env.snapshot(), stored_keys(env));
        let ops = mdm.pki_operations();
        let mut args = vec!["add-scep", "template=tpl_1", &url, &challenge, &wrong];
        args.extend(extra);
        let err = env.fail(&args, EXIT_REFUSED);
        assert!(err.contains("fingerprint") && err.contains(&ca_fp), "{err}");
        assert_eq!(env.snapshot(), before, "the store changed");
        assert_eq!(stored_keys(env), keys, "a key was stored");
        assert_eq!(
            mdm.pki_operations(),
            ops,
            "a request was sent:\n{}",
            mdm.log()
        );
        let names = env.names();
        assert_eq!(names, ["tpl_1"], "{names:?}");
        assert_eq!(env.entry("tpl_1")["template"], true);
    };

    // software
    let env = Env::new();
    template(&env, "tpl_1", "peer-fp");
    refuse(&env, &[]);
    // the right fingerprint, as `openssl x509 -fingerprint -sha256` prints it
    let ca_pem = mdm.ca();
    let args = [
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        p(&ca_pem),
    ];
    let printed = openssl(&args, root.path());
    let colon_hex = printed.trim().split_once('=').unwrap().1.to_owned();
    let v = add_scep_json(
        &env,
        "tpl_1",
        &mdm.url(),
        &[&challenge, &format!("ca-fingerprint={colon_hex}")],
    );
    assert_eq!(v["status"], "issued", "{v}");
    assert_enrolled(&env, "tpl_1", false, &mdm.ca(), &ca_fp);

    // SoftHSM: no object appears on the token
    let Some(hsm) = SoftHsm::new("scep-fp") else {
        return;
    };
    let env = hsm.env();
    template(&env, "tpl_1", "peer-fp-hsm");
    let objects = |h: &SoftHsm| {
        let mut v: Vec<String> = h.objects().iter().map(|o| format!("{o:?}")).collect();
        v.sort();
        v
    };
    let before = objects(&hsm);
    refuse(&env, &["on-smart-card=softhsm"]);
    assert_eq!(objects(&hsm), before, "the token changed");
    assert!(hsm.objects_labelled("Private Key", "tpl_1").is_empty());
}
