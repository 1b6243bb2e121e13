//! Scale-out benchmark (a plain program, `harness = false`; issue 16).
//!
//! SCEP enrolments/s and CRL requests/s through 1, 2 and 3 `certman serve` nodes on one
//! PostgreSQL store, and through 1 node on the SQLite store (the embedded default), in one run
//! on this machine. Requests go round-robin over the nodes, S parallel streams, one TCP
//! connection per request (as SCEP clients and CRL fetchers do). The enrolments are pre-built
//! PKCSReq messages (certman's own SCEP message layer; AES-128-CBC + SHA-256, an RSA-2048 CA, a
//! one-time password each; N distinct CSRs sharing K device keys), as in benches/scep.rs;
//! every reply is checked after the timed part and issued serials are counted for duplicates.
//!
//! Where the time goes, per enrolment: CPU (utime + stime from /proc) of the certman nodes, of
//! the PostgreSQL server (the postmaster and every backend), and of this load generator; how
//! busy the whole machine was (/proc/stat: other work shares these cores); the statements and
//! transactions the nodes sent PostgreSQL and the server's execution time (pg_stat_statements;
//! statements are prepared once per pooled connection, so one statement = one round trip); a
//! trivial statement's round trip (pgbench, `SELECT 1`). In the same run `openssl speed
//! rsa2048` over 1 process and all cores gives the ceiling of the CA's 3 RSA private
//! operations per enrolment. One node on each store also runs sequentially: the latency
//! difference is what the PostgreSQL round trips cost one request.
//!
//! PostgreSQL: `$CERTMAN_BENCH_POSTGRES_URL` if set (pg_stat_statements only if that server
//! preloads it), else a private server started by `scripts/postgres.sh` in a temp dir, with
//! pg_stat_statements preloaded, stopped at the end. Each run makes a fresh database.
//!
//! Run: `cargo bench --bench scale_out` (arguments after `--`; the environment is the fallback).
//!
//! | argument          | environment                     | default                          |
//! |-------------------|---------------------------------|----------------------------------|
//! | `--n N`           | `CERTMAN_BENCH_SCEP_N`          | 300 enrolments per configuration |
//! | `--crl-n N`       | `CERTMAN_BENCH_CRL_N`           | 3000 CRL requests per config     |
//! | `--keys K`        | `CERTMAN_BENCH_SCEP_KEYS`       | 16 device keys                   |
//! | `--streams S`     | `CERTMAN_BENCH_SCEP_STREAMS`    | 4                                |
//! | `--speed-seconds` | `CERTMAN_BENCH_SPEED_SECONDS`   | 3                                |
//! | `--dir PATH`      | `CERTMAN_BENCH_DIR`             | the system temp dir              |

mod support;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

const CERTMAN: &str = env!("CARGO_BIN_EXE_certman");
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SCEP: &str = "/scep/bench/pkiclient.exe?operation=PKIOperation";
const CRL: &str = "/crl/ca.crl";
/// `listening on` is logged at info; each SCEP reply would be too.
const LOG_FILTER: &str = "warn,certman::service=info,certman::service::scep=warn";
const RSA_OPS_PER_ENROLMENT: f64 = 3.0;
const WARMUP: usize = 8;

struct Config {
    n: usize,
    crl_n: usize,
    keys: usize,
    streams: usize,
    speed_seconds: usize,
    dir: PathBuf,
}

fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// /proc/PID/stat fields after the command name: (ppid, utime + stime, cutime + cstime).
fn proc_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((n(1)? as u32, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// CPU seconds of `pids`.
fn cpu_of(pids: &[u32]) -> f64 {
    ticks_to_secs(pids.iter().filter_map(|p| proc_stat(*p)).map(|s| s.1).sum())
}

/// CPU seconds of the PostgreSQL server: the postmaster, its live children, and those it
/// reaped (cutime + cstime).
fn pg_cpu(postmaster: u32) -> f64 {
    let Some((_, own, reaped)) = proc_stat(postmaster) else {
        return 0.0;
    };
    let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let children = pids
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|s| s.0 == postmaster)
        .map(|s| s.1);
    ticks_to_secs(own + reaped + children.sum::<u64>())
}

/// (busy, all) CPU seconds of the machine so far, every core (/proc/stat).
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let all: u64 = v.iter().take(8).sum();
    (ticks_to_secs(all - v[3] - v[4]), ticks_to_secs(all))
}

