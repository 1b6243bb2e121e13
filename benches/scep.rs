//! SCEP enrolment benchmark (a plain program, `harness = false`).
//!
//! certman's SCEP server (`certman serve`) against micromdm's `scepserver` (Debian `scep`), both
//! with an RSA-2048 CA, on identical pre-built PKCSReq messages: N distinct CSRs per server and
//! mode (AES-128-CBC + SHA-256; challenge = a certman one-time password, one per enrolment, or
//! micromdm's static challenge), sent once sequentially and once over S parallel streams, one
//! TCP connection per request (`Connection: close`, as SCEP clients do) for both servers. In the
//! same run `openssl speed rsa2048` (one process, and `-multi CORES`) gives the limit set by the
//! CA's RSA private operations, 3 per enrolment (open the envelope, sign the certificate, sign
//! the CertRep). Every reply is checked after the timed part (SUCCESS, recipientNonce, the
//! certificate is for the request's key and CN) and the issued serial numbers are counted for
//! duplicates. Server CPU is utime + stime of the server's PID from /proc/PID/stat. certman
//! runs with `CERTMAN_LOG=warn`; micromdm logs every request (it has no switch for that).
//!
//! Goals: certman ≥ 3 × micromdm's enrolments/s in both modes, 0 duplicate serials, and
//! ≥ 0.5 × the RSA limit in both modes. A missed goal prints MISS; the exit status is non-zero
//! only on errors.
//!
//! Run: `cargo bench --bench scep` (arguments after `--`; the environment is the fallback).
//!
//! | argument          | environment                   | default                            |
//! |-------------------|-------------------------------|------------------------------------|
//! | `--n N`           | `CERTMAN_BENCH_SCEP_N`        | 400 enrolments per server and mode |
//! | `--keys K`        | `CERTMAN_BENCH_SCEP_KEYS`     | 16 device keys                     |
//! | `--streams S`     | `CERTMAN_BENCH_SCEP_STREAMS`  | 4                                  |
//! | `--speed-seconds` | `CERTMAN_BENCH_SPEED_SECONDS` | 3                                  |
//! | `--dir PATH`      | `CERTMAN_BENCH_DIR`           | the system temp dir                |
//!
//! RSA-2048 key generation is slow, so the N requests share K device keys round-robin; each
//! request has its own subject (CN), transactionID and senderNonce, so every CSR and message
//! is distinct. micromdm binds every interface: the bench re-executes itself under
//! `unshare -n` (a private network namespace with only `lo`, marked by
//! `CERTMAN_BENCH_SCEP_NETNS`); where that is not permitted it runs micromdm anyway, only for
//! its own part, and kills it by PID.

mod support;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certman::protocols::scep::message::MessageCertificate;

use support::*;

const CERTMAN: &str = env!("CARGO_BIN_EXE_certman");
const NETNS_MARK: &str = "CERTMAN_BENCH_SCEP_NETNS";
const MICROMDM_CHALLENGE: &str = "bench-challenge";
const VS_MICROMDM: f64 = 3.0;
const VS_RSA_LIMIT: f64 = 0.5;
const RSA_OPS_PER_ENROLMENT: f64 = 3.0;
const WARMUP: usize = 8;

struct Config {
    n: usize,
    keys: usize,
    streams: usize,
    speed_seconds: usize,
    dir: PathBuf,
}

fn config() -> Config {
    Config {
        n: number("--n", "CERTMAN_BENCH_SCEP_N", 400),
        keys: number("--keys", "CERTMAN_BENCH_SCEP_KEYS", 16),
        streams: number("--streams", "CERTMAN_BENCH_SCEP_STREAMS", 4),
        speed_seconds: number("--speed-seconds", "CERTMAN_BENCH_SPEED_SECONDS", 3),
        dir: setting("--dir", "CERTMAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
    }
}

/// Re-executes the bench in a private network namespace unless it runs in one already
/// (then brings `lo` up); returns whether it runs in one.
fn private_network() -> bool {
    if std::env::var_os(NETNS_MARK).is_some() {
        let st = cmd("ip", "link set lo up").status();
        assert!(st.is_ok_and(|s| s.success()), "ip link set lo up failed");
        return true;
    }
    for flags in ["-n", "-r -n"] {
        let probe = cmd("unshare", flags)
            .arg("true")
            .stderr(Stdio::null())
            .status();
        if probe.is_ok_and(|s| s.success()) {
            let st = cmd("unshare", flags)
                .arg(std::env::current_exe().expect("current exe"))
                .args(std::env::args_os().skip(1))
                .env(NETNS_MARK, "1")
                .status()
                .expect("unshare");
            std::process::exit(st.code().unwrap_or(1));
        }
    }
    false
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("free port").port()
}

/// How to start a server on a port.
type Launch<'a> = &'a dyn Fn(u16) -> Command;

/// A server process (killed by PID when dropped) and its SCEP paths.
struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    /// the SCEP path (GetCACert) and what PKIOperation adds to it
    scep: &'static str,
    cgi: &'static str,
    log: PathBuf,
}

