//! The SCEP server under attack: well over 1,000 malformed or hostile PKIOperation messages
//! (truncated, every length inflated, bytes flipped, wrong and unknown OIDs, bad signatures,
//! unknown message types, CertReps, envelopes for others, bad CSRs, wrong passwords, BER
//! bombs, HTTP-level abuse), by POST and by GET, against one `certman serve` on one store.
//! Every one must be answered with HTTP 4xx or a CertRep FAILURE — never 5xx, never SUCCESS or
//! PENDING — the daemon must live on with a stable RSS, and the store must be unchanged: the
//! valid one-time password the hostile messages were built around is still unused at the end,
//! and the valid message built at the start is then issued.
//!
//! Built by construction so that no variant can legitimately succeed: messages that carry the
//! valid OTP are mutated only where the server must notice (headers and OIDs it parses, the
//! signed attributes, the signature, the signed content, the signer's issuer, serial and key),
//! or re-signed around a fault; encodings the server is right to accept as the valid message
//! (BER forms, fields nobody checks) carry a wrong OTP instead and must come back as the valid
//! message would: CertRep FAILURE.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use certman::error::KeyError;
use certman::keys::{HashAlgorithm, SignatureScheme};
use certman::protocols::scep::message::{
    self, CertRep, ContentCipher, MessageCertificate, MessageDigest, MessageError, MessageLimits,
    MessageType, PkiStatus, ReplyPayload, RequestContent,
};
use certman::secret::SecretBytes;
use certman::x509::cms::enveloped::{self, Recipient};
use common::daemon::Daemon;
use common::scep::Device;
use common::Env;
use serde_json::Value;

/// Where the SCEP server answers.
const SCEP: &str = "/scep/test/pkiclient.exe";
/// A password of the OTP shape that the store does not have.
const WRONG_OTP: &str = "0123456789ABCDEF0123";
/// Seed of the PRNG: every run sends the same messages.
const SEED: u64 = 0x5CE9_0BAD_C0FF_EE01;

// ---- OIDs
const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const DATA: &str = "1.2.840.113549.1.7.1";
const ENVELOPED_DATA: &str = "1.2.840.113549.1.7.3";
const CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";
const SHA1: &str = "1.3.14.3.2.26";
const MD5: &str = "1.2.840.113549.2.5";
const RSA: &str = "1.2.840.113549.1.1.1";
const RSAES_OAEP: &str = "1.2.840.113549.1.1.7";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const MD5_RSA: &str = "1.2.840.113549.1.1.4";
const SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const AES128: &str = "2.16.840.1.101.3.4.1.2";
const AES192: &str = "2.16.840.1.101.3.4.1.22";
const AES256: &str = "2.16.840.1.101.3.4.1.42";
const DES3: &str = "1.2.840.113549.3.7";
const DES: &str = "1.3.14.3.2.7";
const RC2: &str = "1.2.840.113549.3.2";
const UNKNOWN: &str = "1.2.3.4";
const MESSAGE_TYPE: &str = "2.16.840.1.113733.1.9.2";
const PKI_STATUS: &str = "2.16.840.1.113733.1.9.3";
const FAIL_INFO: &str = "2.16.840.1.113733.1.9.4";
const SENDER_NONCE: &str = "2.16.840.1.113733.1.9.5";
const TRANSACTION_ID: &str = "2.16.840.1.113733.1.9.7";

// ------------------------------------------------------------------ a deterministic PRNG

/// SplitMix64: small, seeded, the same sequence on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// An XOR mask that changes the byte: one bit, or any non-zero byte.
    fn mask(&mut self) -> u8 {
        if self.below(2) == 0 {
            1 << self.below(8)
        } else {
            self.below(255) as u8 + 1
        }
    }
}

// ------------------------------------------------------------------ DER by hand

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let be = (n as u64).to_be_bytes();
    let skip = be.iter().take_while(|b| **b == 0).count();
    let mut v = vec![0x80 | (8 - skip) as u8];
    v.extend_from_slice(&be[skip..]);
    v
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(content.len()));
    v.extend_from_slice(content);
    v
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn set(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

fn int(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

fn printable(s: &str) -> Vec<u8> {
    tlv(0x13, s.as_bytes())
}

const NULL: [u8; 2] = [0x05, 0x00];

fn oid(dotted: &str) -> Vec<u8> {
    fn base128(mut v: u64, out: &mut Vec<u8>) {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    }
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = Vec::new();
    base128(arcs[0] * 40 + arcs[1], &mut body);
    for a in &arcs[2..] {
        base128(*a, &mut body);
    }
    tlv(0x06, &body)
}

fn alg(o: &str, params: Option<&[u8]>) -> Vec<u8> {
    let mut v = oid(o);
    if let Some(p) = params {
        v.extend_from_slice(p);
    }
    tlv(0x30, &v)
}

/// The header of the DER element at the start of `b`: (tag, header length, content length).
fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *b.get(1)? as usize;
    let (hdr, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (2 + n, len)
    };
    (hdr + len <= b.len()).then_some((tag, hdr, len))
}

/// A DER tree to edit: every constructed element is descended into (as the server's BER
/// normaliser does), primitives are kept whole; `Raw` is written out as it is (a forged
/// header, a cut element), its ancestors' lengths recomputed around it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Prim(u8, Vec<u8>),
    Cons(u8, Vec<Node>),
    Raw(Vec<u8>),
}

impl Node {
    fn parse(der: &[u8]) -> Node {
        let (node, used) = Node::read(der);
        assert_eq!(used, der.len(), "bytes after the DER element");
        node
    }

    fn read(b: &[u8]) -> (Node, usize) {
        let (tag, hdr, len) = header(b).expect("a DER element");
        let body = &b[hdr..hdr + len];
        if tag & 0x20 == 0 {
            return (Node::Prim(tag, body.to_vec()), hdr + len);
        }
        let mut kids = Vec::new();
        let mut p = 0;
        while p < body.len() {
            let (k, used) = Node::read(&body[p..]);
            kids.push(k);
            p += used;
        }
        (Node::Cons(tag, kids), hdr + len)
    }

    fn der(&self) -> Vec<u8> {
        match self {
            Node::Prim(t, v) => tlv(*t, v),
            Node::Cons(t, kids) => {
                tlv(*t, &kids.iter().map(Node::der).collect::<Vec<_>>().concat())
            }
            Node::Raw(b) => b.clone(),
        }
    }

    fn at(&mut self, path: &[usize]) -> &mut Node {
        let mut n = self;
        for &i in path {
            n = match n {
                Node::Cons(_, kids) => &mut kids[i],
                _ => panic!("no constructed element on the way to {path:?}"),
            };
        }
        n
    }

    fn get(&self, path: &[usize]) -> &Node {
        let mut n = self;
        for &i in path {
            n = match n {
                Node::Cons(_, kids) => &kids[i],
                _ => panic!("no constructed element on the way to {path:?}"),
            };
        }
        n
    }

    fn kids(&mut self) -> &mut Vec<Node> {
        match self {
            Node::Cons(_, kids) => kids,
            _ => panic!("not a constructed element"),
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Node::Prim(t, _) | Node::Cons(t, _) => *t,
            Node::Raw(b) => b.first().copied().unwrap_or(0),
        }
    }

