//! `certman verify` as a strict RFC 5280 path validator, against chains made with the OpenSSL
//! command line: each rule certman checks on top of webpki is refused with a reason naming the
//! rule, and `--dns-name`, `--ip`, `--at`, `--crl` and `--max-depth` do what they say.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::*;

const CA: &str = "basicConstraints=critical,CA:TRUE\n\
                  keyUsage=critical,keyCertSign,cRLSign\n\
                  subjectKeyIdentifier=hash\n";
const SERVER: &str = "basicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=serverAuth,clientAuth\n\
                      subjectAltName=DNS:srv.example,IP:192.0.2.7\n";
const UNKNOWN_CRITICAL: &str = "1.3.6.1.4.1.55555.1=critical,DER:05:00\n";

/// Certificates made by `openssl` in the env's working directory: `NAME.key`, `NAME.pem`.
struct Pki<'a> {
    env: &'a Env,
    serial: std::cell::Cell<u32>,
}

impl<'a> Pki<'a> {
    fn new(env: &'a Env) -> Self {
        Pki {
            env,
            serial: std::cell::Cell::new(0x2000),
        }
    }

    fn openssl(&self, args: &[&str]) -> String {
        openssl(args, &self.env.work)
    }

    /// `NAME.pem`, subject CN=`cn` (empty: an empty subject), a P-256 key, issued by `issuer`
    /// (self-signed when None) with the extensions `ext`, valid from now for `days`.
    fn cert_cn(&self, name: &str, cn: &str, issuer: Option<&str>, ext: &str, days: u32) -> PathBuf {
        let (key, csr, pem, ext_file) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ]);
        std::fs::write(self.env.path(&ext_file), format!("[ext]\n{ext}")).unwrap();
        let subj = if cn.is_empty() {
            "/".to_owned()
        } else {
            format!("/CN={cn}")
        };
        self.openssl(&["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr]);
        self.serial.set(self.serial.get() + 1);
        let serial = self.serial.get().to_string();
        let days = days.to_string();
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-out",
            &pem,
            "-days",
            &days,
            "-set_serial",
            &serial,
            "-extfile",
            &ext_file,
            "-extensions",
            "ext",
        ];
        let (ca_pem, ca_key);
        match issuer {
            None => args.extend(["-signkey", &key]),
            Some(i) => {
                ca_pem = format!("{i}.pem");
                ca_key = format!("{i}.key");
                args.extend(["-CA", &ca_pem, "-CAkey", &ca_key]);
            }
        }
        self.openssl(&args);
        self.env.path(&pem)
    }

    fn cert(&self, name: &str, issuer: Option<&str>, ext: &str) -> PathBuf {
        let days = if issuer.is_none() { 3650 } else { 365 };
        self.cert_cn(name, name, issuer, ext, days)
    }

    /// `certman import NAME.pem trusted=yes`.
    fn trust(&self, name: &str) {
        self.env.ok(&[
            "import",
            &format!("file-name={name}.pem"),
            &format!("name={name}"),
            "trusted=yes",
        ]);
    }

    /// A file with the PEM of `names` in order (the certificate first, then intermediates).
    fn bundle(&self, file: &str, names: &[&str]) -> String {
        let mut text = String::new();
        for n in names {
            text.push_str(&std::fs::read_to_string(self.env.path(&format!("{n}.pem"))).unwrap());
        }
        std::fs::write(self.env.path(file), text).unwrap();
        file.to_owned()
    }

    /// root (trusted) → int → leaf with these extensions; returns the bundle leaf + int.
    fn chain(&self, root_ext: &str, int_ext: &str, leaf_ext: &str) -> String {
        self.cert("root", None, root_ext);
        self.cert("int", Some("root"), int_ext);
        self.cert("leaf", Some("int"), leaf_ext);
        self.trust("root");
        self.bundle("leaf-int.pem", &["leaf", "int"])
    }

    /// An `openssl ca` set-up of CA `ca` for revoking and making CRLs.
    fn ca_config(&self, ca: &str) -> String {
        let cnf = format!("{ca}.cnf");
        std::fs::write(
            self.env.path(&cnf),
            format!(
                "[ca]\ndefault_ca = this\n[this]\ndatabase = {ca}.index\n\
                 crlnumber = {ca}.crlnumber\ncertificate = {ca}.pem\n\
                 private_key = {ca}.key\ndefault_md = sha256\ndefault_crl_days = 30\n"
            ),
        )
        .unwrap();
        std::fs::write(self.env.path(&format!("{ca}.index")), "").unwrap();
        std::fs::write(self.env.path(&format!("{ca}.crlnumber")), "01\n").unwrap();
        cnf
    }

    /// `openssl ca -gencrl` into `out` (PEM); `der`: then converted by `openssl crl` to DER.
    fn crl(&self, cnf: &str, out: &str, der: bool) -> String {
        if der {
            let pem = format!("{out}.pem");
            self.openssl(&["ca", "-config", cnf, "-gencrl", "-out", &pem]);
            self.openssl(&["crl", "-in", &pem, "-outform", "DER", "-out", out]);
        } else {
            self.openssl(&["ca", "-config", cnf, "-gencrl", "-out", out]);
        }
        out.to_owned()
    }
}

