//! PKCS#11 signing benchmark (a plain program, `harness = false`): certman's PKCS#11 path
//! against raw cryptoki on SoftHSM2, 1 and 2 threads, in the same process and the same run.
//!
//! On a throwaway SoftHSM2 token (made by `softhsm-config/init-token.sh` in a temporary
//! directory) it generates an RSA-2048 and an EC P-256 key pair *through certman*
//! (`Pkcs11Provider::generate`) and signs with them along three routes:
//!
//! * **certman**: `KeySigner::sign(scheme, msg)` over a 1 KiB message on one
//!   `Arc<dyn KeySigner>` shared by all threads. This *includes* certman's own work: SHA-256 of
//!   the message in aws-lc-rs, the DigestInfo prefix (RSA), the session pool (checkout, login
//!   check, cached key handle; 4 sessions by default) and the r‖s → DER conversion (ECDSA).
//! * **raw same-mech**: cryptoki directly, one `Session` per thread (all opened from one shared
//!   `Pkcs11` context after one login), with the mechanism certman sends: `CKM_RSA_PKCS` over a
//!   precomputed SHA-256 DigestInfo, `CKM_ECDSA` over a precomputed SHA-256 digest (no hashing in
//!   the loop). **The ratio and PASS/MISS use this route** (goal: certman ≥ 0.9 × raw).
//! * **raw direct** (RSA only): `CKM_SHA256_RSA_PKCS` over the 1 KiB message — what a direct
//!   cryptoki user would write; SoftHSM hashes. For EC the direct way *is* `CKM_ECDSA` over a
//!   precomputed digest, so that row shows "= same-mech".
//!
//! All routes sign with the same key objects (the raw side finds certman's keys by CKA_ID).
//!
//! Noise: the routes never run at the same time. For each key and thread count the worker
//! threads stay up and run the routes in short slices (`SLICE_MS`), one slice per route per
//! cycle, the order rotating every cycle, until each route has had `SECONDS` of timed signing —
//! so a burst of load from other jobs lands on all routes alike. Reported: the total rate per
//! route, the ratio of those totals (PASS/MISS), the median and quartiles of the per-cycle ratios
//! (robust against bursts), and CPU time per signature of the signing threads
//! (/proc/thread-self/schedstat, ns; SoftHSM runs in-process, so this covers the token's work
//! too and moves far less than wall time when the machine is shared).
//!
//! Correctness: one signature of each route is verified before timing, and every thread's last
//! signature of every slice after it (certman's and raw RSA with
//! `certman::keys::verify::verify_signature`, raw ECDSA r‖s with aws-lc-rs' fixed-length
//! verifier); a signing error aborts the bench. It cannot silently measure failures.
//!
//! Both cryptoki contexts share SoftHSM's global state: certman initialises the module and logs
//! in first; the raw context then gets `CKR_CRYPTOKI_ALREADY_INITIALIZED` and
//! `CKR_USER_ALREADY_LOGGED_IN`, both accepted (and printed). Neither calls `C_Finalize`, and
//! the raw side keeps a session open so the login outlives its workers.
//!
//! Run: `cargo bench --bench pkcs11_sign` (quick look: `CERTMAN_BENCH_P11_SECONDS=1 cargo bench
//! --bench pkcs11_sign`).
//!
//! | argument          | environment                    | default                           |
//! |-------------------|--------------------------------|-----------------------------------|
//! | `--seconds S`     | `CERTMAN_BENCH_P11_SECONDS`    | 3 (timed, per route, per row)     |
//! | `--slice-ms N`    | `CERTMAN_BENCH_P11_SLICE_MS`   | 250                               |
//! | `--threads LIST`  | `CERTMAN_BENCH_P11_THREADS`    | `1,2`                             |
//! | `--only KINDS`    | `CERTMAN_BENCH_P11_ONLY`       | `rsa2048,p256`                    |
//! | `--msg-bytes N`   | `CERTMAN_BENCH_P11_MSG_BYTES`  | 1024                              |
//! | `--module PATH`   | `CERTMAN_BENCH_P11_MODULE`     | `/usr/lib/softhsm/libsofthsm2.so` |
//! | `--dir PATH`      | `CERTMAN_BENCH_P11_DIR`        | the system temp dir               |
//! | `--strict`        | `CERTMAN_BENCH_P11_STRICT=1`   | off (on: exit 1 on a MISS)        |
//!
//! Arguments win over the environment; unknown arguments (`--bench` from cargo) are ignored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use certman::keys::pkcs11::{Pkcs11Options, Pkcs11Provider};
use certman::keys::verify::verify_signature;
use certman::keys::{
    EcCurve, GenerateRequest, HashAlgorithm, KeyAlgorithm, KeyHandle, KeyProvider, KeySigner,
    KeyUri, SignatureScheme,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use spki::SubjectPublicKeyInfoOwned;

/// Goal: certman's signing rate as a fraction of raw cryptoki's (same mechanism, same key).
const GOAL_RATIO: f64 = 0.9;
/// The label of the throwaway token.
const TOKEN_LABEL: &str = "bench";
/// SHA-256 DigestInfo prefix (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa2048,
    P256,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rsa2048 => "RSA-2048",
            Kind::P256 => "EC P-256",
        }
    }

    fn algorithm(self) -> KeyAlgorithm {
        match self {
            Kind::Rsa2048 => KeyAlgorithm::Rsa { bits: 2048 },
            Kind::P256 => KeyAlgorithm::Ec(EcCurve::P256),
        }
    }

    fn scheme(self) -> SignatureScheme {
        match self {
            Kind::Rsa2048 => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
            Kind::P256 => SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    seconds: f64,
    slice: Duration,
    threads: Vec<usize>,
    kinds: Vec<Kind>,
    msg_bytes: usize,
    module: PathBuf,
    base_dir: PathBuf,
    strict: bool,
}

fn parse_num<T: std::str::FromStr>(what: &str, v: &str) -> T {
    v.trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| panic!("{what}: '{v}' is not a valid number"))
}

