//! Issuance benchmark (a plain program, `harness = false`).
//!
//! For a P-256 CA and an RSA-2048 CA, each in a fresh store, it issues N leaf certificates
//! (P-256 keys, CN, SAN, key-usage=digital-signature,tls-server) with `Manager::issue_batch` in
//! batches of B names — every batch is one SQLite transaction (WAL, synchronous=FULL), so a
//! certificate is counted only once it is fsync-durable — once with T threads and once with one
//! thread. In the same run it measures `openssl speed` (single process) for the CA's key and a
//! shell loop of `openssl req -x509 -CA` issuing certificates one process at a time, then prints
//! certs/s, the ratios, and PASS/MISS against the goals:
//!
//! * P-256 CA: certman (T threads) ≥ 2 000 durable certs/s;
//! * RSA-2048 CA: certman (1 thread) ≥ 0.8 × `openssl speed rsa2048` sign/s.
//!
//! Run: `cargo bench --bench issue` (add `-- --certs 1000 --openssl 100` or use the env below
//! for a quick run).
//!
//! | argument          | environment                    | default               |
//! |-------------------|--------------------------------|-----------------------|
//! | `--certs N`       | `CERTMAN_BENCH_CERTS`          | 10 000                |
//! | `--openssl N`     | `CERTMAN_BENCH_OPENSSL`        | 1 000                 |
//! | `--batch N`       | `CERTMAN_BENCH_BATCH`          | 500                   |
//! | `--threads N`     | `CERTMAN_BENCH_THREADS`        | available parallelism |
//! | `--speed-seconds` | `CERTMAN_BENCH_SPEED_SECONDS`  | 3                     |
//! | `--dir PATH`      | `CERTMAN_BENCH_DIR`            | the system temp dir   |
//! | `--only KINDS`    | `CERTMAN_BENCH_ONLY`           | `p256,rsa2048`        |
//! | `--strict`        | `CERTMAN_BENCH_STRICT=1`       | off (on: exit 1 on a MISS) |
//!
//! Arguments win over the environment; unknown arguments (`--bench` from cargo) are ignored.
//! Besides wall-clock rates it prints certs per CPU-second of the bench process (from
//! /proc/self/stat, 10 ms resolution): on a shared machine the wall figure drops when another
//! job takes the core, the CPU figure much less so.
//! The stores go in a temporary directory under `--dir`, which should be a real disk: on tmpfs
//! an fsync costs nothing and the durability figure means nothing (the bench warns).

#[path = "common/mod.rs"]
mod common;
use common::{filesystem_type, openssl_verify, parse_num};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certman::manager::{ExportRequest, ExportType, SignRequest, TemplateProperties};
use certman::store::sqlite::SqliteStore;
use certman::store::{Store, TxnMode};

/// P-256 goal: durable certificates per second.
const P256_GOAL_PER_SEC: f64 = 2000.0;
/// RSA-2048 goal: fraction of OpenSSL's single-core raw sign rate.
const RSA_GOAL_RATIO: f64 = 0.8;

#[derive(Clone, Debug)]
struct Config {
    certs: usize,
    openssl_loops: usize,
    batch: usize,
    threads: usize,
    speed_seconds: u32,
    base_dir: PathBuf,
    strict: bool,
    kinds: Vec<CaKind>,
}