/// `certman verify ARGS…` that must fail as an invalid certificate: exit 1, the report on
/// stdout ending in `verdict: INVALID: <reason>`, one error line with the reason on stderr.
/// Returns the reason.
fn invalid(env: &Env, args: &[&str]) -> String {
    let out = env.run(&[&["verify"][..], args].concat());
    assert_eq!(
        out.status.code(),
        Some(EXIT_FAILED),
        "verify {args:?}: stdout {}\nstderr {}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    let reason = report
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("verdict: INVALID: "))
        .unwrap_or_else(|| panic!("no INVALID verdict line: {report}"))
        .to_owned();
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&reason), "{err}");
    reason
}

fn valid(env: &Env, args: &[&str]) -> String {
    let out = env.ok(&[&["verify"][..], args].concat());
    assert!(out.ends_with("verdict: valid\n"), "{out}");
    out
}

fn assert_rule(reason: &str, section: &str, words: &str) {
    assert!(
        reason.starts_with(&format!("RFC 5280 §{section}: ")) && reason.contains(words),
        "expected §{section} and {words:?}: {reason}"
    );
}

fn usage_error(out: Output, words: &str) {
    let err = assert_error(&out, EXIT_USAGE, "verify");
    assert!(err.contains(words), "{err}");
}

#[test]
fn a_conforming_chain_is_valid() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, CA, SERVER);
    let out = valid(&env, &[&file, "purpose=tls-server"]);
    assert!(out.contains("subject=CN=int"), "{out}");
    assert!(out.contains("[root] status=\"trust anchor\""), "{out}");
}

#[test]
fn an_unknown_critical_extension_is_refused_at_any_depth() {
    for (at, whose) in [(0, "CN=leaf"), (1, "CN=int"), (2, "CN=root")] {
        let env = Env::new();
        let pki = Pki::new(&env);
        let mut exts = [SERVER.to_owned(), CA.to_owned(), CA.to_owned()];
        exts[at].push_str(UNKNOWN_CRITICAL);
        let file = pki.chain(&exts[2], &exts[1], &exts[0]);
        let reason = invalid(&env, &[&file]);
        assert_rule(
            &reason,
            "4.2",
            &format!(
                "{whose} has a critical extension certman does not process: 1.3.6.1.4.1.55555.1"
            ),
        );
    }
}

#[test]
fn a_ca_without_basic_constraints_ca_true_is_refused() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, "keyUsage=critical,keyCertSign,cRLSign\n", SERVER);
    let reason = invalid(&env, &[&file]);
    assert_rule(
        &reason,
        "4.2.1.9",
        "CN=int issues certificates but is not a CA",
    );

    // The trust anchor is held to it too.
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain("subjectKeyIdentifier=hash\n", CA, SERVER);
    let reason = invalid(&env, &[&file]);
    assert_rule(
        &reason,
        "4.2.1.9",
        "CN=root issues certificates but is not a CA",
    );
}

#[test]
fn a_critical_authority_key_identifier_is_refused() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let leaf = format!("{SERVER}authorityKeyIdentifier=critical,keyid:always\n");
    let file = pki.chain(CA, CA, &leaf);
    let reason = invalid(&env, &[&file]);
    assert_rule(
        &reason,
        "4.2.1.1",
        "the authority key identifier extension is critical in CN=leaf",
    );
}

#[test]
fn a_critical_subject_key_identifier_is_refused() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let int = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
               subjectKeyIdentifier=critical,hash\n";
    let file = pki.chain(CA, int, SERVER);
    let reason = invalid(&env, &[&file]);
    assert_rule(
        &reason,
        "4.2.1.2",
        "the subject key identifier extension is critical in CN=int",
    );
}

