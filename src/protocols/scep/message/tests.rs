//! pkiMessage round trips, OpenSSL as the client's and the server's peer, hostile input.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;
use crate::keys::KeySigner;
use crate::x509::cms::testutil::{der_to_ber, openssl, Identity};
use crate::x509::cms::{self, ber, enveloped, signed, SignedContent};

struct Fixture {
    ca: Identity,
    client: Identity,
    csr: Vec<u8>,
}

/// A CA (2048 bits) and a client whose self-signed certificate has a 33-byte serial number,
/// as sscep makes them, with a PKCS#10 request for the client's key.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Identity::new("ca", 2048, None);
        let client = Identity::new(
            "client",
            2048,
            Some("00c0ffee11223344556677889900aabbccddeeff00112233445566778899aabbcc"),
        );
        let key = client.key_pem();
        let csr = openssl(
            client.dir.path(),
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                "/CN=client",
                "-outform",
                "DER",
            ],
            b"",
        );
        Fixture { ca, client, csr }
    })
}

fn limits() -> MessageLimits {
    MessageLimits::default()
}

fn request(
    f: &Fixture,
    message_type: MessageType,
    content: &RequestContent,
    cipher: ContentCipher,
    digest: MessageDigest,
) -> Vec<u8> {
    let ca = MessageCertificate::parse(&f.ca.cert).unwrap();
    let req = PkiRequest {
        message_type,
        transaction_id: "TX-1",
        sender_nonce: &[9; 16],
        content,
        cipher,
        digest,
        recipient: &ca,
    };
    encode_request(&req, &f.client.signer(), &f.client.cert).unwrap()
}

fn pkcs_req(f: &Fixture) -> Vec<u8> {
    let content = RequestContent::CertificationRequest(f.csr.clone());
    request(
        f,
        MessageType::PkcsReq,
        &content,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha256,
    )
}

#[test]
fn enrolment_round_trip_for_every_cipher_and_digest() {
    let f = fixture();
    let content = RequestContent::CertificationRequest(f.csr.clone());
    for cipher in ContentCipher::ALL {
        for digest in [MessageDigest::Sha256, MessageDigest::Sha512] {
            let what = format!("{cipher:?} {digest:?}");
            let der = request(f, MessageType::PkcsReq, &content, cipher, digest);
            // Server side.
            let msg = parse_request(&der, &limits()).expect(&what);
            assert_eq!(msg.message_type, MessageType::PkcsReq);
            assert_eq!(msg.transaction_id, "TX-1");
            assert_eq!(msg.sender_nonce, [9; 16]);
            assert_eq!(msg.digest, digest);
            assert_eq!(msg.signer.der, f.client.cert);
            msg.verify().expect(&what);
            let ca = MessageCertificate::parse(&f.ca.cert).unwrap();
            assert_eq!(msg.recipients(), [(ca.issuer.clone(), ca.serial.clone())]);
            assert_eq!(msg.content_cipher().unwrap(), cipher);
            let opened = msg.open(&mut |c| f.ca.decrypt(c), &limits()).expect(&what);
            assert_eq!(opened, content);
            let again = msg
                .open_for(&ca.issuer, &ca.serial, &mut |c| f.ca.decrypt(c), &limits())
                .unwrap();
            assert_eq!(again, content);
            // The reply.
            let issued = vec![f.client.cert.clone(), f.ca.cert.clone()];
            let rep = CertRep {
                transaction_id: &msg.transaction_id,
                recipient_nonce: &msg.sender_nonce,
                status: PkiStatus::Success,
                digest,
                cipher: msg.content_cipher().unwrap(),
                payload: Some(ReplyPayload::Certificates(issued.clone())),
                recipient: Some(&msg.signer),
            };
            let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
            // Client side.
            let decoded = decode_cert_rep(
                &reply,
                &[&f.ca.cert],
                &mut |c| f.client.decrypt(c),
                &limits(),
            )
            .expect(&what);
            assert_eq!(decoded.status, PkiStatus::Success);
            assert_eq!(decoded.transaction_id, "TX-1");
            assert_eq!(decoded.recipient_nonce, [9; 16]);
            assert_eq!(decoded.sender_nonce.len(), 16);
            assert_ne!(decoded.sender_nonce, [9; 16]);
            assert_eq!(decoded.payload, Some(ReplyPayload::Certificates(issued)));
            // Only a trusted signer is accepted.
            assert!(matches!(
                decode_cert_rep(
                    &reply,
                    &[&f.client.cert],
                    &mut |c| f.client.decrypt(c),
                    &limits()
                ),
                Err(MessageError::UntrustedSigner)
            ));
        }
    }
}

