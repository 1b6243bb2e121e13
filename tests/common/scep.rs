//! The real SCEP clients of the tests: micromdm's `scepclient` (Debian `scep`) and certmonger's
//! daemon with its `scep-submit` helper (Debian `certmonger`, run on a private D-Bus session).
//! Missing peers skip a test with a note, or fail it under `CERTMAN_REQUIRE_TOKENS=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::softhsm::tokens_required;
use super::{openssl, stderr, stdout, Env};

/// micromdm's client.
pub const SCEPCLIENT: &str = "scepclient";
/// certmonger's SCEP helper (used by its daemon).
pub const SCEP_SUBMIT: &str = "/usr/lib/certmonger/scep-submit";

fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Whether the peer `program` (from Debian `package`) is here; a panic under
/// `CERTMAN_REQUIRE_TOKENS=1` when it is not.
pub fn peer(program: &str, package: &str) -> bool {
    if installed(program) {
        return true;
    }
    if tokens_required() {
        panic!(
            "CERTMAN_REQUIRE_TOKENS=1 but {program} is not installed; run scripts/setup.sh \
             (Debian package {package})"
        );
    }
    eprintln!("skipping: {program} not installed (Debian package {package})");
    false
}

/// An RSA-2048 key in PKCS#1 PEM (what scepclient needs) at `dir/k.key`.
pub fn pkcs1_key(dir: &Path) -> PathBuf {
    openssl(&["genrsa", "-traditional", "-out", "k.key", "2048"], dir);
    dir.join("k.key")
}

/// micromdm `scepclient` in `dir` (fresh: it caches `csr.pem` beside the key), enrolling
/// `cn` at `url` with `challenge`; the certificate lands in `dir/client.pem`. Times out after
/// `timeout` (it re-sends a pending request every 30 s).
pub fn scepclient(
    dir: &Path,
    url: &str,
    challenge: Option<&str>,
    cn: &str,
    timeout: Duration,
) -> Output {
    if !dir.join("k.key").exists() {
        pkcs1_key(dir);
    }
    let mut args = vec![
        format!("{}", timeout.as_secs()),
        SCEPCLIENT.to_owned(),
        "-private-key".into(),
        "k.key".into(),
        format!("-server-url={url}"),
        format!("-cn={cn}"),
        "-debug".into(),
    ];
    if let Some(c) = challenge {
        args.push(format!("-challenge={c}"));
    }
    if dir.join("client.pem").exists() {
        args.push("-certificate".into());
        args.push("client.pem".into());
    }
    Command::new("timeout")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run scepclient")
}