    /// Every element's path, in document order (the root's is empty).
    fn paths(&self) -> Vec<Vec<usize>> {
        fn walk(n: &Node, here: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            out.push(here.clone());
            if let Node::Cons(_, kids) = n {
                for (i, k) in kids.iter().enumerate() {
                    here.push(i);
                    walk(k, here, out);
                    here.pop();
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }
}

/// Where the element at `path` is in `der`: (start, header length, content length).
fn locate(der: &[u8], path: &[usize]) -> (usize, usize, usize) {
    let (_, mut hdr, mut len) = header(der).expect("DER");
    let mut start = 0;
    for &i in path {
        let mut p = start + hdr;
        for _ in 0..i {
            let (_, h, l) = header(&der[p..]).expect("DER");
            p += h + l;
        }
        start = p;
        let (_, h, l) = header(&der[p..]).expect("DER");
        hdr = h;
        len = l;
    }
    (start, hdr, len)
}

fn path_name(tree: &Node, path: &[usize]) -> String {
    let dotted: Vec<String> = path.iter().map(usize::to_string).collect();
    format!("[{}] (tag {:02x})", dotted.join("."), tree.get(path).tag())
}

// Paths in a pkiMessage as `Msg::encode` writes it.
/// SignedData.encapContentInfo.eContent (the OCTET STRING holding the envelope)
const ECONTENT: [usize; 5] = [1, 0, 2, 1, 0];
/// SignedData.certificates
const CERTS: [usize; 3] = [1, 0, 3];
/// SignedData.signerInfos
const SIGNER_INFOS: [usize; 3] = [1, 0, 4];
/// the SignerInfo
const SIGNER: [usize; 4] = [1, 0, 4, 0];

fn signer_path(field: usize) -> Vec<usize> {
    [&SIGNER[..], &[field]].concat()
}

// Paths in an EnvelopedData ContentInfo as certman's `enveloped::seal` writes it.
const ENV_RECIPIENTS: [usize; 3] = [1, 0, 1];
const ENV_KTRI: [usize; 4] = [1, 0, 1, 0];
const ENV_ECI: [usize; 3] = [1, 0, 2];

/// A constructed OCTET STRING (indefinite length) of `data` in one-byte chunks, padded with
/// empty chunks to `chunks` in all; `tag` is the constructed tag (0x24, or 0xa0 for an
/// implicitly tagged string).
fn chunked(tag: u8, data: &[u8], chunks: usize) -> Vec<u8> {
    let mut v = vec![tag, 0x80];
    for b in data {
        v.extend_from_slice(&[0x04, 0x01, *b]);
    }
    for _ in data.len()..chunks {
        v.extend_from_slice(&[0x04, 0x00]);
    }
    v.extend_from_slice(&[0x00, 0x00]);
    v
}

/// `depth` nested indefinite-length elements of `tag` around `inner`.
fn nested_indefinite(tag: u8, depth: usize, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 4 + inner.len());
    for _ in 0..depth {
        v.extend_from_slice(&[tag, 0x80]);
    }
    v.extend_from_slice(inner);
    for _ in 0..depth {
        v.extend_from_slice(&[0x00, 0x00]);
    }
    v
}

// ------------------------------------------------------------------ pkiMessages by hand

/// A signed attribute value: the messageDigest of the content, computed at encoding, or DER.
#[derive(Clone)]
enum Val {
    Digest,
    Raw(Vec<u8>),
}

#[derive(Clone)]
struct Attr {
    oid: Vec<u8>,
    values: Vec<Val>,
}

fn attr(o: &str, values: Vec<Val>) -> Attr {
    Attr {
        oid: oid(o),
        values,
    }
}

/// A pkiMessage, field by field (each an encoded TLV, so that any of them can be wrong),
/// signed for real at `encode` unless `signature` is set.
#[derive(Clone)]
struct Msg<'a> {
    /// who signs
    key: &'a Device,
    content_type: Vec<u8>,
    version: Vec<u8>,
    digest_algs: Vec<u8>,
    e_content_type: Vec<u8>,
    e_content: Option<Vec<u8>>,
    certificates: Option<Vec<Vec<u8>>>,
    si_version: Vec<u8>,
    sid: Vec<u8>,
    digest_alg: Vec<u8>,
    attrs: Option<Vec<Attr>>,
    /// sort the signed attributes (DER SET OF)
    sort_attrs: bool,
    /// the tag the signature is computed over the attributes with (0x31 is right)
    set_tag: u8,
    /// what the signature is over instead of the attributes
    sign_over: Option<Vec<u8>>,
    sig_alg: Vec<u8>,
    hash: HashAlgorithm,
    /// the messageDigest attribute's algorithm
    attr_digest: MessageDigest,
    signature: Option<Vec<u8>>,
    unsigned: Option<Vec<u8>>,
}

impl<'a> Msg<'a> {
    /// A PKCSReq-shaped message of `message_type`, signed by `key` whose certificate is
    /// `cert`, carrying `envelope`.
    fn new(key: &'a Device, cert: &MessageCertificate, envelope: Vec<u8>, kind: &str) -> Self {
        let txid = message::transaction_id(&cert.public_key);
        Msg {
            key,
            content_type: oid(SIGNED_DATA),
            version: int(&[1]),
            digest_algs: set(&[alg(SHA256, None)]),
            e_content_type: oid(DATA),
            e_content: Some(envelope),
            certificates: Some(vec![cert.der.clone()]),
            si_version: int(&[1]),
            sid: seq(&[cert.issuer.clone(), int(&cert.serial)]),
            digest_alg: alg(SHA256, None),
            attrs: Some(vec![
                attr(CONTENT_TYPE, vec![Val::Raw(oid(DATA))]),
                attr(MESSAGE_DIGEST, vec![Val::Digest]),
                attr(MESSAGE_TYPE, vec![Val::Raw(printable(kind))]),
                attr(TRANSACTION_ID, vec![Val::Raw(printable(&txid))]),
                attr(SENDER_NONCE, vec![Val::Raw(octets(&[7; 16]))]),
            ]),
            sort_attrs: true,
            set_tag: 0x31,
            sign_over: None,
            sig_alg: alg(RSA, Some(&NULL)),
            hash: HashAlgorithm::Sha256,
            attr_digest: MessageDigest::Sha256,
            signature: None,
            unsigned: None,
        }
    }

    /// Replaces the values of attribute `o` (adds it when absent).
    fn set_attr(&mut self, o: &str, values: Vec<Val>) -> &mut Self {
        let id = oid(o);
        let attrs = self.attrs.get_or_insert_with(Vec::new);
        match attrs.iter_mut().find(|a| a.oid == id) {
            Some(a) => a.values = values,
            None => attrs.push(Attr { oid: id, values }),
        }
        self
    }

    fn drop_attr(&mut self, o: &str) -> &mut Self {
        let id = oid(o);
        if let Some(attrs) = &mut self.attrs {
            attrs.retain(|a| a.oid != id);
        }
        self
    }

    /// Adds an attribute even when one of that type is there.
    fn add_attr(&mut self, o: &str, values: Vec<Val>) -> &mut Self {
        self.attrs
            .get_or_insert_with(Vec::new)
            .push(attr(o, values));
        self
    }

    /// The signed attributes' contents (the Attribute encodings, concatenated).
    fn attr_bytes(&self) -> Option<Vec<u8>> {
        let content = self.e_content.clone().unwrap_or_default();
        let mut enc: Vec<Vec<u8>> = self
            .attrs
            .as_ref()?
            .iter()
            .map(|a| {
                let values: Vec<Vec<u8>> = a
                    .values
                    .iter()
                    .map(|v| match v {
                        Val::Digest => octets(&self.attr_digest.digest(&content)),
                        Val::Raw(r) => r.clone(),
                    })
                    .collect();
                seq(&[a.oid.clone(), set(&values)])
            })
            .collect();
        if self.sort_attrs {
            enc.sort();
        }
        Some(enc.concat())
    }

    /// The real signature over what this message's signature covers.
    fn sign(&self) -> Vec<u8> {
        let covered = match (&self.sign_over, self.attr_bytes()) {
            (Some(b), _) => b.clone(),
            (None, Some(a)) => tlv(self.set_tag, &a),
            (None, None) => self.e_content.clone().unwrap_or_default(),
        };
        self.key
            .signer
            .sign(SignatureScheme::RsaPkcs1(self.hash), &covered)
            .expect("sign")
    }

    fn encode(&self) -> Vec<u8> {
        let signature = self.signature.clone().unwrap_or_else(|| self.sign());
        let mut si = vec![
            self.si_version.clone(),
            self.sid.clone(),
            self.digest_alg.clone(),
        ];
        if let Some(a) = self.attr_bytes() {
            si.push(tlv(0xa0, &a));
        }
        si.push(self.sig_alg.clone());
        si.push(octets(&signature));
        if let Some(u) = &self.unsigned {
            si.push(u.clone());
        }
        let mut encap = vec![self.e_content_type.clone()];
        if let Some(c) = &self.e_content {
            encap.push(tlv(0xa0, &octets(c)));
        }
        let mut sd = vec![self.version.clone(), self.digest_algs.clone(), seq(&encap)];
        if let Some(certs) = &self.certificates {
            sd.push(tlv(0xa0, &certs.concat()));
        }
        sd.push(set(&[seq(&si)]));
        seq(&[self.content_type.clone(), tlv(0xa0, &seq(&sd))])
    }
}

/// `content` sealed (AES-256-CBC) for the recipient named as `rid`, its key encrypted to
/// `key`'s public key.
fn seal_for(content: &[u8], rid: &MessageCertificate, key: &MessageCertificate) -> Vec<u8> {
    enveloped::seal(
        content,
        &Recipient {
            issuer: &rid.issuer,
            serial: &rid.serial,
            public_key: &key.public_key,
        },
        ContentCipher::Aes256Cbc,
    )
    .expect("seal")
}

/// The building blocks: the device and an intruder, the CA, the valid OTP and the messages.
struct Kit {
    a: Device,
    b: Device,
    a_cert: MessageCertificate,
    b_cert: MessageCertificate,
    ca: MessageCertificate,
    otp: String,
    csr_v: Vec<u8>,
    env_v: Vec<u8>,
    env_w: Vec<u8>,
    /// the valid PKCSReq (sent last)
    base_v: Vec<u8>,
    /// the same with a wrong OTP (the warm-up, and the base of the equivalent encodings)
    base_w: Vec<u8>,
}

impl Kit {
    fn new(ca_der: &[u8], otp: &str) -> Kit {
        let a = Device::new("hostile");
        let b = Device::new("intruder");
        let a_cert = MessageCertificate::parse(&a.certificate).unwrap();
        let b_cert = MessageCertificate::parse(&b.certificate).unwrap();
        let ca = MessageCertificate::parse(ca_der).unwrap();
        let csr_v = a.csr("hostile", Some(otp));
        let csr_w = a.csr("hostile", Some(WRONG_OTP));
        let env_v = seal_for(&csr_v, &ca, &ca);
        let env_w = seal_for(&csr_w, &ca, &ca);
        let mut kit = Kit {
            a,
            b,
            a_cert,
            b_cert,
            ca,
            otp: otp.to_owned(),
            csr_v,
            env_v,
            env_w,
            base_v: Vec::new(),
            base_w: Vec::new(),
        };
        kit.base_v = kit.v().encode();
        kit.base_w = kit.w().encode();
        kit
    }

