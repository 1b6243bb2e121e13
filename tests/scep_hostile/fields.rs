//! Wrong fields in well-formed messages: OIDs, signed attributes, and CertReps sent to the
//! server.

use certman::protocols::scep::message::{
    self, CertRep, ContentCipher, MessageDigest, PkiStatus, ReplyPayload,
};

use crate::der::{
    alg, int, nested_indefinite, octets, oid, printable, signer_path, tlv, Node, AES128, AES192,
    AES256, CONTENT_TYPE, DATA, DES, DES3, ECDSA_SHA256, ENVELOPED_DATA, ENV_ECI, ENV_KTRI,
    FAIL_INFO, MD5, MD5_RSA, MESSAGE_DIGEST, MESSAGE_TYPE, NULL, PKI_STATUS, RC2, RSA, RSAES_OAEP,
    RSASSA_PSS, SENDER_NONCE, SHA1, SHA1_RSA, SHA256, SHA256_RSA, SHA384, SHA512, SHA512_RSA,
    SIGNED_DATA, TRANSACTION_ID, UNKNOWN,
};
use crate::messages::{Attr, Kit, Msg, Val};
use crate::plan::Plan;

/// Wrong and unknown OIDs, and digest and cipher OIDs swapped.
pub(crate) fn oids(kit: &Kit, plan: &mut Plan) {
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
pub(crate) fn attributes(kit: &Kit, plan: &mut Plan) {
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

/// CertReps sent to the server.
pub(crate) fn certreps(kit: &Kit, plan: &mut Plan, real: &[u8]) {
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