#[test]
fn failure_and_pending_replies() {
    let f = fixture();
    let client = MessageCertificate::parse(&f.client.cert).unwrap();
    for status in [
        PkiStatus::Pending,
        PkiStatus::Failure(FailInfo::BadAlg),
        PkiStatus::Failure(FailInfo::BadMessageCheck),
        PkiStatus::Failure(FailInfo::BadRequest),
        PkiStatus::Failure(FailInfo::BadTime),
        PkiStatus::Failure(FailInfo::BadCertId),
    ] {
        let rep = CertRep {
            transaction_id: "T",
            recipient_nonce: b"0123456789abcdef",
            status,
            digest: MessageDigest::Sha512,
            cipher: ContentCipher::DesCbc,
            payload: None,
            recipient: None,
        };
        let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
        // An empty eContent, as micromdm and step-ca send, which OpenSSL clients verify.
        let sc = SignedContent::parse(&reply, &cms::Limits::default()).unwrap();
        assert_eq!(sc.content.as_deref(), Some(&[][..]));
        let path = f.ca.path("failure.der");
        std::fs::write(&path, &reply).unwrap();
        let path = path.display().to_string();
        for api in ["cms", "smime"] {
            let out = openssl(
                f.ca.dir.path(),
                &[api, "-verify", "-inform", "DER", "-in", &path, "-noverify"],
                b"",
            );
            assert!(out.is_empty());
        }
        let decoded = decode_cert_rep(
            &reply,
            &[&f.ca.cert],
            &mut |c| f.client.decrypt(c),
            &limits(),
        )
        .unwrap();
        assert_eq!(decoded.status, status);
        assert_eq!(decoded.payload, None);
        // A payload only goes with SUCCESS, and SUCCESS needs one and someone to encrypt to.
        let with_payload = CertRep {
            payload: Some(ReplyPayload::Crl(vec![0x30, 0x00])),
            recipient: Some(&client),
            ..rep.clone()
        };
        assert!(encode_cert_rep(&with_payload, &f.ca.signer(), &f.ca.cert).is_err());
    }
    let no_payload = CertRep {
        transaction_id: "T",
        recipient_nonce: b"n",
        status: PkiStatus::Success,
        digest: MessageDigest::Sha256,
        cipher: ContentCipher::Aes128Cbc,
        payload: None,
        recipient: Some(&client),
    };
    assert!(encode_cert_rep(&no_payload, &f.ca.signer(), &f.ca.cert).is_err());
    let no_recipient = CertRep {
        payload: Some(ReplyPayload::Certificates(vec![f.client.cert.clone()])),
        recipient: None,
        ..no_payload
    };
    assert!(encode_cert_rep(&no_recipient, &f.ca.signer(), &f.ca.cert).is_err());
}