    /// A PKCSReq by the device carrying `envelope`.
    fn msg(&self, envelope: Vec<u8>) -> Msg<'_> {
        Msg::new(&self.a, &self.a_cert, envelope, "19")
    }
    /// The valid PKCSReq.
    fn v(&self) -> Msg<'_> {
        self.msg(self.env_v.clone())
    }
    /// The PKCSReq with a wrong OTP.
    fn w(&self) -> Msg<'_> {
        self.msg(self.env_w.clone())
    }
    /// `content` sealed to the CA.
    fn seal(&self, content: &[u8]) -> Vec<u8> {
        seal_for(content, &self.ca, &self.ca)
    }
}

// ------------------------------------------------------------------ HTTP

/// What to send.
#[derive(Clone)]
enum Req {
    /// POST the body to the PKIOperation URL
    Post(Vec<u8>),
    /// GET the PKIOperation URL with this (already URL-encoded) `message=`
    Get(String),
    /// this whole HTTP request
    Raw(Vec<u8>),
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
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
fn url_b64(der: &[u8]) -> String {
    Base64::encode_string(der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// One request on a fresh connection: (status, body).
fn exchange(port: u16, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
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
fn outcome(status: u16, body: &[u8], ca: &[u8]) -> Result<String, String> {
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

// ------------------------------------------------------------------ the plan

#[derive(Clone, Debug)]
enum Expect {
    /// HTTP 4xx or CertRep FAILURE
    Refused,
    /// CertRep FAILURE for the wrong OTP, logged for this transactionID: read as far as the
    /// valid message is (an equivalent encoding of the wrong-OTP message)
    Processed(String),
    /// exactly this HTTP status
    Status(u16),
}

struct Variant {
    family: &'static str,
    label: String,
    req: Req,
    expect: Expect,
}

#[derive(Default)]
struct Plan(Vec<Variant>);

impl Plan {
    fn push(&mut self, family: &'static str, label: impl Into<String>, req: Req, expect: Expect) {
        let label = format!("{family}: {}", label.into());
        self.0.push(Variant {
            family,
            label,
            req,
            expect,
        });
    }

    /// A message by POST, and by GET (base64, URL-encoded) when the URL stays under 48 KB
    /// (longer URLs are a case of their own in the HTTP family).
    fn message(
        &mut self,
        family: &'static str,
        label: impl Into<String>,
        der: Vec<u8>,
        expect: Expect,
    ) {
        let label = label.into();
        if der.len() <= 32 * 1024 {
            self.push(
                family,
                format!("{label} [GET]"),
                Req::Get(url_b64(&der)),
                expect.clone(),
            );
        }
        self.push(family, format!("{label} [POST]"), Req::Post(der), expect);
    }

    /// A hostile message, by POST and GET.
    fn hostile(&mut self, family: &'static str, label: impl Into<String>, der: Vec<u8>) {
        self.message(family, label, der, Expect::Refused);
    }
}

/// Truncations: the whole message cut at every element's edges and inside it, plus random
/// cuts; one element cut inside an otherwise consistent message (lengths around it
/// recomputed); the envelope cut.
fn truncations(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let base = &kit.base_v;
    let tree = Node::parse(base);
    let mut cuts = BTreeSet::new();
    for path in tree.paths() {
        let (start, hdr, len) = locate(base, &path);
        cuts.extend([
            start + 1,
            start + hdr,
            start + hdr + len / 2,
            start + hdr + len - 1,
        ]);
    }
    for _ in 0..40 {
        cuts.insert(1 + rng.below(base.len() - 1));
    }
    cuts.extend([1, 2, 3, 4]);
    let cuts: Vec<usize> = cuts
        .into_iter()
        .filter(|c| (1..base.len()).contains(c))
        .collect();
    let step = cuts.len().div_ceil(300);
    for cut in cuts.iter().step_by(step) {
        plan.message(
            "truncated",
            format!("the message cut to {cut} of {} bytes", base.len()),
            base[..*cut].to_vec(),
            Expect::Refused,
        );
    }
    // One element cut in half inside a consistent message.
    for path in tree.paths().into_iter().skip(1) {
        let mut t = tree.clone();
        let d = t.get(&path).der();
        *t.at(&path) = Node::Raw(d[..d.len() / 2].to_vec());
        plan.message(
            "truncated",
            format!("element {} cut in half", path_name(&tree, &path)),
            t.der(),
            Expect::Refused,
        );
    }
    // The envelope: cut whole, and one of its elements cut (the message around it consistent).
    let env = Node::parse(&kit.env_v);
    let n = kit.env_v.len();
    for cut in [1, 2, 10, n / 4, n / 2, n - 16, n - 1] {
        let mut t = tree.clone();
        *t.at(&ECONTENT) = Node::Prim(0x04, kit.env_v[..cut].to_vec());
        plan.hostile(
            "truncated",
            format!("the envelope cut to {cut} of {n} bytes"),
            t.der(),
        );
    }
    for path in env.paths().into_iter().skip(1) {
        let mut e = env.clone();
        let d = e.get(&path).der();
        *e.at(&path) = Node::Raw(d[..d.len() / 2].to_vec());
        let mut t = tree.clone();
        *t.at(&ECONTENT) = Node::Prim(0x04, e.der());
        plan.message(
            "truncated",
            format!("envelope element {} cut in half", path_name(&env, &path)),
            t.der(),
            Expect::Refused,
        );
    }
}

/// Every DER length inflated: each element's length replaced by 2^31, by 2^60 and by one of
/// 2^32-1, 2^64-1, a 9-octet 2^64, indefinite (no end-of-contents) and the reserved 0xFF —
/// in the message and in its envelope (the lengths around the forged one recomputed).
fn lengths(kit: &Kit, plan: &mut Plan) {
    let encodings: [(&str, Vec<u8>); 7] = [
        ("2^31", vec![0x84, 0x80, 0, 0, 0]),
        ("2^60", vec![0x88, 0x10, 0, 0, 0, 0, 0, 0, 0]),
        ("2^32-1", vec![0x84, 0xff, 0xff, 0xff, 0xff]),
        (
            "2^64-1",
            vec![0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        ("2^64 in 9 octets", vec![0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("indefinite", vec![0x80]),
        ("reserved 0xFF", vec![0xff]),
    ];
    let inflate = |t: &mut Node, path: &[usize], enc: &[u8]| {
        let d = t.get(path).der();
        let (tag, hdr, _) = header(&d).unwrap();
        let mut raw = vec![tag];
        raw.extend_from_slice(enc);
        raw.extend_from_slice(&d[hdr..]);
        *t.at(path) = Node::Raw(raw);
    };
    let tree = Node::parse(&kit.base_v);
    for (i, path) in tree.paths().into_iter().enumerate() {
        for e in [0, 1, 2 + i % 5] {
            let mut t = tree.clone();
            inflate(&mut t, &path, &encodings[e].1);
            plan.message(
                "length",
                format!(
                    "length of {} set to {}",
                    path_name(&tree, &path),
                    encodings[e].0
                ),
                t.der(),
                Expect::Refused,
            );
        }
    }
    let env = Node::parse(&kit.env_v);
    for (i, path) in env.paths().into_iter().enumerate() {
        for e in [0, 1, 2 + i % 5] {
            let mut en = env.clone();
            inflate(&mut en, &path, &encodings[e].1);
            let mut t = tree.clone();
            *t.at(&ECONTENT) = Node::Prim(0x04, en.der());
            plan.message(
                "length",
                format!(
                    "length of envelope element {} set to {}",
                    path_name(&env, &path),
                    encodings[e].0
                ),
                t.der(),
                Expect::Refused,
            );
        }
    }
}

/// Random byte flips, 1 to 3 per message, only where the server must notice a change: the
/// headers it parses, the content type, the signed content (envelope), the signer's issuer,
/// serial and public key in its certificate, the signer identifier, the digest algorithm,
/// the signed attributes and the signature. (Not: the SignedData and SignerInfo versions, the
/// digestAlgorithms set's contents, the signatureAlgorithm — sha256WithRSAEncryption is as
/// good as rsaEncryption — nor the rest of the self-signed certificate: nobody checks those.)
fn flips(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let base = &kit.base_v;
    let tree = Node::parse(base);
    let whole = |path: &[usize]| {
        let (s, h, l) = locate(base, path);
        s..s + h + l
    };
    let head = |path: &[usize]| {
        let (s, h, _) = locate(base, path);
        s..s + h
    };
    // The certificate's TBSCertificate: serial, issuer, subjectPublicKeyInfo's BIT STRING.
    let tbs = [&CERTS[..], &[0, 0]].concat();
    let off = usize::from(tree.get(&[&tbs[..], &[0]].concat()).tag() == 0xa0);
    let tbs_field = |i: usize| [&tbs[..], &[off + i]].concat();
    let regions: Vec<(&str, std::ops::Range<usize>)> = vec![
        ("ContentInfo header", head(&[])),
        ("contentType", whole(&[0])),
        ("[0] header", head(&[1])),
        ("SignedData header", head(&[1, 0])),
        ("version header", head(&[1, 0, 0])),
        ("digestAlgorithms header", head(&[1, 0, 1])),
        ("encapContentInfo", whole(&[1, 0, 2])),
        ("certificates header", head(&CERTS)),
        ("certificate serial", whole(&tbs_field(0))),
        ("certificate issuer", whole(&tbs_field(2))),
        (
            "certificate public key",
            whole(&[&tbs_field(5)[..], &[1]].concat()),
        ),
        ("signerInfos header", head(&SIGNER_INFOS)),
        ("SignerInfo header", head(&SIGNER)),
        ("SignerInfo version header", head(&signer_path(0))),
        ("sid", whole(&signer_path(1))),
        ("digestAlgorithm", whole(&signer_path(2))),
        ("signedAttrs", whole(&signer_path(3))),
        ("signature", whole(&signer_path(5))),
    ];
    // Weighted: the big regions (envelope, key, attributes, signature) get more flips.
    let weighted: Vec<usize> = regions
        .iter()
        .enumerate()
        .flat_map(|(i, (_, r))| std::iter::repeat_n(i, 1 + r.len().min(400) / 40))
        .collect();
    let mut made = 0;
    while made < 250 {
        let mut m = base.clone();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (name, r) = &regions[weighted[rng.below(weighted.len())]];
            let pos = r.start + rng.below(r.len());
            let mask = rng.mask();
            m[pos] ^= mask;
            what.push(format!("{name} @{pos} ^{mask:02x}"));
        }
        if m == *base {
            continue;
        }
        plan.message(
            "flip",
            format!("#{made}: {}", what.join(", ")),
            m,
            Expect::Refused,
        );
        made += 1;
    }
}

/// Wrong and unknown OIDs, and digest and cipher OIDs swapped.
fn oids(kit: &Kit, plan: &mut Plan) {
    let tree = Node::parse(&kit.base_v);
    let swap = |path: &[usize], new: Vec<u8>| {
        let mut t = tree.clone();
        *t.at(path) = Node::Raw(new);
        t.der()
    };
    let mut non_minimal = oid(SIGNED_DATA);
    non_minimal.insert(3, 0x80);
    non_minimal[1] += 1;
    let long = format!("1.2{}", ".1".repeat(1000));
    for (name, o) in [
        ("data", oid(DATA)),
        ("envelopedData", oid(ENVELOPED_DATA)),
        ("digestedData", oid("1.2.840.113549.1.7.5")),
        ("unknown", oid(UNKNOWN)),
        ("empty", tlv(0x06, &[])),
        ("a non-minimal arc", non_minimal),
        ("1,000 arcs", oid(&long)),
        ("an INTEGER", int(&[1])),
    ] {
        plan.hostile(
            "oid",
            format!("ContentInfo contentType {name}"),
            swap(&[0], o),
        );
    }
    for (name, o) in [
        ("envelopedData", ENVELOPED_DATA),
        ("signedData", SIGNED_DATA),
        ("unknown", UNKNOWN),
    ] {
        plan.hostile(
            "oid",
            format!("eContentType {name}"),
            swap(&[1, 0, 2, 0], oid(o)),
        );
    }
    for (name, a) in [
        ("SHA-512", alg(SHA512, None)),
        ("SHA-384", alg(SHA384, None)),
        ("SHA-1", alg(SHA1, None)),
        ("MD5", alg(MD5, None)),
        ("unknown", alg(UNKNOWN, None)),
        ("AES-256-CBC (swapped with the cipher)", alg(AES256, None)),
        ("rsaEncryption", alg(RSA, Some(&NULL))),
        ("sha256WithRSAEncryption", alg(SHA256_RSA, Some(&NULL))),
    ] {
        plan.hostile(
            "oid",
            format!("SignerInfo digestAlgorithm {name}"),
            swap(&signer_path(2), a),
        );
    }
    for (name, a) in [
        ("sha512WithRSAEncryption", alg(SHA512_RSA, Some(&NULL))),
        ("sha1WithRSAEncryption", alg(SHA1_RSA, Some(&NULL))),
        ("md5WithRSAEncryption", alg(MD5_RSA, Some(&NULL))),
        ("ecdsa-with-SHA256", alg(ECDSA_SHA256, None)),
        ("RSASSA-PSS", alg(RSASSA_PSS, None)),
        ("unknown", alg(UNKNOWN, None)),
        ("SHA-256 (swapped with the digest)", alg(SHA256, None)),
        ("AES-256-CBC", alg(AES256, None)),
    ] {
        plan.hostile(
            "oid",
            format!("signatureAlgorithm {name}"),
            swap(&signer_path(4), a),
        );
    }
    // In the envelope, re-signed so that the server gets as far as opening it.
    let env = Node::parse(&kit.env_v);
    let env_swap = |path: &[usize], new: Vec<u8>| {
        let mut e = env.clone();
        *e.at(path) = Node::Raw(new);
        kit.msg(e.der()).encode()
    };
    let cipher = [&ENV_ECI[..], &[1, 0]].concat();
    for (name, o) in [
        ("AES-128-CBC", AES128),
        ("AES-192-CBC", AES192),
        ("DES-EDE3-CBC", DES3),
        ("DES-CBC", DES),
        ("RC2-CBC", RC2),
        ("unknown", UNKNOWN),
        ("SHA-256 (swapped with the digest)", SHA256),
        ("rsaEncryption", RSA),
    ] {
        plan.hostile(
            "oid",
            format!("content cipher {name}"),
            env_swap(&cipher, oid(o)),
        );
    }
    let transport = [&ENV_KTRI[..], &[2, 0]].concat();
    for (name, o) in [
        ("RSAES-OAEP", RSAES_OAEP),
        ("sha256WithRSAEncryption", SHA256_RSA),
        ("unknown", UNKNOWN),
        ("AES-256-CBC (swapped with the cipher)", AES256),
    ] {
        plan.hostile(
            "oid",
            format!("key transport {name}"),
            env_swap(&transport, oid(o)),
        );
    }
    for (name, o) in [
        ("data", DATA),
        ("signedData", SIGNED_DATA),
        ("unknown", UNKNOWN),
    ] {
        plan.hostile(
            "oid",
            format!("envelope ContentInfo contentType {name}"),
            env_swap(&[0], oid(o)),
        );
    }
}

/// The SCEP and CMS signed attributes wrong, each in a message signed for real: unknown and
/// malformed messageType values (a valid structure with an unknown type), and the rest.
fn attributes(kit: &Kit, plan: &mut Plan) {
    let raw = |v: Vec<u8>| vec![Val::Raw(v)];
    let mut variants: Vec<(String, Msg<'_>)> = Vec::new();
    let mut with = |name: &str, edit: &dyn Fn(&mut Msg<'_>)| {
        let mut m = kit.v();
        edit(&mut m);
        variants.push((name.to_owned(), m));
    };
    for t in [
        "0",
        "99",
        "abc",
        "",
        "3",
        "-19",
        " 19",
        "19 ",
        "1 9",
        "+19",
        "0019",
        "4294967315",
        "18446744073709551635",
        "17",
        "20",
        "21",
        "22",
    ] {
        with(&format!("messageType {t:?}"), &|m| {
            m.set_attr(MESSAGE_TYPE, raw(printable(t)));
        });
    }
    with("messageType of 200 digits", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(printable(&"9".repeat(200))));
    });
    with("messageType \"19\\x01\"", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(tlv(0x13, b"19\x01")));
    });
    with("messageType as INTEGER 19", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(int(&[19])));
    });
    with("messageType as BMPString", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(tlv(0x1e, &[0, b'1', 0, b'9'])));
    });
    with("messageType as OCTET STRING", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(octets(b"19")));
    });
    with("messageType as NULL", &|m| {
        m.set_attr(MESSAGE_TYPE, raw(NULL.to_vec()));
    });
    with("messageType with two values", &|m| {
        m.set_attr(
            MESSAGE_TYPE,
            vec![Val::Raw(printable("19")), Val::Raw(printable("17"))],
        );
    });
    with("messageType with five values", &|m| {
        m.set_attr(MESSAGE_TYPE, vec![Val::Raw(printable("19")); 5]);
    });
    with("messageType with no value", &|m| {
        m.set_attr(MESSAGE_TYPE, vec![]);
    });
    with("messageType missing", &|m| {
        m.drop_attr(MESSAGE_TYPE);
    });
    with("messageType twice", &|m| {
        m.add_attr(MESSAGE_TYPE, raw(printable("19")));
    });
    with("transactionID missing", &|m| {
        m.drop_attr(TRANSACTION_ID);
    });
    with("transactionID empty", &|m| {
        m.set_attr(TRANSACTION_ID, raw(printable("")));
    });
    with("transactionID of 129 characters", &|m| {
        m.set_attr(TRANSACTION_ID, raw(printable(&"A".repeat(129))));
    });
    with("transactionID of 60,000 characters", &|m| {
        m.set_attr(TRANSACTION_ID, raw(printable(&"A".repeat(60_000))));
    });
    with("transactionID with control characters", &|m| {
        m.set_attr(TRANSACTION_ID, raw(tlv(0x13, b"AB\x00\x1b[2J")));
    });
    with("transactionID as OCTET STRING", &|m| {
        m.set_attr(TRANSACTION_ID, raw(octets(b"ABCD")));
    });
    with("transactionID with two values", &|m| {
        m.set_attr(
            TRANSACTION_ID,
            vec![Val::Raw(printable("A")), Val::Raw(printable("B"))],
        );
    });
    with("senderNonce missing", &|m| {
        m.drop_attr(SENDER_NONCE);
    });
    with("senderNonce empty", &|m| {
        m.set_attr(SENDER_NONCE, raw(octets(&[])));
    });
    with("senderNonce of 65 bytes", &|m| {
        m.set_attr(SENDER_NONCE, raw(octets(&[1; 65])));
    });
    with("senderNonce of 40,000 bytes", &|m| {
        m.set_attr(SENDER_NONCE, raw(octets(&[1; 40_000])));
    });
    with("senderNonce as PrintableString", &|m| {
        m.set_attr(SENDER_NONCE, raw(printable("nonce")));
    });
    with("senderNonce with two values", &|m| {
        m.set_attr(
            SENDER_NONCE,
            vec![Val::Raw(octets(&[1; 16])), Val::Raw(octets(&[2; 16]))],
        );
    });
    with("pkiStatus \"9\"", &|m| {
        m.set_attr(PKI_STATUS, raw(printable("9")));
    });
    with("pkiStatus FAILURE with failInfo \"99\"", &|m| {
        m.set_attr(PKI_STATUS, raw(printable("2")));
        m.set_attr(FAIL_INFO, raw(printable("99")));
    });
    with("pkiStatus FAILURE without failInfo", &|m| {
        m.set_attr(PKI_STATUS, raw(printable("2")));
    });
    with("contentType attribute naming envelopedData", &|m| {
        m.set_attr(CONTENT_TYPE, raw(oid(ENVELOPED_DATA)));
    });
    with("contentType attribute missing", &|m| {
        m.drop_attr(CONTENT_TYPE);
    });
    with("contentType attribute with two values", &|m| {
        m.set_attr(CONTENT_TYPE, vec![Val::Raw(oid(DATA)), Val::Raw(oid(DATA))]);
    });
    with("messageDigest missing", &|m| {
        m.drop_attr(MESSAGE_DIGEST);
    });
    with("messageDigest of other content", &|m| {
        m.set_attr(MESSAGE_DIGEST, raw(octets(&[0x5a; 32])));
    });
    with("messageDigest of 5 bytes", &|m| {
        m.set_attr(MESSAGE_DIGEST, raw(octets(&[0x5a; 5])));
    });
    with("messageDigest as PrintableString", &|m| {
        m.set_attr(MESSAGE_DIGEST, raw(printable("digest")));
    });
    with("messageDigest by SHA-512", &|m| {
        m.attr_digest = MessageDigest::Sha512;
    });
    with("no signed attributes", &|m| {
        m.attrs = None;
    });
    with("empty signed attributes", &|m| {
        m.attrs = Some(Vec::new());
    });
    with("33 signed attributes", &|m| {
        for i in 0..28 {
            m.add_attr(&format!("1.2.3.{i}"), raw(NULL.to_vec()));
        }
    });
    with("an attribute with an empty OID", &|m| {
        m.attrs.as_mut().unwrap().push(Attr {
            oid: tlv(0x06, &[]),
            values: raw(NULL.to_vec()),
        });
    });
    with("an attribute value 10,000 indefinite levels deep", &|m| {
        m.add_attr(UNKNOWN, raw(nested_indefinite(0x30, 10_000, &NULL)));
    });
    with("a transactionID 10,000 indefinite levels deep", &|m| {
        m.set_attr(
            TRANSACTION_ID,
            raw(nested_indefinite(0x33, 10_000, &printable("A"))),
        );
    });
    for (name, m) in variants {
        plan.hostile("attribute", name, m.encode());
    }
    // A transactionID the reader takes (printable ASCII) that is no PrintableString, which
    // the reply must echo: on the wrong-OTP message, so that it cannot cost the valid OTP.
    for (name, value) in [
        ("'|' in a PrintableString", tlv(0x13, b"AB|CD")),
        ("base64url ('_') in a UTF8String", tlv(0x0c, b"q_-x")),
        ("'@' in an IA5String", tlv(0x16, b"dev@example")),
    ] {
        let mut m = kit.w();
        m.set_attr(TRANSACTION_ID, raw(value));
        plan.hostile(
            "attribute",
            format!("transactionID with {name}, wrong OTP"),
            m.encode(),
        );
    }
}