impl Server {
    /// Starts `name` as `command(port)` on a free port, logging to `dir/NAME.log`; waits
    /// until GetCACaps answers at `paths[0]`. PKIOperation goes to the two paths joined.
    fn start(name: &'static str, paths: [&'static str; 2], dir: &Path, command: Launch) -> Server {
        let port = free_port();
        eprintln!("{name} on port {port} ...");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("server log");
        let mut command = command(port);
        command.stdout(file.try_clone().expect("log")).stderr(file);
        let child = command.spawn().expect(name);
        let [scep, cgi] = paths;
        let s = Server {
            name,
            child,
            port,
            scep,
            cgi,
            log,
        };
        let t = Instant::now();
        let caps = format!("{scep}?operation=GetCACaps");
        while !matches!(http(port, "GET", &caps, b""), Ok((200, _))) {
            let log = s.log_text();
            assert!(t.elapsed().as_secs() < 30, "{name} does not answer:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// utime + stime of the server process, all its threads.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        let stat = stat.expect("/proc/PID/stat of the server");
        let fields = &stat[stat.rfind(')').expect("stat") + 1..];
        let f: Vec<&str> = fields.split_whitespace().collect();
        let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_micros(ticks * 1_000_000 / hz)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    server: &'static str,
    streams: usize,
    n: usize,
    failures: Vec<String>,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
    serials: Vec<Vec<u8>>,
}

impl Outcome {
    /// successful enrolments per second
    fn rate(&self) -> f64 {
        self.serials.len() as f64 / self.wall.as_secs_f64()
    }
    fn cpu_ms(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.serials.len().max(1) as f64
    }
    /// latency percentile `p` (nearest rank), ms
    fn pct(&self, p: f64) -> f64 {
        let i = (self.latencies.len() as f64 * p).ceil() as usize;
        self.latencies[i.clamp(1, self.latencies.len()) - 1].as_secs_f64() * 1000.0
    }
}

/// Certificates beyond the first with each serial number.
fn dupes<'a>(serials: impl Iterator<Item = &'a Vec<u8>> + Clone) -> usize {
    serials.clone().count() - serials.collect::<HashSet<_>>().len()
}

type Reply = (usize, Duration, Result<(u16, Vec<u8>), String>);

/// Sends `msgs` over `streams` connections at a time (1: sequentially), timing each
/// request; then checks every reply.
fn measure(srv: &Server, ca: &[u8], devices: &[Device], msgs: &[Msg], streams: usize) -> Outcome {
    let path = format!("{}{}?operation=PKIOperation", srv.scep, srv.cgi);
    let next = AtomicUsize::new(0);
    let stream = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(m) = msgs.get(i) else { return mine };
            let t = Instant::now();
            let reply = http(srv.port, "POST", &path, &m.der);
            mine.push((i, t.elapsed(), reply));
        }
    };
    let (cpu0, t0) = (srv.cpu(), Instant::now());
    let mut replies: Vec<Reply> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..streams).map(|_| s.spawn(stream)).collect();
        let joined = workers.into_iter().map(|w| w.join().expect("stream"));
        joined.flatten().collect()
    });
    let (wall, cpu) = (t0.elapsed(), srv.cpu().saturating_sub(cpu0));
    replies.sort_by_key(|r| r.0);
    let (n, server) = (msgs.len(), srv.name);
    let mut o = Outcome {
        server,
        streams,
        n,
        failures: vec![],
        wall,
        cpu,
        latencies: vec![],
        serials: vec![],
    };
    for (i, latency, reply) in replies {
        o.latencies.push(latency);
        match reply.and_then(|r| check(devices, ca, &msgs[i], r)) {
            Ok(serial) => o.serials.push(serial),
            Err(e) => o.failures.push(format!("#{i}: {e}")),
        }
    }
    o.latencies.sort();
    o
}

