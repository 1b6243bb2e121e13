//! CLI benchmark (a plain program, `harness = false`): what a script pays per `certman`
//! process, against OpenSSL's one-process-per-certificate loop measured in the same run.
//!
//! It runs the `certman` binary cargo built for this bench (release with `cargo bench`):
//!
//! 1. **The loop**: N times `certman add` + `certman sign ca=ca` of a P-256 leaf under a P-256
//!    CA (software keys, sealed; a fresh store; every command its own durable transaction)
//!    run by a `certman agent` on the store (`CERTMAN_AGENT=require`), N times the same with
//!    each command a process of its own (`CERTMAN_AGENT=off`), and N times
//!    `openssl req -x509 -newkey ec … -CA ca.crt -CAkey ca.key` (same profile: CN, SAN, key
//!    usage, EKU, SKI/AKI), one certificate of each in turns (the order rotating every round)
//!    so that a burst of load on a shared machine hits all three. Prints certificates/s for
//!    each and the ratios. Goal: certman with its agent ≥ 1.5 × the OpenSSL loop.
//! 2. **One `sign`**: the `sign` processes of the loop without the agent, timed on their own:
//!    median and p95.
//!    Goal: ≤ 10 ms.
//! 3. **`print` of 10,000 entries**: a store of 10,000 certificates (issued through the
//!    library's `issue_batch`, not 10,000 processes), then `certman print` (the table, read
//!    from a pipe as a script would) several times: median. Goal: ≤ 100 ms.
//!
//! Run: `cargo bench --bench cli_loop` (add `-- --loops 50 --entries 2000` for a quick run).
//!
//! | argument       | environment                 | default             |
//! |----------------|-----------------------------|---------------------|
//! | `--loops N`    | `CERTMAN_BENCH_LOOPS`       | 200                 |
//! | `--entries N`  | `CERTMAN_BENCH_ENTRIES`     | 10 000              |
//! | `--prints N`   | `CERTMAN_BENCH_PRINTS`      | 7                   |
//! | `--dir PATH`   | `CERTMAN_BENCH_DIR`         | the system temp dir |
//! | `--strict`     | `CERTMAN_BENCH_STRICT=1`    | off (on: exit 1 on a MISS) |
//! | `--keep`       |                             | off (on: the stores stay, for profiling) |
//! |                | `CERTMAN_BENCH_BIN`         | the `certman` cargo built |
//!
//! The stores go under `--dir`, which should be a real disk: on tmpfs an fsync costs nothing
//! (the bench warns). OpenSSL writes its files without fsync; certman's commands are durable.

#[path = "common/mod.rs"]
mod common;
use common::{filesystem_type, openssl_verify, parse_num};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: the one cargo built, or `$CERTMAN_BENCH_BIN` (another build, for a
/// before/after in the same conditions).
fn certman_bin() -> PathBuf {
    std::env::var_os("CERTMAN_BENCH_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_certman")),
            PathBuf::from,
        )
}
const LOOP_GOAL_RATIO: f64 = 1.5;
const SIGN_GOAL: Duration = Duration::from_millis(10);
const PRINT_GOAL: Duration = Duration::from_millis(100);

struct Config {
    loops: usize,
    entries: usize,
    prints: usize,
    base_dir: PathBuf,
    strict: bool,
    keep: bool,
}