fn parse_threads(v: &str) -> Vec<usize> {
    let t: Vec<usize> = v
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_num("threads", s))
        .collect();
    assert!(
        !t.is_empty() && t.iter().all(|&n| n > 0),
        "threads: '{v}' is not a list of thread counts"
    );
    t
}

fn parse_kinds(v: &str) -> Vec<Kind> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim().to_ascii_lowercase().as_str() {
            "rsa" | "rsa2048" | "rsa-2048" => Kind::Rsa2048,
            "ec" | "p256" | "p-256" | "ecp256" => Kind::P256,
            other => panic!("only: unknown key kind '{other}' (rsa2048, p256)"),
        })
        .collect()
}

impl Config {
    fn from_env_and_args() -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut slice_ms: u64 = env("CERTMAN_BENCH_P11_SLICE_MS")
            .map_or(250, |v| parse_num("CERTMAN_BENCH_P11_SLICE_MS", &v));
        let mut c = Config {
            seconds: env("CERTMAN_BENCH_P11_SECONDS")
                .map_or(3.0, |v| parse_num("CERTMAN_BENCH_P11_SECONDS", &v)),
            slice: Duration::ZERO,
            threads: env("CERTMAN_BENCH_P11_THREADS").map_or(vec![1, 2], |v| parse_threads(&v)),
            kinds: env("CERTMAN_BENCH_P11_ONLY")
                .map_or(vec![Kind::Rsa2048, Kind::P256], |v| parse_kinds(&v)),
            msg_bytes: env("CERTMAN_BENCH_P11_MSG_BYTES")
                .map_or(1024, |v| parse_num("CERTMAN_BENCH_P11_MSG_BYTES", &v)),
            module: env("CERTMAN_BENCH_P11_MODULE")
                .map_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into(), PathBuf::from),
            base_dir: env("CERTMAN_BENCH_P11_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
            strict: env("CERTMAN_BENCH_P11_STRICT").is_some_and(|v| v == "1"),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = args.get(i + 1).cloned().unwrap_or_default();
            let takes_value = match args[i].as_str() {
                "--seconds" => {
                    c.seconds = parse_num("--seconds", &value);
                    true
                }
                "--slice-ms" => {
                    slice_ms = parse_num("--slice-ms", &value);
                    true
                }
                "--threads" => {
                    c.threads = parse_threads(&value);
                    true
                }
                "--only" => {
                    c.kinds = parse_kinds(&value);
                    true
                }
                "--msg-bytes" => {
                    c.msg_bytes = parse_num("--msg-bytes", &value);
                    true
                }
                "--module" => {
                    c.module = PathBuf::from(value);
                    true
                }
                "--dir" => {
                    c.base_dir = PathBuf::from(value);
                    true
                }
                "--strict" => {
                    c.strict = true;
                    false
                }
                // `--bench` and anything else cargo passes
                _ => false,
            };
            i += if takes_value { 2 } else { 1 };
        }
        assert!(c.seconds > 0.0, "seconds must be positive");
        assert!(slice_ms > 0, "slice-ms must be positive");
        assert!(!c.kinds.is_empty(), "no key kinds to measure");
        c.slice = Duration::from_millis(slice_ms);
        c
    }

    /// Slices per route: enough for `seconds` of timed signing.
    fn cycles(&self) -> usize {
        ((self.seconds / self.slice.as_secs_f64()).ceil() as usize).max(1)
    }
}

