//! The SCEP client's wire layer (RFC 8894 §4): GetCACaps, GetCACert, GetNextCACert and
//! PKIOperation against one server, over the bounded [`Fetcher`], and what their answers mean.
//! No state and no keys here: the enrolment state machine writes the pkiMessages
//! ([`super::message::encode_request`]) and reads the CertReps
//! ([`super::message::decode_cert_rep`]).
//!
//! What peers do that shaped this: GetCACaps keywords come in any case, with LF (micromdm) or
//! CRLF (step-ca) line ends; a server may answer GetCACaps with an HTTP error, which RFC 8894
//! §3.5.1 says means "no capabilities"; GetCACert may be one DER certificate or a
//! certificates-only SignedData whatever its Content-Type says; PKIOperation replies come with
//! various Content-Types; certman's own server answers 503 while its CA cannot act.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Tag, Tagged};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::message::{ContentCipher, MessageDigest, MessageLimits};
use crate::protocols::fetch::{FetchError, Fetcher, Resource};
use crate::x509::cms::{cert, CertificateView, CmsError, SignedContent};

/// What the SCEP client fetches, for the fetcher's error messages.
pub const SCEP_REPLY: Resource = Resource {
    name: "SCEP reply",
    locations: "SCEP servers",
};

/// The Content-Type of a PKIOperation POST (RFC 8894 §4.3).
pub const PKI_MESSAGE_TYPE: &str = "application/x-pki-message";

/// `basicConstraints` (RFC 5280 §4.2.1.9).
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// `keyUsage` (RFC 5280 §4.2.1.3).
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// Unknown GetCACaps keywords kept, at most, and the longest kept.
const MAX_OTHER_CAPS: usize = 32;
const MAX_CAP_LEN: usize = 64;

/// Why talking to a SCEP server failed. Every message is one line naming the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The scep-url is not an `http://` URL with a host.
    #[error("bad scep-url: {0}")]
    Url(String),
    /// Connecting failed, was refused or timed out.
    #[error("{0}")]
    Unreachable(String),
    /// HTTP 503: the server says to try again later.
    #[error("the SCEP server is unavailable (HTTP 503): it asks to try again later")]
    Unavailable,
    /// Another HTTP status than 200 (or a redirect that is not followed).
    #[error("{0}")]
    Http(String),
    /// The answer is not what SCEP says: not a certificate, not a SignedData, a GetNextCACert
    /// not signed by the current CA or RA, an empty PKIOperation reply.
    #[error("{0}")]
    Garbage(String),
    /// The answer is larger than the limits allow.
    #[error("{0}")]
    TooLarge(String),
}

/// GetCACaps (RFC 8894 §3.5.2), parsed: keywords matched case-insensitively, LF or CRLF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// "AES": AES-128-CBC
    pub aes: bool,
    /// "DES3": DES-EDE3-CBC
    pub des3: bool,
    /// "SHA-1"
    pub sha1: bool,
    /// "SHA-256"
    pub sha256: bool,
    /// "SHA-512"
    pub sha512: bool,
    /// "POSTPKIOperation"
    pub post: bool,
    /// "Renewal": RenewalReq is taken
    pub renewal: bool,
    /// "GetNextCACert"
    pub next_ca: bool,
    /// "SCEPStandard" (sets `aes`, `sha256` and `post` too)
    pub scep_standard: bool,
    /// any other keyword, as sent (at most 32, each at most 64 bytes)
    pub other: Vec<String>,
}

impl Capabilities {
    /// Reads a GetCACaps body. Never fails: what is not a known keyword goes to `other`; an
    /// empty body is no capabilities. "SHA1", "SHA256" and "SHA512" are read as the RFC's
    /// hyphenated names.
    pub fn parse(body: &[u8]) -> Capabilities {
        let mut caps = Capabilities::default();
        let text = String::from_utf8_lossy(body);
        for word in text.split(['\n', '\r']).map(str::trim) {
            let flag = match word.to_ascii_lowercase().as_str() {
                "" => continue,
                "aes" => &mut caps.aes,
                "des3" => &mut caps.des3,
                "sha-1" | "sha1" => &mut caps.sha1,
                "sha-256" | "sha256" => &mut caps.sha256,
                "sha-512" | "sha512" => &mut caps.sha512,
                "postpkioperation" => &mut caps.post,
                "renewal" => &mut caps.renewal,
                "getnextcacert" => &mut caps.next_ca,
                "scepstandard" => &mut caps.scep_standard,
                _ => {
                    if caps.other.len() < MAX_OTHER_CAPS
                        && word.len() <= MAX_CAP_LEN
                        && !caps.other.iter().any(|o| o == word)
                    {
                        caps.other.push(word.to_owned());
                    }
                    continue;
                }
            };
            *flag = true;
        }
        if caps.scep_standard {
            caps.aes = true;
            caps.sha256 = true;
            caps.post = true;
        }
        caps
    }

    /// The content cipher to encrypt requests with: AES (RFC 8894's "AES" = AES-128-CBC) if
    /// offered, else 3DES, else DES (what a server without capabilities must take; the seed's
    /// fallback).
    pub fn cipher(&self) -> ContentCipher {
        if self.aes {
            ContentCipher::Aes128Cbc
        } else if self.des3 {
            ContentCipher::DesEde3Cbc
        } else {
            ContentCipher::DesCbc
        }
    }