/// Warm-up, then the sequential and the parallel run against one server; returns both and
/// the duplicate serials over every certificate the server issued in the run.
fn bench_server(
    cfg: &Config,
    srv: &Server,
    devices: &[Device],
    challenge: &mut dyn FnMut() -> String,
) -> (Outcome, Outcome, usize) {
    let name = srv.name;
    let path = format!("{}?operation=GetCACert", srv.scep);
    let ca = match http(srv.port, "GET", &path, b"") {
        Ok((200, der)) if MessageCertificate::parse(&der).is_ok() => der,
        other => panic!("{name} GetCACert is no DER certificate: {other:?}"),
    };
    let t = Instant::now();
    let mut batch = |label: &str, count: usize| -> Vec<Msg> {
        let cn = |i: usize| format!("scep-bench {name} {label} {i:05}");
        let build = |i| build(devices, &ca, i, cn(i), challenge());
        (0..count).map(build).collect()
    };
    let warm = batch("warm-up", WARMUP);
    let (seq, par) = (batch("sequential", cfg.n), batch("parallel", cfg.n));
    let (built, total) = (t.elapsed().as_secs_f64(), WARMUP + 2 * cfg.n);
    eprintln!("  [{name}] {total} messages built in {built:.1}s");
    let w = measure(srv, &ca, devices, &warm, 1);
    let (log, failed) = (srv.log_text(), &w.failures);
    assert!(failed.is_empty(), "{name} warm-up: {failed:?}\n{log}");
    let s = measure(srv, &ca, devices, &seq, 1);
    eprintln!("  [{name}] sequential: {:.1} enrolments/s", s.rate());
    let p = measure(srv, &ca, devices, &par, cfg.streams);
    let (streams, rate) = (cfg.streams, p.rate());
    eprintln!("  [{name}] {streams} streams: {rate:.1} enrolments/s");
    let all = [&w, &s, &p].into_iter().flat_map(|o| o.serials.iter());
    let d = dupes(all);
    (s, p, d)
}