/// Bad signatures and signers.
fn signatures(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let mut m = kit.v();
    m.key = &kit.b;
    plan.hostile(
        "signature",
        "signed by another key, naming the device's certificate",
        m.encode(),
    );
    plan.hostile(
        "signature",
        "signed by another key with its own certificate, around the device's CSR with the valid OTP",
        Msg::new(&kit.b, &kit.b_cert, kit.env_v.clone(), "19").encode(),
    );
    let mut m = kit.v();
    m.certificates = Some(vec![kit.ca.der.clone()]);
    m.sid = seq(&[kit.ca.issuer.clone(), int(&kit.ca.serial)]);
    plan.hostile(
        "signature",
        "naming the CA's certificate as the signer",
        m.encode(),
    );
    let good = kit.v().sign();
    let n = good.len();
    let mut sigs: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, at) in [("first", 0), ("middle", n / 2), ("last", n - 1)] {
        let mut s = good.clone();
        s[at] ^= 0x01;
        sigs.push((format!("signature's {name} byte flipped"), s));
    }
    sigs.push(("signature all zero".into(), vec![0; n]));
    sigs.push(("signature all 0xFF".into(), vec![0xff; n]));
    sigs.push(("signature empty".into(), Vec::new()));
    sigs.push(("signature of one byte".into(), vec![1]));
    sigs.push(("signature of 512 random bytes".into(), rng.bytes(512)));
    sigs.push(("signature of 8,192 random bytes".into(), rng.bytes(8192)));
    sigs.push((
        "signature with a byte appended".into(),
        [&good[..], &[0]].concat(),
    ));
    sigs.push((
        "signature with a zero byte prepended".into(),
        [&[0], &good[..]].concat(),
    ));
    sigs.push(("signature cut by one byte".into(), good[..n - 1].to_vec()));
    sigs.push((
        "signature of the valid message with the wrong OTP".into(),
        kit.w().sign(),
    ));
    for (name, s) in sigs {
        let mut m = kit.v();
        m.signature = Some(s);
        plan.hostile("signature", name, m.encode());
    }
    let mut edits: Vec<(&str, Msg<'_>)> = Vec::new();
    let mut m = kit.v();
    m.hash = HashAlgorithm::Sha512;
    edits.push(("signed with SHA-512 under digestAlgorithm SHA-256", m));
    let mut m = kit.v();
    m.sign_over = Some(kit.env_v.clone());
    edits.push(("signature over the content, not the attributes", m));
    let mut m = kit.v();
    m.set_tag = 0xa0;
    edits.push(("signature over the attributes tagged [0], not SET", m));
    let mut m = kit.v();
    m.sid = seq(&[kit.b_cert.issuer.clone(), int(&kit.b_cert.serial)]);
    edits.push(("sid naming a certificate not in the message", m));
    let mut m = kit.v();
    let mut serial = kit.a_cert.serial.clone();
    *serial.last_mut().unwrap() ^= 1;
    m.sid = seq(&[kit.a_cert.issuer.clone(), int(&serial)]);
    edits.push(("sid with another serial number", m));
    let mut m = kit.v();
    m.sid = tlv(0x80, &[0x11; 20]);
    edits.push(("sid as an unknown subjectKeyIdentifier", m));
    let mut m = kit.v();
    m.sid = tlv(0x30, &kit.a_cert.issuer);
    edits.push(("sid without a serial number", m));
    let mut m = kit.v();
    m.certificates = None;
    edits.push(("no certificates", m));
    let mut m = kit.v();
    m.certificates = Some(Vec::new());
    edits.push(("an empty certificate set", m));
    let mut m = kit.v();
    m.certificates = Some(vec![kit.a_cert.der.clone(); 17]);
    edits.push(("17 certificates", m));
    let mut m = kit.v();
    m.certificates = Some(vec![seq(&[int(&[0])])]);
    edits.push(("a certificate that is not one", m));
    // The device's certificate with the intruder's key: the sid matches, the key does not.
    let mut cert = Node::parse(&kit.a_cert.der);
    let bcert = Node::parse(&kit.b_cert.der);
    let off = usize::from(cert.get(&[0, 0]).tag() == 0xa0);
    *cert.at(&[0, off + 5]) = bcert.get(&[0, off + 5]).clone();
    let mut m = kit.v();
    m.certificates = Some(vec![cert.der()]);
    edits.push(("the device's certificate carrying the intruder's key", m));
    let mut m = kit.v();
    m.unsigned = Some(tlv(0xa1, &nested_indefinite(0x30, 10_000, &NULL)));
    edits.push(("unsigned attributes 10,000 indefinite levels deep", m));
    for (name, m) in edits {
        plan.hostile("signature", name, m.encode());
    }
    let tree = Node::parse(&kit.base_v);
    let mut t = tree.clone();
    let si = t.get(&SIGNER).clone();
    t.at(&SIGNER_INFOS).kids().push(si);
    plan.hostile("signature", "two SignerInfos", t.der());
    let mut t = tree.clone();
    t.at(&SIGNER_INFOS).kids().clear();
    plan.hostile("signature", "no SignerInfo", t.der());
}

