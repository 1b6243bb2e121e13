//! Commands killed at every write, sync, link and rename they make (strace's syscall fault
//! injection delivers SIGKILL on the Nth call): afterwards the store opens and passes SQLite's
//! integrity check, no certificate file exists for a certificate the store does not hold, a
//! file that exists is whole, and no temporary file is left behind.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The system calls a kill is injected at: every way a command changes a file or the store.
const KILL_AT: &[&str] = &[
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
];

/// strace, or why not (in CI a missing strace fails: scripts/setup.sh installs it).
fn strace() -> Option<&'static str> {
    let ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("strace");
    }
    assert!(
        std::env::var_os("CERTMAN_REQUIRE_TOKENS").is_none(),
        "strace is missing (scripts/setup.sh installs it)"
    );
    eprintln!("skipping: strace is not installed");
    None
}

/// A world to kill commands in: the store and the work directory are put back to `pristine`
/// before every run.
struct Lab {
    env: Env,
    pristine: PathBuf,
}

impl Lab {
    fn new(setup: impl FnOnce(&Env)) -> Lab {
        let env = Env::new();
        setup(&env);
        let pristine = env.root().join("pristine");
        copy_dir(&env.store, &pristine.join("store"));
        copy_dir(&env.work, &pristine.join("work"));
        Lab { env, pristine }
    }

    fn reset(&self) {
        for (dir, saved) in [(&self.env.store, "store"), (&self.env.work, "work")] {
            fs::remove_dir_all(dir).unwrap();
            copy_dir(&self.pristine.join(saved), dir);
        }
    }

