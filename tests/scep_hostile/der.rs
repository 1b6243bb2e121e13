//! DER by hand: the OIDs, TLV builders, the editable `Node` tree, and paths into a
//! pkiMessage and its envelope.

// ---- OIDs
pub(crate) const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
pub(crate) const DATA: &str = "1.2.840.113549.1.7.1";
pub(crate) const ENVELOPED_DATA: &str = "1.2.840.113549.1.7.3";
pub(crate) const CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
pub(crate) const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
pub(crate) const SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub(crate) const SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub(crate) const SHA512: &str = "2.16.840.1.101.3.4.2.3";
pub(crate) const SHA1: &str = "1.3.14.3.2.26";
pub(crate) const MD5: &str = "1.2.840.113549.2.5";
pub(crate) const RSA: &str = "1.2.840.113549.1.1.1";
pub(crate) const RSAES_OAEP: &str = "1.2.840.113549.1.1.7";
pub(crate) const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
pub(crate) const MD5_RSA: &str = "1.2.840.113549.1.1.4";
pub(crate) const SHA1_RSA: &str = "1.2.840.113549.1.1.5";
pub(crate) const SHA256_RSA: &str = "1.2.840.113549.1.1.11";
pub(crate) const SHA512_RSA: &str = "1.2.840.113549.1.1.13";
pub(crate) const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
pub(crate) const AES128: &str = "2.16.840.1.101.3.4.1.2";
pub(crate) const AES192: &str = "2.16.840.1.101.3.4.1.22";
pub(crate) const AES256: &str = "2.16.840.1.101.3.4.1.42";
pub(crate) const DES3: &str = "1.2.840.113549.3.7";
pub(crate) const DES: &str = "1.3.14.3.2.7";
pub(crate) const RC2: &str = "1.2.840.113549.3.2";
pub(crate) const UNKNOWN: &str = "1.2.3.4";
pub(crate) const MESSAGE_TYPE: &str = "2.16.840.1.113733.1.9.2";
pub(crate) const PKI_STATUS: &str = "2.16.840.1.113733.1.9.3";
pub(crate) const FAIL_INFO: &str = "2.16.840.1.113733.1.9.4";
pub(crate) const SENDER_NONCE: &str = "2.16.840.1.113733.1.9.5";
pub(crate) const TRANSACTION_ID: &str = "2.16.840.1.113733.1.9.7";

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

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(content.len()));
    v.extend_from_slice(content);
    v
}

pub(crate) fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub(crate) fn set(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

pub(crate) fn int(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

pub(crate) fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

pub(crate) fn printable(s: &str) -> Vec<u8> {
    tlv(0x13, s.as_bytes())
}

pub(crate) const NULL: [u8; 2] = [0x05, 0x00];

pub(crate) fn oid(dotted: &str) -> Vec<u8> {
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

pub(crate) fn alg(o: &str, params: Option<&[u8]>) -> Vec<u8> {
    let mut v = oid(o);
    if let Some(p) = params {
        v.extend_from_slice(p);
    }
    tlv(0x30, &v)
}

/// The header of the DER element at the start of `b`: (tag, header length, content length).
pub(crate) fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
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
pub(crate) enum Node {
    Prim(u8, Vec<u8>),
    Cons(u8, Vec<Node>),
    Raw(Vec<u8>),
}

impl Node {
    pub(crate) fn parse(der: &[u8]) -> Node {
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

    pub(crate) fn der(&self) -> Vec<u8> {
        match self {
            Node::Prim(t, v) => tlv(*t, v),
            Node::Cons(t, kids) => {
                tlv(*t, &kids.iter().map(Node::der).collect::<Vec<_>>().concat())
            }
            Node::Raw(b) => b.clone(),
        }
    }

    pub(crate) fn at(&mut self, path: &[usize]) -> &mut Node {
        let mut n = self;
        for &i in path {
            n = match n {
                Node::Cons(_, kids) => &mut kids[i],
                _ => panic!("no constructed element on the way to {path:?}"),
            };
        }
        n
    }

    pub(crate) fn get(&self, path: &[usize]) -> &Node {
        let mut n = self;
        for &i in path {
            n = match n {
                Node::Cons(_, kids) => &kids[i],
                _ => panic!("no constructed element on the way to {path:?}"),
            };
        }
        n
    }

    pub(crate) fn kids(&mut self) -> &mut Vec<Node> {
        match self {
            Node::Cons(_, kids) => kids,
            _ => panic!("not a constructed element"),
        }
    }

    pub(crate) fn tag(&self) -> u8 {
        match self {
            Node::Prim(t, _) | Node::Cons(t, _) => *t,
            Node::Raw(b) => b.first().copied().unwrap_or(0),
        }
    }

    /// Every element's path, in document order (the root's is empty).
    pub(crate) fn paths(&self) -> Vec<Vec<usize>> {
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
pub(crate) fn locate(der: &[u8], path: &[usize]) -> (usize, usize, usize) {
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

pub(crate) fn path_name(tree: &Node, path: &[usize]) -> String {
    let dotted: Vec<String> = path.iter().map(usize::to_string).collect();
    format!("[{}] (tag {:02x})", dotted.join("."), tree.get(path).tag())
}

// Paths in a pkiMessage as `Msg::encode` writes it.
/// SignedData.encapContentInfo.eContent (the OCTET STRING holding the envelope)
pub(crate) const ECONTENT: [usize; 5] = [1, 0, 2, 1, 0];
/// SignedData.certificates
pub(crate) const CERTS: [usize; 3] = [1, 0, 3];
/// SignedData.signerInfos
pub(crate) const SIGNER_INFOS: [usize; 3] = [1, 0, 4];
/// the SignerInfo
pub(crate) const SIGNER: [usize; 4] = [1, 0, 4, 0];

pub(crate) fn signer_path(field: usize) -> Vec<usize> {
    [&SIGNER[..], &[field]].concat()
}

// Paths in an EnvelopedData ContentInfo as certman's `enveloped::seal` writes it.
pub(crate) const ENV_RECIPIENTS: [usize; 3] = [1, 0, 1];
pub(crate) const ENV_KTRI: [usize; 4] = [1, 0, 1, 0];
pub(crate) const ENV_ECI: [usize; 3] = [1, 0, 2];

/// A constructed OCTET STRING (indefinite length) of `data` in one-byte chunks, padded with
/// empty chunks to `chunks` in all; `tag` is the constructed tag (0x24, or 0xa0 for an
/// implicitly tagged string).
pub(crate) fn chunked(tag: u8, data: &[u8], chunks: usize) -> Vec<u8> {
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
pub(crate) fn nested_indefinite(tag: u8, depth: usize, inner: &[u8]) -> Vec<u8> {
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