#[test]
fn poll_get_cert_and_get_crl() {
    let f = fixture();
    let ca = MessageCertificate::parse(&f.ca.cert).unwrap();
    let client = MessageCertificate::parse(&f.client.cert).unwrap();
    let cases = [
        (
            MessageType::CertPoll,
            RequestContent::IssuerAndSubject {
                issuer: ca.subject.clone(),
                subject: client.subject.clone(),
            },
        ),
        (
            MessageType::GetCert,
            RequestContent::IssuerAndSerial {
                issuer: ca.subject.clone(),
                serial: client.serial.clone(),
            },
        ),
        (
            MessageType::GetCrl,
            RequestContent::IssuerAndSerial {
                issuer: ca.subject.clone(),
                serial: vec![0x01],
            },
        ),
    ];
    for (t, content) in cases {
        let der = request(
            f,
            t,
            &content,
            ContentCipher::DesEde3Cbc,
            MessageDigest::Sha256,
        );
        let msg = parse_request(&der, &limits()).unwrap();
        assert_eq!(msg.message_type, t);
        msg.verify().unwrap();
        assert_eq!(
            msg.open(&mut |c| f.ca.decrypt(c), &limits()).unwrap(),
            content
        );
        // A content that does not suit the type is refused when writing.
        let csr = RequestContent::CertificationRequest(f.csr.clone());
        let req = PkiRequest {
            message_type: t,
            transaction_id: "T",
            sender_nonce: b"n",
            content: &csr,
            cipher: ContentCipher::Aes128Cbc,
            digest: MessageDigest::Sha256,
            recipient: &ca,
        };
        assert!(encode_request(&req, &f.client.signer(), &f.client.cert).is_err());
    }
    // The CRL reply: the CRL travels in the degenerate SignedData's crls.
    let crl = ber::tlv(0x30, &ber::tlv(0x30, &[0x02, 0x01, 0x01]));
    let rep = CertRep {
        transaction_id: "T",
        recipient_nonce: b"n",
        status: PkiStatus::Success,
        digest: MessageDigest::Sha256,
        cipher: ContentCipher::Aes128Cbc,
        payload: Some(ReplyPayload::Crl(crl.clone())),
        recipient: Some(&client),
    };
    let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
    let decoded = decode_cert_rep(
        &reply,
        &[&f.ca.cert],
        &mut |c| f.client.decrypt(c),
        &limits(),
    )
    .unwrap();
    assert_eq!(decoded.payload, Some(ReplyPayload::Crl(crl)));
}

/// What certmonger and sscep do with a CertRep, done by OpenSSL's PKCS#7 API (`smime`, as
/// they use it): verify the signature, decrypt the envelope with the requester's key, list
/// the certificates.
#[test]
fn cert_rep_is_read_by_openssl() {
    let f = fixture();
    let client = MessageCertificate::parse(&f.client.cert).unwrap();
    for cipher in ContentCipher::ALL {
        let rep = CertRep {
            transaction_id: "T",
            recipient_nonce: b"n",
            status: PkiStatus::Success,
            digest: MessageDigest::Sha256,
            cipher,
            payload: Some(ReplyPayload::Certificates(vec![f.client.cert.clone()])),
            recipient: Some(&client),
        };
        let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
        let dir = f.client.dir.path();
        std::fs::write(dir.join("rep.der"), &reply).unwrap();
        let envelope = openssl(
            dir,
            &[
                "smime",
                "-verify",
                "-inform",
                "DER",
                "-in",
                "rep.der",
                "-noverify",
            ],
            b"",
        );
        std::fs::write(dir.join("env.der"), &envelope).unwrap();
        let (cert, key) = (f.client.cert_pem(), f.client.key_pem());
        let degenerate = openssl(
            dir,
            &[
                "smime",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                "env.der",
                "-recip",
                &cert,
                "-inkey",
                &key,
                "-provider",
                "legacy",
                "-provider",
                "default",
            ],
            b"",
        );
        std::fs::write(dir.join("deg.der"), &degenerate).unwrap();
        let pem = openssl(
            dir,
            &[
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                "deg.der",
                "-print_certs",
                "-noout",
            ],
            b"",
        );
        assert!(
            String::from_utf8_lossy(&pem).contains("CN = client"),
            "{cipher:?}"
        );
    }
}