impl Config {
    fn from_env_and_args() -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut c = Config {
            loops: env("CERTMAN_BENCH_LOOPS").map_or(200, |v| parse_num("CERTMAN_BENCH_LOOPS", &v)),
            entries: env("CERTMAN_BENCH_ENTRIES")
                .map_or(10_000, |v| parse_num("CERTMAN_BENCH_ENTRIES", &v)),
            prints: env("CERTMAN_BENCH_PRINTS")
                .map_or(7, |v| parse_num("CERTMAN_BENCH_PRINTS", &v)),
            base_dir: env("CERTMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
            strict: env("CERTMAN_BENCH_STRICT").is_some_and(|v| v != "0"),
            keep: false,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let (key, inline) = match args[i].split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (args[i].clone(), None),
            };
            let takes_value =
                matches!(key.as_str(), "--loops" | "--entries" | "--prints" | "--dir");
            let value = if takes_value {
                inline.or_else(|| {
                    i += 1;
                    Some(
                        args.get(i)
                            .unwrap_or_else(|| panic!("{key} needs a value"))
                            .clone(),
                    )
                })
            } else {
                None
            };
            match (key.as_str(), value) {
                ("--loops", Some(v)) => c.loops = parse_num(&key, &v),
                ("--entries", Some(v)) => c.entries = parse_num(&key, &v),
                ("--prints", Some(v)) => c.prints = parse_num(&key, &v),
                ("--dir", Some(v)) => c.base_dir = PathBuf::from(v),
                ("--strict", _) => c.strict = true,
                ("--keep", _) => c.keep = true,
                _ => {} // `--bench` from cargo, filters, anything else
            }
            i += 1;
        }
        assert!(c.loops >= 1, "--loops must be at least 1");
        assert!(c.prints >= 1, "--prints must be at least 1");
        c
    }
}

/// The OpenSSL leaf profile: what certman's leaf template makes (see benches/issue.rs).
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

/// How a command runs: by the bench's `certman agent` (`CERTMAN_AGENT=require`: a command
/// the agent does not run fails), or in a process of its own (`CERTMAN_AGENT=off`).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Agent,
    Process,
}

/// A certman command on the bench's store, in a process of its own; panics (with its
/// stderr) if it fails.
fn certman(store: &Path, machine_id: &Path, cwd: &Path, args: &[&str]) {
    certman_via(Via::Process, store, machine_id, cwd, args)
}

/// The environment every certman command of the bench has (the agent's too).
fn bench_env<'c>(cmd: &'c mut Command, store: &Path, machine_id: &Path) -> &'c mut Command {
    cmd.env("CERTMAN_STORE", store)
        .env("CERTMAN_MACHINE_ID_FILE", machine_id)
        .env_remove("CERTMAN_TOKENS")
}