fn main() {
    let isolated = private_network();
    let cfg = config();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::fs::create_dir_all(&cfg.dir).expect("bench dir");
    let mut tmp = tempfile::Builder::new();
    let tmp = tmp.prefix("certman-scep-bench-").tempdir_in(&cfg.dir);
    let tmp = tmp.expect("temp dir");
    let w = tmp.path();
    let mdm_version = run_ok(&mut cmd("scepserver", "-version"), "scepserver");
    let mdm_version = mdm_version.trim();
    let openssl_version = run_ok(&mut cmd("openssl", "version"), "openssl");
    let openssl_version = openssl_version.trim();
    let (n, streams, keys) = (cfg.n, cfg.streams, cfg.keys);
    println!("certman SCEP benchmark: certman serve vs micromdm scepserver {mdm_version}");
    println!("  {n} enrolments per server and mode, sequential and {streams} streams, after {WARMUP} warm-up enrolments (not counted)");
    println!("  RSA-2048 CAs; PKCSReq with AES-128-CBC + SHA-256, built before timing; {keys} RSA-2048 device keys shared round-robin, a distinct CN, transactionID and senderNonce per request");
    println!("  one TCP connection per request (HTTP/1.1, Connection: close) for both servers");
    let dir = w.display();
    println!("  {openssl_version}; {cores} cores; stores in {dir}");
    if !isolated {
        println!("  NOTE: unshare -n is not permitted: micromdm listened on all interfaces while its part ran (killed by PID after)");
    }

    eprintln!("openssl speed rsa2048, 1 process then -multi {cores} ...");
    let speed1 = openssl_speed(cfg.speed_seconds, "");
    let speed_multi = openssl_speed(cfg.speed_seconds, &format!("-multi {cores}"));
    let t = Instant::now();
    let device = |i| Device::new(&format!("device {i:02}"));
    let devices: Vec<Device> = (0..keys).map(device).collect();
    eprintln!("{keys} device keys in {:.1}s", t.elapsed().as_secs_f64());

    // micromdm: its own CA in a file depot, a static challenge; path /scep.
    let depot = w.join("micromdm-depot");
    let init = "ca -init -keySize 2048 -organization certman-bench -depot";
    run_ok(cmd("scepserver", init).arg(&depot), "scepserver ca -init");
    let serve = |port: u16| {
        let args = format!("-port {port} -challenge {MICROMDM_CHALLENGE} -allowrenew 0 -depot");
        let mut c = cmd("scepserver", &args);
        c.arg(&depot);
        c
    };
    let mdm = Server::start("micromdm", ["/scep", ""], w, &serve);
    let (mdm_seq, mdm_par, mdm_dupes) =
        bench_server(&cfg, &mdm, &devices, &mut || MICROMDM_CHALLENGE.into());
    drop(mdm);

    // certman: the seed's SCEP server (RSA-2048 CA), one OTP per enrolment.
    let (store, machine_id) = (w.join("certman-store"), w.join("machine-id"));
    std::fs::write(&machine_id, "0c4f5e2a9b7d41e3a6f8c2d1b0e9a7f3\n").expect("machine-id");
    let certman = |args: &str| {
        let mut c = cmd(CERTMAN, args);
        c.current_dir(w).env("CERTMAN_STORE", &store);
        c.env("CERTMAN_MACHINE_ID_FILE", &machine_id);
        c.env("CERTMAN_LOG", "warn").env_remove("CERTMAN_TOKENS");
        c
    };
    for args in [
        "add common-name=ca name=ca-tpl key-type=rsa key-size=2048",
        "sign ca-tpl name=ca",
        "scep-server add ca-cert=ca path=/scep/test",
    ] {
        run_ok(&mut certman(args), args);
    }
    let t = Instant::now();
    let otp = "scep-server otp generate minutes-valid=60 --json";
    let password = |_| {
        let out = run_ok(&mut certman(otp), otp);
        let v: serde_json::Value = serde_json::from_str(&out).expect(otp);
        v["password"].as_str().expect("password").to_owned()
    };
    let mut otps: Vec<String> = (0..WARMUP + 2 * n).map(password).collect();
    eprintln!("{} OTPs in {:.1}s", otps.len(), t.elapsed().as_secs_f64());
    let serve = |port: u16| certman(&format!("serve listen=127.0.0.1:{port}"));
    let cm = Server::start("certman", ["/scep/test", "/pkiclient.exe"], w, &serve);
    let (cm_seq, cm_par, cm_dupes) =
        bench_server(&cfg, &cm, &devices, &mut || otps.pop().expect("an OTP"));
    drop(cm);

    // ------------------------------------------------------------------ report
    println!();
    println!("| server   | mode       | ok/N     | enrol/s | server CPU ms/enrol | p50 ms | p99 ms | failures | dup serials |");
    println!("|----------|------------|----------|---------|---------------------|--------|--------|----------|-------------|");
    let rows = [&mdm_seq, &mdm_par, &cm_seq, &cm_par];
    for o in rows {
        let mode = match o.streams {
            1 => "sequential".to_owned(),
            s => format!("{s} streams"),
        };
        let ok = format!("{}/{}", o.serials.len(), o.n);
        let (rate, cpu, p50, p99) = (o.rate(), o.cpu_ms(), o.pct(0.5), o.pct(0.99));
        let (fails, dup) = (o.failures.len(), dupes(o.serials.iter()));
        println!("| {:<8} | {mode:<10} | {ok:>8} | {rate:>7.1} | {cpu:>19.2} | {p50:>6.1} | {p99:>6.1} | {fails:>8} | {dup:>11} |", o.server);
    }
    println!("(dup serials: certificates of the row whose serial number an earlier one has)");
    for o in rows {
        for f in o.failures.iter().take(3) {
            println!("  {} ({} stream(s)) failure {f}", o.server, o.streams);
        }
    }
    let rsa_ms = RSA_OPS_PER_ENROLMENT * 1000.0 / speed1;
    let limit1 = speed1 / RSA_OPS_PER_ENROLMENT;
    let limit_multi = speed_multi / RSA_OPS_PER_ENROLMENT;
    let (c1, c2) = (cm_seq.cpu_ms(), cm_par.cpu_ms());
    println!();
    println!("openssl speed rsa2048: {speed1:.1} sign/s (1 process), {speed_multi:.1} sign/s (-multi {cores})");
    println!("  RSA limit (sign/s / 3): {limit1:.1} enrolments/s on 1 core, {limit_multi:.1} on {cores}; 3 private operations = {rsa_ms:.2} ms CPU");
    println!("  certman server CPU per enrolment: {c1:.2} ms sequential, {c2:.2} ms parallel = {:.1}x / {:.1}x the 3 RSA operations", c1 / rsa_ms, c2 / rsa_ms);
    println!("duplicate serials over every certificate issued in the run (warm-up included): certman {cm_dupes}, micromdm {mdm_dupes}");
    println!();
    println!("goals:");
    let r1 = cm_seq.rate() / mdm_seq.rate();
    let r2 = cm_par.rate() / mdm_par.rate();
    let (l1, l2) = (cm_seq.rate() / limit1, cm_par.rate() / limit_multi);
    let goals = [
        ("certman / micromdm, sequential", r1, VS_MICROMDM),
        ("certman / micromdm, parallel", r2, VS_MICROMDM),
        ("certman / RSA limit, sequential", l1, VS_RSA_LIMIT),
        ("certman / RSA limit (-multi), parallel", l2, VS_RSA_LIMIT),
    ];
    for (what, value, goal) in goals {
        let verdict = if value >= goal { "PASS" } else { "MISS" };
        println!("  {what:<44} {value:>7.2}x  (goal >= {goal}x) {verdict}");
    }
    let verdict = if cm_dupes == 0 { "PASS" } else { "MISS" };
    let what = "certman duplicate serials";
    println!("  {what:<44} {cm_dupes:>7}   (goal 0) {verdict}");
}
