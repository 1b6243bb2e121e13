//! `certman script` bulk benchmark (a plain program, `harness = false`).
//!
//! Writes a script of L lines issuing P-256 leaves under a P-256 CA (`add name=lN …` then
//! `sign lN ca=ca`, so L/2 certificates), and runs it with the release `certman script` — one
//! process, one open store, **each line its own durable transaction** (SQLite WAL,
//! `synchronous=FULL`: one fsync per line). In the same run it measures:
//!
//! * the `openssl req -x509 -newkey ec -CA` loop, one process per certificate (what operators
//!   script today);
//! * the disk's flush rate in the same directory (4 KiB write + fdatasync, repeated): a
//!   durable line can't be faster than one flush, so this is the ceiling on that disk;
//! * the same script on tmpfs (`/dev/shm`), where a flush costs nothing: certman's own work
//!   per line, with the transactions unchanged.
//!
//! It prints lines/s, certificates/s, lines per CPU-second of certman, the ratios against the
//! openssl loop, and PASS/MISS against the goal (≥ 1 500 lines/s).
//!
//! Run: `cargo bench --bench script` (`-- --lines 2000 --openssl 100` for a quick run).
//!
//! | argument        | environment                   | default              |
//! |-----------------|-------------------------------|----------------------|
//! | `--lines N`     | `CERTMAN_BENCH_LINES`         | 10 000               |
//! | `--openssl N`   | `CERTMAN_BENCH_OPENSSL`       | 300                  |
//! | `--dir PATH`    | `CERTMAN_BENCH_DIR`           | the system temp dir  |

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GOAL_LINES_PER_SEC: f64 = 1500.0;

struct Config {
    lines: usize,
    openssl: usize,
    dir: PathBuf,
}

fn config() -> Config {
    let env = |k: &str| std::env::var(k).ok();
    let mut c = Config {
        lines: env("CERTMAN_BENCH_LINES")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        openssl: env("CERTMAN_BENCH_OPENSSL")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        dir: env("CERTMAN_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let next = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--lines" => c.lines = next.parse().expect("--lines N"),
            "--openssl" => c.openssl = next.parse().expect("--openssl N"),
            "--dir" => c.dir = PathBuf::from(next),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    c.lines = c.lines.max(2) / 2 * 2;
    c
}

fn certman() -> &'static str {
    env!("CARGO_BIN_EXE_certman")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU seconds (user + system) of the waited-for children so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

struct Run {
    wall: Duration,
    cpu: f64,
}

/// The script on a fresh store in `dir`.
fn script_run(dir: &Path, lines: usize) -> Run {
    let store = dir.join("store");
    let c = |args: &[&str]| {
        let mut cmd = Command::new(certman());
        cmd.env("CERTMAN_STORE", &store).args(args);
        cmd
    };
    run(
        &mut c(&[
            "add",
            "name=ca",
            "common-name=Bench CA",
            "key-type=ec",
            "key-usage=key-cert-sign,crl-sign",
        ]),
        "add ca",
    );
    run(&mut c(&["sign", "ca"]), "sign ca");
    let path = dir.join("bulk.rsc");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("script file"));
    writeln!(f, "# {lines} lines: P-256 leaves under a P-256 CA").unwrap();
    writeln!(f, "/certificate").unwrap();
    for i in 0..lines / 2 {
        writeln!(
            f,
            "add name=leaf{i} common-name=leaf{i}.example subject-alt-name=DNS:leaf{i}.example key-type=ec"
        )
        .unwrap();
        writeln!(f, "sign leaf{i} ca=ca").unwrap();
    }
    drop(f);
    let cpu0 = children_cpu();
    let t = Instant::now();
    run(
        c(&["-q", "script"]).arg(&path).stdout(Stdio::null()),
        "certman script",
    );
    let wall = t.elapsed();
    let cpu = children_cpu() - cpu0;
    let out = c(&["print", "where", "issued", "count-only"])
        .output()
        .expect("count");
    let n: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(n, lines / 2, "every leaf issued");
    Run { wall, cpu }
}

/// `openssl req -x509 -newkey ec` in `dir`: a P-256 key and certificate, self-signed or by
/// `ca.pem`/`ca.key`.
fn openssl_req(dir: &Path, name: &str, subject: &str, by_ca: bool) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &pem,
        "-subj",
        subject,
        "-days",
        "365",
    ];
    if by_ca {
        args.extend(["-CA", "ca.pem", "-CAkey", "ca.key"]);
    }
    run(
        Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .stderr(Stdio::null()),
        "openssl",
    );
}