// ------------------------------------------------------------------ PostgreSQL

/// `url` (`postgresql://AUTHORITY/DB?QUERY`) naming database `db` (and `user`) instead.
fn with_db(url: &str, db: &str, user: Option<&str>) -> String {
    let start = url.find("://").expect("a URL") + 3;
    let slash = url[start..].find('/').map_or(url.len(), |i| start + i);
    let end = url[slash..].find('?').map_or(url.len(), |i| slash + i);
    let mut u = format!("{}/{db}{}", &url[..slash], &url[end..]);
    if let Some(user) = user {
        u = u.replace("user=certman", &format!("user={user}"));
    }
    u
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let args = [
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        url,
    ];
    let out = Command::new(format!("{PG_BIN}/psql")).args(args).output();
    let out = out.map_err(|e| format!("psql: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    match out.status.success() {
        true => Ok(text(&out.stdout)),
        false => Err(format!("psql {sql}: {}", text(&out.stderr))),
    }
}

/// The server the bench uses, a fresh database on it, and how to see its statements.
struct Postgres {
    /// the private server, if the bench started one (dropped after the database)
    _server: Option<PrivateServer>,
    postmaster: u32,
    /// URL of the fresh database, and of a database to query statistics in
    url: String,
    stats_url: String,
    db: String,
    statements: bool,
}

fn postgres_script(action: &str, dir: &Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");
    let mut c = cmd("bash", &format!("{script} {action}"));
    run_ok(c.arg(dir).stderr(Stdio::inherit()), "scripts/postgres.sh")
}

/// The private server (stopped when dropped: pg_ctl, else by the postmaster's PID).
struct PrivateServer {
    dir: tempfile::TempDir,
    postmaster: u32,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        postgres_script("stop", self.dir.path());
        if proc_stat(self.postmaster).is_some() {
            unsafe { libc::kill(self.postmaster as i32, libc::SIGINT) };
        }
    }
}

/// The postmaster's PID: the parent of a background process (the checkpointer, …).
fn postmaster(url: &str) -> u32 {
    let sql = "SELECT min(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()";
    let pid = psql(url, sql).expect("PostgreSQL").parse().expect("a PID");
    proc_stat(pid)
        .expect("PostgreSQL's processes in /proc (same machine)")
        .0
}

impl Postgres {
    fn start(cfg: &Config) -> Postgres {
        let (private, base, admin) = match std::env::var("CERTMAN_BENCH_POSTGRES_URL") {
            Ok(url) if !url.trim().is_empty() => (None, url.clone(), url),
            _ => {
                let mut b = tempfile::Builder::new();
                let dir = b.prefix("certman-scale-out-pg-").tempdir_in(&cfg.dir);
                let dir = dir.expect("postgres dir");
                let url = postgres_script("start", dir.path()).trim().to_owned();
                let url = url.lines().last().expect("the URL").to_owned();
                let mut server = PrivateServer {
                    dir,
                    postmaster: postmaster(&url),
                };
                let admin = with_db(&url, "certman", Some("postgres"));
                let preload = "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'";
                psql(&admin, preload).expect("preload pg_stat_statements");
                postgres_script("stop", server.dir.path());
                postgres_script("start", server.dir.path());
                server.postmaster = postmaster(&url);
                (Some(server), url, admin)
            }
        };
        let postmaster = postmaster(&base);
        let db = format!("certman_scale_out_{}", std::process::id());
        psql(&base, &format!("CREATE DATABASE {db}")).expect("a fresh database");
        let create = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements";
        let probe = "SELECT count(*) FROM pg_stat_statements";
        let statements = psql(&admin, create)
            .and_then(|_| psql(&admin, probe))
            .is_ok();
        let url = with_db(&base, &db, None);
        let stats_url = admin;
        Postgres {
            _server: private,
            postmaster,
            url,
            stats_url,
            db,
            statements,
        }
    }