impl Config {
    fn from_env_and_args() -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let threads_default = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut c = Config {
            certs: env("CERTMAN_BENCH_CERTS")
                .map_or(10_000, |v| parse_num("CERTMAN_BENCH_CERTS", &v)),
            openssl_loops: env("CERTMAN_BENCH_OPENSSL")
                .map_or(1_000, |v| parse_num("CERTMAN_BENCH_OPENSSL", &v)),
            batch: env("CERTMAN_BENCH_BATCH").map_or(500, |v| parse_num("CERTMAN_BENCH_BATCH", &v)),
            threads: env("CERTMAN_BENCH_THREADS")
                .map_or(threads_default, |v| parse_num("CERTMAN_BENCH_THREADS", &v)),
            speed_seconds: env("CERTMAN_BENCH_SPEED_SECONDS")
                .map_or(3, |v| parse_num("CERTMAN_BENCH_SPEED_SECONDS", &v)),
            base_dir: env("CERTMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
            strict: env("CERTMAN_BENCH_STRICT").is_some_and(|v| v != "0"),
            kinds: env("CERTMAN_BENCH_ONLY")
                .map_or_else(|| CaKind::ALL.to_vec(), |v| parse_kinds(&v)),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let (key, inline) = match args[i].split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (args[i].clone(), None),
            };
            let takes_value = matches!(
                key.as_str(),
                "--certs"
                    | "--openssl"
                    | "--batch"
                    | "--threads"
                    | "--speed-seconds"
                    | "--dir"
                    | "--only"
            );
            let value = if takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        Some(
                            args.get(i)
                                .unwrap_or_else(|| panic!("{key} needs a value"))
                                .clone(),
                        )
                    }
                }
            } else {
                None
            };
            match (key.as_str(), value) {
                ("--certs", Some(v)) => c.certs = parse_num(&key, &v),
                ("--openssl", Some(v)) => c.openssl_loops = parse_num(&key, &v),
                ("--batch", Some(v)) => c.batch = parse_num(&key, &v),
                ("--threads", Some(v)) => c.threads = parse_num(&key, &v),
                ("--speed-seconds", Some(v)) => c.speed_seconds = parse_num(&key, &v),
                ("--dir", Some(v)) => c.base_dir = PathBuf::from(v),
                ("--only", Some(v)) => c.kinds = parse_kinds(&v),
                ("--strict", _) => c.strict = true,
                _ => {} // `--bench` from cargo, filters, anything else
            }
            i += 1;
        }
        assert!(
            c.certs >= 1,
            "the number of certificates must be at least 1"
        );
        assert!(c.batch >= 1, "the batch size must be at least 1");
        assert!(c.threads >= 1, "the number of threads must be at least 1");
        assert!(
            c.speed_seconds >= 1,
            "openssl speed needs at least 1 second"
        );
        c
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaKind {
    P256,
    Rsa2048,
}

/// `p256,rsa2048` (either or both).
fn parse_kinds(v: &str) -> Vec<CaKind> {
    let kinds: Vec<CaKind> = v
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            CaKind::ALL
                .into_iter()
                .find(|c| c.slug().eq_ignore_ascii_case(k))
                .unwrap_or_else(|| panic!("unknown CA kind '{k}': expected p256 or rsa2048"))
        })
        .collect();
    assert!(!kinds.is_empty(), "--only needs p256, rsa2048 or both");
    kinds
}

impl CaKind {
    const ALL: [CaKind; 2] = [CaKind::P256, CaKind::Rsa2048];

    fn label(self) -> &'static str {
        match self {
            CaKind::P256 => "P-256 CA",
            CaKind::Rsa2048 => "RSA-2048 CA",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            CaKind::P256 => "p256",
            CaKind::Rsa2048 => "rsa2048",
        }
    }

    /// certman template properties for the key.
    fn key_props(self) -> [(&'static str, &'static str); 2] {
        match self {
            CaKind::P256 => [("key-type", "ec"), ("key-size", "prime256v1")],
            CaKind::Rsa2048 => [("key-type", "rsa"), ("key-size", "2048")],
        }
    }

    /// `openssl req -newkey …` arguments for the CA key.
    fn openssl_newkey(self) -> &'static [&'static str] {
        match self {
            CaKind::P256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            CaKind::Rsa2048 => &["-newkey", "rsa:2048"],
        }
    }

    /// `openssl speed` algorithm.
    fn speed_alg(self) -> &'static str {
        match self {
            CaKind::P256 => "ecdsap256",
            CaKind::Rsa2048 => "rsa2048",
        }
    }
}