#[test]
fn get_ca_cert_and_get_next_ca_cert_bodies() {
    let f = fixture();
    let ra_ca = degenerate_certificates(&[&f.client.cert, &f.ca.cert]);
    let sc = SignedContent::parse(&ra_ca, &cms::Limits::default()).unwrap();
    assert_eq!(sc.certificates, [f.client.cert.clone(), f.ca.cert.clone()]);
    let next = signed_certificates(&[&f.client.cert], &f.ca.signer(), &f.ca.cert).unwrap();
    let dir = f.ca.dir.path();
    std::fs::write(dir.join("next.der"), &next).unwrap();
    let ca_pem = f.ca.cert_pem();
    // Verified against the current CA as the trust anchor, as a client does.
    let inner = openssl(
        dir,
        &[
            "cms", "-verify", "-inform", "DER", "-in", "next.der", "-CAfile", &ca_pem, "-purpose",
            "any",
        ],
        b"",
    );
    let inner = SignedContent::parse(&inner, &cms::Limits::default()).unwrap();
    assert_eq!(inner.certificates, std::slice::from_ref(&f.client.cert));
}

/// A request as a streaming encoder writes it: indefinite lengths everywhere, the envelope
/// and its ciphertext in 100-byte chunks.
#[test]
fn a_ber_request_is_read_verified_and_opened() {
    let f = fixture();
    let der = pkcs_req(f);
    let sc = SignedContent::parse(&der, &cms::Limits::default()).unwrap();
    let envelope_ber = der_to_ber(sc.content.as_ref().unwrap(), 100);
    let ber = der_to_ber(&der, 100);
    assert!(ber.len() > der.len());
    // Normalised, the BER is the DER again, byte for byte; the DER passes unchanged.
    let ber_limits = limits().cms().ber;
    assert_eq!(ber::normalize(&ber, &ber_limits).unwrap(), der);
    assert_eq!(ber::normalize(&der, &ber_limits).unwrap(), der);
    let msg = parse_request(&ber, &limits()).unwrap();
    msg.verify().unwrap();
    assert_eq!(
        msg.open(&mut |c| f.ca.decrypt(c), &limits()).unwrap(),
        RequestContent::CertificationRequest(f.csr.clone())
    );
    // An envelope that is itself BER inside a DER message (signed as sent).
    let signed = sign_message(
        &envelope_ber,
        MessageDigest::Sha256,
        &scep_attributes(MessageType::PkcsReq),
        &f.client.signer(),
        &f.client.cert,
    )
    .unwrap();
    let msg = parse_request(&signed, &limits()).unwrap();
    msg.verify().unwrap();
    assert!(msg.open(&mut |c| f.ca.decrypt(c), &limits()).is_ok());
}

fn scep_attributes(t: MessageType) -> Vec<(ObjectIdentifier, Vec<u8>)> {
    vec![
        (
            ID_MESSAGE_TYPE,
            attributes::printable("messageType", &t.number().to_string()).unwrap(),
        ),
        (ID_TRANSACTION_ID, attributes::printable("t", "TX").unwrap()),
        (ID_SENDER_NONCE, attributes::octets(&[1; 16]).unwrap()),
    ]
}

/// A client that encrypts to every certificate GetCACert returned (micromdm's scepclient
/// with an RA): OpenSSL writes the two-recipient envelope.
#[test]
fn an_envelope_for_two_recipients() {
    let f = fixture();
    let dir = f.ca.dir.path();
    std::fs::write(dir.join("csr.der"), &f.csr).unwrap();
    let (ca, client) = (f.ca.cert_pem(), f.client.cert_pem());
    let envelope = openssl(
        dir,
        &[
            "cms", "-encrypt", "-binary", "-outform", "DER", "-aes128", "-in", "csr.der", &client,
            &ca,
        ],
        b"",
    );
    let der = sign_message(
        &envelope,
        MessageDigest::Sha256,
        &scep_attributes(MessageType::PkcsReq),
        &f.client.signer(),
        &f.client.cert,
    )
    .unwrap();
    let msg = parse_request(&der, &limits()).unwrap();
    msg.verify().unwrap();
    assert_eq!(msg.recipients().len(), 2);
    assert!(matches!(
        msg.open(&mut |c| f.ca.decrypt(c), &limits()),
        Err(MessageError::AmbiguousRecipient)
    ));
    let ca_cert = MessageCertificate::parse(&f.ca.cert).unwrap();
    let opened = msg
        .open_for(
            &ca_cert.issuer,
            &ca_cert.serial,
            &mut |c| f.ca.decrypt(c),
            &limits(),
        )
        .unwrap();
    assert_eq!(opened, RequestContent::CertificationRequest(f.csr.clone()));
}