    /// The digest to sign requests with: SHA-256 if offered, else SHA-512 if offered, else
    /// SHA-256 anyway (certman signs with nothing weaker; RFC 8894 servers must take SHA-256).
    pub fn digest(&self) -> MessageDigest {
        if !self.sha256 && self.sha512 {
            MessageDigest::Sha512
        } else {
            MessageDigest::Sha256
        }
    }

    /// Whether the server offers no digest certman signs with (only SHA-1, or nothing, which
    /// means MD5): a badAlg answer is then explained by it.
    pub fn weak_digests_only(&self) -> bool {
        !self.sha256 && !self.sha512
    }

    /// The keywords as one line for status and logs, in RFC spelling and alphabetical order
    /// (unknown ones last, as sent), e.g. "AES DES3 POSTPKIOperation Renewal SHA-256"; "none"
    /// when there are none.
    pub fn summary(&self) -> String {
        let known = [
            (self.aes, "AES"),
            (self.des3, "DES3"),
            (self.next_ca, "GetNextCACert"),
            (self.post, "POSTPKIOperation"),
            (self.renewal, "Renewal"),
            (self.scep_standard, "SCEPStandard"),
            (self.sha1, "SHA-1"),
            (self.sha256, "SHA-256"),
            (self.sha512, "SHA-512"),
        ];
        let words: Vec<&str> = known
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, w)| *w)
            .chain(self.other.iter().map(String::as_str))
            .collect();
        if words.is_empty() {
            "none".into()
        } else {
            words.join(" ")
        }
    }
}

/// GetCACert (or the content of GetNextCACert), classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCertificates {
    /// The CA certificate, DER. With an RA: the CA certificate that issued it (by name). With
    /// one certificate: that one, whatever its extensions. Otherwise, among the CA
    /// certificates (basicConstraints cA; if there are none, the self-issued ones): the first
    /// received that issued no other of them (the issuing CA of a chain), else the first
    /// self-issued, else the first.
    pub ca: Vec<u8>,
    /// The RA certificate (not a CA: basicConstraints absent or cA false), DER, if any. With
    /// several: the first one whose keyUsage allows keyEncipherment (or has no keyUsage), else
    /// the first.
    pub ra: Option<Vec<u8>>,
    /// every certificate received, DER, as received
    pub all: Vec<Vec<u8>>,
}

impl CaCertificates {
    /// The certificate requests are encrypted to: the RA if any (chosen for keyEncipherment
    /// when there are several), else the CA.
    pub fn recipient(&self) -> &[u8] {
        self.ra.as_deref().unwrap_or(&self.ca)
    }

    /// Who may sign CertReps: the RA, any other RA certificate from the RA's issuer (NDES
    /// sends one to sign and one to decrypt), and the CA.
    pub fn signers(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = Vec::new();
        if let Some(ra) = &self.ra {
            out.push(ra);
            let issuer = CertificateView::parse(ra).map(|v| v.issuer).ok();
            for der in &self.all {
                let same_issuer = CertificateView::parse(der).ok().map(|v| v.issuer) == issuer;
                if same_issuer
                    && matches!(is_ca(der), Ok(false))
                    && *der != self.ca
                    && !out.contains(&der.as_slice())
                {
                    out.push(der);
                }
            }
        }
        out.push(&self.ca);
        out
    }
}

/// Whether a certificate has basicConstraints cA TRUE.
///
/// ```text
/// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
///   pathLenConstraint INTEGER (0..MAX) OPTIONAL }
/// ```
/// [RFC 5280 §4.2.1.9](https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.9), read by hand
/// so that an explicit `cA FALSE` and a BER TRUE (any non-zero octet) are taken.
fn is_ca(der: &[u8]) -> Result<bool, CmsError> {
    let Some(value) = cert::extension_value(der, BASIC_CONSTRAINTS)? else {
        return Ok(false);
    };
    let seq = AnyRef::from_der(&value)?;
    if seq.tag() != Tag::Sequence {
        return Err(CmsError::Malformed(
            "basicConstraints is not a SEQUENCE".into(),
        ));
    }
    Ok(matches!(seq.value(), [0x01, 0x01, b, ..] if *b != 0))
}

