//! CRL benchmark (a plain program, `harness = false`).
//!
//! For a P-256 CA and an RSA-2048 CA, each in a fresh store with N revoked certificates
//! (default 100 000), it measures in the same run:
//!
//! * **full build**: `crl renew CA` — every entry read back from the store's rows, the CRL
//!   assembled, signed and stored durably (one fsync'd transaction) — against
//!   `openssl ca -gencrl` over an `index.txt` holding the same N revocations (same key, same
//!   digest). Goal: certman ≤ 0.25 × OpenSSL's time.
//! * **one more revocation**: `issued-revoke NAME` on a CA that already lists N — the row, the
//!   new CRL (the previous CRL's entries plus one), its signature and the commit. Goal ≤ 50 ms.
//!
//! Run: `cargo bench --bench crl` (`-- --revoked 10000` or `CERTMAN_BENCH_REVOKED` for a quick
//! run; `--only p256` / `CERTMAN_BENCH_ONLY`; `--dir PATH` / `CERTMAN_BENCH_DIR` for the stores,
//! which should be on a real disk; `--strict` / `CERTMAN_BENCH_STRICT=1` exits 1 on a MISS).
//! The CRLs made are checked with `openssl crl -verify`, and their entry count is checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certman::app::{AppOptions, StoreLocation};
use certman::manager::TemplateProperties;
use certman::manager::{ExportRequest, ExportType, SignRequest};
use certman::seal::SealingKeySource;
use certman::secret::Passphrase;
use certman::store::sqlite::SqliteStore;
use certman::store::{Store, TxnMode};

const FULL_GOAL_RATIO: f64 = 0.25;
const ONE_MORE_GOAL: Duration = Duration::from_millis(50);
const ONE_MORE_SAMPLES: usize = 20;
const FULL_SAMPLES: usize = 3;

struct Config {
    revoked: usize,
    kinds: Vec<&'static str>,
    dir: PathBuf,
    strict: bool,
}

fn config() -> Config {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut c = Config {
        revoked: env("CERTMAN_BENCH_REVOKED").map_or(100_000, |v| {
            v.replace('_', "").parse().expect("CERTMAN_BENCH_REVOKED")
        }),
        kinds: vec!["p256", "rsa2048"],
        dir: env("CERTMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
        strict: env("CERTMAN_BENCH_STRICT").is_some_and(|v| v != "0"),
    };
    if let Some(v) = env("CERTMAN_BENCH_ONLY") {
        c.kinds = kinds(&v);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let (k, inline) = match args[i].split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (args[i].clone(), None),
        };
        let mut value = || {
            inline.clone().unwrap_or_else(|| {
                i += 1;
                args.get(i)
                    .cloned()
                    .unwrap_or_else(|| panic!("{k} needs a value"))
            })
        };
        match k.as_str() {
            "--revoked" => c.revoked = value().replace('_', "").parse().expect("--revoked"),
            "--only" => c.kinds = kinds(&value()),
            "--dir" => c.dir = PathBuf::from(value()),
            "--strict" => c.strict = true,
            _ => {}
        }
        i += 1;
    }
    assert!(c.revoked >= 1, "--revoked must be at least 1");
    c
}