/// [`certman`], run `via` the agent or a process of its own.
fn certman_via(via: Via, store: &Path, machine_id: &Path, cwd: &Path, args: &[&str]) {
    let mut cmd = Command::new(certman_bin());
    bench_env(&mut cmd, store, machine_id).env(
        "CERTMAN_AGENT",
        if via == Via::Agent { "require" } else { "off" },
    );
    let out = cmd
        .current_dir(cwd)
        .env("CERTMAN_STORE", store)
        .env("CERTMAN_MACHINE_ID_FILE", machine_id)
        .env_remove("CERTMAN_TOKENS")
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("cannot run certman");
    assert!(
        out.status.success(),
        "certman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct LoopResult {
    /// add + sign by the agent
    agent: Vec<Duration>,
    /// add + sign, each command a process of its own
    certman: Vec<Duration>,
    signs: Vec<Duration>,
    adds: Vec<Duration>,
    openssl: Vec<Duration>,
}

/// `certman agent` on the bench's store, for as long as it is kept.
struct Agent(std::process::Child);

impl Agent {
    /// Starts it and waits for its announcement (it serves from then on).
    fn start(store: &Path, machine_id: &Path, cwd: &Path) -> Agent {
        use std::io::BufRead;
        let mut cmd = Command::new(certman_bin());
        bench_env(&mut cmd, store, machine_id).env("CERTMAN_AGENT", "off");
        let mut child = cmd
            .current_dir(cwd)
            .args(["agent", "idle-timeout=0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start certman agent");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("agent stdout"))
            .read_line(&mut line)
            .expect("cannot read the agent's announcement");
        assert!(
            line.contains("serving"),
            "certman agent did not start: {line:?}"
        );
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: it removes its socket and ends
        // SAFETY: kill sends a signal to the child this struct owns.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn cli_loop(cfg: &Config, work: &Path, machine_id: &Path) -> LoopResult {
    let store = work.join("loop-store");
    let cm_dir = work.join("certman-files");
    let os_dir = work.join("openssl-files");
    for d in [&cm_dir, &os_dir] {
        std::fs::create_dir_all(d).expect("cannot create a work directory");
    }
    certman(
        &store,
        machine_id,
        &cm_dir,
        &[
            "add",
            "name=ca",
            "common-name=certman bench CA",
            "key-usage=key-cert-sign,crl-sign",
            "key-type=ec",
            "key-size=prime256v1",
            "days-valid=3650",
        ],
    );
    certman(&store, machine_id, &cm_dir, &["sign", "ca"]);
    std::fs::write(os_dir.join("leaf.cnf"), OPENSSL_LEAF_CNF).expect("cannot write leaf.cnf");
    run_ok(
        Command::new("openssl")
            .current_dir(&os_dir)
            .args(["req", "-x509", "-new", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-keyout", "ca.key", "-out", "ca.crt"])
            .args(["-subj", "/CN=openssl bench CA", "-days", "3650"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl req (CA)",
    );

    let agent = Agent::start(&store, machine_id, &cm_dir);
    let mut r = LoopResult {
        agent: Vec::with_capacity(cfg.loops),
        certman: Vec::with_capacity(cfg.loops),
        signs: Vec::with_capacity(cfg.loops),
        adds: Vec::with_capacity(cfg.loops),
        openssl: Vec::with_capacity(cfg.loops),
    };
    for i in 0..cfg.loops {
        // add + sign of one leaf; (add, sign) times
        let add_sign = |via: Via, name: &str| {
            let cn = format!("common-name={name}.bench.example");
            let san = format!("subject-alt-name=DNS:{name}.bench.example,DNS:www.bench.example");
            let t = Instant::now();
            certman_via(
                via,
                &store,
                machine_id,
                &cm_dir,
                &[
                    "add",
                    &format!("name={name}"),
                    &cn,
                    &san,
                    "key-usage=digital-signature,tls-server",
                    "key-type=ec",
                    "key-size=prime256v1",
                ],
            );
            let added = t.elapsed();
            let s = Instant::now();
            certman_via(via, &store, machine_id, &cm_dir, &["sign", name, "ca=ca"]);
            (added, s.elapsed())
        };
        let name = format!("leaf-{i}");
        let run_openssl = || {
            let t = Instant::now();
            run_ok(
                Command::new("openssl")
                    .current_dir(&os_dir)
                    .args(["req", "-config", "leaf.cnf", "-x509", "-new"])
                    .args([
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                    ])
                    .args(["-keyout", &format!("{name}.key")])
                    .args(["-out", &format!("{name}.crt")])
                    .args(["-subj", &format!("/CN={name}.bench.example")])
                    .args([
                        "-addext",
                        &format!("subjectAltName=DNS:{name}.bench.example,DNS:www.bench.example"),
                    ])
                    .args(["-days", "365", "-CA", "ca.crt", "-CAkey", "ca.key"]),
                "openssl req -x509 -CA",
            );
            t.elapsed()
        };
        // the three in turns, the order rotating every round
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let (a, s) = add_sign(Via::Agent, &format!("agent-{i}"));
                    r.agent.push(a + s);
                }
                1 => {
                    let (a, s) = add_sign(Via::Process, &name);
                    r.adds.push(a);
                    r.signs.push(s);
                    r.certman.push(a + s);
                }
                _ => r.openssl.push(run_openssl()),
            }
        }
    }
    drop(agent);

    // The last leaf of each verifies against its CA.
    let last = format!("leaf-{}", cfg.loops - 1);
    certman(&store, machine_id, &cm_dir, &["export-certificate", "ca"]);
    certman(&store, machine_id, &cm_dir, &["export-certificate", &last]);
    let last_agent = format!("agent-{}", cfg.loops - 1);
    certman(
        &store,
        machine_id,
        &cm_dir,
        &["export-certificate", &last_agent],
    );
    openssl_verify(
        &cm_dir.join("cert_export_ca.crt"),
        &cm_dir.join(format!("cert_export_{last_agent}.crt")),
    );
    openssl_verify(
        &cm_dir.join("cert_export_ca.crt"),
        &cm_dir.join(format!("cert_export_{last}.crt")),
    );
    openssl_verify(&os_dir.join("ca.crt"), &os_dir.join(format!("{last}.crt")));
    r
}

/// A store of `entries` certificates (a CA and its leaves, through the library), then the
/// wall time of each `certman print` of it.
fn print_run(cfg: &Config, work: &Path, machine_id: &Path) -> Vec<Duration> {
    use certman::manager::{SignRequest, TemplateProperties};
    let store = work.join("print-store");
    let mut options =
        certman::app::AppOptions::new(certman::app::StoreLocation::Sqlite { dir: store.clone() });
    options.sealing_key = certman::seal::SealingKeySource::MachineId {
        path: machine_id.to_owned(),
    };
    let manager = certman::app::open(&options).expect("cannot open the print store");
    let props = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    manager
        .add_template(
            "ca",
            None,
            &props(&[
                ("common-name", "print bench CA"),
                ("key-usage", "key-cert-sign,crl-sign"),
                ("key-type", "ec"),
                ("key-size", "prime256v1"),
            ]),
        )
        .expect("add_template ca");
    manager
        .sign(&SignRequest {
            template: "ca".into(),
            ..Default::default()
        })
        .expect("sign ca");
    let mut leaf = TemplateProperties::default();
    for (k, v) in [
        ("key-type", "ec"),
        ("key-size", "prime256v1"),
        ("common-name", "leaf.print.example"),
        ("subject-alt-name", "DNS:leaf.print.example"),
        ("key-usage", "digital-signature,tls-server"),
    ] {
        leaf.set(k, v).expect("leaf template");
    }
    let names: Vec<String> = (1..cfg.entries.max(1))
        .map(|i| format!("leaf-{i:06}"))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for chunk in names.chunks(1000) {
        manager
            .issue_batch("ca", &leaf, chunk, threads)
            .expect("issue_batch");
    }
    drop(manager);

    let mut times = Vec::with_capacity(cfg.prints);
    for _ in 0..cfg.prints {
        let t = Instant::now();
        let mut child = Command::new(certman_bin())
            .env("CERTMAN_STORE", &store)
            .env("CERTMAN_MACHINE_ID_FILE", machine_id)
            .env_remove("CERTMAN_TOKENS")
            .env("CERTMAN_AGENT", "off")
            .arg("print")
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run certman print");
        let mut text = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut text)
            .expect("cannot read certman print");
        let status = child.wait().expect("certman print");
        times.push(t.elapsed());
        assert!(status.success(), "certman print failed");
        let lines = text.lines().filter(|l| l.contains("leaf-")).count();
        assert_eq!(lines, names.len(), "print listed {lines} leaves");
    }
    times
}

fn main() {
    let cfg = Config::from_env_and_args();
    std::fs::create_dir_all(&cfg.base_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cfg.base_dir.display()));
    let work = tempfile::Builder::new()
        .prefix("certman-cli-bench-")
        .tempdir_in(&cfg.base_dir)
        .expect("cannot create the bench's temporary directory");
    let fs = filesystem_type(work.path());
    println!("certman CLI benchmark");
    println!("  binary: {}", certman_bin().display());
    println!(
        "  loops: {}   print entries: {}   prints: {}",
        cfg.loops, cfg.entries, cfg.prints
    );
    println!(
        "  {}",
        String::from_utf8_lossy(
            &Command::new("openssl")
                .arg("version")
                .output()
                .expect("`openssl version` failed: is OpenSSL installed?")
                .stdout
        )
        .trim()
    );
    println!(
        "  stores in {} ({})",
        work.path().display(),
        fs.as_deref().unwrap_or("unknown filesystem")
    );
    if matches!(fs.as_deref(), Some("tmpfs" | "ramfs")) {
        println!(
            "  WARNING: fsync is free on {}: set CERTMAN_BENCH_DIR to a disk",
            fs.unwrap_or_default()
        );
    }
    let machine_id = work.path().join("machine-id");
    std::fs::write(&machine_id, "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
        .expect("cannot write the machine-id file");

    eprintln!(
        "== loop: {} x (certman add + sign) by the agent, {} x in processes of their own, {} x openssl req -x509 -CA",
        cfg.loops, cfg.loops, cfg.loops
    );
    let r = cli_loop(&cfg, work.path(), &machine_id);
    eprintln!("== print: a store of {} certificates", cfg.entries);
    let prints = print_run(&cfg, work.path(), &machine_id);

    let total = |v: &[Duration]| v.iter().sum::<Duration>();
    let agent_rate = r.agent.len() as f64 / total(&r.agent).as_secs_f64();
    let certman_rate = r.certman.len() as f64 / total(&r.certman).as_secs_f64();
    let openssl_rate = r.openssl.len() as f64 / total(&r.openssl).as_secs_f64();
    let ratio = agent_rate / openssl_rate;
    let process_ratio = certman_rate / openssl_rate;
    let sign_median = percentile(&r.signs, 0.5);
    let sign_p95 = percentile(&r.signs, 0.95);
    let print_median = percentile(&prints, 0.5);

    println!();
    println!(
        "certman add + sign, agent          {agent_rate:8.1} certs/s   median {}",
        ms(percentile(&r.agent, 0.5))
    );
    println!(
        "certman add + sign, no agent       {certman_rate:8.1} certs/s   median {} (add {} + sign {})",
        ms(percentile(&r.certman, 0.5)),
        ms(percentile(&r.adds, 0.5)),
        ms(sign_median)
    );
    println!(
        "openssl req -x509 -CA (1 process)  {openssl_rate:8.1} certs/s   median {}",
        ms(percentile(&r.openssl, 0.5))
    );
    println!("certman (agent) / openssl          {ratio:8.3}x");
    println!("certman (no agent) / openssl       {process_ratio:8.3}x");
    println!(
        "certman sign                       median {}   p95 {}",
        ms(sign_median),
        ms(sign_p95)
    );
    println!(
        "certman print, {} entries       median {}   min {}   max {}",
        cfg.entries,
        ms(print_median),
        ms(percentile(&prints, 0.0)),
        ms(percentile(&prints, 1.0))
    );
    println!();
    let goals = [
        (
            format!(
                "certman add+sign loop (agent) {ratio:.3}x the openssl loop >= {LOOP_GOAL_RATIO}x"
            ),
            ratio >= LOOP_GOAL_RATIO,
        ),
        (
            format!(
                "certman sign median {} <= {}",
                ms(sign_median),
                ms(SIGN_GOAL)
            ),
            sign_median <= SIGN_GOAL,
        ),
        (
            format!(
                "certman print of {} entries median {} <= {}",
                cfg.entries,
                ms(print_median),
                ms(PRINT_GOAL)
            ),
            print_median <= PRINT_GOAL,
        ),
    ];
    let mut all = true;
    for (line, pass) in &goals {
        all &= pass;
        println!("{}  {line}", if *pass { "PASS" } else { "MISS" });
    }
    if cfg.keep {
        println!("stores kept in {}", work.keep().display());
    } else {
        work.close()
            .expect("cannot remove the bench's temporary directory");
    }
    if cfg.strict && !all {
        std::process::exit(1);
    }
}