#[test]
fn verification_failures_map_to_bad_message_check() {
    let f = fixture();
    let der = pkcs_req(f);
    // The transactionID altered after signing.
    let at = der.windows(4).position(|w| w == b"TX-1").unwrap();
    let mut altered = der.clone();
    altered[at + 3] = b'2';
    let msg = parse_request(&altered, &limits()).unwrap();
    assert_eq!(msg.transaction_id, "TX-2");
    let e = msg.verify().unwrap_err();
    assert!(matches!(e, MessageError::BadSignature(_)), "{e}");
    assert_eq!(e.fail_info(), FailInfo::BadMessageCheck);
    // The envelope altered after signing: the message digest no longer matches.
    let sc = SignedContent::parse(&der, &cms::Limits::default()).unwrap();
    let env = sc.content.unwrap();
    let tail = &env[env.len() - 8..];
    let at = der.windows(8).position(|w| w == tail).unwrap();
    let mut altered = der.clone();
    altered[at] ^= 1;
    let e = parse_request(&altered, &limits())
        .unwrap()
        .verify()
        .unwrap_err();
    assert!(matches!(e, MessageError::DigestMismatch), "{e}");
    assert_eq!(e.fail_info(), FailInfo::BadMessageCheck);
    assert_eq!(
        MessageError::UnsupportedAlgorithm("x".into()).fail_info(),
        FailInfo::BadAlg
    );
    assert_eq!(
        MessageError::Malformed("x".into()).fail_info(),
        FailInfo::BadRequest
    );
}

/// A tampered encrypted key, a tampered ciphertext and a content that is not what the type
/// needs all end as the one `Undecryptable`.
#[test]
fn no_padding_oracle_in_requests() {
    let f = fixture();
    let ca = MessageCertificate::parse(&f.ca.cert).unwrap();
    let csr = RequestContent::CertificationRequest(f.csr.clone());
    let key_len = 256;
    let mut seen = Vec::new();
    for cipher in ContentCipher::ALL {
        let envelope = enveloped::seal(&f.csr, &ca.recipient(), cipher).expect("seal");
        let sc_env = cms::Envelope::parse(&envelope, &cms::Limits::default()).unwrap();
        let ek = &sc_env.recipients[0].encrypted_key;
        assert_eq!(ek.len(), key_len);
        let ek_at = envelope
            .windows(key_len)
            .position(|w| w == &ek[..])
            .unwrap();
        let mut bad_key = envelope.clone();
        bad_key[ek_at + 100] ^= 0x40;
        // The ciphertext ends the envelope. Altered in its second-to-last block, the last
        // plaintext byte (the padding length) changes: a CBC padding failure. Altered in its
        // first block, the CSR's own header is garbled: garbage plaintext.
        let bl = cipher.block_len();
        let n = envelope.len();
        let ct_start = n - (f.csr.len() / bl + 1) * bl;
        let mut bad_padding = envelope.clone();
        bad_padding[n - bl - 1] ^= 0x01;
        let mut garbled = envelope.clone();
        garbled[ct_start + 1] ^= 0x40;
        // A GetCert whose envelope holds a CSR: decrypts fine, is garbage for the type.
        let cases = [
            (MessageType::PkcsReq, bad_key),
            (MessageType::PkcsReq, bad_padding),
            (MessageType::PkcsReq, garbled),
            (MessageType::GetCert, envelope.clone()),
        ];
        for (t, env) in cases {
            let der = sign_message(
                &env,
                MessageDigest::Sha256,
                &scep_attributes(t),
                &f.client.signer(),
                &f.client.cert,
            )
            .unwrap();
            let msg = parse_request(&der, &limits()).unwrap();
            msg.verify().unwrap();
            let e = msg.open(&mut |c| f.ca.decrypt(c), &limits()).unwrap_err();
            assert!(
                matches!(e, MessageError::Undecryptable),
                "{cipher:?} {t:?}: {e}"
            );
            seen.push(e.to_string());
        }
        let ok = request(f, MessageType::PkcsReq, &csr, cipher, MessageDigest::Sha256);
        let msg = parse_request(&ok, &limits()).unwrap();
        assert_eq!(msg.open(&mut |c| f.ca.decrypt(c), &limits()).unwrap(), csr);
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "one error text for every cause");
}