    /// `args` under strace: each syscall of KILL_AT it makes, counted (a dry run).
    fn count_calls(&self, strace: &str, args: &[&str]) -> BTreeMap<String, usize> {
        self.reset();
        let log = self.env.root().join("trace.log");
        let status = self
            .traced(strace, args, &["-o", log.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "{args:?} fails without a kill");
        let mut counts = BTreeMap::new();
        for line in fs::read_to_string(&log).unwrap().lines() {
            // "PID name(args) = result"
            let call = line.split_whitespace().nth(1).unwrap_or("");
            if let Some(name) = call.split('(').next() {
                if KILL_AT.contains(&name) {
                    *counts.entry(name.to_owned()).or_default() += 1;
                }
            }
        }
        counts
    }

    fn traced(&self, strace: &str, args: &[&str], strace_args: &[&str]) -> Command {
        let certman = self.env.command(args);
        let mut c = Command::new(strace);
        c.args(["-f", "-qq", "-e", &format!("trace={}", KILL_AT.join(","))])
            .args(strace_args)
            .arg(certman.get_program())
            .args(certman.get_args())
            .current_dir(&self.env.work)
            .envs(
                certman
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs `args` killed at the `n`th call of `syscall`; true when the kill came.
    fn kill_at(&self, strace: &str, args: &[&str], syscall: &str, n: usize) -> bool {
        self.reset();
        let status = self
            .traced(
                strace,
                args,
                &[
                    "-o",
                    "/dev/null",
                    "-e",
                    &format!("inject={syscall}:signal=KILL:when={n}"),
                ],
            )
            .status()
            .unwrap();
        // strace exits with the tracee's signal as 128 + SIGKILL
        !status.success()
    }

    /// What must hold after a kill at any point.
    fn check(&self, what: &str, p12_passphrase: &str) {
        let env = &self.env;
        let db = env.store.join("certman.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "{what}: integrity_check");
        drop(conn);
        let held: Vec<String> = env
            .json()
            .iter()
            .filter_map(|e| e["serial-number"].as_str().map(norm_hex))
            .collect();
        for name in all_files(&env.work) {
            assert!(
                !name.ends_with(".tmp"),
                "{what}: temporary file {name} left behind"
            );
            let path = env.work.join(&name);
            let serial = if name.ends_with(".crt") {
                norm_hex(&openssl_serial(&path))
            } else if name.ends_with(".p12") {
                // whole, and its certificate one the store holds
                let pem = openssl(
                    &[
                        "pkcs12",
                        "-in",
                        path.to_str().unwrap(),
                        "-nokeys",
                        "-clcerts",
                        "-passin",
                        &format!("pass:{p12_passphrase}"),
                    ],
                    &env.work,
                );
                let crt = env.root().join("from-p12.crt");
                fs::write(&crt, pem).unwrap();
                norm_hex(&openssl_serial(&crt))
            } else {
                continue;
            };
            assert!(
                held.contains(&serial),
                "{what}: {name} holds serial {serial}, which the store does not"
            );
        }
    }
}

fn all_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let mode = fs::metadata(from).unwrap().permissions();
    fs::set_permissions(to, mode).unwrap();
}

/// Kills `args` at every call of KILL_AT it makes, checking after each; returns how many
/// kills there were, and after how many of them `file` (in work/) was not there.
fn kill_everywhere(
    lab: &Lab,
    strace: &str,
    args: &[&str],
    p12_passphrase: &str,
    file: &str,
) -> (usize, usize) {
    let counts = lab.count_calls(strace, args);
    assert!(
        counts.contains_key("linkat") || counts.contains_key("rename"),
        "{args:?} published no file: {counts:?}"
    );
    let (mut kills, mut absent) = (0, 0);
    for (syscall, n) in &counts {
        for i in 1..=*n {
            if lab.kill_at(strace, args, syscall, i) {
                kills += 1;
                if !lab.env.path(file).exists() {
                    absent += 1;
                }
            }
            lab.check(
                &format!("{args:?} killed at {syscall} #{i}"),
                p12_passphrase,
            );
        }
    }
    (kills, absent)
}

#[test]
fn sign_certificate_request_killed_anywhere_leaves_no_file_the_store_lacks() {
    let Some(strace) = strace() else { return };
    let lab = Lab::new(|env| {
        env.make_ca("ca", &["key-type=ec"]);
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "r.key",
                "-subj",
                "/CN=leaf.example",
                "-out",
                "r.csr",
            ],
            &env.work,
        );
    });
    let args = [
        "sign-certificate-request",
        "ca=ca",
        "file-name=r.csr",
        "name=leaf",
    ];
    let (kills, _) = kill_everywhere(&lab, strace, &args, "", "cert_export_leaf.crt");
    eprintln!("sign-certificate-request: killed at {kills} points");
    assert!(kills >= 10, "only {kills} kill points");
    // Without a kill it works, and its file is what the store holds.
    lab.reset();
    lab.env.ok(&args);
    lab.check("sign-certificate-request, not killed", "");
    assert!(lab.env.path("cert_export_leaf.crt").is_file());
}

#[test]
fn export_pkcs12_killed_anywhere_leaves_nothing_partial() {
    let Some(strace) = strace() else { return };
    let lab = Lab::new(|env| env.make_ca("ca", &["key-type=ec"]));
    let args = [
        "export-certificate",
        "ca",
        "type=pkcs12",
        "export-passphrase=kill-test-pass",
    ];
    let (kills, _) = kill_everywhere(&lab, strace, &args, "kill-test-pass", "cert_export_ca.p12");
    eprintln!("export-certificate type=pkcs12: killed at {kills} points");
    assert!(kills >= 3, "only {kills} kill points");
    // An export over an existing file, killed anywhere: the file is the old one, the new one,
    // or — killed between unlinking the old and linking the new — none; never partial, never
    // a temporary.
    lab.reset();
    lab.env.ok(&args);
    let lab = Lab {
        pristine: {
            let p = lab.env.root().join("pristine-with-export");
            copy_dir(&lab.env.store, &p.join("store"));
            copy_dir(&lab.env.work, &p.join("work"));
            p
        },
        env: lab.env,
    };
    let (kills, absent) =
        kill_everywhere(&lab, strace, &args, "kill-test-pass", "cert_export_ca.p12");
    eprintln!(
        "export-certificate type=pkcs12 over an existing file: killed at {kills} points, \
         the file absent after {absent}"
    );
    assert!(kills >= 3, "only {kills} kill points");
    assert!(absent <= 1, "the file was missing after {absent} kills");
}