/// CPU time of the calling thread in nanoseconds (/proc/thread-self/schedstat, first field:
/// time spent on a CPU). None where /proc does not say.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// How a signature is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// cryptoki, the mechanism certman uses, over precomputed input
    RawSame,
    /// cryptoki, CKM_SHA256_RSA_PKCS over the message (RSA only)
    RawDirect,
    /// certman's KeySigner::sign over the message
    Certman,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::RawSame => "raw same-mech",
            Route::RawDirect => "raw direct",
            Route::Certman => "certman",
        }
    }
}

/// One slice of one route, summed over the threads.
#[derive(Clone, Copy, Debug, Default)]
struct Slice {
    signs: u64,
    /// wall-clock seconds (the longest thread's)
    secs: f64,
    /// CPU seconds of the signing threads (None if /proc is unreadable)
    cpu_secs: Option<f64>,
}

impl Slice {
    fn per_sec(&self) -> f64 {
        self.signs as f64 / self.secs
    }
}

/// All slices of one route.
#[derive(Clone, Debug, Default)]
struct Totals {
    slices: Vec<Slice>,
}

impl Totals {
    fn signs(&self) -> u64 {
        self.slices.iter().map(|s| s.signs).sum()
    }

    /// signatures per wall-clock second over all slices
    fn per_sec(&self) -> f64 {
        let secs: f64 = self.slices.iter().map(|s| s.secs).sum();
        self.signs() as f64 / secs
    }

    /// CPU microseconds per signature (signing threads, all slices)
    fn cpu_us_per_sign(&self) -> Option<f64> {
        let cpu: f64 = self
            .slices
            .iter()
            .map(|s| s.cpu_secs)
            .sum::<Option<f64>>()?;
        Some(cpu * 1e6 / self.signs() as f64)
    }
}

/// The per-cycle ratios `a / b` (slices of one cycle ran back to back), as
/// (25th percentile, median, 75th percentile).
fn paired_ratio(a: &Totals, b: &Totals) -> (f64, f64, f64) {
    let mut r: Vec<f64> = a
        .slices
        .iter()
        .zip(&b.slices)
        .map(|(x, y)| x.per_sec() / y.per_sec())
        .collect();
    if r.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    r.sort_by(f64::total_cmp);
    let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
    (q(0.25), q(0.5), q(0.75))
}

/// The raw cryptoki side: its own context on the same module.
struct Raw {
    ctx: Pkcs11,
    slot: Slot,
}