/// Envelopes the server cannot or must not open (re-signed, so that it tries).
fn envelopes(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let env = Node::parse(&kit.env_v);
    let mut list: Vec<(String, Vec<u8>)> = vec![
        (
            "encrypted to another certificate".into(),
            seal_for(&kit.csr_v, &kit.b_cert, &kit.b_cert),
        ),
        (
            "naming the CA but encrypted to another key".into(),
            seal_for(&kit.csr_v, &kit.ca, &kit.b_cert),
        ),
    ];
    let mut edit = |name: &str, f: &dyn Fn(&mut Node)| {
        let mut e = env.clone();
        f(&mut e);
        list.push((name.to_owned(), e.der()));
    };
    edit("no recipient", &|e| e.at(&ENV_RECIPIENTS).kids().clear());
    edit("17 recipients", &|e| {
        let r = e.get(&ENV_KTRI).clone();
        *e.at(&ENV_RECIPIENTS).kids() = vec![r; 17];
    });
    let other = Node::parse(&seal_for(&kit.csr_v, &kit.ca, &kit.b_cert));
    edit(
        "two recipients naming the CA, one of them the intruder's key",
        &|e| {
            let r = other.get(&ENV_KTRI).clone();
            e.at(&ENV_RECIPIENTS).kids().insert(0, r);
        },
    );
    edit("recipient by an unknown subjectKeyIdentifier", &|e| {
        *e.at(&[&ENV_KTRI[..], &[1]].concat()) = Node::Prim(0x80, vec![0x11; 20]);
    });
    edit("recipient naming the CA with another serial", &|e| {
        let mut serial = kit.ca.serial.clone();
        *serial.last_mut().unwrap() ^= 1;
        *e.at(&[&ENV_KTRI[..], &[1]].concat()) =
            Node::Raw(seq(&[kit.ca.issuer.clone(), int(&serial)]));
    });
    let key = [&ENV_KTRI[..], &[3]].concat();
    let content = [&ENV_ECI[..], &[2]].concat();
    let ct = match env.get(&content) {
        Node::Prim(_, v) => v.clone(),
        _ => panic!("encryptedContent is primitive"),
    };
    for (name, k) in [
        ("empty", Vec::new()),
        ("of one byte", vec![1]),
        ("of 256 random bytes", rng.bytes(256)),
        ("of 4,096 random bytes", rng.bytes(4096)),
    ] {
        edit(&format!("encryptedKey {name}"), &|e| {
            *e.at(&key) = Node::Prim(0x04, k.clone());
        });
    }
    let mut last_flipped = ct.clone();
    *last_flipped.last_mut().unwrap() ^= 0x01;
    for (name, c) in [
        ("empty", Vec::new()),
        ("of 15 bytes", rng.bytes(15)),
        ("random", rng.bytes(ct.len())),
        ("with its last byte flipped (padding)", last_flipped),
        ("cut by one block", ct[..ct.len() - 16].to_vec()),
    ] {
        edit(&format!("ciphertext {name}"), &|e| {
            *e.at(&content) = Node::Prim(0x80, c.clone());
        });
    }
    edit("ciphertext in 10,000 one-byte garbage chunks", &|e| {
        *e.at(&content) = Node::Raw(chunked(0xa0, &[0x41; 10_000], 10_000));
    });
    edit("encryptedContent absent", &|e| {
        e.at(&ENV_ECI).kids().truncate(2);
    });
    edit("encryptedContent tagged [1]", &|e| {
        *e.at(&content) = Node::Prim(0x81, ct.clone());
    });
    for (name, v) in [
        ("absent", None),
        ("of 8 bytes", Some(octets(&[0; 8]))),
        ("of 17 bytes", Some(octets(&[0; 17]))),
        ("an INTEGER", Some(int(&[1; 16]))),
        ("all zero", Some(octets(&[0; 16]))),
    ] {
        edit(&format!("IV {name}"), &|e| {
            let a = e.at(&[&ENV_ECI[..], &[1]].concat()).kids();
            match &v {
                None => a.truncate(1),
                Some(v) => a[1] = Node::Raw(v.clone()),
            }
        });
    }
    edit("EnvelopedData with trailing bytes", &|e| {
        *e = Node::Raw([e.der(), vec![0, 0]].concat());
    });
    list.push(("eContent empty".into(), Vec::new()));
    list.push(("eContent the bare CSR".into(), kit.csr_v.clone()));
    list.push((
        "eContent the whole valid pkiMessage".into(),
        kit.base_v.clone(),
    ));
    for (name, e) in list {
        plan.hostile("envelope", name, kit.msg(e).encode());
    }
    let mut m = kit.v();
    m.e_content = None;
    plan.hostile("envelope", "eContent absent", m.encode());
}