/// Whether a certificate may be encrypted to: no keyUsage, or keyUsage with keyEncipherment.
///
/// ```text
/// KeyUsage ::= BIT STRING { digitalSignature (0), nonRepudiation (1),
///   keyEncipherment (2), … }
/// ```
/// [RFC 5280 §4.2.1.3](https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.3)
fn allows_key_encipherment(der: &[u8]) -> bool {
    match cert::extension_value(der, KEY_USAGE) {
        Ok(None) => true,
        Ok(Some(value)) => match AnyRef::from_der(&value) {
            Ok(bits) if bits.tag() == Tag::BitString => {
                matches!(bits.value(), [_, first, ..] if first & 0x20 != 0)
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// One received certificate, read.
struct Classified<'a> {
    der: &'a [u8],
    view: CertificateView,
    ca: bool,
}

impl Classified<'_> {
    fn self_issued(&self) -> bool {
        self.view.subject == self.view.issuer
    }
}

/// Sorts `certs` into CA and RA (see [`CaCertificates`]); `operation` names the answer in
/// errors.
fn classify(certs: Vec<Vec<u8>>, operation: &str) -> Result<CaCertificates, ClientError> {
    let garbage = |why: String| {
        ClientError::Garbage(format!(
            "the SCEP server answered garbage to {operation}: {why}"
        ))
    };
    if certs.is_empty() {
        return Err(garbage("no certificate".into()));
    }
    let mut read = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let bad = |e: CmsError| garbage(format!("certificate {} cannot be read: {e}", i + 1));
        let view = CertificateView::parse(der).map_err(bad)?;
        let ca = is_ca(der).map_err(bad)?;
        read.push(Classified { der, view, ca });
    }
    if read.len() == 1 {
        return Ok(CaCertificates {
            ca: certs[0].clone(),
            ra: None,
            all: certs,
        });
    }
    // CA certificates: cA TRUE; old v1 roots have no extensions, so failing any, the
    // self-issued ones.
    let mut cas: Vec<&Classified> = read.iter().filter(|c| c.ca).collect();
    if cas.is_empty() {
        cas = read.iter().filter(|c| c.self_issued()).collect();
    }
    if cas.is_empty() {
        return Err(garbage(format!(
            "none of the {} certificates is a CA certificate",
            read.len()
        )));
    }
    let ras: Vec<&Classified> = read
        .iter()
        .filter(|c| !c.ca && !cas.iter().any(|ca| std::ptr::eq(*ca, *c)))
        .collect();
    let ra = ras
        .iter()
        .find(|c| allows_key_encipherment(c.der))
        .or(ras.first())
        .copied();
    let issued_ra = ra.and_then(|ra| cas.iter().find(|ca| ca.view.subject == ra.view.issuer));
    let issued_no_other = || {
        cas.iter().find(|ca| {
            !cas.iter()
                .any(|o| !std::ptr::eq(*o, **ca) && o.view.issuer == ca.view.subject)
        })
    };
    let ca = issued_ra
        .or_else(issued_no_other)
        .or_else(|| cas.iter().find(|c| c.self_issued()))
        .unwrap_or(&cas[0]);
    Ok(CaCertificates {
        ca: ca.der.to_vec(),
        ra: ra.map(|r| r.der.to_vec()),
        all: certs,
    })
}

/// The error of a CMS structure that could not be read: over a limit, or garbage.
fn cms_error(operation: &str, e: CmsError) -> ClientError {
    match e {
        CmsError::Limit(m) => ClientError::TooLarge(format!(
            "the SCEP server's answer to {operation} is over a limit: {m}"
        )),
        e => ClientError::Garbage(format!(
            "the SCEP server answered garbage to {operation}: {e}"
        )),
    }
}

fn check_size(operation: &str, body: &[u8], limits: &MessageLimits) -> Result<(), ClientError> {
    if body.is_empty() {
        return Err(ClientError::Garbage(format!(
            "the SCEP server answered {operation} with an empty body"
        )));
    }
    if body.len() > limits.max_input {
        return Err(ClientError::TooLarge(format!(
            "the SCEP server's answer to {operation} is {} bytes (at most {})",
            body.len(),
            limits.max_input
        )));
    }
    Ok(())
}

/// Reads a GetCACert answer: one DER certificate (`application/x-x509-ca-cert`) or a
/// certificates-only SignedData, DER or BER (`application/x-x509-ca-ra-cert`). Peers do not
/// always label them right, so both are tried; `content_type` only says which error to report.
pub fn parse_ca_certificates(
    content_type: Option<&str>,
    body: &[u8],
    limits: &MessageLimits,
) -> Result<CaCertificates, ClientError> {
    const OP: &str = "GetCACert";
    check_size(OP, body, limits)?;
    let single = CertificateView::parse(body);
    if single.is_ok() {
        return classify(vec![body.to_vec()], OP);
    }
    match SignedContent::parse(body, &limits.cms()) {
        Ok(signed) => classify(signed.certificates, OP),
        Err(e @ CmsError::Limit(_)) => Err(cms_error(OP, e)),
        Err(signed_error) => {
            let why = match (content_type, single) {
                (Some("application/x-x509-ca-cert"), Err(e)) => {
                    format!("not a DER certificate ({e})")
                }
                _ => format!(
                    "neither a DER certificate nor a certificates-only SignedData ({signed_error})"
                ),
            };
            Err(ClientError::Garbage(format!(
                "the SCEP server answered garbage to {OP}: {why}"
            )))
        }
    }
}

/// Reads a GetNextCACert answer (RFC 8894 §4.7.1): verifies that the outer SignedData is
/// signed by one of `current_signers` (DER: the current CA and RA), then classifies the
/// certificates of the degenerate SignedData it holds (the next CA and any new RA).
pub fn parse_next_ca(
    body: &[u8],
    current_signers: &[&[u8]],
    limits: &MessageLimits,
) -> Result<CaCertificates, ClientError> {
    const OP: &str = "GetNextCACert";
    check_size(OP, body, limits)?;
    let garbage = |why: &str| {
        ClientError::Garbage(format!("the SCEP server answered garbage to {OP}: {why}"))
    };
    let signed = SignedContent::parse(body, &limits.cms()).map_err(|e| cms_error(OP, e))?;
    let signer_info = signed
        .signers
        .first()
        .ok_or_else(|| garbage("the SignedData is not signed"))?;
    let signer = current_signers
        .iter()
        .filter_map(|der| CertificateView::parse(der).ok())
        .find(|c| signer_info.sid.matches(c))
        .ok_or_else(|| {
            ClientError::Garbage(format!(
                "the SCEP server's answer to {OP} is not signed by the current CA or RA"
            ))
        })?;
    signed.verify(signer_info, &signer).map_err(|e| {
        ClientError::Garbage(format!(
            "the SCEP server's answer to {OP} does not verify: {e}"
        ))
    })?;
    let inner = signed
        .content
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| garbage("the SignedData has no content"))?;
    let inner = SignedContent::parse(inner, &limits.cms()).map_err(|e| cms_error(OP, e))?;
    classify(inner.certificates, OP)
}