/// The raw context, logged in, and the session that keeps the login alive (login state is per
/// application and ends with its last session).
fn open_raw(module: &Path, pin: &str) -> (Raw, Session) {
    let ctx = Pkcs11::new(module)
        .unwrap_or_else(|e| panic!("loading {} (raw context): {e}", module.display()));
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => eprintln!("raw context: C_Initialize ok"),
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => eprintln!(
            "raw context: C_Initialize -> CKR_CRYPTOKI_ALREADY_INITIALIZED (certman's; accepted)"
        ),
        Err(e) => panic!("C_Initialize (raw context): {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|&s| {
            ctx.get_token_info(s)
                .is_ok_and(|i| i.label().trim() == TOKEN_LABEL)
        })
        .unwrap_or_else(|| panic!("token '{TOKEN_LABEL}' not found by the raw context"));
    let session = ctx.open_ro_session(slot).expect("C_OpenSession (raw)");
    let auth = AuthPin::new(pin.to_owned().into_boxed_str());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) => eprintln!("raw context: C_Login ok"),
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => eprintln!(
            "raw context: C_Login -> CKR_USER_ALREADY_LOGGED_IN (certman's login; accepted)"
        ),
        Err(e) => panic!("C_Login (raw context): {e}"),
    }
    (Raw { ctx, slot }, session)
}

impl Raw {
    /// A read-only session, as a signing-only application would open.
    fn session(&self) -> Session {
        self.ctx
            .open_ro_session(self.slot)
            .expect("C_OpenSession (raw)")
    }

    /// The private key with CKA_ID `id` (object handles are valid in all sessions).
    fn private_key(&self, id: &[u8]) -> ObjectHandle {
        let found = self
            .session()
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id.to_vec()),
            ])
            .expect("C_FindObjects (raw)");
        assert_eq!(
            found.len(),
            1,
            "raw: expected one private key with id {}",
            hex::encode(id)
        );
        found[0]
    }

    fn supports(&self, m: &Mechanism) -> bool {
        self.ctx
            .get_mechanism_list(self.slot)
            .is_ok_and(|l| l.contains(&m.mechanism_type()))
    }
}

/// Everything one key needs.
struct Bench {
    kind: Kind,
    signer: Arc<dyn KeySigner>,
    spki: SubjectPublicKeyInfoOwned,
    raw_key: ObjectHandle,
    msg: Vec<u8>,
    /// what raw same-mech sends: the DigestInfo (RSA) or the digest (EC)
    raw_input: Vec<u8>,
}

impl Bench {
    /// The mechanism and input of a raw route.
    fn raw_mechanism(&self, route: Route) -> (Mechanism<'static>, &[u8]) {
        match (route, self.kind) {
            (Route::RawDirect, _) => (Mechanism::Sha256RsaPkcs, &self.msg),
            (_, Kind::Rsa2048) => (Mechanism::RsaPkcs, &self.raw_input),
            (_, Kind::P256) => (Mechanism::Ecdsa, &self.raw_input),
        }
    }

    /// Checks a signature made by `route` against the public key; panics if it is wrong.
    fn verify(&self, route: Route, sig: &[u8]) {
        let ok = match (self.kind, route) {
            // CKM_ECDSA returns r‖s.
            (Kind::P256, Route::RawSame | Route::RawDirect) => {
                aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                    self.spki.subject_public_key.raw_bytes(),
                )
                .verify(&self.msg, sig)
                .map_err(|_| "ECDSA r‖s signature does not verify".to_owned())
            }
            _ => verify_signature(&self.spki, self.kind.scheme(), &self.msg, sig)
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = ok {
            panic!("{} {}: {e}", self.kind.name(), route.name());
        }
    }