/// One certman run.
#[derive(Clone, Debug)]
struct CertmanRun {
    threads: usize,
    certs: usize,
    elapsed: Duration,
    /// CPU time (user + system, all threads) of this process during the issuance
    cpu: Option<Duration>,
    batches: Vec<Duration>,
}

impl CertmanRun {
    fn per_sec(&self) -> f64 {
        self.certs as f64 / self.elapsed.as_secs_f64()
    }

    /// Certificates per CPU-second: what one otherwise idle core would give (fsync waits
    /// aside), and a check on the wall figure when another job shares the machine.
    fn per_cpu_sec(&self) -> Option<f64> {
        self.cpu
            .filter(|c| !c.is_zero())
            .map(|c| self.certs as f64 / c.as_secs_f64())
    }

    fn summary(&self) -> String {
        format!(
            "{} {}: {} certs in {:.3}s = {:.1}/s (CPU {})",
            self.threads,
            if self.threads == 1 {
                "thread"
            } else {
                "threads"
            },
            self.certs,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.cpu
                .map_or_else(|| "n/a".to_owned(), |c| format!("{:.3}s", c.as_secs_f64()))
        )
    }

    fn batch_percentile(&self, p: f64) -> Duration {
        let mut v = self.batches.clone();
        v.sort();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i]
    }
}

#[derive(Clone, Debug)]
struct KindResult {
    kind: CaKind,
    multi: CertmanRun,
    single: CertmanRun,
    openssl_loop_per_sec: f64,
    openssl_loop_certs: usize,
    speed_sign_per_sec: f64,
}

fn main() {
    let cfg = Config::from_env_and_args();
    std::fs::create_dir_all(&cfg.base_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cfg.base_dir.display()));
    let work = tempfile::Builder::new()
        .prefix("certman-bench-")
        .tempdir_in(&cfg.base_dir)
        .expect("cannot create the bench's temporary directory");
    let fs = filesystem_type(work.path());
    let openssl_version = run_capture("openssl", &["version"])
        .expect("`openssl version` failed: is OpenSSL installed?");
    println!("certman issuance benchmark");
    println!(
        "  certs per certman run: {}   batch: {}   threads: {}{}   openssl loop: {}   openssl speed: {}s   CAs: {}",
        cfg.certs,
        cfg.batch,
        cfg.threads,
        if cfg.threads > 1 { " and 1" } else { "" },
        cfg.openssl_loops,
        cfg.speed_seconds,
        cfg.kinds.iter().map(|k| k.slug()).collect::<Vec<_>>().join(",")
    );
    println!("  {}", openssl_version.trim());
    println!(
        "  stores in {} ({})",
        work.path().display(),
        fs.as_deref().unwrap_or("unknown filesystem")
    );
    if matches!(fs.as_deref(), Some("tmpfs" | "ramfs")) {
        println!(
            "  WARNING: {} is {}: fsync is free there, so the durable rate is meaningless; set CERTMAN_BENCH_DIR to a disk",
            work.path().display(),
            fs.as_deref().unwrap_or_default()
        );
    }
    println!();

    let machine_id = work.path().join("machine-id");
    std::fs::write(&machine_id, "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
        .expect("cannot write the machine-id file");

    let mut results = Vec::new();
    for kind in cfg.kinds.clone() {
        eprintln!("== {}", kind.label());
        let speed_sign_per_sec = openssl_speed(kind, cfg.speed_seconds);
        eprintln!(
            "   openssl speed {}: {:.1} sign/s",
            kind.speed_alg(),
            speed_sign_per_sec
        );
        let multi = certman_run(&cfg, work.path(), &machine_id, kind, cfg.threads);
        eprintln!("   certman, {}", multi.summary());
        let single = if cfg.threads == 1 {
            multi.clone()
        } else {
            let r = certman_run(&cfg, work.path(), &machine_id, kind, 1);
            eprintln!("   certman, {}", r.summary());
            r
        };
        let (openssl_loop_certs, loop_elapsed) = openssl_loop(work.path(), kind, cfg.openssl_loops);
        let openssl_loop_per_sec = if openssl_loop_certs == 0 {
            f64::NAN
        } else {
            openssl_loop_certs as f64 / loop_elapsed.as_secs_f64()
        };
        if openssl_loop_certs > 0 {
            eprintln!(
                "   openssl req -x509 -CA loop: {} certs in {:.3}s = {:.1}/s",
                openssl_loop_certs,
                loop_elapsed.as_secs_f64(),
                openssl_loop_per_sec
            );
        }
        results.push(KindResult {
            kind,
            multi,
            single,
            openssl_loop_per_sec,
            openssl_loop_certs,
            speed_sign_per_sec,
        });
    }

    let all_pass = report(&cfg, &results);
    work.close()
        .expect("cannot remove the bench's temporary directory");
    if cfg.strict && !all_pass {
        std::process::exit(1);
    }
}