#[test]
fn numbers_names_and_transaction_ids() {
    for t in [
        MessageType::CertRep,
        MessageType::RenewalReq,
        MessageType::PkcsReq,
        MessageType::CertPoll,
        MessageType::GetCert,
        MessageType::GetCrl,
    ] {
        assert_eq!(MessageType::from_number(t.number()).unwrap(), t);
    }
    assert_eq!(MessageType::CertPoll.number(), 20);
    assert!(MessageType::from_number(18).is_err());
    for (n, fi) in [
        (0, FailInfo::BadAlg),
        (1, FailInfo::BadMessageCheck),
        (2, FailInfo::BadRequest),
        (3, FailInfo::BadTime),
        (4, FailInfo::BadCertId),
    ] {
        assert_eq!(fi.number(), n);
        assert_eq!(FailInfo::from_number(n).unwrap(), fi);
    }
    assert!(FailInfo::from_number(5).is_err());
    let f = fixture();
    let client = MessageCertificate::parse(&f.client.cert).unwrap();
    let id = transaction_id(&client.public_key);
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(id, transaction_id(&f.client.signer().public_key().clone()));
    let ca = MessageCertificate::parse(&f.ca.cert).unwrap();
    assert_ne!(id, transaction_id(&ca.public_key));
}

#[test]
fn requests_that_are_not_requests() {
    let f = fixture();
    // A CertRep sent to the server.
    let rep = CertRep {
        transaction_id: "T",
        recipient_nonce: b"n",
        status: PkiStatus::Pending,
        digest: MessageDigest::Sha256,
        cipher: ContentCipher::Aes128Cbc,
        payload: None,
        recipient: None,
    };
    let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
    assert!(matches!(
        parse_request(&reply, &limits()),
        Err(MessageError::UnknownMessageType(_))
    ));
    // A degenerate SignedData (no signer), a bare certificate, nothing at all.
    for bad in [
        degenerate_certificates(&[&f.ca.cert]),
        f.ca.cert.clone(),
        Vec::new(),
    ] {
        assert!(parse_request(&bad, &limits()).is_err());
    }
    // Unknown messageType, missing senderNonce.
    for attrs in [
        vec![
            (ID_MESSAGE_TYPE, attributes::printable("m", "18").unwrap()),
            (ID_TRANSACTION_ID, attributes::printable("t", "T").unwrap()),
            (ID_SENDER_NONCE, attributes::octets(&[1; 16]).unwrap()),
        ],
        vec![
            (ID_MESSAGE_TYPE, attributes::printable("m", "19").unwrap()),
            (ID_TRANSACTION_ID, attributes::printable("t", "T").unwrap()),
        ],
    ] {
        let der = sign_message(
            &pkcs_req(f),
            MessageDigest::Sha256,
            &attrs,
            &f.client.signer(),
            &f.client.cert,
        )
        .unwrap();
        assert!(parse_request(&der, &limits()).is_err());
    }
    // Over the size limit.
    let small = MessageLimits {
        max_input: 100,
        ..limits()
    };
    assert!(matches!(
        parse_request(&pkcs_req(f), &small),
        Err(MessageError::Limit(_))
    ));
}

/// A small deterministic generator for the mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(base: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut m = base.to_vec();
    let at = rng.below(m.len());
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
        }
        1 => m.truncate(at),
        2 => {
            let junk: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
            m.splice(at..at, junk);
        }
        3 => {
            // A length bomb: a declared length of 2^60 where a length was.
            m.splice(at..(at + 1).min(m.len()), [0x88, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        }
        4 => {
            // Indefinite lengths where definite ones were.
            m[at] = 0x80;
        }
        5 => {
            let end = (at + rng.below(64)).min(m.len());
            let copy = m[at..end].to_vec();
            m.splice(at..at, copy);
        }
        _ => {
            let end = (at + rng.below(32)).min(m.len());
            m.drain(at..end);
        }
    }
    m
}