    /// Runs `routes` with `threads` worker threads for `cycles` cycles: each cycle gives every
    /// route one slice of `slice` wall time, the order rotating from cycle to cycle. The workers
    /// live for the whole run; each owns one raw session (opened once) and a clone of the one
    /// shared certman signer. A first, untimed cycle warms up. Every thread's last signature of
    /// every slice is verified.
    fn run_interleaved(
        &self,
        raw: &Raw,
        routes: &[Route],
        threads: usize,
        slice: Duration,
        cycles: usize,
    ) -> Vec<Totals> {
        let command: Mutex<Option<Route>> = Mutex::new(None);
        let start = Barrier::new(threads + 1);
        let end = Barrier::new(threads + 1);
        // per thread: (signs, wall, CPU ns, last signature)
        type Report = (u64, Duration, Option<u64>, Vec<u8>);
        let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
        let scheme = self.kind.scheme();
        let mut totals = vec![Totals::default(); routes.len()];
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (command, start, end, reports) = (&command, &start, &end, &reports);
                scope.spawn(move || {
                    let session = raw.session();
                    let signer = self.signer.clone();
                    loop {
                        start.wait();
                        let Some(route) = *command.lock().unwrap_or_else(|p| p.into_inner()) else {
                            break;
                        };
                        let (mech, input) = self.raw_mechanism(route);
                        let sign = || match route {
                            Route::Certman => signer
                                .sign(scheme, &self.msg)
                                .unwrap_or_else(|e| panic!("certman sign: {e}")),
                            Route::RawSame | Route::RawDirect => session
                                .sign(&mech, self.raw_key, input)
                                .unwrap_or_else(|e| panic!("raw C_Sign: {e}")),
                        };
                        let cpu0 = thread_cpu_ns();
                        let t0 = Instant::now();
                        let deadline = t0 + slice;
                        let mut n = 0u64;
                        let last = loop {
                            let sig = sign();
                            n += 1;
                            if Instant::now() >= deadline {
                                break sig;
                            }
                        };
                        let wall = t0.elapsed();
                        let cpu = thread_cpu_ns().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
                        reports
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((n, wall, cpu, last));
                        end.wait();
                    }
                });
            }
            let run_slice = |route: Route| -> Slice {
                *command.lock().unwrap_or_else(|p| p.into_inner()) = Some(route);
                start.wait();
                end.wait();
                let done = std::mem::take(&mut *reports.lock().unwrap_or_else(|p| p.into_inner()));
                assert_eq!(done.len(), threads, "a worker did not report");
                for r in &done {
                    self.verify(route, &r.3);
                }
                Slice {
                    signs: done.iter().map(|r| r.0).sum(),
                    secs: done
                        .iter()
                        .map(|r| r.1)
                        .max()
                        .unwrap_or_default()
                        .as_secs_f64(),
                    cpu_secs: done.iter().map(|r| r.2.map(|ns| ns as f64 / 1e9)).sum(),
                }
            };
            for &route in routes {
                run_slice(route); // warm-up, not counted
            }
            for c in 0..cycles {
                for k in 0..routes.len() {
                    let i = (k + c) % routes.len();
                    totals[i].slices.push(run_slice(routes[i]));
                }
            }
            *command.lock().unwrap_or_else(|p| p.into_inner()) = None;
            start.wait();
        });
        totals
    }
}

/// Makes the throwaway token; returns SOFTHSM2_CONF and the user-PIN file.
fn init_token(dir: &Path) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-config/init-token.sh");
    let out = Command::new(&script)
        .arg(dir)
        .arg(TOKEN_LABEL)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let conf = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export SOFTHSM2_CONF="))
        .unwrap_or_else(|| panic!("init-token.sh printed no SOFTHSM2_CONF: {stdout}"));
    (PathBuf::from(conf), dir.join("user.pin"))
}

struct Row {
    kind: Kind,
    threads: usize,
    direct: Option<Totals>,
    same: Totals,
    certman: Totals,
}

