//! Encodings of the wrong-OTP message the server must read as that message.

use base64ct::{Base64, Base64UrlUnpadded, Encoding};

use crate::der::{
    alg, chunked, header, int, nested_indefinite, oid, printable, seq, set, tlv, Node, ECONTENT,
    ENV_ECI, MESSAGE_TYPE, NULL, PKI_STATUS, RSA, SHA256, SHA256_RSA, SIGNED_DATA, TRANSACTION_ID,
    UNKNOWN,
};
use crate::http::Req;
use crate::messages::{Kit, Msg, Val};
use crate::plan::{Expect, Plan};

/// Encodings of the wrong-OTP message the server is right to read as that message (BER
/// forms, fields nobody checks, lenient string types): each must come back as it does —
/// CertRep FAILURE for the wrong OTP, which its log line must say — not be refused as
/// malformed. Each has a transactionID of its own, to find that line.
pub(crate) fn equivalents(kit: &Kit, plan: &mut Plan) {
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
