//! Several `certman serve` nodes on one store (issue 16): three nodes on one PostgreSQL
//! database, with CLI writers issuing and revoking and SCEP clients enrolling through every
//! node at once, keep every rule of the store contract; one node at a time leads the timers'
//! jobs, and when the leader is killed another takes over within one interval (PostgreSQL, and
//! SQLite's processes on one machine).
//!
//! The PostgreSQL tests need `$CERTMAN_TEST_POSTGRES_URL` (scripts/test.sh starts a server):
//! without it they skip with a reason, and fail in CI.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use certman::protocols::scep::message::{
    ContentCipher, MessageDigest, MessageType, PkiStatus, ReplyPayload, RequestContent,
};
use common::daemon::{http_get, Daemon};
use common::scep::{http_post, otp, Device};
use common::{openssl_output, random_hex, Env};
use sha2::{Digest, Sha256};

/// The CRLs served: (CA, cRLNumber) -> every distinct DER seen with that number.
type SeenCrls = HashMap<(usize, u64), BTreeSet<Vec<u8>>>;

/// Nodes of the store.
const NODES: usize = 3;
/// CLI processes writing at once.
const WRITERS: usize = 8;
/// Certificates each writer issues (it revokes every other one).
const ISSUES_PER_WRITER: usize = 4;
/// Devices enrolling through each node.
const DEVICES_PER_NODE: usize = 3;
/// One-time passwords that two devices present at once, at two different nodes.
const CONTESTED_OTPS: usize = 3;
const CAS: [&str; 2] = ["ca1", "ca2"];
const SCEP_PATH: &str = "/scep/a/pkiclient.exe";

/// `env` sealing with a key file every node has (each node has its own machine id).
fn sealing_with_a_shared_key(env: Env) -> Env {
    use std::os::unix::fs::PermissionsExt;
    let path = env.root().join("seal.key");
    std::fs::write(&path, random_hex(32)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.with_env(
        "CERTMAN_SEAL_KEY_SOURCE",
        format!("file:{}", path.display()),
    )
}

/// Starts node `i` with its own machine id, the config `config` (if any) and `vars`.
fn node(env: &Env, i: usize, config: Option<&Path>, vars: &[(&str, &str)]) -> Daemon {
    let machine_id = env.root().join(format!("machine-id-node{i}"));
    std::fs::write(&machine_id, format!("{}\n", random_hex(16))).unwrap();
    let mid = machine_id.to_str().unwrap().to_owned();
    let mut all: Vec<(&str, &str)> = vec![("CERTMAN_MACHINE_ID_FILE", &mid)];
    all.extend_from_slice(vars);
    let config_arg = config.map(|c| format!("config={}", c.display()));
    let mut args = vec!["listen=127.0.0.1:0"];
    if let Some(c) = &config_arg {
        args.push(c);
    }
    Daemon::start_with(env, &args, &all)
}

/// The cRLNumber of a CRL (DER) and whether it verifies under `ca_pem`, by OpenSSL.
fn crl_number(dir: &Path, der: &[u8], ca_pem: &Path) -> (u64, bool) {
    let file = dir.join(format!("crl-{}.der", random_hex(6)));
    std::fs::write(&file, der).unwrap();
    let out = openssl_output(
        &[
            "crl".as_ref(),
            "-inform".as_ref(),
            "DER".as_ref(),
            "-in".as_ref(),
            file.as_os_str(),
            "-noout".as_ref(),
            "-crlnumber".as_ref(),
            "-CAfile".as_ref(),
            ca_pem.as_os_str(),
        ],
        dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hex = stdout
        .trim()
        .strip_prefix("crlNumber=0x")
        .unwrap_or_else(|| panic!("no crlNumber: {stdout}"));
    let verified = String::from_utf8_lossy(&out.stderr).contains("verify OK");
    (u64::from_str_radix(hex, 16).unwrap(), verified)
}

/// The current CRL number of each local CA (`crl print --json`).
fn crl_numbers(env: &Env) -> BTreeMap<String, u64> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["crl", "print", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["ca"].as_str()?.to_owned(), c["number"].as_u64()?)))
        .collect()
}