/// Prints the table and the goals; true when every goal passed.
fn report(cfg: &Config, results: &[KindResult]) -> bool {
    let t = cfg.threads;
    let plural = |n: usize| if n == 1 { "thread" } else { "threads" };
    let rate = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}/s")
        } else {
            "n/a".to_owned()
        }
    };
    let ratio = |a: f64, b: f64| {
        let r = a / b;
        if r.is_finite() {
            format!("{r:.3}x")
        } else {
            "n/a".to_owned()
        }
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let latency = |r: &CertmanRun| {
        format!(
            "{} / {}",
            ms(r.batch_percentile(0.5)),
            ms(r.batch_percentile(1.0))
        )
    };
    let cpu_rate = |r: &CertmanRun| r.per_cpu_sec().map_or_else(|| "n/a".to_owned(), rate);
    type Cell<'a> = Box<dyn Fn(&KindResult) -> String + 'a>;
    let mut rows: Vec<(String, Cell<'_>)> = Vec::new();
    let multi = t > 1;
    if multi {
        rows.push((
            format!("certman issue_batch, {t} {} (durable)", plural(t)),
            Box::new(|r: &KindResult| rate(r.multi.per_sec())),
        ));
    }
    rows.push((
        "certman issue_batch, 1 thread (durable)".into(),
        Box::new(|r: &KindResult| rate(r.single.per_sec())),
    ));
    rows.push((
        "openssl req -x509 -CA loop (1 process/cert)".into(),
        Box::new(|r: &KindResult| rate(r.openssl_loop_per_sec)),
    ));
    rows.push((
        "openssl speed, CA key sign/s (1 process)".into(),
        Box::new(|r: &KindResult| rate(r.speed_sign_per_sec)),
    ));
    if multi {
        rows.push((
            format!("certman {t}t / openssl speed"),
            Box::new(|r: &KindResult| ratio(r.multi.per_sec(), r.speed_sign_per_sec)),
        ));
    }
    rows.push((
        "certman 1t / openssl speed".into(),
        Box::new(|r: &KindResult| ratio(r.single.per_sec(), r.speed_sign_per_sec)),
    ));
    if multi {
        rows.push((
            format!("certman {t}t / openssl loop"),
            Box::new(|r: &KindResult| ratio(r.multi.per_sec(), r.openssl_loop_per_sec)),
        ));
    }
    rows.push((
        "certman 1t / openssl loop".into(),
        Box::new(|r: &KindResult| ratio(r.single.per_sec(), r.openssl_loop_per_sec)),
    ));
    if multi {
        rows.push((
            format!("certman {t}t, certs per CPU-second"),
            Box::new(|r: &KindResult| cpu_rate(&r.multi)),
        ));
    }
    rows.push((
        "certman 1t, certs per CPU-second".into(),
        Box::new(|r: &KindResult| cpu_rate(&r.single)),
    ));
    if multi {
        rows.push((
            format!("certman {t}t, batch latency p50 / max"),
            Box::new(|r: &KindResult| latency(&r.multi)),
        ));
    }
    rows.push((
        "certman 1t, batch latency p50 / max".into(),
        Box::new(|r: &KindResult| latency(&r.single)),
    ));

    let w0 = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, f)| results.iter().map(f).collect())
        .collect();
    let widths: Vec<usize> = (0..results.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([results[i].kind.label().len()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    println!();
    print!("{:w0$}", "");
    for (r, w) in results.iter().zip(&widths) {
        print!("   {:>w$}", r.kind.label());
    }
    println!();
    for ((label, _), row) in rows.iter().zip(&cells) {
        print!("{label:w0$}");
        for (c, w) in row.iter().zip(&widths) {
            print!("   {c:>w$}");
        }
        println!();
    }
    println!();
    println!(
        "certman: {} leaf certs (P-256 keys, sealed in the store) per run and CA, fresh store each run, issue_batch in batches of {}: \
         one fsync'd SQLite transaction per batch, a cert counts once its batch has committed.",
        cfg.certs, cfg.batch
    );
    if let Some(r) = results.first().filter(|r| r.openssl_loop_certs > 0) {
        println!(
            "openssl loop: {} leaf certs per CA, one `openssl req -x509 -CA` process per cert, run one after another by a single \
             `sh -c` loop and timed as a whole (process start-up + keygen + sign + writing key and cert files; no fsync).",
            r.openssl_loop_certs
        );
    }
    println!(
        "openssl speed: `openssl speed -seconds {} ecdsap256|rsa2048`, one process, raw sign/s of the CA's key.",
        cfg.speed_seconds
    );
    println!();

    let mut all_pass = true;
    for r in results {
        let (line, pass) = match r.kind {
            CaKind::P256 => {
                let v = r.multi.per_sec();
                let mut line = format!(
                    "P-256 CA: certman ({t} {}) {v:.1} durable certs/s >= {P256_GOAL_PER_SEC:.0}/s",
                    plural(t)
                );
                if multi {
                    line += &format!("   [1 thread: {:.1}/s]", r.single.per_sec());
                }
                (line, v >= P256_GOAL_PER_SEC)
            }
            CaKind::Rsa2048 => {
                let v = r.single.per_sec();
                let want = RSA_GOAL_RATIO * r.speed_sign_per_sec;
                let mut line = format!(
                    "RSA-2048 CA: certman (1 thread) {v:.1}/s = {:.3}x openssl speed rsa2048 ({:.1} sign/s) >= {RSA_GOAL_RATIO}x ({want:.1}/s)",
                    v / r.speed_sign_per_sec,
                    r.speed_sign_per_sec,
                );
                if multi {
                    line += &format!(
                        "   [{t} threads: {:.1}/s = {:.3}x]",
                        r.multi.per_sec(),
                        r.multi.per_sec() / r.speed_sign_per_sec
                    );
                }
                (line, v >= want)
            }
        };
        all_pass &= pass;
        println!("{}  {line}", if pass { "PASS" } else { "MISS" });
    }
    all_pass
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Issues `cfg.certs` leaves from a fresh CA of `kind` in a fresh store, then checks the store
/// and one certificate; returns the timing of the issuance alone.
fn certman_run(
    cfg: &Config,
    work: &Path,
    machine_id: &Path,
    kind: CaKind,
    threads: usize,
) -> CertmanRun {
    let dir = work.join(format!("certman-{}-{threads}t", kind.slug()));
    let store_dir = dir.join("store");
    let mut options = certman::app::AppOptions::new(certman::app::StoreLocation::Sqlite {
        dir: store_dir.clone(),
    });
    options.sealing_key = certman::seal::SealingKeySource::MachineId {
        path: machine_id.to_owned(),
    };
    let manager = certman::app::open(&options).expect("cannot open the certman store");

    let mut ca_props = props(&[
        ("common-name", "certman bench CA"),
        ("key-usage", "key-cert-sign,crl-sign"),
        ("days-valid", "3650"),
    ]);
    ca_props.extend(props(&kind.key_props()));
    manager
        .add_template("ca", None, &ca_props)
        .expect("add_template for the CA failed");
    manager
        .sign(&SignRequest {
            template: "ca".into(),
            ..Default::default()
        })
        .expect("signing the self-signed CA failed");

    let mut leaf = TemplateProperties::default();
    for (k, v) in [
        ("key-type", "ec"),
        ("key-size", "prime256v1"),
        ("common-name", "leaf.bench.example"),
        (
            "subject-alt-name",
            "DNS:leaf.bench.example,DNS:www.bench.example",
        ),
        ("key-usage", "digital-signature,tls-server"),
    ] {
        leaf.set(k, v)
            .unwrap_or_else(|e| panic!("leaf template {k}={v}: {e}"));
    }
    let names: Vec<String> = (0..cfg.certs).map(|i| format!("leaf-{i:06}")).collect();

    let mut batches = Vec::with_capacity(cfg.certs.div_ceil(cfg.batch));
    let cpu_start = process_cpu_time();
    let start = Instant::now();
    for chunk in names.chunks(cfg.batch) {
        let t = Instant::now();
        let n = manager
            .issue_batch("ca", &leaf, chunk, threads)
            .expect("issue_batch failed");
        batches.push(t.elapsed());
        assert_eq!(
            n,
            chunk.len(),
            "issue_batch issued fewer certificates than asked"
        );
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_start)
        .map(|(end, begin)| end.saturating_sub(begin));

    // One issued certificate verifies with OpenSSL against the exported CA.
    let export = |name: &str| {
        manager
            .export_certificate(&ExportRequest {
                name: name.to_owned(),
                kind: ExportType::Pem,
                passphrase: None,
                file_name: Some(name.to_owned()),
                dir: dir.clone(),
            })
            .unwrap_or_else(|e| panic!("export-certificate {name}: {e}"))
            .remove(0)
    };
    let ca_crt = export("ca");
    let leaf_name = names.last().expect("at least one certificate");
    let leaf_crt = export(leaf_name);
    openssl_verify(&ca_crt, &leaf_crt);
    drop(manager);

    // The store, reopened by a fresh connection, holds the CA and every leaf with its key.
    let store = SqliteStore::open(&store_dir).expect("cannot reopen the store");
    {
        let txn = store
            .begin(TxnMode::Read)
            .expect("cannot read the reopened store");
        let certs = txn.certificates().expect("cannot list certificates");
        assert_eq!(
            certs.len(),
            cfg.certs + 1,
            "the store should hold the CA and {} leaves",
            cfg.certs
        );
        let ca = txn
            .certificate("ca")
            .expect("cannot read the CA")
            .expect("the CA is not in the store");
        let issued = certs
            .iter()
            .filter(|c| c.cert.issuer_id == Some(ca.id) && c.cert.key_id.is_some())
            .count();
        assert_eq!(issued, cfg.certs, "leaves issued by the CA with a key");
        let last = txn
            .certificate(leaf_name)
            .expect("cannot read the last leaf")
            .expect("the last leaf is not in the store");
        let key_id = last.cert.key_id.expect("the last leaf has no key");
        let key = txn
            .key(&key_id)
            .expect("cannot read the last leaf's key")
            .expect("the last leaf's key is not in the store");
        assert!(
            key.sealed.is_some(),
            "the leaf key is not sealed in the store"
        );
    }
    drop(store);
    std::fs::remove_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));

    CertmanRun {
        threads,
        certs: cfg.certs,
        elapsed,
        cpu,
        batches,
    }
}

/// Runs a command and returns its stdout; None if it could not run or failed.
fn run_capture(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openssl speed -seconds S ALG` in one process; the sign/s figure.
fn openssl_speed(kind: CaKind, seconds: u32) -> f64 {
    let secs = seconds.to_string();
    let out = run_capture("openssl", &["speed", "-seconds", &secs, kind.speed_alg()])
        .unwrap_or_else(|| panic!("openssl speed {} failed", kind.speed_alg()));
    parse_speed_sign_per_sec(&out)
        .unwrap_or_else(|| panic!("no sign/s figure in the output of openssl speed:\n{out}"))
}

/// Parses OpenSSL's human-readable speed table:
///
/// ```text
///                   sign    verify    sign/s verify/s
/// rsa 2048 bits 0.000246s 0.000016s   4066.3  61572.2
/// ```
///
/// The header's columns are right-aligned with the row's last columns, so the column is found
/// by its position from the end (the row label has a varying number of words).
fn parse_speed_sign_per_sec(out: &str) -> Option<f64> {
    let lines: Vec<&str> = out.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.split_whitespace().any(|w| w == "sign/s"))?;
    let header: Vec<&str> = lines[h].split_whitespace().collect();
    let from_end = header.len() - header.iter().position(|w| *w == "sign/s")?;
    let row: Vec<&str> = lines.get(h + 1)?.split_whitespace().collect();
    row.get(row.len().checked_sub(from_end)?)?.parse().ok()
}

/// The OpenSSL leaf profile: what certman's leaf template makes (end entity, digitalSignature,
/// serverAuth, SKI/AKI); subject and SAN come per certificate on the command line.
const OPENSSL_LEAF_CNF: &str = "\
[req]
distinguished_name = dn
x509_extensions = leaf
prompt = no
[dn]
CN = unused
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The shell loop: `$1` certificates, one `openssl req -x509 -CA` process each, sequentially.
const OPENSSL_LOOP_SH: &str = r#"
i=0
while [ "$i" -lt "$1" ]; do
  openssl req -config leaf.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "leaf-$i.key" -out "leaf-$i.crt" -subj "/CN=leaf-$i.bench.example" \
    -addext "subjectAltName=DNS:leaf-$i.bench.example,DNS:www.bench.example" \
    -days 365 -CA ca.crt -CAkey ca.key 2>/dev/null || { echo "openssl req failed at $i" >&2; exit 1; }
  i=$((i+1))
done
"#;

/// Makes a CA of `kind` with OpenSSL and issues `n` leaves from it in one `sh -c` loop; returns
/// the number issued and the loop's wall time (CA creation excluded).
fn openssl_loop(work: &Path, kind: CaKind, n: usize) -> (usize, Duration) {
    if n == 0 {
        return (0, Duration::ZERO);
    }
    let dir = work.join(format!("openssl-{}", kind.slug()));
    std::fs::create_dir_all(&dir).expect("cannot create the openssl loop directory");
    std::fs::write(dir.join("leaf.cnf"), OPENSSL_LEAF_CNF).expect("cannot write leaf.cnf");
    let status = Command::new("openssl")
        .current_dir(&dir)
        .args(["req", "-x509", "-new"])
        .args(kind.openssl_newkey())
        .args(["-nodes", "-keyout", "ca.key", "-out", "ca.crt"])
        .args(["-subj", "/CN=openssl bench CA", "-days", "3650"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("cannot run openssl req for the CA");
    assert!(
        status.success(),
        "openssl could not make the {} CA",
        kind.label()
    );

    let start = Instant::now();
    let status = Command::new("sh")
        .current_dir(&dir)
        .args(["-c", OPENSSL_LOOP_SH, "sh", &n.to_string()])
        .status()
        .expect("cannot run the openssl loop");
    let elapsed = start.elapsed();
    assert!(status.success(), "the openssl req -x509 -CA loop failed");
    openssl_verify(
        &dir.join("ca.crt"),
        &dir.join(format!("leaf-{}.crt", n - 1)),
    );
    let made = std::fs::read_dir(&dir)
        .expect("cannot list the openssl loop directory")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("leaf-") && name.ends_with(".crt")
        })
        .count();
    assert_eq!(
        made, n,
        "the openssl loop should have written {n} certificates"
    );
    std::fs::remove_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
    (n, elapsed)
}

/// User + system CPU time of this process (all threads, exited ones included), from
/// /proc/self/stat (clock ticks, assumed 100 Hz as on every Linux ABI Rust targets).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}
