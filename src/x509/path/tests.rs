//! Path validation against PKIs made with the `openssl` command line.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;

use std::time::Duration;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

const CA: &str = "basicConstraints=critical,CA:TRUE\n\
                  keyUsage=critical,keyCertSign,cRLSign\n\
                  subjectKeyIdentifier=hash\n";
const SERVER: &str = "basicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=serverAuth,clientAuth\n\
                      subjectAltName=DNS:srv.example\n";

/// A throw-away PKI made with the `openssl` command line.
struct Pki {
    dir: tempfile::TempDir,
    serial: Cell<u32>,
}

impl Pki {
    fn new() -> Self {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            serial: Cell::new(0x1000),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kind`: ec (P-256), p521, rsa2048, rsa1024, ed25519.
    fn key(&self, name: &str, kind: &str) {
        let key = format!("{name}.key");
        let mut args = vec!["genpkey", "-out", &key, "-algorithm"];
        match kind {
            "ec" => args.extend(["EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            "p521" => args.extend(["EC", "-pkeyopt", "ec_paramgen_curve:P-521"]),
            "rsa2048" => args.extend(["RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            "rsa1024" => args.extend(["RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
            "ed25519" => args.push("ED25519"),
            _ => panic!("unknown key kind {kind}"),
        }
        self.openssl(&args);
    }

    /// Makes `name.key` and `name.pem` (CN=name), issued by `issuer` (self-signed when
    /// None), valid from now for `days`, with the extensions `ext`; returns the DER.
    fn cert(&self, name: &str, kind: &str, issuer: Option<&str>, ext: &str, days: u32) -> Vec<u8> {
        self.cert_cn(name, name, kind, issuer, ext, days)
    }

    /// As `cert`, with subject CN=`cn` (files still named after `name`; an empty `cn`: an
    /// empty subject).
    fn cert_cn(
        &self,
        name: &str,
        cn: &str,
        kind: &str,
        issuer: Option<&str>,
        ext: &str,
        days: u32,
    ) -> Vec<u8> {
        self.key(name, kind);
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), format!("[ext]\n{ext}")).unwrap();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
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
        self.der(&pem)
    }

    fn der(&self, pem_file: &str) -> Vec<u8> {
        let text = std::fs::read(self.path(pem_file)).unwrap();
        der::pem::decode_vec(&text).unwrap().1
    }

    /// An `openssl ca` set-up for CA `ca` (to revoke and to make CRLs).
    fn ca_config(&self, ca: &str) -> String {
        let cnf = format!("{ca}.cnf");
        std::fs::write(
            self.path(&cnf),
            format!(
                "[ca]\ndefault_ca = this\n[this]\ndatabase = {ca}.index\n\
                 crlnumber = {ca}.crlnumber\ncertificate = {ca}.pem\n\
                 private_key = {ca}.key\ndefault_md = sha256\ndefault_crl_days = 30\n"
            ),
        )
        .unwrap();
        std::fs::write(self.path(&format!("{ca}.index")), "").unwrap();
        std::fs::write(self.path(&format!("{ca}.crlnumber")), "01\n").unwrap();
        cnf
    }

    /// A second `openssl ca` set-up for CA `ca` (same database and CRL numbers as
    /// `ca_config`, which must come first) whose CRLs carry the extensions `crl_ext`.
    fn crl_ext_config(&self, ca: &str, crl_ext: &str) -> String {
        let cnf = format!("{ca}-ext.cnf");
        std::fs::write(
            self.path(&cnf),
            format!(
                "[ca]\ndefault_ca = this\n[this]\ndatabase = {ca}.index\n\
                 crlnumber = {ca}.crlnumber\ncertificate = {ca}.pem\n\
                 private_key = {ca}.key\ndefault_md = sha256\ndefault_crl_days = 30\n\
                 crl_extensions = crl_ext\n[crl_ext]\n{crl_ext}"
            ),
        )
        .unwrap();
        cnf
    }

    /// Takes every revocation out of CA `ca`'s database (as if they had never been made),
    /// so that its next CRL lists nothing.
    fn unrevoke_all(&self, ca: &str) {
        let index = self.path(&format!("{ca}.index"));
        let text = std::fs::read_to_string(&index).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split('\t').collect();
                if f[0] == "R" {
                    f[0] = "V";
                    f[2] = "";
                }
                f.join("\t")
            })
            .collect();
        std::fs::write(&index, lines.join("\n") + "\n").unwrap();
    }

    fn revoke(&self, cnf: &str, cert: &str, reason: &str) {
        let pem = format!("{cert}.pem");
        self.openssl(&["ca", "-config", cnf, "-revoke", &pem, "-crl_reason", reason]);
    }

    /// A CRL of the CA behind `cnf`, DER; `hours` = nextUpdate from now (default 30 days).
    fn crl(&self, cnf: &str, hours: Option<u32>) -> Vec<u8> {
        let out = format!("{cnf}.{}.crl", self.serial.get());
        self.serial.set(self.serial.get() + 1);
        let hours = hours.map(|h| h.to_string());
        let mut args = vec!["ca", "-config", cnf, "-gencrl", "-out", &out];
        if let Some(h) = &hours {
            args.extend(["-crlhours", h]);
        }
        self.openssl(&args);
        self.der(&out)
    }
}

/// root (P-256, trusted) → int (P-256) → leaf with `leaf_ext`.
fn ec_chain(pki: &Pki, leaf_ext: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int = pki.cert("int", "ec", Some("root"), CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int"), leaf_ext, 365);
    (root, int, leaf)
}

fn check(
    target: &[u8],
    extra: &[Vec<u8>],
    store: &[(&str, &[u8], bool)],
    crls: Option<&[Vec<u8>]>,
    purpose: Purpose,
    now: SystemTime,
) -> PathReport {
    let store: Vec<StoreCert<'_>> = store
        .iter()
        .map(|&(name, der, trusted)| StoreCert { name, der, trusted })
        .collect();
    validate(&PathInput {
        target,
        extra,
        store: &store,
        crls,
        purpose,
        now,
        names: &[],
        max_depth: None,
    })
}

fn failure(report: &PathReport) -> (Failure, &str) {
    match &report.verdict {
        Verdict::Invalid { kind, reason } => (*kind, reason.as_str()),
        Verdict::Valid => panic!("expected invalid, got valid: {report:?}"),
    }
}

fn assert_valid(report: &PathReport) {
    assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
}

#[test]
fn ec_chain_is_valid_for_tls_server_through_store_or_file_intermediates() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let now = SystemTime::now();
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
    assert_valid(&r);
    let names: Vec<_> = r.chain.iter().map(|c| c.store_name.as_deref()).collect();
    assert_eq!(names, [None, Some("int"), Some("root")]);
    let subjects: Vec<_> = r.chain.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["CN=leaf", "CN=int", "CN=root"]);
    assert_eq!(r.chain[0].issuer, "CN=int");
    assert_eq!(r.chain[0].serial_hex, format!("{:04X}", pki.serial.get()));
    let anchors: Vec<_> = r.chain.iter().map(|c| c.trust_anchor).collect();
    assert_eq!(anchors, [false, false, true]);
    assert_eq!(r.chain[0].revocation, Revocation::NotChecked);
    assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);

    // The intermediate from the file instead of the store.
    let r = check(
        &leaf,
        std::slice::from_ref(&int),
        &store[..1],
        None,
        Purpose::TlsServer,
        now,
    );
    assert_valid(&r);
    assert_eq!(r.chain.len(), 3);
    assert_eq!(r.chain[1].store_name, None);
}

#[test]
fn rsa_chain_and_leaf_key_usage_for_tls() {
    let pki = Pki::new();
    let root = pki.cert("root", "rsa2048", None, CA, 3650);
    let int = pki.cert("int", "rsa2048", Some("root"), CA, 3650);
    let leaf = pki.cert("leaf", "rsa2048", Some("int"), SERVER, 365);
    // RSA key transport only: a TLS server (RSA key exchange) but not a client.
    let kx = pki.cert(
        "kx",
        "rsa2048",
        Some("int"),
        "keyUsage=critical,keyEncipherment\n",
        365,
    );
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    assert_valid(&check(&leaf, &[], &store, None, Purpose::TlsServer, now));
    assert_valid(&check(&kx, &[], &store, None, Purpose::TlsServer, now));
    let r = check(&kx, &[], &store, None, Purpose::TlsClient, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::KeyUsage);
    assert!(reason.contains("digitalSignature"), "{reason}");
    assert!(reason.contains("tls-client"), "{reason}");
    assert_valid(&check(&kx, &[], &store, None, Purpose::Any, now));
}

#[test]
fn ec_leaf_without_signing_key_usage_is_refused_for_tls_only() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, "keyUsage=critical,keyEncipherment\n");
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::KeyUsage);
    assert!(reason.contains("keyAgreement"), "{reason}");
    assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
}

#[test]
fn ed25519_and_p521_signatures_are_accepted() {
    let pki = Pki::new();
    let root = pki.cert("root", "ed25519", None, CA, 3650);
    let int = pki.cert("int", "p521", Some("root"), CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check(
        &leaf,
        &[],
        &store,
        None,
        Purpose::TlsServer,
        SystemTime::now(),
    );
    assert_valid(&r);
    assert_eq!(r.chain.len(), 3);
}

#[test]
fn client_only_eku_fails_tls_server_but_passes_tls_client_and_any() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(
        &pki,
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Purpose);
    assert_eq!(reason, "not valid for tls-server (extended key usage)");
    assert_eq!(r.chain.len(), 3, "the chain is still shown");
    assert_valid(&check(&leaf, &[], &store, None, Purpose::TlsClient, now));
    assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
}

#[test]
fn expired_and_not_yet_valid_certificates() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int = pki.cert("int", "ec", Some("root"), CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 1);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));

    let r = check(&leaf, &[], &store, None, Purpose::Any, now + 2 * DAY);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Expired);
    assert!(reason.starts_with("certificate expired at "), "{reason}");
    assert_eq!(r.chain.len(), 3);

    let r = check(&leaf, &[], &store, None, Purpose::Any, now - 2 * DAY);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::NotYetValid);
    assert!(reason.contains("not valid before"), "{reason}");
}

#[test]
fn an_expired_trust_anchor_fails_the_chain() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 1);
    let int = pki.cert("int", "ec", Some("root"), CA, 30);
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 30);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let later = SystemTime::now() + 2 * DAY;
    let r = check(&leaf, &[], &store, None, Purpose::Any, later);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Expired);
    assert!(
        reason.starts_with("trust anchor CN=root expired at"),
        "{reason}"
    );
    // The anchor itself as the target: valid within its validity only.
    assert_valid(&check(
        &root,
        &[],
        &store,
        None,
        Purpose::Any,
        SystemTime::now(),
    ));
    let r = check(&root, &[], &store, None, Purpose::Any, later);
    assert_eq!(failure(&r).0, Failure::Expired);
    assert_eq!(r.chain.len(), 1);
    assert!(r.chain[0].trust_anchor);
    assert_eq!(r.chain[0].store_name.as_deref(), Some("root"));
}

#[test]
fn without_a_trusted_anchor_the_issuer_is_unknown() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let now = SystemTime::now();
    let store = [("root", &root[..], false), ("int", &int[..], false)];
    let r = check(&leaf, &[], &store, None, Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::UnknownIssuer);
    assert!(
        reason.starts_with("no trusted issuer in the store (unknown issuer)"),
        "{reason}"
    );
    assert!(
        reason.contains("CN=root is in the store but not trusted"),
        "{reason}"
    );
    assert_eq!(r.chain.len(), 3);
    assert!(r.chain.iter().all(|c| !c.trust_anchor));

    let r = check(&leaf, &[], &[], None, Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::UnknownIssuer);
    assert!(reason.contains("issuer CN=int not found"), "{reason}");
    assert_eq!(r.chain.len(), 1);
    assert_eq!(r.chain[0].subject, "CN=leaf");
}

#[test]
fn an_intermediate_that_is_not_a_ca_cannot_issue() {
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int = pki.cert(
        "int",
        "ec",
        Some("root"),
        "keyUsage=critical,keyCertSign,cRLSign\n",
        3650,
    );
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::BasicConstraints);
    assert_eq!(
        reason,
        "RFC 5280 §4.2.1.9: CN=int issues certificates but is not a CA (no basicConstraints \
         cA=TRUE)"
    );
    assert_eq!(r.chain.len(), 3, "the chain is still shown");
}

#[test]
fn a_ca_whose_key_usage_lacks_key_cert_sign_cannot_issue() {
    // webpki ignores keyUsage: this is certman's own check.
    let pki = Pki::new();
    let root = pki.cert("root", "ec", None, CA, 3650);
    let int = pki.cert(
        "int",
        "ec",
        Some("root"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n",
        3650,
    );
    let leaf = pki.cert("leaf", "ec", Some("int"), SERVER, 365);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::KeyUsage);
    assert_eq!(reason, "issuer's key usage lacks keyCertSign: CN=int");
    assert_eq!(r.chain.len(), 3);
}

#[test]
fn an_issuer_with_a_short_rsa_key_is_refused_with_a_clear_reason() {
    let pki = Pki::new();
    let root = pki.cert("root", "rsa1024", None, CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("root"), SERVER, 365);
    let store = [("root", &root[..], true)];
    let r = check(&leaf, &[], &store, None, Purpose::Any, SystemTime::now());
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::WeakKey);
    assert!(reason.contains("shorter than 2048 bits"), "{reason}");
    assert!(reason.contains("CN=root has a 1024-bit key"), "{reason}");
}

#[test]
fn a_revoked_leaf_fails_only_with_crl_use() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
    let cnf = pki.ca_config("int");
    pki.revoke(&cnf, "leaf", "keyCompromise");
    let crl = pki.crl(&cnf, None);
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();

    // Only the intermediate's CRL: the leaf's revocation decides, although the
    // intermediate's own status is unknown.
    let crls = [crl.clone()];
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::TlsServer, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Revoked);
    assert!(reason.starts_with("certificate revoked at "), "{reason}");
    assert!(reason.ends_with("(key-compromise)"), "{reason}");
    assert_eq!(r.chain.len(), 3, "the chain is shown: {r:?}");
    match &r.chain[0].revocation {
        Revocation::Revoked { crl, reason, .. } => {
            assert_eq!(reason.as_deref(), Some("key-compromise"));
            assert_eq!(crl.number.as_deref(), Some("1"));
        }
        other => panic!("leaf status {other:?}"),
    }
    assert_eq!(r.chain[1].revocation, Revocation::NoCrl);
    assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);

    let crls = [crl, root_crl];
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::TlsServer, now);
    assert_eq!(failure(&r).0, Failure::Revoked);
    assert!(matches!(r.chain[1].revocation, Revocation::Good { .. }));

    // crl-use=no
    let r = check(&leaf, &[], &store, None, Purpose::TlsServer, now);
    assert_valid(&r);
    assert_eq!(r.chain[0].revocation, Revocation::NotChecked);

    // A certificate of the same CA that is not on the CRL.
    let r = check(&other, &[], &store, Some(&crls), Purpose::TlsServer, now);
    assert_valid(&r);
    match &r.chain[0].revocation {
        Revocation::Good { crl } => assert_eq!(crl.number.as_deref(), Some("1")),
        other => panic!("status {other:?}"),
    }
    assert!(r.chain[0].ignored_crls.is_empty());
    assert!(matches!(r.chain[1].revocation, Revocation::Good { .. }));
    assert_eq!(r.chain[2].revocation, Revocation::TrustAnchor);
}

#[test]
fn the_newest_crl_counts_and_a_revoked_ca_fails_the_chain() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let int_cnf = pki.ca_config("int");
    let before = pki.crl(&int_cnf, None); // CRL #1: nothing revoked
    pki.revoke(&int_cnf, "leaf", "superseded");
    let after = pki.crl(&int_cnf, None); // CRL #2: the leaf
    let root_cnf = pki.ca_config("root");
    let root_crl = pki.crl(&root_cnf, None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    // Whatever the order certman holds them in.
    for crls in [
        [before.clone(), after.clone(), root_crl.clone()],
        [root_crl.clone(), after.clone(), before.clone()],
    ] {
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(reason.ends_with("(superseded)"), "{reason}");
        match &r.chain[0].revocation {
            Revocation::Revoked { crl, .. } => assert_eq!(crl.number.as_deref(), Some("2")),
            other => panic!("status {other:?}"),
        }
    }

    // The root revokes the intermediate: the chain fails at the CA.
    let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
    pki.revoke(&root_cnf, "int", "cACompromise");
    let crls = [pki.crl(&root_cnf, None), before];
    // "other" was made after `now` was read: if a second ticked meanwhile, it would not be
    // valid yet at `now`.
    let now = SystemTime::now();
    let r = check(&other, &[], &store, Some(&crls), Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Revoked);
    assert!(
        reason.starts_with("CA certificate CN=int revoked at ")
            && reason.ends_with("(ca-compromise)"),
        "{reason}"
    );
    assert!(
        matches!(r.chain[0].revocation, Revocation::Good { .. }),
        "{r:?}"
    );
    assert!(
        matches!(r.chain[1].revocation, Revocation::Revoked { .. }),
        "{r:?}"
    );
}

#[test]
fn a_crl_whose_signature_does_not_verify_is_ignored_and_the_status_is_unknown() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let cnf = pki.ca_config("int");
    pki.revoke(&cnf, "leaf", "keyCompromise");
    let mut crl = pki.crl(&cnf, None);
    let last = crl.len() - 1;
    crl[last] ^= 0x01; // inside the signature's s
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let crls = [crl, root_crl];
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let r = check(
        &leaf,
        &[],
        &store,
        Some(&crls),
        Purpose::Any,
        SystemTime::now(),
    );
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::RevocationUnknown);
    assert!(
        reason.starts_with("revocation status unknown: no usable CRL of CN=int is held")
            && reason.contains("signature does not verify"),
        "{reason}"
    );
    assert_eq!(r.chain.len(), 3, "{r:?}");
    assert_eq!(r.chain[0].revocation, Revocation::NoCrl);
    assert_eq!(r.chain[0].ignored_crls.len(), 1, "{r:?}");
    assert!(
        r.chain[0].ignored_crls[0]
            .why
            .contains("signature does not verify"),
        "{r:?}"
    );
}

#[test]
fn an_expired_crl_still_revokes_and_leaves_other_certificates_unknown() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let other = pki.cert("other", "ec", Some("int"), SERVER, 365);
    let cnf = pki.ca_config("int");
    pki.revoke(&cnf, "leaf", "keyCompromise");
    let expiring = pki.crl(&cnf, Some(1)); // #1, nextUpdate in an hour
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();
    let later = now + DAY;
    let crls = [expiring.clone(), root_crl.clone()];

    // Fresh: the leaf is revoked, the other certificate good.
    assert_eq!(
        failure(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, now)).0,
        Failure::Revoked
    );
    assert_valid(&check(&other, &[], &store, Some(&crls), Purpose::Any, now));

    // A day later the CRL has expired. A revocation is final: the leaf stays revoked
    // (holding back newer CRLs must not un-revoke it)…
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, later);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Revoked);
    assert!(reason.ends_with("(key-compromise)"), "{reason}");
    assert!(
        matches!(&r.chain[0].revocation, Revocation::Revoked { crl, .. }
            if crl.number.as_deref() == Some("1")),
        "{r:?}"
    );
    // …and a certificate it does not list has an unknown status: invalid.
    let r = check(&other, &[], &store, Some(&crls), Purpose::Any, later);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::RevocationUnknown);
    assert!(
        reason.starts_with("revocation status unknown: the CRL of CN=int expired at "),
        "{reason}"
    );
    assert_eq!(r.chain.len(), 3, "{r:?}");
    match &r.chain[0].revocation {
        Revocation::CrlExpired { crl } => {
            assert!(crl.next_update.is_some_and(|n| n < later));
        }
        other => panic!("status {other:?}"),
    }

    // A fresh CRL makes it valid again; the leaf is still revoked.
    let fresh = pki.crl(&cnf, None); // #2
    let crls = [expiring, fresh, root_crl];
    let r = check(&other, &[], &store, Some(&crls), Purpose::Any, later);
    assert_valid(&r);
    assert!(
        matches!(&r.chain[0].revocation, Revocation::Good { crl }
            if crl.number.as_deref() == Some("2")),
        "{r:?}"
    );
    assert_eq!(
        failure(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, later)).0,
        Failure::Revoked
    );
}

#[test]
fn with_crl_use_an_issuer_without_a_crl_leaves_the_status_unknown() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let int_crl = pki.crl(&pki.ca_config("int"), None);
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();

    let r = check(&leaf, &[], &store, Some(&[]), Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::RevocationUnknown);
    assert_eq!(
        reason,
        "revocation status unknown: no CRL of CN=int is held (crl-use=yes)"
    );
    assert_eq!(r.chain.len(), 3, "{r:?}");
    assert_eq!(r.chain[0].revocation, Revocation::NoCrl);

    // The intermediate's CRL only: the root has none for the intermediate.
    let crls = [int_crl.clone()];
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::RevocationUnknown);
    assert_eq!(
        reason,
        "revocation status unknown: no CRL of CN=root is held (crl-use=yes)"
    );
    assert!(matches!(r.chain[0].revocation, Revocation::Good { .. }));
    assert_eq!(r.chain[1].revocation, Revocation::NoCrl);

    // Both: valid (the trust anchor needs no CRL); crl-use=no: valid without any.
    let crls = [int_crl, root_crl];
    assert_valid(&check(&leaf, &[], &store, Some(&crls), Purpose::Any, now));
    assert_valid(&check(&leaf, &[], &store, None, Purpose::Any, now));
}

#[test]
fn two_cas_with_the_same_name_each_count_only_their_own_crls() {
    let pki = Pki::new();
    let ca = pki.cert("ca", "ec", None, CA, 3650);
    let ca2 = pki.cert_cn("ca2", "ca", "ec", None, CA, 3650);
    let ok = pki.cert("ok", "ec", Some("ca"), SERVER, 365);
    // A certificate of ca2 with the same serial number, revoked by ca2.
    pki.serial.set(pki.serial.get() - 1);
    let twin = pki.cert("twin", "ec", Some("ca2"), SERVER, 365);
    let ca_crl = pki.crl(&pki.ca_config("ca"), None); // #1
    let cnf2 = pki.ca_config("ca2");
    pki.revoke(&cnf2, "twin", "keyCompromise");
    pki.crl(&cnf2, None);
    let ca2_crl = pki.crl(&cnf2, None); // #2: newer than ca's
    let store = [("ca", &ca[..], true), ("ca2", &ca2[..], true)];
    let now = SystemTime::now();
    for crls in [
        [ca_crl.clone(), ca2_crl.clone()],
        [ca2_crl.clone(), ca_crl.clone()],
    ] {
        let r = check(&ok, &[], &store, Some(&crls), Purpose::Any, now);
        assert_valid(&r);
        assert_eq!(r.chain[1].store_name.as_deref(), Some("ca"));
        assert!(
            matches!(&r.chain[0].revocation, Revocation::Good { crl }
                if crl.number.as_deref() == Some("1")),
            "{r:?}"
        );
        assert!(r.chain[0].ignored_crls.is_empty(), "{r:?}");

        let r = check(&twin, &[], &store, Some(&crls), Purpose::Any, now);
        assert_eq!(failure(&r).0, Failure::Revoked, "{r:?}");
        assert_eq!(r.chain[1].store_name.as_deref(), Some("ca2"));
    }
    // ca's only CRL missing: ca2's does not stand in for it.
    let crls = [ca2_crl];
    let r = check(&ok, &[], &store, Some(&crls), Purpose::Any, now);
    assert_eq!(failure(&r).0, Failure::RevocationUnknown, "{r:?}");
}

#[test]
fn a_trusted_certificate_is_checked_against_its_issuers_crl() {
    let pki = Pki::new();
    let ca = pki.cert("ca", "ec", None, CA, 3650);
    let leaf = pki.cert("leaf", "ec", Some("ca"), SERVER, 365);
    let other = pki.cert("other", "ec", Some("ca"), SERVER, 365);
    let cnf = pki.ca_config("ca");
    pki.revoke(&cnf, "leaf", "keyCompromise");
    let crls = [pki.crl(&cnf, None)];
    let now = SystemTime::now();
    // The CA is in the store (it need not be trusted); the leaves are trusted themselves.
    for ca_trusted in [false, true] {
        let store = [
            ("ca", &ca[..], ca_trusted),
            ("leaf", &leaf[..], true),
            ("other", &other[..], true),
        ];
        let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::Revoked);
        assert!(
            reason.starts_with("certificate revoked at ") && reason.ends_with("(key-compromise)"),
            "{reason}"
        );
        assert_eq!(r.chain.len(), 1);
        assert!(r.chain[0].trust_anchor);
        assert!(matches!(r.chain[0].revocation, Revocation::Revoked { .. }));

        let r = check(&other, &[], &store, Some(&crls), Purpose::Any, now);
        assert_valid(&r);
        assert!(matches!(r.chain[0].revocation, Revocation::Good { .. }));

        let r = check(&other, &[], &store, Some(&[]), Purpose::Any, now);
        let (kind, reason) = failure(&r);
        assert_eq!(kind, Failure::RevocationUnknown);
        assert!(reason.contains("no CRL of CN=ca is held"), "{reason}");

        let r = check(&leaf, &[], &store, None, Purpose::Any, now);
        assert_valid(&r);
        assert_eq!(r.chain[0].revocation, Revocation::TrustAnchor);
    }
    // Trusted directly, its issuer unknown: valid, its revocation not checked.
    let store = [("leaf", &leaf[..], true)];
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
    assert_valid(&r);
    assert_eq!(r.chain[0].revocation, Revocation::IssuerUnknown);
    // The CA itself (self-issued) needs no CRL.
    let store = [("ca", &ca[..], true)];
    let r = check(&ca, &[], &store, Some(&[]), Purpose::Any, now);
    assert_valid(&r);
    assert_eq!(r.chain[0].revocation, Revocation::TrustAnchor);
}

#[test]
fn a_revocation_is_final_but_a_hold_can_be_released() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let held = pki.cert("held", "ec", Some("int"), SERVER, 365);
    let cnf = pki.ca_config("int");
    pki.revoke(&cnf, "leaf", "keyCompromise");
    pki.revoke(&cnf, "held", "certificateHold");
    let first = pki.crl(&cnf, None); // #1: both
    pki.unrevoke_all("int");
    let second = pki.crl(&cnf, None); // #2: neither
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let now = SystemTime::now();

    let crls = [first.clone(), root_crl.clone()];
    let r = check(&held, &[], &store, Some(&crls), Purpose::Any, now);
    let (kind, reason) = failure(&r);
    assert_eq!(kind, Failure::Revoked);
    assert!(reason.ends_with("(certificate-hold)"), "{reason}");

    let crls = [first, second, root_crl];
    // A newer CRL that leaves out a revoked certificate does not un-revoke it…
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
    assert_eq!(failure(&r).0, Failure::Revoked, "{r:?}");
    assert!(
        matches!(&r.chain[0].revocation, Revocation::Revoked { crl, .. }
            if crl.number.as_deref() == Some("1")),
        "{r:?}"
    );
    // …but releases a certificate on hold.
    let r = check(&held, &[], &store, Some(&crls), Purpose::Any, now);
    assert_valid(&r);
    assert!(
        matches!(&r.chain[0].revocation, Revocation::Good { crl }
            if crl.number.as_deref() == Some("2")),
        "{r:?}"
    );
}

#[test]
fn a_crl_whose_scope_excludes_the_certificate_does_not_count() {
    let pki = Pki::new();
    let (root, int, leaf) = ec_chain(&pki, SERVER);
    let cnf = pki.ca_config("int");
    let complete = pki.crl(&cnf, Some(1)); // #1, expires in an hour
    let ca_only = pki.crl_ext_config(
        "int",
        "issuingDistributionPoint=critical,@idp\n\
         [idp]\nfullname=URI:http://pki.example/int-ca.crl\nonlyCA=TRUE\n",
    );
    let ca_only = pki.crl(&ca_only, None); // #2, CA certificates only
    let root_crl = pki.crl(&pki.ca_config("root"), None);
    let store = [("root", &root[..], true), ("int", &int[..], false)];
    let crls = [complete, ca_only, root_crl];
    let now = SystemTime::now();

    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now);
    assert_valid(&r);
    assert!(
        matches!(&r.chain[0].revocation, Revocation::Good { crl }
            if crl.number.as_deref() == Some("1")),
        "{r:?}"
    );
    // Once the complete CRL has expired, the newer CA-only CRL does not vouch for the leaf.
    let r = check(&leaf, &[], &store, Some(&crls), Purpose::Any, now + DAY);
    assert_eq!(failure(&r).0, Failure::RevocationUnknown, "{r:?}");
    assert!(
        matches!(r.chain[0].revocation, Revocation::CrlExpired { .. }),
        "{r:?}"
    );
    assert!(
        r.chain[0]
            .ignored_crls
            .iter()
            .any(|i| i.crl.number.as_deref() == Some("2") && i.why.contains("scope")),
        "{r:?}"
    );
}

#[test]
fn certificates_are_read_from_pem_bundles_and_der() {
    let pki = Pki::new();
    let (root, int, _) = ec_chain(&pki, SERVER);
    let root_pem = std::fs::read_to_string(pki.path("root.pem")).unwrap();
    let int_pem = std::fs::read_to_string(pki.path("int.pem")).unwrap();
    let key_pem = std::fs::read_to_string(pki.path("int.key")).unwrap();
    let bundle = format!("subject=CN=int\n{int_pem}{key_pem}\n{root_pem}");
    assert_eq!(
        read_certificates(bundle.as_bytes()).unwrap(),
        [int, root.clone()]
    );
    assert_eq!(read_certificates(&root).unwrap(), [root]);

    for bad in [
        &b"hello, world"[..],
        key_pem.as_bytes(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n",
    ] {
        let e = read_certificates(bad).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(!e.is_empty());
    }
    let e = read_certificates(b"hello").unwrap_err().to_string();
    assert!(e.starts_with("not a certificate file"), "{e}");
    let e = read_certificates(key_pem.as_bytes())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "no CERTIFICATE block in the PEM file");
}

#[test]
fn purposes_parse_and_print() {
    for p in [Purpose::TlsServer, Purpose::TlsClient, Purpose::Any] {
        assert_eq!(p.to_string().parse::<Purpose>(), Ok(p));
    }
    assert_eq!("TLS-Server".parse::<Purpose>(), Ok(Purpose::TlsServer));
    assert!("server".parse::<Purpose>().is_err());
}

#[test]
fn a_target_that_does_not_parse_is_invalid_without_a_chain() {
    let r = check(
        b"\x30\x03\x02\x01\x01",
        &[],
        &[],
        None,
        Purpose::Any,
        SystemTime::now(),
    );
    assert_eq!(failure(&r).0, Failure::Malformed);
    assert!(r.chain.is_empty());
}

mod strict;