/// Bad content in a good envelope, and the wrong OTP.
fn contents(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
    let csr = Node::parse(&kit.csr_v);
    let mut list: Vec<(String, &str, Vec<u8>)> = Vec::new();
    let mut bad_sig = kit.csr_v.clone();
    *bad_sig.last_mut().unwrap() ^= 0x01;
    list.push((
        "CSR with a broken self-signature, valid OTP".into(),
        "19",
        bad_sig,
    ));
    let swap_text = |from: &[u8], to: &[u8]| {
        let mut c = kit.csr_v.clone();
        let at = c
            .windows(from.len())
            .position(|w| w == from)
            .expect("text in the CSR");
        c[at..at + to.len()].copy_from_slice(to);
        c
    };
    list.push((
        "CSR with its subject changed after signing, valid OTP".into(),
        "19",
        swap_text(b"hostile", b"hostilE"),
    ));
    // Signed over another password, the valid one put in afterwards.
    let mut forged = kit.a.csr("hostile", Some(WRONG_OTP));
    let at = forged
        .windows(WRONG_OTP.len())
        .position(|w| w == WRONG_OTP.as_bytes())
        .unwrap();
    forged[at..at + WRONG_OTP.len()].copy_from_slice(kit.otp.as_bytes());
    list.push((
        "CSR signed over another password, the valid OTP swapped in".into(),
        "19",
        forged,
    ));
    let mut t = csr.clone();
    *t.at(&[1, 0]) = Node::Raw(oid(SHA512_RSA));
    list.push((
        "CSR signature algorithm swapped to SHA-512, valid OTP".into(),
        "19",
        t.der(),
    ));
    let n = kit.csr_v.len();
    list.push(("CSR cut in half".into(), "19", kit.csr_v[..n / 2].to_vec()));
    list.push((
        "CSR with trailing bytes".into(),
        "19",
        [&kit.csr_v[..], &[0, 0]].concat(),
    ));
    list.push((
        "a certificate instead of a CSR".into(),
        "19",
        kit.a_cert.der.clone(),
    ));
    list.push((
        "300 random bytes instead of a CSR".into(),
        "19",
        rng.bytes(300),
    ));
    list.push(("an empty plaintext".into(), "19", Vec::new()));
    list.push((
        "a CSR 10,000 indefinite levels deep".into(),
        "19",
        nested_indefinite(0x30, 10_000, &NULL),
    ));
    list.push((
        "the intruder's CSR with the valid OTP, signed by the device".into(),
        "19",
        kit.b.csr("intruder", Some(&kit.otp)),
    ));
    list.push((
        "the valid CSR as a RenewalReq".into(),
        "17",
        kit.csr_v.clone(),
    ));
    for t in ["20", "21", "22"] {
        list.push((
            format!("the valid CSR as messageType {t}"),
            t,
            kit.csr_v.clone(),
        ));
    }
    list.push((
        "CertPoll for a transaction nobody sent".into(),
        "20",
        seq(&[kit.ca.subject.clone(), kit.a_cert.subject.clone()]),
    ));
    list.push((
        "GetCert for the CA's own serial".into(),
        "21",
        seq(&[kit.ca.subject.clone(), int(&kit.ca.serial)]),
    ));
    list.push((
        "GetCert with an empty serial".into(),
        "21",
        seq(&[kit.ca.subject.clone(), int(&[])]),
    ));
    list.push((
        "GetCRL for another issuer".into(),
        "22",
        seq(&[kit.a_cert.subject.clone(), int(&[1])]),
    ));
    for (name, pw) in [
        ("wrong OTP", WRONG_OTP.to_owned()),
        ("OTP in lower case", kit.otp.to_ascii_lowercase()),
        ("OTP with a trailing space", format!("{} ", kit.otp)),
        (
            "OTP without its last character",
            kit.otp[..kit.otp.len() - 1].to_owned(),
        ),
    ] {
        list.push((name.into(), "19", kit.a.csr("hostile", Some(&pw))));
    }
    for (name, kind, content) in list {
        let m = Msg::new(&kit.a, &kit.a_cert, kit.seal(&content), kind);
        plan.hostile("content", name, m.encode());
    }
}