/// What a query value may hold unencoded: RFC 3986 unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One SCEP server, by its URL (the seed: it must contain the CGI path and program, e.g.
/// `http://host/scep/test/pkiclient.exe`).
#[derive(Clone, Debug)]
pub struct ScepService {
    fetcher: Fetcher,
    url: String,
    /// the URL with its query (if any) and `&`, or `?`: `operation=` follows
    base: String,
    /// `&message=CA-IDENTITY`, URL-encoded, or ""
    ca_identity: String,
}

impl ScepService {
    /// A server at `url`, which must be `http://` with a host (else [`ClientError::Url`]);
    /// `ca_identity` is sent as `message=` on GetCACaps, GetCACert and GetNextCACert
    /// (URL-encoded). A fragment is dropped; a query already in the URL is kept.
    pub fn new(
        fetcher: Fetcher,
        url: &str,
        ca_identity: Option<&str>,
    ) -> Result<ScepService, ClientError> {
        let mut parsed = reqwest::Url::parse(url)
            .map_err(|e| ClientError::Url(format!("{url} is not a valid URL: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(ClientError::Url(format!(
                "{url}: only http:// SCEP servers are supported (as in RouterOS)"
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ClientError::Url(format!("{url} has no host")));
        }
        parsed.set_fragment(None);
        let base = match parsed.query() {
            Some(q) if !q.is_empty() => format!("{parsed}&"),
            _ => {
                parsed.set_query(None);
                format!("{parsed}?")
            }
        };
        let ca_identity = ca_identity
            .map(|id| format!("&message={}", utf8_percent_encode(id, QUERY_VALUE)))
            .unwrap_or_default();
        Ok(ScepService {
            fetcher,
            url: url.to_owned(),
            base,
            ca_identity,
        })
    }

    /// The server's URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn operation_url(&self, operation: &str) -> String {
        format!("{}operation={operation}{}", self.base, self.ca_identity)
    }

    /// GET `?operation=GetCACaps`. An HTTP error status (503 aside) or an empty body means no
    /// capabilities (RFC 8894 §3.5.1): `Ok(Capabilities::default())`. A 503 is
    /// [`ClientError::Unavailable`] (the server is there but cannot act now: its capabilities
    /// are not known to be none); a connection failure or timeout is an error.
    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        const OP: &str = "GetCACaps";
        match self
            .fetcher
            .get_typed(&self.operation_url(OP), SCEP_REPLY)
            .await
        {
            Ok((_, body)) => Ok(Capabilities::parse(&body)),
            Err(e @ FetchError::Status(_)) if e.status_code() != Some(503) => {
                Ok(Capabilities::default())
            }
            Err(e) => Err(fetch_error(OP, e)),
        }
    }

    /// GET `?operation=GetCACert`, read by [`parse_ca_certificates`].
    pub async fn ca_certificates(
        &self,
        limits: &MessageLimits,
    ) -> Result<CaCertificates, ClientError> {
        const OP: &str = "GetCACert";
        let (content_type, body) = self
            .fetcher
            .get_typed(&self.operation_url(OP), SCEP_REPLY)
            .await
            .map_err(|e| fetch_error(OP, e))?;
        parse_ca_certificates(content_type.as_deref(), &body, limits)
    }

    /// GET `?operation=GetNextCACert`, read by [`parse_next_ca`].
    pub async fn next_ca_certificates(
        &self,
        current_signers: &[&[u8]],
        limits: &MessageLimits,
    ) -> Result<CaCertificates, ClientError> {
        const OP: &str = "GetNextCACert";
        let (_, body) = self
            .fetcher
            .get_typed(&self.operation_url(OP), SCEP_REPLY)
            .await
            .map_err(|e| fetch_error(OP, e))?;
        parse_next_ca(&body, current_signers, limits)
    }

    /// PKIOperation: POST with Content-Type `application/x-pki-message` when the server
    /// offers POSTPKIOperation, else GET with the message in base64, URL-encoded. The reply's
    /// body (a Content-Type other than `application/x-pki-message` is taken: peers differ);
    /// an empty body is [`ClientError::Garbage`], HTTP 503 [`ClientError::Unavailable`],
    /// another status than 200 [`ClientError::Http`].
    pub async fn pki_operation(
        &self,
        caps: &Capabilities,
        message: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        const OP: &str = "PKIOperation";
        let url = format!("{}operation={OP}", self.base);
        let reply = if caps.post {
            self.fetcher
                .post(&url, PKI_MESSAGE_TYPE, message.to_vec(), SCEP_REPLY)
                .await
        } else {
            use base64ct::Encoding;
            let encoded = base64ct::Base64::encode_string(message);
            let url = format!(
                "{url}&message={}",
                utf8_percent_encode(&encoded, QUERY_VALUE)
            );
            self.fetcher.get_typed(&url, SCEP_REPLY).await
        };
        let (_, body) = reply.map_err(|e| fetch_error(OP, e))?;
        if body.is_empty() {
            return Err(ClientError::Garbage(format!(
                "the SCEP server answered {OP} with an empty body"
            )));
        }
        Ok(body)
    }
}

