//! HTTP: what a variant sends (`Req`), one raw exchange on a fresh connection, what the
//! answer means, and the raw-HTTP abuse family.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use certman::error::KeyError;
use certman::protocols::scep::message::{self, MessageError, MessageLimits, PkiStatus};
use certman::secret::SecretBytes;

use crate::messages::Kit;
use crate::plan::{Expect, Plan, Rng};

/// Where the SCEP server answers.
pub(crate) const SCEP: &str = "/scep/test/pkiclient.exe";

// ------------------------------------------------------------------ HTTP

/// What to send.
#[derive(Clone)]
pub(crate) enum Req {
    /// POST the body to the PKIOperation URL
    Post(Vec<u8>),
    /// GET the PKIOperation URL with this (already URL-encoded) `message=`
    Get(String),
    /// this whole HTTP request
    Raw(Vec<u8>),
}

impl Req {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Req::Post(body) => post(&format!("{SCEP}?operation=PKIOperation"), body),
            Req::Get(m) => get(&format!("{SCEP}?operation=PKIOperation&message={m}")),
            Req::Raw(r) => r.clone(),
        }
    }
}

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-pki-message\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Standard base64, URL-encoded (as certmonger sends `message=`).
pub(crate) fn url_b64(der: &[u8]) -> String {
    Base64::encode_string(der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// One request on a fresh connection: (status, body).
pub(crate) fn exchange(port: u16, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("cannot connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (413) and close before it has read everything: read anyway.
    let wrote = s.write_all(request);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => {
                return Err(format!("no response ({e}; sending: {wrote:?})"))
            }
            Err(_) => break,
        }
    }
    parse_response(&raw).ok_or_else(|| {
        format!(
            "not an HTTP response ({} bytes; sending: {wrote:?}): {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[split + 4..];
    if head.contains("transfer-encoding: chunked") {
        return Some((status, dechunk(body)?));
    }
    Some((status, body.to_vec()))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// What an answer is: `Ok("HTTP 4xx")` or `Ok("FAILURE <failInfo>")`, else why it is wrong
/// for a hostile message.
pub(crate) fn outcome(status: u16, body: &[u8], ca: &[u8]) -> Result<String, String> {
    match status {
        400..=499 => Ok(format!("HTTP {status}")),
        200 => {
            let mut no_key = |_: &[u8]| -> Result<SecretBytes, KeyError> {
                Err(KeyError::Unsupported("the test opens no payload".into()))
            };
            match message::decode_cert_rep(body, &[ca], &mut no_key, &MessageLimits::default()) {
                Ok(rep) => match rep.status {
                    PkiStatus::Failure(f) => Ok(format!("FAILURE {f:?}")),
                    s => Err(format!("CertRep {s:?}")),
                },
                // Only a SUCCESS carries an envelope, which needs the requester's key.
                Err(MessageError::Undecryptable) => {
                    Err("CertRep SUCCESS (a payload sealed to the requester)".into())
                }
                Err(e) => Err(format!("HTTP 200 without a readable CertRep: {e}")),
            }
        }
        _ => Err(format!(
            "HTTP {status}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// HTTP-level abuse: sizes, bodies, garbage base64 by GET, operations, paths.
pub(crate) fn http(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let op = format!("{SCEP}?operation=PKIOperation");
    let h = "http";
    plan.push(
        h,
        "POST with an empty body",
        Req::Post(Vec::new()),
        Expect::Status(400),
    );
    plan.push(
        h,
        "POST of 64 KiB + 1 zero bytes",
        Req::Post(vec![0; 64 * 1024 + 1]),
        Expect::Status(413),
    );
    let mut padded = kit.base_v.clone();
    padded.resize(64 * 1024 + 1, 0);
    plan.push(
        h,
        "POST of the valid message padded to 64 KiB + 1",
        Req::Post(padded),
        Expect::Status(413),
    );
    plan.push(
        h,
        "POST of 64 KiB of random bytes",
        Req::Post(rng.bytes(64 * 1024)),
        Expect::Status(400),
    );
    let mut lying = format!(
        "POST {op} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    lying.extend(vec![0x30; 64 * 1024 + 1]);
    plan.push(
        h,
        "POST declaring 10^12 bytes, sending 64 KiB + 1",
        Req::Raw(lying),
        Expect::Status(413),
    );
    let mut chunked_body = format!(
        "POST {op} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..10 {
        chunked_body.extend(format!("{:x}\r\n", 7000).into_bytes());
        chunked_body.extend(vec![0x41; 7000]);
        chunked_body.extend(b"\r\n");
    }
    chunked_body.extend(b"0\r\n\r\n");
    plan.push(
        h,
        "POST of 70,000 bytes, chunked",
        Req::Raw(chunked_body),
        Expect::Status(413),
    );
    plan.push(
        h,
        "GET without message=",
        Req::Raw(get(&op)),
        Expect::Status(400),
    );
    for (name, m) in [
        ("empty", String::new()),
        ("not base64", "!!!!".into()),
        ("bad percent-encoding", "%ZZ%ZZ".into()),
        ("invalid UTF-8", "%C3%28%FF%FE".into()),
        ("one character", "A".into()),
        ("only padding", "%3D%3D%3D%3D".into()),
        ("a NUL byte", "MII%00AAAA".into()),
        ("base64 of 100 random bytes", url_b64(&rng.bytes(100))),
        (
            "base64 of the truncated valid message with spaces",
            url_b64(&kit.base_v[..kit.base_v.len() / 2]).replace('A', "%20A"),
        ),
        (
            "base64 of 64 KiB + 1 bytes (a URL of 87 KB)",
            url_b64(&vec![0x30; 64 * 1024 + 1]),
        ),
        (
            "base64 of 47 KiB (a URL near the limit)",
            Base64::encode_string(&rng.bytes(47 * 1024)),
        ),
    ] {
        plan.push(
            h,
            format!("GET message= {name}"),
            Req::Get(m),
            Expect::Refused,
        );
    }
    // Garbage base64: random strings over the base64 alphabet, URL specials and escapes.
    let alphabet: Vec<String> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .map(String::from)
        .chain(
            [
                "+", "/", "=", "-", "_", "%2B", "%2F", "%3D", "%0A", "%20", "%00", "%FF", ".",
            ]
            .map(String::from),
        )
        .collect();
    for i in 0..40 {
        let len = 1 + rng.below(if i % 2 == 0 { 64 } else { 4000 });
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())].as_str())
            .collect();
        plan.push(
            h,
            format!("GET message= garbage #{i} ({len} symbols)"),
            Req::Get(s),
            Expect::Refused,
        );
    }
    for (name, target) in [
        (
            "unknown operation",
            format!("{SCEP}?operation=PKIOperationX"),
        ),
        ("no operation", SCEP.to_owned()),
        (
            "operation twice, unknown first",
            format!("{SCEP}?operation=X&operation=PKIOperation"),
        ),
    ] {
        plan.push(
            h,
            format!("POST of the valid message with {name}"),
            Req::Raw(post(&target, &kit.base_v)),
            Expect::Status(400),
        );
    }
    plan.push(
        h,
        "POST of the valid message to a path no server has",
        Req::Raw(post(
            "/scep/nope/pkiclient.exe?operation=PKIOperation",
            &kit.base_v,
        )),
        Expect::Status(404),
    );
}
