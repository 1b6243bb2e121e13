//! Hostile files and secret sources, made by the tests themselves: each is refused with one
//! line, in under 5 s, with peak RSS under 256 MiB (GNU time's %M), and the store unchanged.
//! - an encrypted PKCS#8 whose scrypt asks for N = 2^40 (1 PiB), with and without a
//!   passphrase (without one it must not be kept for a later `decrypt`);
//! - an encrypted PKCS#8 with 2^32 − 1 PBKDF2 iterations;
//! - a PKCS#12 file whose MAC and bags together ask for 25 million iterations;
//! - `passphrase-source=file:/dev/zero` and `fd:0` reading /dev/zero.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use der::asn1::OctetString;
use der::Encode;

const LIMIT_SECONDS: f64 = 5.0;
const LIMIT_RSS_KIB: u64 = 256 * 1024;

/// Runs certman `args` in `env` under GNU time: (exit code, stdout, stderr, seconds, max RSS
/// KiB). `stdin_file` feeds stdin.
fn measured(
    env: &Env,
    args: &[&str],
    stdin_file: Option<&Path>,
) -> (i32, String, String, f64, u64) {
    let stats = env.root().join("time.out");
    let cmd = env.command(args);
    let program = cmd.get_program().to_owned();
    let argv: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&stats)
        .arg(program)
        .args(argv)
        .current_dir(cmd.get_current_dir().unwrap());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed.stdin(match stdin_file {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    let started = Instant::now();
    let out = timed.output().expect("run certman under /usr/bin/time");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a hostile input ran for a minute"
    );
    let text = std::fs::read_to_string(&stats).unwrap();
    let last = text.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let secs: f64 = parts.next().unwrap().parse().unwrap();
    let rss: u64 = parts.next().unwrap().parse().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        secs,
        rss,
    )
}