#[test]
fn hostile_requests_never_panic_and_stay_fast() {
    let f = fixture();
    let der = pkcs_req(f);
    let ber = der_to_ber(&der, 64);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut slowest = Duration::ZERO;
    let mut parsed = 0;
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for i in 0..3000 {
        let base = if i % 3 == 0 { &ber } else { &der };
        inputs.push(mutate(base, &mut rng));
    }
    // Truncations at every 7th byte.
    inputs.extend((0..der.len()).step_by(7).map(|n| der[..n].to_vec()));
    // Nested indefinite constructed OCTET STRINGs 10,000 deep, and SEQUENCEs 100,000 deep.
    let mut bomb = Vec::new();
    for _ in 0..10_000 {
        bomb.extend([0x24, 0x80]);
    }
    bomb.extend([0x04, 0x01, 0x00]);
    bomb.extend(std::iter::repeat_n(0u8, 20_000));
    inputs.push(bomb);
    let mut deep = [0x30u8, 0x80].repeat(100_000);
    deep.extend(std::iter::repeat_n(0u8, 200_000));
    inputs.push(deep);
    inputs.push(vec![0x30, 0x88, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    inputs.push(vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30]);
    for input in &inputs {
        let t = Instant::now();
        if let Ok(msg) = parse_request(input, &limits()) {
            parsed += 1;
            let _ = msg.verify();
            let _ = msg.recipients();
            let _ = msg.content_cipher();
            let _ = msg.open(&mut |c| f.ca.decrypt(c), &limits());
        }
        slowest = slowest.max(t.elapsed());
    }
    // About a fifth stay readable (mutated signatures, ciphertexts, names) and go on to
    // verify and open.
    assert!(
        parsed >= 100,
        "only {parsed} mutations left a readable message"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "slowest input took {slowest:?}"
    );
    // The bombs are refused as over a limit, not read.
    let bomb = inputs[inputs.len() - 4].clone();
    assert!(matches!(
        parse_request(&bomb, &limits()),
        Err(MessageError::Limit(_))
    ));
}

#[test]
fn hostile_replies_never_panic() {
    let f = fixture();
    let client = MessageCertificate::parse(&f.client.cert).unwrap();
    let rep = CertRep {
        transaction_id: "T",
        recipient_nonce: b"n",
        status: PkiStatus::Success,
        digest: MessageDigest::Sha256,
        cipher: ContentCipher::Aes128Cbc,
        payload: Some(ReplyPayload::Certificates(vec![f.client.cert.clone()])),
        recipient: Some(&client),
    };
    let reply = encode_cert_rep(&rep, &f.ca.signer(), &f.ca.cert).unwrap();
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for _ in 0..1000 {
        let m = mutate(&reply, &mut rng);
        let _ = decode_cert_rep(&m, &[&f.ca.cert], &mut |c| f.client.decrypt(c), &limits());
    }
    // Signed content that is no envelope at all (a signer bug or an attack).
    let bogus = signed::sign(
        &cms::SignRequest {
            content: b"not an envelope",
            digest: MessageDigest::Sha256,
            attributes: &[
                (ID_MESSAGE_TYPE, attributes::printable("m", "3").unwrap()),
                (ID_PKI_STATUS, attributes::printable("s", "0").unwrap()),
                (ID_TRANSACTION_ID, attributes::printable("t", "T").unwrap()),
                (ID_RECIPIENT_NONCE, attributes::octets(b"n").unwrap()),
            ],
            signing_time: None,
            certificates: &[&f.ca.cert],
        },
        &f.ca.signer(),
        &cms::CertificateView::parse(&f.ca.cert).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        decode_cert_rep(
            &bogus,
            &[&f.ca.cert],
            &mut |c| f.client.decrypt(c),
            &limits()
        ),
        Err(MessageError::Malformed(_))
    ));
}