/// Enrols one device through the node at `port` with `password`: the certificate it got.
fn enrol(port: u16, ca_der: &[u8], cn: &str, password: &str) -> Option<Vec<u8>> {
    let dev = Device::new(cn);
    let msg = dev.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(dev.csr(cn, Some(password))),
        ca_der,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    );
    let (status, head, reply) =
        http_post(port, &format!("{SCEP_PATH}?operation=PKIOperation"), &msg);
    assert_eq!(status, 200, "{head}");
    let decoded = dev.read_reply(&reply, ca_der);
    match (decoded.status, decoded.payload) {
        (PkiStatus::Success, Some(ReplyPayload::Certificates(certs))) => certs.into_iter().next(),
        (PkiStatus::Failure(_), _) => None,
        (other, _) => panic!("{cn}: unexpected reply {other:?}"),
    }
}

#[test]
fn three_nodes_eight_writers_and_scep_clients_keep_every_rule() {
    let Some(env) = Env::on_postgres_server() else {
        return;
    };
    let env = sealing_with_a_shared_key(env);
    for ca in CAS {
        env.make_ca(ca, &[]);
    }
    env.ok(&["scep-server", "add", "ca-cert=ca1", "path=/scep/a"]);
    let passwords: Vec<String> = (0..NODES * DEVICES_PER_NODE + CONTESTED_OTPS)
        .map(|_| otp(&env, 30))
        .collect();
    let numbers = crl_numbers(&env);
    let first_numbers: Vec<u64> = CAS.iter().map(|ca| numbers[*ca]).collect();
    let ca_pems: Vec<PathBuf> = CAS.iter().map(|ca| env.export_cert(ca)).collect();

    let nodes: Vec<Daemon> = (0..NODES).map(|i| node(&env, i, None, &[])).collect();
    let ports: Vec<u16> = nodes.iter().map(|d| d.port).collect();
    let (_, _, ca_der) = http_get(ports[0], &format!("{SCEP_PATH}?operation=GetCACert"));

    // CRLs fetched from every node while the writers revoke: (CA, number) -> the DERs seen
    let seen: Arc<Mutex<SeenCrls>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let fetcher = {
        let (seen, done, ports) = (seen.clone(), done.clone(), ports.clone());
        let dir = env.root().to_owned();
        let pems = ca_pems.clone();
        thread::spawn(move || {
            let mut verified = 0;
            let mut round = 0usize;
            while !done.load(Ordering::SeqCst) || round < NODES * CAS.len() {
                let ca = round % CAS.len();
                let port = ports[(round / CAS.len()) % NODES];
                round += 1;
                let (status, _, der) = http_get(port, &format!("/crl/{}.crl", CAS[ca]));
                assert_eq!(status, 200);
                let mut seen = seen.lock().unwrap();
                let known = seen.values().any(|ders| ders.contains(&der));
                if !known {
                    let (number, ok) = crl_number(&dir, &der, &pems[ca]);
                    assert!(ok, "a CRL of {} served by :{port} does not verify", CAS[ca]);
                    verified += 1;
                    seen.entry((ca, number)).or_default().insert(der);
                }
                drop(seen);
                thread::sleep(Duration::from_millis(20));
            }
            verified
        })
    };

    let revoked: Mutex<Vec<usize>> = Mutex::new(vec![0; CAS.len()]);
    let received: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let contested_wins: Mutex<Vec<usize>> = Mutex::new(vec![0; CONTESTED_OTPS]);
    thread::scope(|s| {
        for w in 0..WRITERS {
            let (env, revoked) = (&env, &revoked);
            s.spawn(move || {
                for i in 0..ISSUES_PER_WRITER {
                    let name = format!("w{w}-{i}");
                    let ca = (w + i) % CAS.len();
                    env.issue(&name, CAS[ca], &[]);
                    if i % 2 == 1 {
                        env.ok(&["issued-revoke", &name]);
                        revoked.lock().unwrap()[ca] += 1;
                    }
                }
            });
        }
        for (n, &port) in ports.iter().enumerate() {
            let (received, ca_der, passwords) = (&received, &ca_der, &passwords);
            s.spawn(move || {
                for d in 0..DEVICES_PER_NODE {
                    let cn = format!("dev-{n}-{d}");
                    let cert = enrol(port, ca_der, &cn, &passwords[n * DEVICES_PER_NODE + d])
                        .unwrap_or_else(|| panic!("{cn} was not enrolled"));
                    received.lock().unwrap().push(cert);
                }
            });
        }
        // each contested OTP is presented by two devices at two nodes at once
        for c in 0..CONTESTED_OTPS {
            for side in 0..2 {
                let (received, ca_der, passwords, wins) =
                    (&received, &ca_der, &passwords, &contested_wins);
                let port = ports[(c + side) % NODES];
                s.spawn(move || {
                    let pw = &passwords[NODES * DEVICES_PER_NODE + c];
                    if let Some(cert) = enrol(port, ca_der, &format!("race-{c}-{side}"), pw) {
                        received.lock().unwrap().push(cert);
                        wins.lock().unwrap()[c] += 1;
                    }
                });
            }
        }
    });
    done.store(true, Ordering::SeqCst);
    let verified = fetcher.join().expect("the CRL fetcher");

    // An OTP is used once: of two devices presenting one at once, one is enrolled.
    assert_eq!(*contested_wins.lock().unwrap(), vec![1; CONTESTED_OTPS]);
    // CRL numbers per CA: one CRL per number, and the last is the first plus one per
    // revocation: no gap, no duplicate.
    let revoked = revoked.into_inner().unwrap();
    let seen = seen.lock().unwrap();
    let numbers = crl_numbers(&env);
    for (ca, name) in CAS.iter().enumerate() {
        for ((c, number), ders) in seen.iter() {
            if *c == ca {
                assert_eq!(
                    ders.len(),
                    1,
                    "{name}: {} CRLs numbered {number}",
                    ders.len()
                );
            }
        }
        let last = numbers[*name];
        assert_eq!(
            last,
            first_numbers[ca] + revoked[ca] as u64,
            "{name}: CRL number {} + {} revocations",
            first_numbers[ca],
            revoked[ca]
        );
    }
    assert!(verified >= CAS.len(), "{verified} CRLs verified");
    // No serial twice per issuer; every certificate a client received is in the store.
    let entries = env.json();
    let mut serials: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &entries {
        *serials
            .entry((
                e["issuer"].as_str().unwrap_or_default().to_owned(),
                e["serial-number"].as_str().unwrap_or_default().to_owned(),
            ))
            .or_default() += 1;
    }
    assert!(serials.values().all(|n| *n == 1), "{serials:?}");
    let fingerprints: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e["fingerprint"].as_str())
        .map(|f| f.to_ascii_lowercase().replace(':', ""))
        .collect();
    let received = received.into_inner().unwrap();
    assert_eq!(received.len(), NODES * DEVICES_PER_NODE + CONTESTED_OTPS);
    for cert in &received {
        let fp = hex::encode(Sha256::digest(cert));
        assert!(
            fingerprints.contains(&fp),
            "a certificate a client got is not in the store"
        );
    }
    assert_eq!(
        entries.len(),
        CAS.len() + WRITERS * ISSUES_PER_WRITER + received.len(),
        "entries: {}",
        entries.len()
    );
    for d in nodes {
        d.stop();
    }
}