/// The command fails within the limits, the reason on one line (`import` also reports its
/// counters and a summary line, as for any file it cannot read); the store is as it was.
fn assert_refused(env: &Env, args: &[&str], stdin_file: Option<&Path>, expect: &str) -> String {
    let before = env.snapshot();
    let (code, stdout, stderr, secs, rss) = measured(env, args, stdin_file);
    assert_ne!(code, 0, "{args:?} succeeded: {stdout}");
    let import = args[0] == "import";
    assert!(
        stdout.is_empty() || (import && stdout.contains("files-imported: 0")),
        "{args:?} printed: {stdout}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim_start().starts_with("hint:"))
        .collect();
    assert_eq!(
        lines.len(),
        if import { 2 } else { 1 },
        "{args:?}: {stderr}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains(expect)).count(),
        1,
        "{args:?}: {stderr}"
    );
    eprintln!("{args:?}: refused in {secs} s, peak RSS {rss} KiB");
    assert!(secs < LIMIT_SECONDS, "{args:?} took {secs} s");
    assert!(rss < LIMIT_RSS_KIB, "{args:?} peaked at {rss} KiB");
    assert_eq!(env.snapshot(), before, "{args:?} changed the store");
    stderr
}

/// An EncryptedPrivateKeyInfo with these PBES2 parameters and 48 bytes of ciphertext.
fn encrypted_key(kdf: pkcs5::pbes2::Kdf) -> Vec<u8> {
    let params = pkcs5::pbes2::Parameters {
        kdf,
        encryption: pkcs5::pbes2::EncryptionScheme::Aes256Cbc { iv: [7u8; 16] },
    };
    let alg = pkcs5::EncryptionScheme::Pbes2(params);
    // EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData OCTET STRING }
    let mut body = alg.to_der().unwrap();
    body.extend(
        OctetString::new(vec![0x55u8; 48])
            .unwrap()
            .to_der()
            .unwrap(),
    );
    let mut der = vec![0x30];
    assert!(body.len() < 0x80 * 2);
    if body.len() < 0x80 {
        der.push(body.len() as u8);
    } else {
        der.extend([0x81, body.len() as u8]);
    }
    der.extend(body);
    der
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64ct::Encoding;
    let b64 = base64ct::Base64::encode_string(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn a_scrypt_key_asking_for_a_petabyte_is_refused_at_import_with_and_without_passphrase() {
    let env = Env::new();
    let salt = pkcs5::pbes2::Salt::new([1u8; 16]).unwrap();
    let kdf = pkcs5::pbes2::Kdf::Scrypt(pkcs5::pbes2::ScryptParams {
        salt,
        cost_parameter: 1 << 40,
        block_size: 8,
        parallelization: 1,
        key_length: None,
    });
    std::fs::write(
        env.path("scrypt.pem"),
        pem("ENCRYPTED PRIVATE KEY", &encrypted_key(kdf)),
    )
    .unwrap();
    let e = assert_refused(
        &env,
        &["import", "file-name=scrypt.pem", "passphrase=pw"],
        None,
        "MiB of memory",
    );
    assert!(e.contains("scrypt.pem"), "{e}");
    // without a passphrase it would be kept (flag Q): refused now, not kept
    assert_refused(
        &env,
        &["import", "file-name=scrypt.pem"],
        None,
        "MiB of memory",
    );
}

#[test]
fn pbkdf2_with_four_billion_iterations_is_refused_before_any_is_done() {
    let env = Env::new();
    let kdf = pkcs5::pbes2::Kdf::Pbkdf2(pkcs5::pbes2::Pbkdf2Params {
        salt: pkcs5::pbes2::Salt::new([2u8; 16]).unwrap(),
        iteration_count: u32::MAX,
        key_length: None,
        prf: pkcs5::pbes2::Pbkdf2Prf::HmacWithSha256,
    });
    std::fs::write(env.path("slow.der"), encrypted_key(kdf)).unwrap();
    let e = assert_refused(
        &env,
        &["import", "file-name=slow.der", "passphrase=pw"],
        None,
        "4294967295 iterations",
    );
    assert!(e.contains("at most 10000000"), "{e}");
    assert_refused(&env, &["import", "file-name=slow.der"], None, "4294967295");
}

#[test]
fn a_pkcs12_asking_for_more_work_than_one_file_gets_is_refused_at_once() {
    let env = Env::new();
    let dir = env.path("p12");
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
            "-subj", "/CN=p12", "-days", "1",
        ],
        &dir,
    );
    // 65536 iterations everywhere (an INTEGER of 3 bytes: 02 03 01 00 00) ...
    openssl(
        &[
            "pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-out", "f.p12", "-passout",
            "pass:pw", "-iter", "65536", "-maciter",
        ],
        &dir,
    );
    let mut p12 = std::fs::read(dir.join("f.p12")).unwrap();
    // ... then 8,388,607 (02 03 7F FF FF): the MAC, the key bag and the certificates'
    // encryption each stay under one derivation's limit, together over one file's.
    let from = [0x02, 0x03, 0x01, 0x00, 0x00];
    let mut patched = 0;
    let mut i = 0;
    while i + from.len() <= p12.len() {
        if p12[i..i + from.len()] == from {
            p12[i + 2..i + 5].copy_from_slice(&[0x7F, 0xFF, 0xFF]);
            patched += 1;
        }
        i += 1;
    }
    assert!(patched >= 3, "{patched} iteration counts found");
    std::fs::write(env.path("heavy.p12"), &p12).unwrap();
    let e = assert_refused(
        &env,
        &["import", "file-name=heavy.p12", "passphrase=pw"],
        None,
        "in all",
    );
    assert!(e.contains("20000000"), "{e}");
}

#[test]
fn secret_sources_that_never_end_are_refused() {
    let env = Env::new();
    env.ok(&["add", "name=k", "common-name=k", "key-type=ec"]);
    env.ok(&["sign", "k"]);
    assert_refused(
        &env,
        &[
            "export-certificate",
            "k",
            "type=pkcs12",
            "export-passphrase-source=file:/dev/zero",
        ],
        None,
        "not a regular file",
    );
    assert_refused(
        &env,
        &[
            "export-certificate",
            "k",
            "type=pkcs12",
            "export-passphrase-source=fd:0",
        ],
        Some(Path::new("/dev/zero")),
        "longer than 4096 bytes",
    );
    // not text
    std::fs::write(env.path("binary.pass"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    assert_refused(
        &env,
        &[
            "export-certificate",
            "k",
            "type=pkcs12",
            &format!(
                "export-passphrase-source=file:{}",
                env.path("binary.pass").display()
            ),
        ],
        None,
        "not text",
    );
}