#[test]
fn a_leaf_asserting_key_cert_sign_without_ca_is_refused() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let leaf = "basicConstraints=critical,CA:FALSE\n\
                keyUsage=critical,digitalSignature,keyCertSign\n\
                subjectAltName=DNS:srv.example\n";
    let file = pki.chain(CA, CA, leaf);
    let reason = invalid(&env, &[&file]);
    assert_rule(
        &reason,
        "4.2.1.3",
        "CN=leaf asserts keyCertSign but is not a CA",
    );
}

#[test]
fn a_ca_with_an_empty_subject_is_refused() {
    let env = Env::new();
    let pki = Pki::new(&env);
    pki.cert("root", None, CA);
    pki.cert_cn("int", "", Some("root"), CA, 365);
    pki.cert("leaf", Some("int"), SERVER);
    pki.trust("root");
    let file = pki.bundle("leaf-int.pem", &["leaf", "int"]);
    let reason = invalid(&env, &[&file]);
    assert_rule(&reason, "4.1.2.6", "CA certificate serial ");
    assert!(
        reason.ends_with(" from CN=root has an empty subject"),
        "{reason}"
    );
}

#[test]
fn malformed_name_constraints_are_refused() {
    let ca = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
    for (int_ext, leaf_ext, words) in [
        (
            format!("{ca}nameConstraints=permitted;DNS:srv.example\n"),
            SERVER.to_owned(),
            "the name constraints of CN=int are not marked critical",
        ),
        (
            CA.to_owned(),
            format!("{SERVER}nameConstraints=critical,permitted;DNS:srv.example\n"),
            "the name constraints of CN=leaf are in a certificate that is not a CA",
        ),
        (
            format!("{ca}nameConstraints=critical,DER:30:00\n"),
            SERVER.to_owned(),
            "the name constraints of CN=int are empty",
        ),
        (
            // permittedSubtrees: dNSName srv.example, minimum 1
            format!(
                "{ca}nameConstraints=critical,DER:30:14:a0:12:30:10:82:0b:\
                 73:72:76:2e:65:78:61:6d:70:6c:65:80:01:01\n"
            ),
            SERVER.to_owned(),
            "the name constraints of CN=int give a minimum or maximum",
        ),
        (
            format!("{ca}nameConstraints=critical,excluded;DNS:srv.example\n"),
            SERVER.to_owned(),
            "the name constraints of CN=int exclude a name of the chain (certificate CN=leaf",
        ),
        (
            format!("{ca}nameConstraints=critical,permitted;IP:10.0.0.0/255.0.0.0\n"),
            SERVER.to_owned(),
            "the name constraints of CN=int exclude",
        ),
    ] {
        let env = Env::new();
        let pki = Pki::new(&env);
        let file = pki.chain(CA, &int_ext, &leaf_ext);
        let reason = invalid(&env, &[&file]);
        assert_rule(&reason, "4.2.1.10", words);
    }
    // Well-formed and satisfied.
    let env = Env::new();
    let pki = Pki::new(&env);
    let int = format!("{ca}nameConstraints=critical,permitted;DNS:srv.example,permitted;IP:192.0.2.0/255.255.255.0\n");
    let file = pki.chain(CA, &int, SERVER);
    valid(&env, &[&file]);
}