/// `openssl req -x509 -newkey ec -CA`, one process per certificate.
fn openssl_loop(dir: &Path, n: usize) -> Run {
    openssl_req(dir, "ca", "/CN=Bench CA", false);
    let cpu0 = children_cpu();
    let t = Instant::now();
    for i in 0..n {
        openssl_req(dir, &format!("l{i}"), &format!("/CN=leaf{i}.example"), true);
    }
    Run {
        wall: t.elapsed(),
        cpu: children_cpu() - cpu0,
    }
}

/// Flushes per second of the disk under `dir`: 4 KiB written and fdatasync'd, 300 times.
fn flush_rate(dir: &Path) -> f64 {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::create(dir.join("flush")).expect("flush file");
    let block = [0u8; 4096];
    let n = 300;
    let t = Instant::now();
    for i in 0..n {
        use std::os::unix::fs::FileExt;
        f.write_at(&block, (i % 16) * 4096).expect("write");
        // SAFETY: fdatasync on an open descriptor.
        unsafe { libc::fdatasync(f.as_raw_fd()) };
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let c = config();
    let disk = tempfile::Builder::new()
        .prefix("certman-bench-script")
        .tempdir_in(&c.dir)
        .expect("bench dir");
    let shm = Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").expect("tmpfs dir"));
    let certs = (c.lines / 2) as f64;
    println!(
        "certman script: {} lines ({} P-256 leaves), each line one durable transaction",
        c.lines,
        c.lines / 2
    );

    let ossl_dir = tempfile::tempdir_in(&c.dir).expect("openssl dir");
    let ossl = openssl_loop(ossl_dir.path(), c.openssl);
    let ossl_rate = c.openssl as f64 / ossl.wall.as_secs_f64();
    println!(
        "openssl req -x509 -CA loop: {} certificates in {:.2} s = {:.0} certs/s ({:.0} per CPU-s)",
        c.openssl,
        ossl.wall.as_secs_f64(),
        ossl_rate,
        c.openssl as f64 / ossl.cpu.max(1e-3)
    );

    let flushes = flush_rate(disk.path());
    println!(
        "disk under {}: {:.0} flushes/s (4 KiB + fdatasync): the ceiling for durable lines there",
        c.dir.display(),
        flushes
    );

    let report = |label: &str, r: Run| {
        let lines = c.lines as f64 / r.wall.as_secs_f64();
        let verdict = if lines >= GOAL_LINES_PER_SEC {
            "PASS"
        } else {
            "MISS"
        };
        println!(
            "certman script on {label}: {:.2} s = {:.0} lines/s, {:.0} certs/s ({:.1}x the openssl loop), \
             {:.0} lines per CPU-s — {verdict} (goal {GOAL_LINES_PER_SEC:.0} lines/s)",
            r.wall.as_secs_f64(),
            lines,
            certs / r.wall.as_secs_f64(),
            certs / r.wall.as_secs_f64() / ossl_rate,
            c.lines as f64 / r.cpu.max(1e-3),
        );
    };
    report(
        &format!("disk ({})", c.dir.display()),
        script_run(disk.path(), c.lines),
    );
    if let Some(d) = &shm {
        report(
            "tmpfs (/dev/shm, flush free)",
            script_run(d.path(), c.lines),
        );
    }
}
