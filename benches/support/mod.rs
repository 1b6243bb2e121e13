//! What the SCEP benches share (`benches/scep.rs`, `benches/scale_out.rs`): settings from the
//! command line or the environment, devices and their pre-built PKCSReq messages, the check
//! of a reply, one HTTP/1.1 request per connection, and `openssl speed`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certman::keys::soft::SoftProvider;
use certman::keys::{GenerateRequest, KeyAlgorithm, KeyHandle, KeyProvider, KeySigner, X509Signer};
use certman::protocols::scep::message::{
    decode_cert_rep, encode_request, transaction_id, ContentCipher, MessageCertificate,
    MessageDigest, MessageLimits, MessageType, PkiRequest, PkiStatus, ReplyPayload, RequestContent,
};
use certman::seal::Sealer;
use certman::x509::{self, CertificateSpec, SubjectFields};

/// `--arg V` / `--arg=V` on the command line, else `$env`.
pub fn setting(arg: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.split_once('=') {
            Some((k, v)) if k == arg => Some(v.to_owned()),
            _ if a == arg => args.get(i + 1).cloned(),
            _ => None,
        });
    from_args.or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
}

pub fn number(arg: &str, env: &str, default: usize) -> usize {
    setting(arg, env).map_or(default, |v| {
        let n = v.trim().replace('_', "").parse().ok().filter(|n| *n > 0);
        n.unwrap_or_else(|| panic!("{arg} / {env}: '{v}' is not a positive number"))
    })
}

// ------------------------------------------------------------------ devices and messages

/// A device key (software RSA-2048) and the self-signed certificate that signs its messages.
pub struct Device {
    pub provider: SoftProvider,
    pub handle: KeyHandle,
    pub signer: Arc<dyn KeySigner>,
    pub certificate: Vec<u8>,
}

pub fn name(cn: &str) -> x509_cert::name::Name {
    let fields = SubjectFields {
        common_name: Some(cn.into()),
        ..Default::default()
    };
    fields.to_name().expect("name")
}

pub fn x509_signer(key: &Arc<dyn KeySigner>) -> X509Signer {
    let scheme = key.algorithm().signature_scheme(None).expect("scheme");
    X509Signer::new(key.clone(), scheme).expect("signer")
}

impl Device {
    pub fn new(cn: &str) -> Device {
        let sealer = Sealer::new(b"scep-bench-device-machine-id-012", b"salt").expect("sealer");
        let provider = SoftProvider::new(Arc::new(sealer));
        let algorithm = KeyAlgorithm::Rsa { bits: 2048 };
        let req = GenerateRequest {
            algorithm,
            label: cn.into(),
            location: None,
        };
        let g = provider.generate(&req).expect("device key");
        let handle = KeyHandle {
            uri: g.uri,
            sealed: g.sealed,
        };
        let signer = provider.signer(&handle).expect("device signer");
        let (not_before, not_after) = CertificateSpec::validity_from_now(1).expect("validity");
        let spec = CertificateSpec {
            subject: name(cn),
            public_key: signer.public_key().clone(),
            serial: x509::random_serial().expect("serial"),
            not_before,
            not_after,
            is_ca: false,
            key_usage: Default::default(),
            subject_alt_names: Vec::new(),
            crl_distribution_point: None,
            issuer: None,
        };
        let certificate = x509::build_certificate(&spec, &x509_signer(&signer)).expect("cert");
        Device {
            provider,
            handle,
            signer,
            certificate,
        }
    }
}

/// One pre-built PKCSReq.
pub struct Msg {
    pub device: usize,
    pub cn: String,
    pub nonce: [u8; 16],
    pub der: Vec<u8>,
}

pub fn build(devices: &[Device], ca: &[u8], index: usize, cn: String, challenge: String) -> Msg {
    let device = index % devices.len();
    let d = &devices[device];
    let spec = x509::csr::RequestSpec {
        subject: name(&cn),
        subject_alt_names: Vec::new(),
        key_usage: Default::default(),
        ca: false,
        challenge_password: Some(challenge),
        unstructured_address: None,
    };
    let csr = x509::csr::build_request(&spec, &x509_signer(&d.signer)).expect("CSR");
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).expect("nonce");
    // one per request: a fleet of devices, not one device re-sending its request
    let txid = format!("{}-{index}", transaction_id(d.signer.public_key()));
    let req = PkiRequest {
        message_type: MessageType::PkcsReq,
        transaction_id: &txid,
        sender_nonce: &nonce,
        content: &RequestContent::CertificationRequest(csr),
        cipher: ContentCipher::Aes128Cbc,
        digest: MessageDigest::Sha256,
        recipient: &MessageCertificate::parse(ca).expect("CA certificate"),
    };
    let der = encode_request(&req, d.signer.as_ref(), &d.certificate).expect("PKCSReq");
    Msg {
        device,
        cn,
        nonce,
        der,
    }
}