    fn reset_statements(&self) {
        if self.statements {
            psql(&self.stats_url, "SELECT pg_stat_statements_reset()").expect("reset");
        }
    }

    /// (statements, transactions, execution ms) on the fresh database since the reset.
    fn statements(&self) -> Option<[f64; 3]> {
        let db = &self.db;
        let sql = format!(
            "SELECT sum(calls), sum(calls) FILTER (WHERE query ILIKE 'begin%'), \
             sum(total_exec_time) FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{db}')"
        );
        let out = psql(&self.stats_url, &sql)
            .ok()
            .filter(|_| self.statements)?;
        let v: Vec<f64> = out.split('|').map(|x| x.parse().unwrap_or(0.0)).collect();
        Some([v[0], v[1], v[2]])
    }

    /// Seconds per round trip of `SELECT 1`, one client, prepared (pgbench).
    fn round_trip(&self, dir: &Path) -> f64 {
        let script = dir.join("select1.sql");
        std::fs::write(&script, "SELECT 1;\n").expect("pgbench script");
        let mut c = cmd(format!("{PG_BIN}/pgbench"), "-n -M prepared -c 1 -T 2 -f");
        let out = run_ok(c.arg(&script).arg(&self.url), "pgbench");
        let tps = out.lines().find_map(|l| {
            let v = l.strip_prefix("tps = ")?.split_whitespace().next()?;
            v.parse::<f64>().ok()
        });
        1.0 / tps.unwrap_or_else(|| panic!("no tps in pgbench's output:\n{out}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let drop_db = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db);
        let base = with_db(&self.url, "postgres", None);
        if let Err(e) = psql(&base, &drop_db) {
            eprintln!("{e}");
        }
    }
}

// ------------------------------------------------------------------ stores and nodes

/// A store: how to run certman on it.
struct Store {
    label: &'static str,
    dir: PathBuf,
    vars: Vec<(&'static str, String)>,
}

impl Store {
    fn certman(&self, args: &str, node: usize) -> Command {
        let mut c = cmd(CERTMAN, args);
        c.current_dir(&self.dir).env_remove("CERTMAN_TOKENS");
        c.env("CERTMAN_LOG", LOG_FILTER);
        let machine_id = self.dir.join(format!("machine-id-{node}"));
        if !machine_id.exists() {
            let id = format!("{:032x}\n", (node as u128 + 1) * 0x9e37_79b9_7f4a_7c15);
            std::fs::write(&machine_id, id).expect("machine id");
        }
        c.env("CERTMAN_MACHINE_ID_FILE", machine_id);
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    /// An RSA-2048 CA `ca` (its CRL at /crl/ca.crl) and a SCEP server on it.
    fn set_up(&self) {
        for args in [
            "add name=ca-tpl common-name=ca key-type=rsa key-size=2048 key-usage=key-cert-sign,crl-sign",
            "sign ca-tpl name=ca",
            "scep-server add ca-cert=ca path=/scep/bench",
        ] {
            run_ok(&mut self.certman(args, 0), args);
        }
    }

    /// `count` one-time passwords, made by CLI processes on 2 threads.
    fn otps(&self, count: usize) -> Vec<String> {
        let otp = "scep-server otp generate minutes-valid=120 --json";
        let one = || {
            let out = run_ok(&mut self.certman(otp, 0), otp);
            let v: serde_json::Value = serde_json::from_str(&out).expect(otp);
            v["password"].as_str().expect("password").to_owned()
        };
        std::thread::scope(|s| {
            let halves = [count / 2, count - count / 2];
            let w: Vec<_> = halves
                .map(|k| s.spawn(move || (0..k).map(|_| one()).collect::<Vec<_>>()))
                .into_iter()
                .collect();
            w.into_iter().flat_map(|h| h.join().expect("otp")).collect()
        })
    }
}

/// A `certman serve` node (killed by PID when dropped).
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(store: &Store, i: usize) -> Node {
        let log = store.dir.join(format!("node{i}.log"));
        let file = std::fs::File::create(&log).expect("node log");
        let mut c = store.certman("serve listen=127.0.0.1:0", i);
        c.stdout(file.try_clone().expect("log")).stderr(file);
        let mut node = Node {
            child: c.spawn().expect("certman serve"),
            port: 0,
        };
        let t = Instant::now();
        while node.port == 0 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let addr = text.lines().find_map(|l| l.split("listening on ").nth(1));
            node.port = addr
                .and_then(|a| a.trim().rsplit(':').next()?.parse().ok())
                .unwrap_or(0);
            let exited = node.child.try_wait().ok().flatten();
            assert!(exited.is_none(), "node {i} exited: {exited:?}\n{text}");
            assert!(
                t.elapsed().as_secs() < 30,
                "node {i} does not listen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ the measurement

/// What one timed part cost.
#[derive(Default, Clone)]
struct Cost {
    n: usize,
    ok: usize,
    wall: f64,
    certman: f64,
    pg: f64,
    client: f64,
    machine_busy: f64,
    machine_all: f64,
    /// (statements, transactions, execution ms) in PostgreSQL
    statements: Option<[f64; 3]>,
    p50: f64,
    failures: Vec<String>,
}

impl Cost {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall
    }
    /// ms per successful request
    fn per(&self, secs: f64) -> f64 {
        secs * 1000.0 / self.ok.max(1) as f64
    }
}

type Reply = (usize, Duration, Result<(u16, Vec<u8>), String>);

/// Sends request `i` (`req(i)` = method, path, body) to node `i % nodes` over `streams`
/// connections at a time; returns the replies in order, and the costs but for `ok`.
fn timed<'a>(
    nodes: &[Node],
    pg: Option<&Postgres>,
    count: usize,
    streams: usize,
    req: &(dyn Fn(usize) -> (&'static str, &'a str, &'a [u8]) + Sync),
) -> (Vec<Reply>, Cost) {
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    let pg_now = || pg.map_or(0.0, |p| pg_cpu(p.postmaster));
    let me = std::process::id();
    if let Some(p) = pg {
        p.reset_statements();
    }
    let next = AtomicUsize::new(0);
    let replies = Mutex::new(Vec::with_capacity(count));
    let stream = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            return;
        }
        let (method, path, body) = req(i);
        let t = Instant::now();
        let r = http(nodes[i % nodes.len()].port, method, path, body);
        replies.lock().expect("replies").push((i, t.elapsed(), r));
    };
    let (c0, p0, l0, m0) = (cpu_of(&pids), pg_now(), cpu_of(&[me]), machine_cpu());
    let t0 = Instant::now();
    std::thread::scope(|s| (0..streams).for_each(|_| drop(s.spawn(stream))));
    let wall = t0.elapsed().as_secs_f64();
    let (c1, p1, l1, m1) = (cpu_of(&pids), pg_now(), cpu_of(&[me]), machine_cpu());
    let mut replies = replies.into_inner().expect("replies");
    replies.sort_by_key(|r| r.0);
    let mut lat: Vec<Duration> = replies.iter().map(|r| r.1).collect();
    lat.sort();
    let cost = Cost {
        n: count,
        wall,
        certman: c1 - c0,
        pg: p1 - p0,
        client: l1 - l0,
        machine_busy: m1.0 - m0.0,
        machine_all: m1.1 - m0.1,
        statements: pg.and_then(Postgres::statements),
        p50: lat
            .get(lat.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        ..Default::default()
    };
    (replies, cost)
}

/// A configuration's figures.
struct Row {
    label: String,
    enrol: Cost,
    crl: Cost,
    sequential: Option<Cost>,
    serials: Vec<Vec<u8>>,
}

/// `nodes` nodes on `store`: warm-up, enrolments over S streams (and sequentially), CRLs.
fn run(cfg: &Config, store: &Store, pg: Option<&Postgres>, devices: &[Device], k: usize) -> Row {
    let label = format!("{} x{k}", store.label);
    eprintln!("[{label}] OTPs, nodes, messages ...");
    let sequential = (k == 1).then_some(cfg.n / 2);
    let total = WARMUP * k + cfg.n + sequential.unwrap_or(0);
    let mut otps = store.otps(total);
    let nodes: Vec<Node> = (0..k).map(|i| Node::start(store, i)).collect();
    let ca = match http(
        nodes[0].port,
        "GET",
        "/scep/bench/pkiclient.exe?operation=GetCACert",
        b"",
    ) {
        Ok((200, der)) => der,
        other => panic!("GetCACert: {other:?}"),
    };
    let mut batch = |what: &str, count: usize| -> Vec<Msg> {
        let cn = |i| format!("scale-out {label} {what} {i:05}");
        (0..count)
            .map(|i| build(devices, &ca, i, cn(i), otps.pop().expect("an OTP")))
            .collect()
    };
    let (warm, par) = (batch("warm-up", WARMUP * k), batch("parallel", cfg.n));
    let seq = sequential.map(|s| batch("sequential", s));
    let mut serials = Vec::new();
    let mut enrol = |msgs: &[Msg], streams: usize| -> Cost {
        let req = |i: usize| ("POST", SCEP, msgs[i].der.as_slice());
        let (replies, mut cost) = timed(&nodes, pg, msgs.len(), streams, &req);
        for (i, _, reply) in replies {
            match reply.and_then(|r| check(devices, &ca, &msgs[i], r)) {
                Ok(serial) => serials.push(serial),
                Err(e) => cost.failures.push(format!("#{i}: {e}")),
            }
        }
        cost.ok = cost.n - cost.failures.len();
        cost
    };
    let w = enrol(&warm, 1);
    assert!(w.failures.is_empty(), "[{label}] warm-up: {:?}", w.failures);
    let sequential = seq.map(|m| enrol(&m, 1));
    let par = enrol(&par, cfg.streams);
    eprintln!("[{label}] {:.1} enrolments/s", par.rate());
    let crl_req = |_| ("GET", CRL, &b""[..]);
    let (replies, mut crl) = timed(&nodes, pg, cfg.crl_n, cfg.streams, &crl_req);
    for (i, _, r) in replies {
        match r {
            Ok((200, der)) if der.first() == Some(&0x30) => crl.ok += 1,
            other => crl.failures.push(format!("#{i}: {:?}", other.map(|r| r.0))),
        }
    }
    eprintln!("[{label}] {:.1} CRL requests/s", crl.rate());
    Row {
        label,
        enrol: par,
        crl,
        sequential,
        serials,
    }
}

fn main() {
    let cfg = Config {
        n: number("--n", "CERTMAN_BENCH_SCEP_N", 300),
        crl_n: number("--crl-n", "CERTMAN_BENCH_CRL_N", 3000),
        keys: number("--keys", "CERTMAN_BENCH_SCEP_KEYS", 16),
        streams: number("--streams", "CERTMAN_BENCH_SCEP_STREAMS", 4),
        speed_seconds: number("--speed-seconds", "CERTMAN_BENCH_SPEED_SECONDS", 3),
        dir: setting("--dir", "CERTMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::create_dir_all(&cfg.dir).expect("bench dir");
    let tmp = tempfile::Builder::new()
        .prefix("certman-scale-out-")
        .tempdir_in(&cfg.dir);
    let tmp = tmp.expect("temp dir");
    let w = tmp.path();

    eprintln!("openssl speed rsa2048, 1 process then -multi {cores} ...");
    let speed1 = openssl_speed(cfg.speed_seconds, "");
    let speed_multi = openssl_speed(cfg.speed_seconds, &format!("-multi {cores}"));
    let devices: Vec<Device> = (0..cfg.keys)
        .map(|i| Device::new(&format!("device {i:02}")))
        .collect();

    let pg = Postgres::start(&cfg);
    let rtt = pg.round_trip(w);
    let seal_key = w.join("seal.key");
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("seal key");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&seal_key, hex).expect("seal key");
    std::fs::set_permissions(&seal_key, std::fs::Permissions::from_mode(0o600)).expect("0600");
    let mkdir = |d: &str| {
        let p = w.join(d);
        std::fs::create_dir_all(&p).expect("dir");
        p
    };
    let sqlite = Store {
        label: "SQLite",
        dir: mkdir("sqlite"),
        vars: vec![(
            "CERTMAN_STORE",
            w.join("sqlite/store").display().to_string(),
        )],
    };
    let postgres = Store {
        label: "PostgreSQL",
        dir: mkdir("postgres"),
        vars: vec![
            ("CERTMAN_STORE", pg.url.clone()),
            (
                "CERTMAN_SEAL_KEY_SOURCE",
                format!("file:{}", seal_key.display()),
            ),
        ],
    };
    sqlite.set_up();
    postgres.set_up();
    let mut rows = vec![run(&cfg, &sqlite, None, &devices, 1)];
    for k in 1..=3 {
        rows.push(run(&cfg, &postgres, Some(&pg), &devices, k));
    }
    report(&cfg, &rows, cores, (speed1, speed_multi), rtt);
    drop(pg);
}

/// `value` per successful request of `c`, in ms, or "-".
fn ms(c: &Cost, value: Option<f64>, digits: usize) -> String {
    value.map_or("-".into(), |v| {
        format!("{:.digits$}", v * 1000.0 / c.ok.max(1) as f64)
    })
}

fn report(cfg: &Config, rows: &[Row], cores: usize, rsa: (f64, f64), rtt: f64) {
    let (sqlite, pg1) = (&rows[0], &rows[1]);
    let (n, crl_n, streams, keys) = (cfg.n, cfg.crl_n, cfg.streams, cfg.keys);
    println!("certman scale-out: `certman serve` nodes on one PostgreSQL 15 store vs 1 node on SQLite, {cores} cores");
    println!("  per configuration {n} SCEP enrolments (RSA-2048 CA, AES-128-CBC, an OTP each, {keys} device keys) and {crl_n} GET {CRL};");
    println!("  {streams} streams round-robin over the nodes, a TCP connection per request; nodes, PostgreSQL and the load generator share the cores");
    println!();
    println!("| config        | enrol ok/N | enrol/s | vs PG x1 | vs SQLite | p50 ms | CRL/s | vs PG x1 | vs SQLite | fail |");
    println!("|---------------|------------|---------|----------|-----------|--------|-------|----------|-----------|------|");
    for r in rows {
        let (e, c) = (&r.enrol, &r.crl);
        let ok = format!("{}/{}", e.ok, e.n);
        let (er, cr, p50) = (e.rate(), c.rate(), e.p50);
        let (ep, es) = (er / pg1.enrol.rate(), er / sqlite.enrol.rate());
        let (cp, cs) = (cr / pg1.crl.rate(), cr / sqlite.crl.rate());
        let fail = e.failures.len() + c.failures.len();
        let l = &r.label;
        println!("| {l:<13} | {ok:>10} | {er:>7.1} | {ep:>7.2}x | {es:>8.2}x | {p50:>6.1} | {cr:>5.0} | {cp:>7.2}x | {cs:>8.2}x | {fail:>4} |");
    }
    println!();
    println!("Per enrolment (parallel run): CPU ms of the nodes / PostgreSQL / load generator; the machine's busy share (others: not ours); PostgreSQL statements, transactions, server execution ms");
    println!("| config        | certman | postgres | load gen | busy | others | PG stmts | PG xacts | PG exec ms | CRL: certman / postgres CPU ms |");
    println!("|---------------|---------|----------|----------|------|--------|----------|----------|------------|--------------------------------|");
    for r in rows {
        let (e, c, l) = (&r.enrol, &r.crl, &r.label);
        let busy = 100.0 * e.machine_busy / e.machine_all.max(1e-9);
        let others = (e.machine_busy - e.certman - e.pg - e.client).max(0.0);
        let others = 100.0 * others / e.machine_all.max(1e-9);
        let st = |i: usize, d| ms(e, e.statements.map(|s| s[i] / 1000.0), d);
        let pg = |c: &Cost| ms(c, c.statements.map(|_| c.pg), 2);
        let (cm, pgc, lg) = (ms(e, Some(e.certman), 2), pg(e), ms(e, Some(e.client), 2));
        let crl = format!(
            "{} / {}",
            ms(c, Some(c.certman), 3),
            ms(c, c.statements.map(|_| c.pg), 3)
        );
        let (s0, s1, s2) = (st(0, 1), st(1, 2), st(2, 2));
        println!("| {l:<13} | {cm:>7} | {pgc:>8} | {lg:>8} | {busy:>3.0}% | {others:>5.0}% | {s0:>8} | {s1:>8} | {s2:>10} | {crl:>30} |");
    }
    let (rsa1, rsa_n) = rsa;
    let rsa_ms = RSA_OPS_PER_ENROLMENT * 1000.0 / rsa1;
    println!();
    println!("openssl speed rsa2048: {rsa1:.0} sign/s (1 process), {rsa_n:.0} sign/s (-multi {cores}): 3 private operations per enrolment = {rsa_ms:.2} ms CPU, a ceiling of {:.0} enrolments/s on {cores} cores", rsa_n / 3.0);
    let seq = |r: &Row| r.sequential.as_ref().expect("a sequential run").clone();
    let (sq, sp) = (seq(sqlite), seq(pg1));
    println!(
        "PostgreSQL round trips, 1 node, {} sequential enrolments:",
        sp.n
    );
    if let Some([s, t, x]) = sp.statements.map(|v| v.map(|x| x / sp.ok.max(1) as f64)) {
        let trips = s * rtt * 1000.0;
        println!("  {s:.1} statements (one round trip each: prepared once per pooled connection) in {t:.2} transactions per enrolment");
        println!("  x {:.3} ms per round trip (pgbench SELECT 1) = {trips:.2} ms; server execution {x:.2} ms (commits' WAL flushes not included)", rtt * 1000.0);
    } else {
        println!("  statements not counted: that server does not preload pg_stat_statements");
    }
    let (ls, lp) = (sq.p50, sp.p50);
    println!(
        "  p50 latency: SQLite {ls:.2} ms, PostgreSQL {lp:.2} ms (+{:.2} ms)",
        lp - ls
    );
    let cpu = |e: &Cost| e.per(e.certman + e.pg + e.client);
    let (cs, cp) = (cpu(&sqlite.enrol), cpu(&pg1.enrol));
    let pg_only = pg1.enrol.per(pg1.enrol.pg);
    println!("  CPU per enrolment, all our processes, 1 node: SQLite {cs:.2} ms, PostgreSQL {cp:.2} ms ({pg_only:.2} ms in PostgreSQL) = a CPU ceiling of {:.0} / {:.0} enrolments/s on {cores} cores", cores as f64 * 1000.0 / cs, cores as f64 * 1000.0 / cp);
    let all: Vec<&Vec<u8>> = rows[1..].iter().flat_map(|r| r.serials.iter()).collect();
    let dupes = all.len() - all.iter().collect::<HashSet<_>>().len();
    println!(
        "duplicate serials over the {} PostgreSQL enrolments of the run: {dupes}",
        all.len()
    );
    for r in rows {
        for f in r.enrol.failures.iter().chain(&r.crl.failures).take(3) {
            println!("  {} failure {f}", r.label);
        }
    }
}