/// Three nodes renewing CRLs that are always due (the test clock 25 h on, a look every
/// second): one leads; killed with SIGKILL, another takes over within one interval.
fn leader_dies_and_another_takes_over(env: Env) {
    let env = &sealing_with_a_shared_key(env);
    env.make_ca("ca", &[]);
    let config = env.root().join("serve.toml");
    std::fs::write(&config, "crl-renew-check = 1\n").unwrap();
    let vars = [("CERTMAN_TEST_CLOCK_OFFSET", "90000")];
    let mut nodes: Vec<Daemon> = Vec::new();
    for i in 0..NODES {
        let mut d = node(env, i, Some(&config), &vars);
        d.wait_for_log("crl-renewal: ", Duration::from_secs(10));
        nodes.push(d);
    }
    let leaders: Vec<usize> = (0..NODES)
        .filter(|&i| nodes[i].log().contains("crl-renewal: this node leads"))
        .collect();
    assert_eq!(
        leaders,
        vec![0],
        "the first node leads, the others stand by"
    );
    for d in &nodes[1..] {
        assert!(d.log().contains("crl-renewal: another node leads"));
    }
    // the leader renews (every look: the CRL is always due to it); the others do not
    nodes[0].wait_for_log("CRL of ca renewed", Duration::from_secs(10));
    thread::sleep(Duration::from_secs(2));
    for d in &nodes[1..] {
        assert!(!d.log().contains("CRL of ca renewed"), "{}", d.log());
    }
    let before = crl_numbers(env)["ca"];
    let mut leader = nodes.remove(0);
    leader.child.kill().unwrap(); // SIGKILL: no goodbye, the lock goes with the process
    leader.child.wait().unwrap();
    let killed = Instant::now();
    let new_leader = loop {
        if let Some(i) =
            (0..nodes.len()).find(|&i| nodes[i].log().contains("crl-renewal: this node leads"))
        {
            break i;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no node took over within 5 s (one interval is 1 s)"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let took = killed.elapsed();
    nodes[new_leader].wait_for_log("CRL of ca renewed", Duration::from_secs(5));
    let after = crl_numbers(env)["ca"];
    assert!(after > before, "CRL number {before} -> {after}");
    eprintln!(
        "leader killed: node {} took over in {took:?}",
        new_leader + 1
    );
    for d in nodes {
        d.stop();
    }
}

#[test]
fn on_postgresql_the_leader_dies_and_another_node_renews_the_crls() {
    let Some(env) = Env::on_postgres_server() else {
        return;
    };
    leader_dies_and_another_takes_over(env);
}

/// The process whose leader session holds the CRL renewal job's lock (0 when none does).
fn renewal_leader_pid(env: &Env) -> u32 {
    // the advisory lock ("lead", job 1) in this database (other tests' stores are other
    // databases of the same server) and the session holding it, named after its process
    let rows = common::psql_rows(
        env.store.to_str().unwrap(),
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.classid = 1818583396 AND l.objid = 1 AND l.granted \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    rows.trim()
        .strip_prefix("certman leader ")
        .map_or(0, |pid| pid.parse().unwrap())
}

/// The leader's connection is cut while its process lives on (the server ends the session, as
/// after a network partition): the job's lock is free at once, a node takes it at its next
/// look, and CRL renewal goes on; the old leader learns at its next look that it lost it (and
/// may win it again): at most one of its renewals overlaps the new leader's.
#[test]
fn on_postgresql_a_leader_cut_off_from_the_store_loses_the_job() {
    let Some(env) = Env::on_postgres_server() else {
        return;
    };
    let env = sealing_with_a_shared_key(env);
    env.make_ca("ca", &[]);
    let config = env.root().join("serve.toml");
    std::fs::write(&config, "crl-renew-check = 1\n").unwrap();
    let vars = [("CERTMAN_TEST_CLOCK_OFFSET", "90000")];
    let mut nodes: Vec<Daemon> = (0..NODES)
        .map(|i| node(&env, i, Some(&config), &vars))
        .collect();
    nodes[0].wait_for_log("CRL of ca renewed", Duration::from_secs(10));
    let leader = renewal_leader_pid(&env);
    assert_eq!(leader, nodes[0].child.id(), "the first node leads");
    let renewals = |d: &Daemon| d.log().matches("CRL of ca renewed").count();
    let before: Vec<usize> = nodes.iter().map(renewals).collect();
    let cut = common::psql_rows(
        env.store.to_str().unwrap(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'certman leader {leader}'"
        ),
    );
    assert_eq!(cut.trim(), "t", "the leader's session was ended");
    let start = Instant::now();
    let new_leader = loop {
        let pid = renewal_leader_pid(&env);
        if pid != 0 {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no node took the job within 5 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        renewal_leader_pid(&env),
        new_leader,
        "the job stays with one node"
    );
    let i = nodes
        .iter()
        .position(|d| d.child.id() == new_leader)
        .expect("a node of this test leads");
    let after: Vec<usize> = nodes.iter().map(renewals).collect();
    assert!(after[i] > before[i], "the new leader renews");
    for (j, d) in nodes.iter().enumerate() {
        if j != i {
            assert!(
                after[j] <= before[j] + 1,
                "node {j} renewed {} times without the job:\n{}",
                after[j] - before[j],
                d.log()
            );
        }
    }
    eprintln!(
        "leader's session ended: node {} holds the job after {took:?}",
        i + 1
    );
    for d in nodes.drain(..) {
        d.stop();
    }
}

#[test]
fn on_sqlite_the_leader_dies_and_another_process_renews_the_crls() {
    let env = Env::new();
    if common::on_postgres() {
        return; // the test above
    }
    leader_dies_and_another_takes_over(env);
}
