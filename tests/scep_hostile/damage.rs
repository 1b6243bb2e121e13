//! Structural damage: truncations, inflated lengths, byte flips and BER bombs.

use std::collections::BTreeSet;

use crate::der::{
    chunked, header, locate, nested_indefinite, oid, path_name, signer_path, tlv, Node, CERTS,
    ECONTENT, NULL, SIGNED_DATA, SIGNER, SIGNER_INFOS,
};
use crate::messages::Kit;
use crate::plan::{Expect, Plan, Rng};

/// Truncations: the whole message cut at every element's edges and inside it, plus random
/// cuts; one element cut inside an otherwise consistent message (lengths around it
/// recomputed); the envelope cut.
pub(crate) fn truncations(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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
pub(crate) fn lengths(kit: &Kit, plan: &mut Plan) {
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
pub(crate) fn flips(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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

/// BER bombs, alone and inside the message.
pub(crate) fn bombs(kit: &Kit, plan: &mut Plan) {
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