/// certmonger enrols `cn` at `url` with `otp` through its daemon (`certmonger -s -n` on a
/// private D-Bus session, its state in `dir`), as `getcert request -w` does; returns the
/// output of `getcert` and where the certificate was to be written. `signing_ca` is the CA
/// certificate (PEM) given with `add-scep-ca -N`: certmonger 0.79 verifies a CertRep only
/// against a CA certificate it holds apart from the RA/encryption certificate, which a
/// one-certificate GetCACert (a CA without an RA) does not give it.
pub fn certmonger_enrol(
    dir: &Path,
    url: &str,
    otp: &str,
    cn: &str,
    signing_ca: Option<&Path>,
) -> (Output, PathBuf) {
    for d in ["req", "cas", "local", "tmp", "conf"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let cert = dir.join("c.crt");
    let key = dir.join("c.key");
    let script = format!(
        "certmonger -s -n -d 1 > '{d}/daemon.log' 2>&1 &\n\
         for i in $(seq 50); do getcert list-cas -s >/dev/null 2>&1 && break; sleep 0.1; done\n\
         getcert add-scep-ca -s -c certman -u '{url}' {n} || exit 9\n\
         for i in $(seq 100); do grep -qs '^ca_capabilities=' $(grep -ls '^id=certman$' '{d}'/cas/*) && break; sleep 0.1; done\n\
         getcert request -s -c certman -f '{cert}' -k '{key}' -L '{otp}' -N 'CN={cn}' -w -v\n\
         rc=$?\n\
         getcert list -s\n\
         exit $rc\n",
        d = dir.display(),
        n = signing_ca
            .map(|p| format!("-N '{}'", p.display()))
            .unwrap_or_default(),
        cert = cert.display(),
        key = key.display(),
    );
    let out = Command::new("timeout")
        .args(["120", "dbus-run-session", "--", "sh", "-c", &script])
        .env("CERTMONGER_REQUESTS_DIR", dir.join("req"))
        .env("CERTMONGER_CAS_DIR", dir.join("cas"))
        .env("CERTMONGER_LOCAL_CA_DIR", dir.join("local"))
        .env("CERTMONGER_TMPDIR", dir.join("tmp"))
        .env("CERTMONGER_CONFIG_DIR", dir.join("conf"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run certmonger");
    (out, cert)
}

/// A fresh one-time password (`scep-server otp generate`), good for `minutes`.
pub fn otp(env: &Env, minutes: u32) -> String {
    let out = env.ok(&[
        "scep-server",
        "otp",
        "generate",
        &format!("minutes-valid={minutes}"),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("otp json");
    v["password"].as_str().expect("password").to_owned()
}

/// `scep-server requests print --json`.
pub fn scep_requests(env: &Env) -> Vec<Value> {
    let out = env.ok(&["scep-server", "requests", "print", "--json"]);
    serde_json::from_str::<Value>(&out)
        .expect("requests json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Everything a peer printed, for assertion messages.
pub fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

// ------------------------------------------------------------------ a client on the wire

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use certman::keys::soft::SoftProvider;
use certman::keys::{GenerateRequest, KeyAlgorithm, KeyHandle, KeyProvider, KeySigner, X509Signer};
use certman::protocols::scep::message::{
    self, ContentCipher, DecodedCertRep, MessageCertificate, MessageDigest, MessageLimits,
    MessageType, PkiRequest, RequestContent,
};
use certman::seal::Sealer;
use certman::x509::{self, CertificateSpec, SubjectFields};

/// A SCEP client made of certman's own message layer: an RSA-2048 software key, a
/// self-signed certificate of it (the message signer, as clients make one), its requests.
pub struct Device {
    provider: SoftProvider,
    handle: KeyHandle,
    /// the key
    pub signer: Arc<dyn KeySigner>,
    /// the self-signed certificate, DER
    pub certificate: Vec<u8>,
}

fn subject(cn: &str) -> x509_cert::name::Name {
    SubjectFields {
        common_name: Some(cn.into()),
        ..Default::default()
    }
    .to_name()
    .unwrap()
}

fn x509_signer(key: &Arc<dyn KeySigner>) -> X509Signer {
    let scheme = key.algorithm().signature_scheme(None).unwrap();
    X509Signer::new(key.clone(), scheme).unwrap()
}

impl Device {
    pub fn new(cn: &str) -> Device {
        let provider = SoftProvider::new(Arc::new(
            Sealer::new(b"scep-test-device-machine-id-0123", b"salt").unwrap(),
        ));
        let g = provider
            .generate(&GenerateRequest {
                algorithm: KeyAlgorithm::Rsa { bits: 2048 },
                label: cn.into(),
                location: None,
            })
            .unwrap();
        let handle = KeyHandle {
            uri: g.uri,
            sealed: g.sealed,
        };
        let signer = provider.signer(&handle).unwrap();
        let (not_before, not_after) = CertificateSpec::validity_from_now(1).unwrap();
        let certificate = x509::build_certificate(
            &CertificateSpec {
                subject: subject(cn),
                public_key: signer.public_key().clone(),
                serial: x509::random_serial().unwrap(),
                not_before,
                not_after,
                is_ca: false,
                key_usage: Default::default(),
                subject_alt_names: Vec::new(),
                crl_distribution_point: None,
                issuer: None,
            },
            &x509_signer(&signer),
        )
        .unwrap();
        Device {
            provider,
            handle,
            signer,
            certificate,
        }
    }

    /// A PKCS#10 request for `cn`, with a challengePassword if given.
    pub fn csr(&self, cn: &str, challenge: Option<&str>) -> Vec<u8> {
        x509::csr::build_request(
            &x509::csr::RequestSpec {
                subject: subject(cn),
                subject_alt_names: Vec::new(),
                key_usage: Default::default(),
                ca: false,
                challenge_password: challenge.map(str::to_owned),
                unstructured_address: None,
            },
            &x509_signer(&self.signer),
        )
        .unwrap()
    }

    /// A PKCSReq (or another type with `content`) encrypted to `recipient` (DER).
    pub fn request(
        &self,
        kind: MessageType,
        content: &RequestContent,
        recipient: &[u8],
        cipher: ContentCipher,
        digest: MessageDigest,
    ) -> Vec<u8> {
        let txid = message::transaction_id(self.signer.public_key());
        let nonce = [7u8; 16];
        message::encode_request(
            &PkiRequest {
                message_type: kind,
                transaction_id: &txid,
                sender_nonce: &nonce,
                content,
                cipher,
                digest,
                recipient: &MessageCertificate::parse(recipient).unwrap(),
            },
            self.signer.as_ref(),
            &self.certificate,
        )
        .unwrap()
    }

    /// Reads a CertRep signed by `signer` (DER), decrypting with this device's key.
    pub fn read_reply(&self, reply: &[u8], signer: &[u8]) -> DecodedCertRep {
        let decrypter = self.provider.decrypter().unwrap();
        message::decode_cert_rep(
            reply,
            &[signer],
            &mut |c| decrypter.decrypt_pkcs1v15(&self.handle, c),
            &MessageLimits::default(),
        )
        .unwrap()
    }
}

/// A plain HTTP/1.1 POST: (status, headers, body).
pub fn http_post(port: u16, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head, raw[split + 4..].to_vec())
}