/// A fetch error as a client error for `operation`.
fn fetch_error(operation: &str, e: FetchError) -> ClientError {
    match e {
        e @ FetchError::Status(_) if e.status_code() == Some(503) => ClientError::Unavailable,
        FetchError::Status(s) => {
            ClientError::Http(format!("the SCEP server answered {s} to {operation}"))
        }
        FetchError::TooLarge { max, .. } => ClientError::TooLarge(format!(
            "the SCEP server's answer to {operation} is larger than {max} bytes"
        )),
        FetchError::Timeout => ClientError::Unreachable(format!(
            "the SCEP server did not answer {operation} in time"
        )),
        FetchError::Request(m) => {
            ClientError::Unreachable(format!("cannot reach the SCEP server for {operation}: {m}"))
        }
        FetchError::Setup(m) => ClientError::Unreachable(format!(
            "cannot send {operation}: cannot set up the HTTP client: {m}"
        )),
        FetchError::Redirect(m) => ClientError::Http(format!(
            "the SCEP server redirected {operation} elsewhere: {m}"
        )),
        FetchError::Unsupported(m) => ClientError::Url(m),
        FetchError::Content(m) => ClientError::Garbage(format!(
            "the SCEP server answered garbage to {operation}: {m}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::OnceLock;
    use std::time::Duration;

    use base64ct::Encoding;

    use super::*;
    use crate::protocols::fetch::FetchLimits;
    use crate::protocols::scep::message::{degenerate_certificates, signed_certificates};
    use crate::protocols::testing::{Reply, TestServer};
    use crate::x509::cms::testutil::{der_to_ber, openssl, Identity};

    /// A CA (self-signed, cA TRUE as `openssl req -x509` makes it) and what it issued: an RA
    /// (digitalSignature + keyEncipherment), a signing-only RA, a sub-CA; a next CA and an
    /// unrelated key.
    struct Fixture {
        ca: Identity,
        ra: Issued,
        ra_sign: Vec<u8>,
        sub_ca: Vec<u8>,
        next_ca: Identity,
        other: Identity,
    }

    struct Issued {
        cert: Vec<u8>,
        pkcs8: Vec<u8>,
    }

    fn issue(ca: &Identity, name: &str, serial: &str, ext: &str) -> Issued {
        let dir = ca.dir.path();
        let (key, csr, extfile) = (
            format!("{name}.key.pem"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&extfile), ext).unwrap();
        let subj = format!("/CN={name}");
        openssl(
            dir,
            &[
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-subj", &subj,
                "-out", &csr,
            ],
            b"",
        );
        let (ca_pem, ca_key) = (ca.cert_pem(), ca.key_pem());
        let cert = openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-set_serial",
                serial,
                "-extfile",
                &extfile,
                "-days",
                "2",
                "-outform",
                "DER",
            ],
            b"",
        );
        let pkcs8 = openssl(
            dir,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER",
            ],
            b"",
        );
        Issued { cert, pkcs8 }
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let ca = Identity::new("scep-ca", 2048, None);
            let ra = issue(
                &ca,
                "ra",
                "0x11",
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
            );
            let ra_sign = issue(&ca, "ra-sign", "0x12", "keyUsage=digitalSignature\n").cert;
            let sub_ca = issue(
                &ca,
                "sub-ca",
                "0x13",
                "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n",
            )
            .cert;
            Fixture {
                ca,
                ra,
                ra_sign,
                sub_ca,
                next_ca: Identity::new("next-ca", 2048, None),
                other: Identity::new("other", 2048, None),
            }
        })
    }

    fn limits() -> MessageLimits {
        MessageLimits::default()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn fetcher() -> Fetcher {
        Fetcher::without_proxy(FetchLimits {
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        })
    }

    const PATH: &str = "/scep/test/pkiclient.exe";

    fn service(s: &TestServer, ca_identity: Option<&str>) -> ScepService {
        ScepService::new(fetcher(), &s.url(PATH), ca_identity).unwrap()
    }

    #[test]
    fn capabilities_of_real_peers_and_the_choices_they_lead_to() {
        let micromdm = Capabilities::parse(
            b"Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation",
        );
        let expected = Capabilities {
            aes: true,
            des3: true,
            sha1: true,
            sha256: true,
            post: true,
            renewal: true,
            scep_standard: true,
            ..Capabilities::default()
        };
        assert_eq!(micromdm, expected);
        let step_ca = Capabilities::parse(
            b"Renewal\r\nSHA-1\r\nSHA-256\r\nAES\r\nDES3\r\nSCEPStandard\r\nPOSTPKIOperation\r\n",
        );
        assert_eq!(step_ca, expected);
        assert_eq!(
            Capabilities::parse(
                b"renewal\nsha-1\nsha-256\naes\ndes3\nscepstandard\npostpkioperation\n"
            ),
            expected
        );
        assert_eq!(micromdm.cipher(), ContentCipher::Aes128Cbc);
        assert_eq!(micromdm.digest(), MessageDigest::Sha256);
        assert!(!micromdm.weak_digests_only());
        assert_eq!(
            micromdm.summary(),
            "AES DES3 POSTPKIOperation Renewal SCEPStandard SHA-1 SHA-256"
        );

        // certman's own server, with a next CA
        let own =
            Capabilities::parse(crate::protocols::scep::server::capabilities(true).as_bytes());
        assert!(own.next_ca && own.sha512 && own.other.is_empty(), "{own:?}");

        // SCEPStandard alone implies AES, SHA-256 and POST
        let std_only = Capabilities::parse(b"SCEPStandard");
        assert!(std_only.aes && std_only.sha256 && std_only.post);

        let empty = Capabilities::parse(b"");
        assert_eq!(empty, Capabilities::default());
        assert_eq!(empty.cipher(), ContentCipher::DesCbc);
        assert_eq!(empty.digest(), MessageDigest::Sha256);
        assert!(empty.weak_digests_only());
        assert_eq!(empty.summary(), "none");

        let old = Capabilities::parse(b"DES3\nSHA-1");
        assert_eq!(old.cipher(), ContentCipher::DesEde3Cbc);
        assert_eq!(old.digest(), MessageDigest::Sha256);
        assert!(old.weak_digests_only());
        assert!(!old.post);

        let sha512 = Capabilities::parse(b"SHA-512\nPOSTPKIOperation\n");
        assert_eq!(sha512.digest(), MessageDigest::Sha512);
        assert!(!sha512.weak_digests_only());
        let both = Capabilities::parse(b"SHA-512\nSHA-256\n");
        assert_eq!(both.digest(), MessageDigest::Sha256);

        // unknown keywords kept as sent, once; binary noise never panics
        let odd = Capabilities::parse(b"  AES \r\nUpdate\nUpdate\nGetCRL\n\xff\xfe\n");
        assert!(odd.aes);
        assert_eq!(odd.other[..2], ["Update".to_owned(), "GetCRL".to_owned()]);
        assert!(odd.summary().starts_with("AES Update GetCRL"));
        let many: Vec<u8> = (0..1000)
            .flat_map(|i| format!("X{i}\n").into_bytes())
            .collect();
        assert_eq!(Capabilities::parse(&many).other.len(), MAX_OTHER_CAPS);
    }

    #[test]
    fn get_ca_cert_one_der_certificate_or_ra_and_ca() {
        let f = fixture();
        assert!(
            is_ca(&f.ca.cert).unwrap(),
            "openssl req -x509 makes cA TRUE"
        );
        let one = parse_ca_certificates(Some("application/x-x509-ca-cert"), &f.ca.cert, &limits())
            .unwrap();
        assert_eq!(one.ca, f.ca.cert);
        assert_eq!(one.ra, None);
        assert_eq!(one.all, std::slice::from_ref(&f.ca.cert));
        assert_eq!(one.recipient(), f.ca.cert);
        assert_eq!(one.signers(), [f.ca.cert.as_slice()]);

        // RA + CA, in either order, DER or BER, whatever the Content-Type says
        for certs in [
            [f.ra.cert.as_slice(), &f.ca.cert],
            [f.ca.cert.as_slice(), &f.ra.cert],
        ] {
            let body = degenerate_certificates(&certs);
            for (ct, body) in [
                (Some("application/x-x509-ca-ra-cert"), body.clone()),
                (Some("application/x-x509-ca-cert"), body.clone()),
                (None, der_to_ber(&body, 100)),
            ] {
                let got = parse_ca_certificates(ct, &body, &limits()).unwrap();
                assert_eq!(got.ca, f.ca.cert);
                assert_eq!(got.ra.as_deref(), Some(f.ra.cert.as_slice()));
                assert_eq!(got.all, certs.map(<[u8]>::to_vec));
                assert_eq!(got.recipient(), f.ra.cert);
                assert_eq!(got.signers(), [f.ra.cert.as_slice(), &f.ca.cert]);
            }
        }
    }

    #[test]
    fn an_ra_that_is_a_ca_is_not_taken_as_ra_and_ndes_sends_two_ras() {
        let f = fixture();
        // a chain, no RA: the issuing CA (the one that issued no other) is the CA
        let body = degenerate_certificates(&[&f.ca.cert, &f.sub_ca]);
        let got = parse_ca_certificates(None, &body, &limits()).unwrap();
        assert_eq!(got.ra, None);
        assert_eq!(got.ca, f.sub_ca);
        assert_eq!(got.recipient(), f.sub_ca);

        // NDES: a signing RA and an encryption RA; requests go to the one with
        // keyEncipherment, replies may come from either
        let body = degenerate_certificates(&[&f.ra_sign, &f.ra.cert, &f.ca.cert]);
        let got = parse_ca_certificates(None, &body, &limits()).unwrap();
        assert_eq!(got.ca, f.ca.cert);
        assert_eq!(got.recipient(), f.ra.cert);
        assert_eq!(
            got.signers(),
            [f.ra.cert.as_slice(), &f.ra_sign, &f.ca.cert]
        );
    }

    #[test]
    fn get_ca_cert_garbage_is_refused_with_one_line() {
        let f = fixture();
        let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
            (
                Some("application/x-x509-ca-cert"),
                b"<html>not found</html>".to_vec(),
            ),
            (None, vec![]),
            (None, f.ca.cert[..f.ca.cert.len() - 1].to_vec()),
            (None, [f.ca.cert.as_slice(), b"x"].concat()),
            // a SignedData with no certificate in it
            (None, degenerate_certificates(&[])),
            // a "certificate" that is not one
            (
                None,
                degenerate_certificates(&[&[0x30, 0x03, 0x02, 0x01, 0x01]]),
            ),
            // two certificates, neither a CA nor self-issued
            (None, degenerate_certificates(&[&f.ra.cert, &f.ra_sign])),
        ];
        for (ct, body) in cases {
            let e = parse_ca_certificates(ct, &body, &limits()).unwrap_err();
            assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
            let text = e.to_string();
            assert!(text.contains("GetCACert") && !text.contains('\n'), "{text}");
        }
        let e = parse_ca_certificates(None, &[0x30; 70_000], &limits()).unwrap_err();
        assert!(matches!(e, ClientError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn get_next_ca_cert_must_be_signed_by_the_current_ca_or_ra() {
        let f = fixture();
        let ra_signer = crate::keys::soft::SoftSigner::from_pkcs8(&f.ra.pkcs8).expect("test key");
        let current: [&[u8]; 2] = [&f.ra.cert, &f.ca.cert];
        let by_ca = signed_certificates(&[&f.next_ca.cert], &f.ca.signer(), &f.ca.cert).unwrap();
        let got = parse_next_ca(&by_ca, &current, &limits()).unwrap();
        assert_eq!(got.ca, f.next_ca.cert);
        assert_eq!(got.ra, None);
        let by_ra = signed_certificates(&[&f.next_ca.cert], &ra_signer, &f.ra.cert).unwrap();
        assert_eq!(parse_next_ca(&by_ra, &current, &limits()).unwrap(), got);
        assert_eq!(
            parse_next_ca(&der_to_ber(&by_ca, 100), &current, &limits()).unwrap(),
            got
        );

        // signed by another key (carrying its own certificate): refused
        let by_other =
            signed_certificates(&[&f.next_ca.cert], &f.other.signer(), &f.other.cert).unwrap();
        let e = parse_next_ca(&by_other, &current, &limits()).unwrap_err();
        assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the SCEP server's answer to GetNextCACert is not signed by the current CA or RA"
        );
        // the RA signed, but only the CA is trusted
        let e = parse_next_ca(&by_ra, &[&f.ca.cert], &limits()).unwrap_err();
        assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
        // the CA's signature altered (it is the last thing in the DER)
        let mut forged = by_ca.clone();
        *forged.last_mut().unwrap() ^= 1;
        let e = parse_next_ca(&forged, &current, &limits()).unwrap_err();
        assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
        assert!(e.to_string().contains("does not verify"), "{e}");
        // a degenerate SignedData (no signer) and plain garbage
        for body in [
            degenerate_certificates(&[&f.next_ca.cert]),
            b"garbage".to_vec(),
        ] {
            let e = parse_next_ca(&body, &current, &limits()).unwrap_err();
            assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
        }
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let f = fixture();
        let good = [
            degenerate_certificates(&[&f.ra.cert, &f.ca.cert]),
            signed_certificates(&[&f.next_ca.cert], &f.ca.signer(), &f.ca.cert).unwrap(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for base in &good {
            for _ in 0..200 {
                let mut m = base.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % m.len() as u64) as usize;
                    match next() % 3 {
                        0 => m[i] = next() as u8,
                        1 => m.truncate(i.max(1)),
                        _ => m.insert(i, next() as u8),
                    }
                }
                let _ = parse_ca_certificates(None, &m, &limits());
                let _ = parse_next_ca(&m, &[&f.ca.cert], &limits());
            }
        }
    }

    #[test]
    fn get_operations_send_the_operation_and_the_ca_identity() {
        let f = fixture();
        let s = TestServer::start(vec![
            (
                "/scep/test/pkiclient.exe?operation=GetCACaps",
                Reply::Typed("text/plain", b"POSTPKIOperation\nAES\n".to_vec()),
            ),
            (
                "/scep/test/pkiclient.exe?operation=GetCACert",
                Reply::Typed("application/x-x509-ca-cert", f.ca.cert.clone()),
            ),
        ]);
        let svc = service(&s, None);
        assert_eq!(svc.url(), s.url(PATH));
        let caps = run(svc.capabilities()).unwrap();
        assert!(caps.post && caps.aes);
        let cas = run(svc.ca_certificates(&limits())).unwrap();
        assert_eq!(cas.ca, f.ca.cert);
        let seen = s.requests();
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].query(), "operation=GetCACaps");
        assert_eq!(seen[1].query(), "operation=GetCACert");

        // with a CA identity: message=, URL-encoded; unknown to this server: no capabilities
        let svc = service(&s, Some("My CA/1+2"));
        assert_eq!(run(svc.capabilities()).unwrap(), Capabilities::default());
        assert_eq!(
            s.requests()[2].query(),
            "operation=GetCACaps&message=My%20CA%2F1%2B2"
        );
        let _ = run(svc.next_ca_certificates(&[&f.ca.cert], &limits()));
        assert_eq!(
            s.requests()[3].query(),
            "operation=GetNextCACert&message=My%20CA%2F1%2B2"
        );

        // a query in the scep-url is kept
        let svc = ScepService::new(fetcher(), &s.url("/cgi?x=1#frag"), None).unwrap();
        let _ = run(svc.capabilities());
        assert_eq!(s.requests()[4].query(), "x=1&operation=GetCACaps");
    }

    #[test]
    fn get_ca_caps_errors_mean_no_capabilities_but_503_and_no_answer_do_not() {
        let s = TestServer::start(vec![(
            "/busy/pkiclient.exe",
            Reply::Status("503 Service Unavailable"),
        )]);
        // 404 (no route) and an empty 200 body: no capabilities
        assert_eq!(
            run(service(&s, None).capabilities()).unwrap(),
            Capabilities::default()
        );
        s.add(PATH, Reply::Body(vec![]));
        assert_eq!(
            run(service(&s, None).capabilities()).unwrap(),
            Capabilities::default()
        );
        let busy = ScepService::new(fetcher(), &s.url("/busy/pkiclient.exe"), None).unwrap();
        let e = run(busy.capabilities()).unwrap_err();
        assert!(matches!(e, ClientError::Unavailable), "{e:?}");
        let e = run(busy.ca_certificates(&limits())).unwrap_err();
        assert!(matches!(e, ClientError::Unavailable), "{e:?}");

        // refused port
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone =
            ScepService::new(fetcher(), &format!("http://127.0.0.1:{port}{PATH}"), None).unwrap();
        let e = run(gone.capabilities()).unwrap_err();
        assert!(matches!(e, ClientError::Unreachable(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cannot reach the SCEP server for GetCACaps: "),
            "{e}"
        );
        let e = run(gone.pki_operation(&Capabilities::default(), b"m")).unwrap_err();
        assert!(matches!(e, ClientError::Unreachable(_)), "{e:?}");

        // no answer in time
        s.add("/slow", Reply::Stall(Duration::from_secs(2)));
        let quick = Fetcher::without_proxy(FetchLimits::new(1024, Duration::from_millis(300)));
        let slow = ScepService::new(quick, &s.url("/slow"), None).unwrap();
        let e = run(slow.capabilities()).unwrap_err();
        assert!(matches!(e, ClientError::Unreachable(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the SCEP server did not answer GetCACaps in time"
        );
    }

    #[test]
    fn pki_operation_posts_when_offered_else_gets_with_base64() {
        let s = TestServer::start(vec![(
            PATH,
            Reply::Typed("application/octet-stream", b"reply".to_vec()),
        )]);
        let svc = service(&s, Some("ignored here"));
        // bytes whose base64 has '+', '/' and '='
        let message: Vec<u8> = vec![0xfb, 0xff, 0xbf, 0x00, 0x01];
        let post = Capabilities::parse(b"POSTPKIOperation");
        assert_eq!(run(svc.pki_operation(&post, &message)).unwrap(), b"reply");
        let seen = &s.requests()[0];
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.query(), "operation=PKIOperation");
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/x-pki-message")
        );
        assert_eq!(seen.body, message);

        assert_eq!(
            run(svc.pki_operation(&Capabilities::default(), &message)).unwrap(),
            b"reply"
        );
        let seen = &s.requests()[1];
        assert_eq!(seen.method, "GET");
        let b64 = base64ct::Base64::encode_string(&message);
        assert_eq!(b64, "+/+/AAE=");
        assert_eq!(
            seen.query(),
            "operation=PKIOperation&message=%2B%2F%2B%2FAAE%3D"
        );
        assert!(seen.body.is_empty());
    }

    #[test]
    fn pki_operation_errors() {
        let s = TestServer::start(vec![
            ("/busy", Reply::Status("503 Service Unavailable")),
            ("/broken", Reply::Status("500 Internal Server Error")),
            ("/empty", Reply::Typed(PKI_MESSAGE_TYPE, vec![])),
            ("/big", Reply::Body(vec![0x30; 70 * 1024])),
        ]);
        let caps = Capabilities::parse(b"POSTPKIOperation");
        let call = |path: &str| {
            let svc = ScepService::new(fetcher(), &s.url(path), None).unwrap();
            run(svc.pki_operation(&caps, b"message")).unwrap_err()
        };
        assert!(matches!(call("/busy"), ClientError::Unavailable));
        let e = call("/broken");
        assert!(matches!(e, ClientError::Http(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the SCEP server answered 500 Internal Server Error to PKIOperation"
        );
        let e = call("/empty");
        assert!(matches!(e, ClientError::Garbage(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the SCEP server answered PKIOperation with an empty body"
        );
        let e = call("/big");
        assert!(matches!(e, ClientError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn only_http_urls_with_a_host() {
        let s = TestServer::start(vec![]);
        let port = s.addr.port();
        for url in [
            format!("https://127.0.0.1:{port}{PATH}"),
            "ftp://host/scep".to_owned(),
            "http://".to_owned(),
            "not a url".to_owned(),
            "file:///etc/passwd".to_owned(),
        ] {
            let e = ScepService::new(fetcher(), &url, None).unwrap_err();
            assert!(matches!(e, ClientError::Url(_)), "{url}: {e:?}");
            assert!(e.to_string().starts_with("bad scep-url: "), "{e}");
        }
        assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