#[test]
fn dns_name_and_ip_are_matched_against_the_subject_alt_name() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, CA, SERVER);
    valid(&env, &[&file, "--dns-name", "srv.example"]);
    valid(&env, &[&file, "dns-name=SRV.example", "ip=192.0.2.7"]);
    valid(&env, &[&file, "--ip", "192.0.2.7", "purpose=tls-server"]);
    let reason = invalid(&env, &[&file, "dns-name=www.example"]);
    assert_eq!(
        reason,
        "not valid for the DNS name www.example: its subjectAltName holds \
         DNS:srv.example,IP:192.0.2.7",
        "{reason}"
    );
    let reason = invalid(&env, &[&file, "--ip", "192.0.2.8"]);
    assert!(
        reason.starts_with("not valid for the IP address 192.0.2.8: its subjectAltName holds"),
        "{reason}"
    );
    let reason = invalid(&env, &[&file, "--ip", "2001:db8::7"]);
    assert!(reason.contains("IP address 2001:db8::7"), "{reason}");
    // --json carries the reason too.
    let out = env.run(&["verify", &file, "dns-name=www.example", "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILED));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["reason"].as_str().unwrap().contains("www.example"), "{v}");

    usage_error(
        env.run(&["verify", &file, "dns-name=bad name"]),
        "not a valid DNS name",
    );
    usage_error(
        env.run(&["verify", &file, "dns-name=192.0.2.7"]),
        "use --ip",
    );
    usage_error(env.run(&["verify", &file, "ip=192.0.2.300"]), "192.0.2.300");
}

#[test]
fn at_chooses_the_validation_time() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, CA, SERVER);
    let (not_before, not_after) = openssl_dates(&env.path("leaf.pem"));
    let rfc3339 = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // RouterOS's own spelling (local time; the tests run with TZ=UTC).
    let routeros = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%b/%d/%Y %H:%M:%S")
            .to_string()
            .to_lowercase()
    };
    valid(&env, &[&file, "--at", &rfc3339(not_before + 60)]);
    valid(&env, &[&file, &format!("at={}", routeros(not_after - 60))]);

    let reason = invalid(&env, &[&file, "--at", &rfc3339(not_before - 3600)]);
    assert!(
        reason.starts_with("certificate is not valid before"),
        "{reason}"
    );
    let reason = invalid(
        &env,
        &[&file, &format!("at={}", routeros(not_after + 3600))],
    );
    assert!(reason.starts_with("certificate expired at"), "{reason}");

    usage_error(env.run(&["verify", &file, "at=tomorrow"]), "is not a time");
}

#[test]
fn crl_files_revoke_with_or_without_crl_use() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, CA, SERVER);
    let int_cnf = pki.ca_config("int");
    let root_cnf = pki.ca_config("root");
    let int_good = pki.crl(&int_cnf, "int-1.crl", false);
    let root_crl = pki.crl(&root_cnf, "root.crl", true);

    // crl-use=no, no file: revocation is not checked.
    let out = valid(&env, &[&file]);
    assert!(out.contains("not checked (crl-use=no)"), "{out}");
    // Both CRLs (PEM and DER), repeatable: good.
    let out = valid(&env, &[&file, "--crl", &int_good, "crl=root.crl"]);
    assert!(out.contains("status=\"good per CRL #1 of "), "{out}");
    // The intermediate's issuer has no CRL given: its status is unknown, and that fails.
    let reason = invalid(&env, &[&file, "--crl", &int_good]);
    assert!(
        reason.contains("revocation status unknown: no CRL of CN=root is held"),
        "{reason}"
    );

    // The leaf revoked (openssl ca -revoke, then -gencrl), in DER through `openssl crl`.
    pki.openssl(&[
        "ca",
        "-config",
        &int_cnf,
        "-revoke",
        "leaf.pem",
        "-crl_reason",
        "keyCompromise",
    ]);
    let int_revoking = pki.crl(&int_cnf, "int-2.crl", true);
    let reason = invalid(&env, &[&file, "--crl", &int_revoking, "--crl", &root_crl]);
    assert!(reason.starts_with("certificate revoked at "), "{reason}");
    assert!(reason.contains("(key-compromise)"), "{reason}");
    // A revocation is final: an older CRL given beside it does not undo it.
    let reason = invalid(
        &env,
        &[
            &file,
            "--crl",
            &int_good,
            "--crl",
            &int_revoking,
            "--crl",
            &root_crl,
        ],
    );
    assert!(reason.starts_with("certificate revoked at "), "{reason}");

    // Bad files: a missing one, one that is not a CRL.
    let out = env.run(&["verify", &file, "--crl", "missing.crl"]);
    assert_error(&out, EXIT_FAILED, "verify --crl missing.crl");
    let out = env.run(&["verify", &file, "--crl", "leaf.pem"]);
    let err = assert_error(&out, EXIT_USAGE, "verify --crl leaf.pem");
    assert!(err.contains("no X509 CRL block"), "{err}");
}

#[test]
fn max_depth_limits_the_intermediate_cas() {
    let env = Env::new();
    let pki = Pki::new(&env);
    let file = pki.chain(CA, CA, SERVER);
    valid(&env, &[&file, "--max-depth", "1"]);
    let reason = invalid(&env, &[&file, "max-depth=0"]);
    assert_eq!(
        reason,
        "the chain has 1 intermediate CA certificate, more than max-depth=0"
    );
    pki.cert("direct", Some("root"), SERVER);
    valid(&env, &["direct.pem", "max-depth=0"]);
    usage_error(env.run(&["verify", &file, "max-depth=-1"]), "max-depth");
}
