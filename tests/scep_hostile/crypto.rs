//! Signatures, signers, envelopes and their content (CSRs, message types, passwords) gone
//! wrong.

use certman::keys::HashAlgorithm;

use crate::der::{
    chunked, int, nested_indefinite, octets, oid, seq, tlv, Node, ENV_ECI, ENV_KTRI,
    ENV_RECIPIENTS, NULL, SHA512_RSA, SIGNER, SIGNER_INFOS,
};
use crate::messages::{seal_for, Kit, Msg, WRONG_OTP};
use crate::plan::{Plan, Rng};

/// Bad signatures and signers.
pub(crate) fn signatures(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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
pub(crate) fn envelopes(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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
pub(crate) fn contents(kit: &Kit, plan: &mut Plan, rng: &mut Rng) {
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