fn kinds(v: &str) -> Vec<&'static str> {
    v.split(',')
        .map(|k| match k.trim() {
            "p256" => "p256",
            "rsa2048" => "rsa2048",
            other => panic!("unknown CA kind '{other}': expected p256 or rsa2048"),
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn openssl(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// UTCTime as OpenSSL's index.txt writes it.
fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("time")
        .format("%y%m%d%H%M%SZ")
        .to_string()
}

struct Outcome {
    kind: &'static str,
    certman_full: Duration,
    openssl_full: Duration,
    one_more_median: Duration,
    one_more_max: Duration,
    crl_bytes: usize,
}

fn run(cfg: &Config, work: &Path, kind: &'static str) -> Outcome {
    let dir = work.join(kind);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let machine_id = dir.join("machine-id");
    std::fs::write(&machine_id, "5b8c1de04a2f4c6b9a7e3f1d2c4b6a80\n").expect("machine-id");
    let store_dir = dir.join("store");
    let mut options = AppOptions::new(StoreLocation::Sqlite {
        dir: store_dir.clone(),
    });
    options.sealing_key = SealingKeySource::MachineId { path: machine_id };
    let manager = certman::app::open(&options).expect("open store");
    let (kt, ks) = match kind {
        "p256" => ("ec", "prime256v1"),
        _ => ("rsa", "2048"),
    };
    let props = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    manager
        .add_template(
            "ca",
            None,
            &props(&[
                ("common-name", "certman CRL bench CA"),
                ("key-usage", "key-cert-sign,crl-sign"),
                ("days-valid", "3650"),
                ("key-type", kt),
                ("key-size", ks),
                ("digest-algorithm", "sha256"),
            ]),
        )
        .expect("CA template");
    manager
        .sign(&SignRequest {
            template: "ca".into(),
            ca_crl_host: Some("127.0.0.1:8080".into()),
            ..Default::default()
        })
        .expect("sign CA");

    // N certificates issued and revoked (the setup, not measured), plus a few for the
    // one-more-revocation samples.
    let mut leaf = TemplateProperties::default();
    for (k, v) in [
        ("key-type", "ec"),
        ("common-name", "leaf.bench.example"),
        ("key-usage", "digital-signature,tls-server"),
    ] {
        leaf.set(k, v).expect("leaf template");
    }
    let names: Vec<String> = (0..cfg.revoked).map(|i| format!("r{i:07}")).collect();
    let extra: Vec<String> = (0..ONE_MORE_SAMPLES).map(|i| format!("x{i:03}")).collect();
    let t = Instant::now();
    for chunk in names.chunks(5_000).chain(std::iter::once(&extra[..])) {
        manager.issue_batch("ca", &leaf, chunk, 2).expect("issue");
    }
    for chunk in names.chunks(20_000) {
        manager.revoke(chunk, None).expect("revoke");
    }
    eprintln!(
        "  [{kind}] setup: {} issued and revoked in {:.1}s",
        cfg.revoked,
        t.elapsed().as_secs_f64()
    );

    // certman: full build from the rows.
    let full: Vec<Duration> = (0..FULL_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            manager.renew_crl("ca").expect("renew");
            t.elapsed()
        })
        .collect();
    let listing = manager.crl_listing().expect("crl print");
    assert_eq!(
        listing[0].entries as usize, cfg.revoked,
        "entries in the full CRL"
    );

    // OpenSSL: the same revocations in index.txt, the same CA key (exported, then decrypted
    // once so that OpenSSL does not pay for the export's PBKDF2 on every run).
    let pass = "bench-passphrase";
    let files = manager
        .export_certificate(&ExportRequest {
            name: "ca".into(),
            kind: ExportType::Pem,
            passphrase: Some(Passphrase::new(pass.to_owned())),
            file_name: Some("ca".into()),
            dir: dir.clone(),
        })
        .expect("export CA");
    let (crt, key) = (files[0].clone(), files[1].clone());
    let plain = dir.join("ca-plain.key");
    openssl(
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            &format!("pass:{pass}"),
            "-out",
            plain.to_str().unwrap(),
        ],
        &dir,
    );
    let mut index = String::with_capacity(cfg.revoked * 80);
    {
        let store = SqliteStore::open(&store_dir).expect("reopen");
        let txn = store.begin(TxnMode::Read).expect("read");
        for c in txn.certificates().expect("certificates") {
            if let Some(at) = c.revoked_at {
                if c.cert.name.starts_with('r') {
                    index.push_str(&format!(
                        "R\t{}\t{}\t{}\tunknown\t/CN=leaf.bench.example\n",
                        utc(c.cert.not_after),
                        utc(at),
                        c.cert.serial
                    ));
                }
            }
        }
    }
    let ossl = dir.join("openssl-ca");
    std::fs::create_dir_all(&ossl).expect("openssl dir");
    std::fs::write(ossl.join("index.txt"), &index).expect("index.txt");
    std::fs::write(ossl.join("index.txt.attr"), "unique_subject = no\n").expect("attr");
    std::fs::write(ossl.join("crlnumber"), "01\n").expect("crlnumber");
    std::fs::write(
        ossl.join("ca.cnf"),
        "[ca]\ndefault_ca = bench\n[bench]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 2\nunique_subject = no\n",
    )
    .expect("ca.cnf");
    let openssl_full: Vec<Duration> = (0..FULL_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            openssl(
                &[
                    "ca",
                    "-gencrl",
                    "-batch",
                    "-config",
                    "ca.cnf",
                    "-keyfile",
                    plain.to_str().unwrap(),
                    "-cert",
                    crt.to_str().unwrap(),
                    "-out",
                    "crl.pem",
                ],
                &ossl,
            );
            t.elapsed()
        })
        .collect();
    let text = openssl(&["crl", "-in", "crl.pem", "-noout", "-text"], &ossl);
    assert_eq!(
        text.matches("Serial Number:").count(),
        cfg.revoked,
        "OpenSSL's CRL lists every revocation"
    );

    // One more revocation, each on top of everything before.
    let one_more: Vec<Duration> = extra
        .iter()
        .map(|n| {
            let t = Instant::now();
            manager
                .revoke(std::slice::from_ref(n), None)
                .expect("revoke one");
            t.elapsed()
        })
        .collect();
    let (_, der) = manager.crl_of("ca").expect("CRL");
    let crl_file = dir.join("certman.crl");
    std::fs::write(&crl_file, &der).expect("write CRL");
    let out = openssl(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_file.to_str().unwrap(),
            "-noout",
            "-CAfile",
            crt.to_str().unwrap(),
            "-verify",
        ],
        &dir,
    );
    assert!(out.contains("verify OK"), "openssl crl -verify: {out}");
    let listing = manager.crl_listing().expect("crl print");
    assert_eq!(
        listing[0].entries as usize,
        cfg.revoked + ONE_MORE_SAMPLES,
        "entries after the single revocations"
    );
    Outcome {
        kind,
        certman_full: median(full),
        openssl_full: median(openssl_full),
        one_more_median: median(one_more.clone()),
        one_more_max: one_more.into_iter().max().unwrap_or_default(),
        crl_bytes: der.len(),
    }
}