/// BER bombs, alone and inside the message.
fn bombs(kit: &Kit, plan: &mut Plan) {
    let tree = Node::parse(&kit.base_v);
    let signed_data_oid = oid(SIGNED_DATA);
    let mut definite = NULL.to_vec();
    for _ in 0..10_000 {
        definite = tlv(0x30, &definite);
    }
    let mut list: Vec<(&str, Vec<u8>)> = vec![
        (
            "10,000 nested indefinite SEQUENCEs",
            nested_indefinite(0x30, 10_000, &NULL),
        ),
        (
            "a ContentInfo(signedData) around 10,000 nested indefinite SEQUENCEs",
            nested_indefinite(
                0x30,
                1,
                &[
                    &signed_data_oid[..],
                    &nested_indefinite(0xa0, 1, &nested_indefinite(0x30, 10_000, &NULL)),
                ]
                .concat(),
            ),
        ),
        ("10,000 nested definite SEQUENCEs", definite),
        (
            "a constructed OCTET STRING of 10,000 chunks",
            chunked(0x24, &[0x41; 10_000], 10_000),
        ),
        (
            "10,000 nested constructed OCTET STRINGs",
            nested_indefinite(0x24, 10_000, &[0x04, 0x01, 0x41]),
        ),
        (
            "33 nested SEQUENCEs (one over the depth limit)",
            nested_indefinite(0x30, 33, &NULL),
        ),
        (
            "16,385 NULLs in one SEQUENCE",
            tlv(0x30, &NULL.repeat(16_385)),
        ),
        (
            "a 64-bit tag number",
            vec![
                0x1f, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00,
            ],
        ),
        (
            "the message with an indefinite length and no end-of-contents",
            [
                &[0x30, 0x80][..],
                &kit.base_v[header(&kit.base_v).unwrap().1..],
            ]
            .concat(),
        ),
        (
            "a SEQUENCE claiming 2^31 bytes",
            [&[0x30, 0x84, 0x80, 0, 0, 0][..], &[0u8; 100][..]].concat(),
        ),
    ];
    let mut t = tree.clone();
    *t.at(&ECONTENT) = Node::Raw(chunked(0x24, &[0x41; 10_000], 10_000));
    list.push(("eContent as 10,000 one-byte garbage chunks", t.der()));
    let mut t = tree.clone();
    *t.at(&ECONTENT) = Node::Raw(chunked(0x24, &[], 20_000));
    list.push(("eContent as 20,000 empty chunks", t.der()));
    let mut t = tree.clone();
    *t.at(&ECONTENT) = Node::Raw(nested_indefinite(0x24, 10_000, &[0x04, 0x01, 0x41]));
    list.push(("eContent 10,000 constructed levels deep", t.der()));
    let mut t = tree.clone();
    *t.at(&ECONTENT) = Node::Prim(0x04, nested_indefinite(0x30, 10_000, &NULL));
    list.push(("an envelope 10,000 indefinite levels deep", t.der()));
    let mut t = tree.clone();
    *t.at(&CERTS) = Node::Raw(tlv(0xa0, &nested_indefinite(0x30, 10_000, &NULL)));
    list.push(("a certificate 10,000 indefinite levels deep", t.der()));
    for (name, der) in list {
        plan.hostile("ber-bomb", name, der);
    }
}

/// CertReps sent to the server.
fn certreps(kit: &Kit, plan: &mut Plan, real: &[u8]) {
    plan.hostile(
        "certrep",
        "the server's own CertRep sent back",
        real.to_vec(),
    );
    let nonce = [9u8; 16];
    let txid = message::transaction_id(&kit.a_cert.public_key);
    for (name, status, payload) in [
        (
            "a CertRep SUCCESS signed by the device",
            PkiStatus::Success,
            Some(ReplyPayload::Certificates(vec![kit.a_cert.der.clone()])),
        ),
        (
            "a CertRep PENDING signed by the device",
            PkiStatus::Pending,
            None,
        ),
        (
            "a CertRep FAILURE signed by the device",
            PkiStatus::Failure(message::FailInfo::BadRequest),
            None,
        ),
    ] {
        let rep = CertRep {
            transaction_id: &txid,
            recipient_nonce: &nonce,
            status,
            digest: MessageDigest::Sha256,
            cipher: ContentCipher::Aes256Cbc,
            payload,
            recipient: Some(&kit.ca),
        };
        let der = message::encode_cert_rep(&rep, kit.a.signer.as_ref(), &kit.a.certificate)
            .expect("CertRep");
        plan.hostile("certrep", name, der);
    }
}

/// Encodings of the wrong-OTP message the server is right to read as that message (BER
/// forms, fields nobody checks, lenient string types): each must come back as it does —
/// CertRep FAILURE for the wrong OTP, which its log line must say — not be refused as
/// malformed. Each has a transactionID of its own, to find that line.
fn equivalents(kit: &Kit, plan: &mut Plan) {
    let id = |n: usize| format!("EQUIVALENT-{n:02}");
    let w = |n: usize| {
        let mut m = kit.w();
        m.set_attr(TRANSACTION_ID, vec![Val::Raw(printable(&id(n)))]);
        m
    };
    type Edit<'k> = Box<dyn Fn(&mut Msg<'_>) + 'k>;
    let mut edits: Vec<(&str, Edit<'_>)> = vec![
        (
            "signatureAlgorithm sha256WithRSAEncryption",
            Box::new(|m| m.sig_alg = alg(SHA256_RSA, Some(&NULL))),
        ),
        (
            "signatureAlgorithm without parameters",
            Box::new(|m| m.sig_alg = alg(RSA, None)),
        ),
        (
            "digestAlgorithm with NULL parameters",
            Box::new(|m| m.digest_alg = alg(SHA256, Some(&NULL))),
        ),
        (
            "messageType \"019\"",
            Box::new(|m| {
                m.set_attr(MESSAGE_TYPE, vec![Val::Raw(printable("019"))]);
            }),
        ),
        (
            "messageType as UTF8String",
            Box::new(|m| {
                m.set_attr(MESSAGE_TYPE, vec![Val::Raw(tlv(0x0c, b"19"))]);
            }),
        ),
        (
            "messageType as IA5String",
            Box::new(|m| {
                m.set_attr(MESSAGE_TYPE, vec![Val::Raw(tlv(0x16, b"19"))]);
            }),
        ),
        (
            "an extra pkiStatus attribute",
            Box::new(|m| {
                m.set_attr(PKI_STATUS, vec![Val::Raw(printable("0"))]);
            }),
        ),
        (
            "signed attributes in no order",
            Box::new(|m| {
                m.sort_attrs = false;
                m.attrs.as_mut().unwrap().reverse();
            }),
        ),
        (
            "SignedData version 99, empty digestAlgorithms",
            Box::new(|m| {
                m.version = int(&[99]);
                m.digest_algs = set(&[]);
            }),
        ),
        (
            "SignerInfo version 3",
            Box::new(|m| m.si_version = int(&[3])),
        ),
        (
            "an unsigned attribute",
            Box::new(|m| {
                m.unsigned = Some(tlv(0xa1, &seq(&[oid(UNKNOWN), set(&[NULL.to_vec()])])));
            }),
        ),
        (
            "the CA's certificate carried beside the signer's",
            Box::new(|m| {
                m.certificates = Some(vec![kit.ca.der.clone(), kit.a_cert.der.clone()]);
            }),
        ),
    ];
    if kit.a_cert.serial[0] < 0x80 {
        edits.push((
            "sid serial number with a redundant leading zero",
            Box::new(|m| {
                let serial = [&[0u8][..], &kit.a_cert.serial].concat();
                m.sid = seq(&[kit.a_cert.issuer.clone(), int(&serial)]);
            }),
        ));
    }
    if let Some(ski) = &kit.a_cert.key_identifier {
        edits.push((
            "sid by subjectKeyIdentifier",
            Box::new(move |m| m.sid = tlv(0x80, ski)),
        ));
    }
    let mut list: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, f) in edits {
        let mut m = w(list.len());
        f(&mut m);
        list.push((name, m.encode()));
    }
    // In the envelope (the message re-signed around it).
    let env = Node::parse(&kit.env_w);
    let mut e = env.clone();
    *e.at(&[1, 0, 0]) = Node::Prim(0x02, vec![99]);
    let mut m = w(list.len());
    m.e_content = Some(e.der());
    list.push(("EnvelopedData version 99", m.encode()));
    let content = [&ENV_ECI[..], &[2]].concat();
    let ct = match env.get(&content) {
        Node::Prim(_, v) => v.clone(),
        _ => panic!("encryptedContent is primitive"),
    };
    let mut e = env.clone();
    *e.at(&content) = Node::Raw(chunked(0xa0, &ct, 10_000));
    let mut m = w(list.len());
    m.e_content = Some(e.der());
    list.push(("the ciphertext in 10,000 chunks (BER)", m.encode()));
    // In the message's encoding (the signature unchanged).
    let mut t = Node::parse(&w(list.len()).encode());
    let econtent = match t.get(&ECONTENT) {
        Node::Prim(_, v) => v.clone(),
        _ => panic!("eContent is primitive"),
    };
    *t.at(&ECONTENT) = Node::Raw(chunked(0x24, &econtent, 10_000));
    list.push(("eContent in 10,000 chunks (BER)", t.der()));
    let t = Node::parse(&w(list.len()).encode());
    let sd = t.get(&[1, 0]).der();
    let ci = nested_indefinite(
        0x30,
        1,
        &[
            oid(SIGNED_DATA),
            nested_indefinite(
                0xa0,
                1,
                &nested_indefinite(0x30, 1, &sd[header(&sd).unwrap().1..]),
            ),
        ]
        .concat(),
    );
    list.push(("ContentInfo and SignedData with indefinite lengths", ci));
    let n = list.len();
    for (i, (name, der)) in list.into_iter().enumerate() {
        plan.message("equivalent", name, der, Expect::Processed(id(i)));
    }
    // `message=` as clients also send it.
    let der = w(n).encode();
    plan.push(
        "equivalent",
        "GET with base64 not URL-encoded (+ and / as they are)",
        Req::Get(Base64::encode_string(&der).replace('=', "%3D")),
        Expect::Processed(id(n)),
    );
    let der = w(n + 1).encode();
    plan.push(
        "equivalent",
        "GET with URL-safe base64, unpadded",
        Req::Get(Base64UrlUnpadded::encode_string(&der)),
        Expect::Processed(id(n + 1)),
    );
}