/// Checks a reply; returns the issued certificate's serial number.
pub fn check(
    devices: &[Device],
    ca: &[u8],
    m: &Msg,
    reply: (u16, Vec<u8>),
) -> Result<Vec<u8>, String> {
    let (status, body) = reply;
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    let d = &devices[m.device];
    let decrypter = d.provider.decrypter().ok_or("no decrypter")?;
    let mut decrypt = |c: &[u8]| decrypter.decrypt_pkcs1v15(&d.handle, c);
    let limits = MessageLimits::default();
    let rep = decode_cert_rep(&body, &[ca], &mut decrypt, &limits).map_err(|e| e.to_string())?;
    if rep.status != PkiStatus::Success {
        return Err(format!("pkiStatus {:?}", rep.status));
    }
    if rep.recipient_nonce != m.nonce {
        return Err("recipientNonce is not the request's senderNonce".into());
    }
    let Some(ReplyPayload::Certificates(certs)) = rep.payload else {
        return Err("SUCCESS without certificates".into());
    };
    let cert = MessageCertificate::parse(certs.first().ok_or("no certificate")?)
        .map_err(|e| format!("issued certificate: {e}"))?;
    if cert.public_key.subject_public_key != d.signer.public_key().subject_public_key {
        return Err("the certificate is for another key".into());
    }
    if find(&cert.subject, m.cn.as_bytes()).is_none() {
        return Err(format!("the certificate's subject lacks CN={}", m.cn));
    }
    Ok(cert.serial)
}

// ------------------------------------------------------------------ HTTP and processes

/// One HTTP/1.1 request on its own connection: (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.set_nodelay(true).ok();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    if method == "POST" {
        head += "Content-Type: application/x-pki-message\r\n";
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    let mut out = (head + "Connection: close\r\n\r\n").into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = find(&raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let status = status.ok_or("no status code")?;
    let mut body = raw.split_off(split + 4);
    if head.contains("\r\ntransfer-encoding: chunked") {
        body = dechunk(&body)?;
    } else if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        body.truncate(len.trim().parse().map_err(|_| "bad content-length")?);
    }
    Ok((status, body))
}

/// Where `needle` starts in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or("bad chunk")?;
        let line = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16);
        let size = size.map_err(|_| format!("bad chunk size {line:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("short chunk")?);
        b = b.get(size + 2..).ok_or("short chunk")?;
    }
}

/// `program` with the space-separated `args`.
pub fn cmd(program: impl AsRef<std::ffi::OsStr>, args: &str) -> Command {
    let mut c = Command::new(program);
    c.args(args.split_whitespace()).stdin(Stdio::null());
    c
}

pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{what} failed: {}", text(&out.stderr));
    text(&out.stdout) + &text(&out.stderr)
}

/// `openssl speed` RSA-2048 sign/s (`multi`: "" or "-multi N").
pub fn openssl_speed(seconds: usize, multi: &str) -> f64 {
    let args = format!("speed -seconds {seconds} {multi} rsa2048");
    let out = run_ok(&mut cmd("openssl", &args), "openssl speed");
    // "                  sign    verify    sign/s verify/s"
    // "rsa 2048 bits 0.000251s 0.000013s   3979.0  77562.0": the column counted from the end
    let lines: Vec<&str> = out.lines().collect();
    let h = lines
        .iter()
        .rposition(|l| l.split_whitespace().any(|w| w == "sign/s"));
    let parsed = h.and_then(|h| {
        let header: Vec<&str> = lines[h].split_whitespace().collect();
        let from_end = header.len() - header.iter().position(|w| *w == "sign/s")?;
        let row: Vec<&str> = lines.get(h + 1)?.split_whitespace().collect();
        row.get(row.len().checked_sub(from_end)?)?.parse().ok()
    });
    parsed.unwrap_or_else(|| panic!("no sign/s in openssl speed's output:\n{out}"))
}

// ------------------------------------------------------------------ the measurement