fn main() {
    let cfg = config();
    std::fs::create_dir_all(&cfg.dir).expect("bench dir");
    let work = tempfile::Builder::new()
        .prefix("certman-crl-bench-")
        .tempdir_in(&cfg.dir)
        .expect("temp dir");
    println!(
        "certman CRL benchmark: {} revoked certificates per CA; {}",
        cfg.revoked,
        openssl(&["version"], work.path()).trim()
    );
    let mut miss = false;
    for kind in cfg.kinds.clone() {
        let o = run(&cfg, work.path(), kind);
        let ratio = o.certman_full.as_secs_f64() / o.openssl_full.as_secs_f64();
        let full_ok = ratio <= FULL_GOAL_RATIO;
        let one_ok = o.one_more_median <= ONE_MORE_GOAL;
        miss |= !full_ok || !one_ok;
        println!("{} CA ({} KiB CRL):", o.kind, o.crl_bytes / 1024);
        println!(
            "  full build: certman {} vs openssl ca -gencrl {} = {:.3}x  (goal <= {FULL_GOAL_RATIO}x) {}",
            ms(o.certman_full),
            ms(o.openssl_full),
            ratio,
            if full_ok { "PASS" } else { "MISS" }
        );
        println!(
            "  one more revocation -> new CRL: median {}, max {} over {ONE_MORE_SAMPLES}  (goal <= {}) {}",
            ms(o.one_more_median),
            ms(o.one_more_max),
            ms(ONE_MORE_GOAL),
            if one_ok { "PASS" } else { "MISS" }
        );
    }
    if miss && cfg.strict {
        std::process::exit(1);
    }
}