fn main() {
    let cfg = Config::from_env_and_args();
    assert!(
        cfg.module.is_file(),
        "PKCS#11 module {} not found (install softhsm2 or set CERTMAN_BENCH_P11_MODULE)",
        cfg.module.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("certman-p11-bench-")
        .tempdir_in(&cfg.base_dir)
        .expect("temporary directory");
    let (conf, pin_file) = init_token(dir.path());
    // Before the module is loaded (SoftHSM reads it in C_Initialize) and before any thread.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin = std::fs::read_to_string(&pin_file)
        .expect("reading user.pin")
        .trim()
        .to_owned();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("PKCS#11 signing: certman vs raw cryptoki, SoftHSM2 token '{TOKEN_LABEL}'");
    println!(
        "{}s timed per route and row, in {} slices of {} ms interleaved; threads {:?}; \
         message {} bytes; {cores} core(s); loadavg {}",
        cfg.seconds,
        cfg.cycles(),
        cfg.slice.as_millis(),
        cfg.threads,
        cfg.msg_bytes,
        loadavg()
    );

    // certman first: it initialises the module and logs in.
    let provider = Pkcs11Provider::new(Pkcs11Options::default());
    let location: KeyUri = format!(
        "pkcs11:token={TOKEN_LABEL}?module-path={}&pin-source=file:{}",
        cfg.module.display(),
        pin_file.display()
    )
    .parse()
    .expect("token URI");
    let mut keys = Vec::new();
    for &kind in &cfg.kinds {
        let generated = provider
            .generate(&GenerateRequest {
                algorithm: kind.algorithm(),
                label: format!("bench-{}", kind.name()),
                location: Some(location.clone()),
            })
            .unwrap_or_else(|e| panic!("certman generate {}: {e}", kind.name()));
        let signer = provider
            .signer(&KeyHandle {
                uri: generated.uri.clone(),
                sealed: None,
            })
            .unwrap_or_else(|e| panic!("certman signer {}: {e}", kind.name()));
        let id = generated
            .uri
            .path_bytes("id")
            .expect("a generated key's URI has id=")
            .to_vec();
        eprintln!(
            "generated {} through certman: {}",
            kind.name(),
            generated.uri
        );
        keys.push((kind, signer, generated.public_key, id));
    }

    let (raw, login_session) = open_raw(&cfg.module, &pin);
    if let Ok(info) = raw.ctx.get_library_info() {
        println!(
            "module {}: {} {} {}.{}",
            cfg.module.display(),
            info.manufacturer_id().trim(),
            info.library_description().trim(),
            info.library_version().major(),
            info.library_version().minor()
        );
    }
    let direct_ok = raw.supports(&Mechanism::Sha256RsaPkcs);

    let msg: Vec<u8> = (0..cfg.msg_bytes).map(|i| (i * 31 + 7) as u8).collect();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg);
    let mut benches = Vec::new();
    for (kind, signer, spki, id) in keys {
        let raw_input = match kind {
            Kind::Rsa2048 => [&SHA256_DIGEST_INFO[..], digest.as_ref()].concat(),
            Kind::P256 => digest.as_ref().to_vec(),
        };
        let b = Bench {
            kind,
            signer,
            spki,
            raw_key: raw.private_key(&id),
            msg: msg.clone(),
            raw_input,
        };
        // One verified signature of each route before any timing.
        let s = raw.session();
        let mut routes = vec![Route::RawSame];
        if kind == Kind::Rsa2048 && direct_ok {
            routes.push(Route::RawDirect);
        }
        for route in routes {
            let (m, input) = b.raw_mechanism(route);
            b.verify(route, &s.sign(&m, b.raw_key, input).expect("raw sign"));
        }
        let sig = b.signer.sign(kind.scheme(), &msg).expect("certman sign");
        b.verify(Route::Certman, &sig);
        eprintln!("{}: a signature of each route verified", kind.name());
        benches.push(b);
    }

    let mut rows = Vec::new();
    for b in &benches {
        for &threads in &cfg.threads {
            let mut routes = vec![Route::RawSame, Route::Certman];
            if b.kind == Kind::Rsa2048 && direct_ok {
                routes.push(Route::RawDirect);
            }
            let t = Instant::now();
            let mut totals = b
                .run_interleaved(&raw, &routes, threads, cfg.slice, cfg.cycles())
                .into_iter();
            let row = Row {
                kind: b.kind,
                threads,
                same: totals.next().unwrap_or_default(),
                certman: totals.next().unwrap_or_default(),
                direct: totals.next(),
            };
            eprintln!(
                "  {} {threads}t: raw same-mech {:.1}/s ({} signs), certman {:.1}/s ({} signs){} \
                 in {:.1?}, loadavg {}",
                b.kind.name(),
                row.same.per_sec(),
                row.same.signs(),
                row.certman.per_sec(),
                row.certman.signs(),
                row.direct
                    .as_ref()
                    .map(|d| format!(", raw direct {:.1}/s ({} signs)", d.per_sec(), d.signs()))
                    .unwrap_or_default(),
                t.elapsed(),
                loadavg()
            );
            rows.push(row);
        }
    }

    println!();
    println!("signatures per second (wall clock, all threads); ratio = certman / raw same-mech");
    println!(
        "{:<9} {:>3}  {:>11}  {:>13}  {:>10}  {:>6}  {:>19}  {:<4}",
        "key", "thr", "raw direct", "raw same-mech", "certman", "ratio", "per-cycle ratio", "goal"
    );
    let mut misses = 0;
    for r in &rows {
        let ratio = r.certman.per_sec() / r.same.per_sec();
        let (q1, med, q3) = paired_ratio(&r.certman, &r.same);
        let pass = ratio >= GOAL_RATIO;
        misses += usize::from(!pass);
        let direct = match (&r.direct, r.kind) {
            (Some(d), _) => format!("{:.1}", d.per_sec()),
            (None, Kind::P256) => "= same-mech".to_owned(),
            (None, Kind::Rsa2048) => "unsupported".to_owned(),
        };
        println!(
            "{:<9} {:>3}  {:>11}  {:>13.1}  {:>10.1}  {:>6.3}  {:>5.3} [{:.3}-{:.3}]  {}",
            r.kind.name(),
            r.threads,
            direct,
            r.same.per_sec(),
            r.certman.per_sec(),
            ratio,
            med,
            q1,
            q3,
            if pass { "PASS" } else { "MISS" }
        );
    }
    println!();
    println!("CPU time per signature of the signing threads, µs (less sensitive to other jobs)");
    println!(
        "{:<9} {:>3}  {:>11}  {:>13}  {:>10}  {:>13}",
        "key", "thr", "raw direct", "raw same-mech", "certman", "raw/certman"
    );
    for r in &rows {
        let f = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1}"));
        let (same, cm) = (r.same.cpu_us_per_sign(), r.certman.cpu_us_per_sign());
        let direct = match (&r.direct, r.kind) {
            (Some(d), _) => f(d.cpu_us_per_sign()),
            (None, Kind::P256) => "= same-mech".to_owned(),
            (None, Kind::Rsa2048) => "unsupported".to_owned(),
        };
        println!(
            "{:<9} {:>3}  {:>11}  {:>13}  {:>10}  {:>13}",
            r.kind.name(),
            r.threads,
            direct,
            f(same),
            f(cm),
            same.zip(cm)
                .map_or("?".to_owned(), |(s, c)| format!("{:.3}", s / c))
        );
    }
    println!();
    println!(
        "raw same-mech: C_SignInit+C_Sign with CKM_RSA_PKCS over a precomputed SHA-256 DigestInfo, \
         CKM_ECDSA over a precomputed SHA-256 digest; one RO session per thread."
    );
    println!(
        "raw direct:    CKM_SHA256_RSA_PKCS over the {}-byte message (SoftHSM hashes).",
        cfg.msg_bytes
    );
    println!(
        "certman:       KeySigner::sign over the {}-byte message on one shared signer: includes \
         SHA-256 (aws-lc-rs), DigestInfo / r‖s→DER, and the session pool.",
        cfg.msg_bytes
    );
    println!(
        "goal: ratio ≥ {GOAL_RATIO}. per-cycle ratio: median [quartiles] of certman/raw over \
         back-to-back slices. loadavg at end {} on {cores} core(s).",
        loadavg()
    );
    drop(benches);
    drop(login_session);
    drop(provider);
    drop(dir); // process::exit below would skip removing the token directory
    if cfg.strict && misses > 0 {
        eprintln!("{misses} MISS(es)");
        std::process::exit(1);
    }
}