/// HTTP-level abuse: sizes, bodies, garbage base64 by GET, operations, paths.
fn http(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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

fn plan(kit: &Kit, certrep: &[u8]) -> Plan {
    let mut rng = Rng(SEED);
    let mut plan = Plan::default();
    truncations(kit, &mut plan, &mut rng);
    lengths(kit, &mut plan);
    flips(kit, &mut plan, &mut rng);
    oids(kit, &mut plan);
    attributes(kit, &mut plan);
    signatures(kit, &mut plan, &mut rng);
    envelopes(kit, &mut plan, &mut rng);
    contents(kit, &mut plan, &mut rng);
    bombs(kit, &mut plan);
    certreps(kit, &mut plan, certrep);
    equivalents(kit, &mut plan);
    http(kit, &mut plan, &mut rng);
    plan
}

// ------------------------------------------------------------------ the store and the daemon

fn otp(env: &Env) -> String {
    let out = env.ok(&[
        "scep-server",
        "otp",
        "generate",
        "minutes-valid=60",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("otp json");
    v["password"].as_str().expect("password").to_owned()
}

/// Everything a hostile message could change: the certificates (`print --json`), the SCEP
/// requests, the OTPs (created, expires, used) and the servers.
fn store_state(env: &Env) -> String {
    format!(
        "{}\n--- scep-server requests\n{}\n--- scep-server otp\n{}\n--- scep-server\n{}",
        env.snapshot(),
        env.ok(&["scep-server", "requests", "print", "--json"]),
        env.ok(&["scep-server", "otp", "print", "--json"]),
        env.ok(&["scep-server", "print", "--json"]),
    )
}

/// The daemon's resident set, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// What the daemon's log line of a PKCSReq refused for its password says.
const WRONG_OTP_NOTE: &str = "(wrong one-time password)";

/// Waits (up to 10 s: the log is read by another thread) until `n` lines of the daemon's log
/// contain every one of `needles`.
fn wait_for_lines(d: &Daemon, needles: &[&str], n: usize) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let log = d.log();
        let found = log
            .lines()
            .filter(|l| needles.iter().all(|x| l.contains(x)))
            .count();
        if found >= n {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let near: Vec<&str> = log.lines().filter(|l| l.contains(needles[0])).collect();
            return Err(format!(
                "FAILURE, but not logged as {needles:?} ({found} of {n} lines): {near:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn post_ok(port: u16, what: &str, body: &[u8]) -> Vec<u8> {
    let (status, reply) =
        exchange(port, &Req::Post(body.to_vec()).bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&reply));
    reply
}

#[test]
fn a_thousand_hostile_pki_operations_get_4xx_or_failure_and_change_nothing() {
    let env = Env::new();
    env.ok(&["add", "common-name=ca", "name=ca-tpl"]);
    env.ok(&["sign", "ca-tpl", "name=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    let pw = otp(&env);
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let port = d.port;
    let pid = d.child.id();
    let (status, _, ca_der) = d.get(&format!("{SCEP}?operation=GetCACert"));
    assert_eq!(status, 200, "GetCACert");

    // The building blocks, checked by the message layer itself: both base messages parse
    // and verify as PKCSReq.
    let kit = Kit::new(&ca_der, &pw);
    for (name, m) in [("valid", &kit.base_v), ("wrong-OTP", &kit.base_w)] {
        let r = message::parse_request(m, &MessageLimits::default())
            .unwrap_or_else(|e| panic!("the {name} message does not parse: {e}"));
        r.verify()
            .unwrap_or_else(|e| panic!("the {name} message does not verify: {e}"));
        assert_eq!(r.message_type, MessageType::PkcsReq);
        assert_eq!(Node::parse(m).der(), *m, "the {name} message is DER");
    }
    let before = store_state(&env);

    // Warm-up: 50 valid-shaped requests (the wrong OTP: read, verified, opened, refused).
    let mut certrep = Vec::new();
    for i in 0..50 {
        let req = if i % 2 == 0 {
            Req::Post(kit.base_w.clone())
        } else {
            Req::Get(url_b64(&kit.base_w))
        };
        let (status, body) =
            exchange(port, &req.bytes()).unwrap_or_else(|e| panic!("warm-up {i}: {e}"));
        assert_eq!(
            outcome(status, &body, &ca_der).as_deref(),
            Ok("FAILURE BadRequest"),
            "warm-up {i}"
        );
        certrep = body;
    }
    let rss_warm = rss_kib(pid);

    let plan = plan(&kit, &certrep);
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &plan.0 {
        *families.entry(v.family).or_default() += 1;
    }
    let posts = plan
        .0
        .iter()
        .filter(|v| !matches!(v.req, Req::Get(_)))
        .count();
    assert!(
        posts >= 1000,
        "only {posts} hostile messages besides GETs: {families:?}"
    );
    let labels: BTreeSet<&str> = plan.0.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(labels.len(), plan.0.len(), "variant labels are unique");

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut tally: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut processed: BTreeMap<String, usize> = BTreeMap::new();
    for v in &plan.0 {
        let got = match exchange(port, &v.req.bytes()) {
            Ok((status, body)) => outcome(status, &body, &ca_der),
            Err(e) => {
                if let Ok(Some(st)) = d.child.try_wait() {
                    panic!("certman serve died ({st}) at {}:\n{}", v.label, d.log());
                }
                Err(e)
            }
        };
        let verdict = match (got, &v.expect) {
            (Err(e), _) => Err(e),
            (Ok(o), Expect::Refused) => Ok(o),
            (Ok(o), Expect::Processed(txid)) if o == "FAILURE BadRequest" => {
                let n = processed.entry(txid.clone()).or_default();
                *n += 1;
                wait_for_lines(
                    &d,
                    &[&format!("transaction-id={txid} "), WRONG_OTP_NOTE],
                    *n,
                )
                .map(|()| o)
            }
            (Ok(o), Expect::Status(c)) if o == format!("HTTP {c}") => Ok(o),
            (Ok(o), e) => Err(format!("{o}, expected {e:?}")),
        };
        match verdict {
            Ok(o) => *tally.entry(v.family).or_default().entry(o).or_default() += 1,
            Err(why) => failures.push(format!("{}\n    -> {why}", v.label)),
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_kib(pid);

    println!(
        "{} requests ({} by GET) in {:.1} s; daemon RSS {} KiB after the warm-up, {} KiB after",
        plan.0.len(),
        plan.0.len() - posts,
        elapsed.as_secs_f64(),
        rss_warm,
        rss_after
    );
    for (family, outcomes) in &tally {
        println!("  {family:<10} {:>5}  {outcomes:?}", families[family]);
    }
    let log = d.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were answered wrongly:\n{}\nthe daemon's errors:\n{}",
        failures.len(),
        plan.0.len(),
        failures.join("\n"),
        errors.join("\n")
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "the hostile run took {elapsed:?}"
    );
    assert!(
        rss_after < rss_warm + 32 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_after} KiB"
    );

    // Nothing changed: no certificate, no request, the OTP still unused.
    let after = store_state(&env);
    assert_eq!(before, after, "the hostile messages changed the store");
    let otps: Value =
        serde_json::from_str(&env.ok(&["scep-server", "otp", "print", "--json"])).unwrap();
    assert!(
        otps.as_array().unwrap().iter().all(|o| o["used"].is_null()),
        "an OTP was used: {otps}"
    );

    // The daemon lives: /health, the valid message built at the start (its OTP unused all
    // along) is issued now, and so is a fresh enrolment.
    let (status, _, health) = d.get("/health");
    assert_eq!(status, 200, "/health: {}", String::from_utf8_lossy(&health));
    let reply = post_ok(port, "the valid message", &kit.base_v);
    assert_eq!(
        kit.a.read_reply(&reply, &ca_der).status,
        PkiStatus::Success,
        "the valid message, sent after the hostile ones"
    );
    let pw2 = otp(&env);
    let fresh = Device::new("after");
    let msg = fresh.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(fresh.csr("after", Some(&pw2))),
        &ca_der,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    );
    let reply = post_ok(port, "a fresh enrolment", &msg);
    assert_eq!(
        fresh.read_reply(&reply, &ca_der).status,
        PkiStatus::Success,
        "a fresh enrolment"
    );
    let issued = env
        .json()
        .iter()
        .filter(|e| e["flags"].as_str().unwrap_or("").contains('I'))
        .count();
    assert_eq!(issued, 2, "exactly the two valid enrolments were issued");
    let log = d.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    d.stop();
}
