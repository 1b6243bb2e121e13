//! CMS against the real OpenSSL: what `openssl cms` writes (DER and `-stream` BER) is read,
//! verified and opened here; what this layer writes is verified and opened by `openssl cms`.

use std::sync::OnceLock;

use der::{Decode, Encode};

use super::testutil::{openssl, Identity};
use super::*;
use crate::error::KeyError;
use crate::secret::SecretBytes;

fn rsa2048() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| Identity::new("peer", 2048, None))
}

fn rsa1024() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    // A 33-byte serial number: x509-cert refuses it, sscep makes such certificates.
    ID.get_or_init(|| {
        Identity::new(
            "legacy",
            1024,
            Some("00c0ffee11223344556677889900aabbccddeeff00112233445566778899aabbcc"),
        )
    })
}

const LEGACY: [&str; 4] = ["-provider", "legacy", "-provider", "default"];

fn write(id: &Identity, name: &str, data: &[u8]) -> String {
    let p = id.path(name);
    std::fs::write(&p, data).unwrap();
    p.display().to_string()
}

#[test]
fn lenient_certificate_view() {
    let id = rsa1024();
    let view = CertificateView::parse(&id.cert).unwrap();
    assert_eq!(view.serial.len(), 33);
    assert_eq!(view.issuer, view.subject);
    // Compared as numbers: a redundant zero octet is the same serial, a dropped sign octet
    // is another (negative) one.
    let padded = [&[0u8][..], &view.serial].concat();
    assert!(view.is_issuer_serial(&view.issuer, &padded));
    assert!(!view.is_issuer_serial(&view.issuer, &view.serial[1..]));
    assert!(!view.is_issuer_serial(&view.subject[1..], &view.serial));
    assert!(view.key_identifier.is_some());
    assert!(x509_cert::Certificate::from_der(&id.cert).is_err());
    for n in [0, 1, 10, id.cert.len() - 1] {
        assert!(CertificateView::parse(&id.cert[..n]).is_err());
    }
}

fn sign_with_openssl(id: &Identity, md: &str, stream: bool, keyid: bool, data: &[u8]) -> Vec<u8> {
    let input = write(id, "content", data);
    let (cert, key) = (id.cert_pem(), id.key_pem());
    let mut args = vec![
        "cms",
        "-sign",
        "-md",
        md,
        "-binary",
        "-nodetach",
        "-outform",
        "DER",
        "-in",
        &input,
        "-signer",
        &cert,
        "-inkey",
        &key,
    ];
    if stream {
        args.push("-stream");
    }
    if keyid {
        args.push("-keyid");
    }
    openssl(id.dir.path(), &args, b"")
}

#[test]
fn openssl_signed_data_verifies() {
    let data = vec![0x42u8; 3000];
    let cases = [
        (rsa2048(), "sha256"),
        (rsa2048(), "sha1"),
        (rsa2048(), "md5"),
        (rsa2048(), "sha384"),
        (rsa2048(), "sha512"),
        (rsa1024(), "md5"),
        (rsa1024(), "sha384"),
        (rsa1024(), "sha1"),
    ];
    for (id, md) in cases {
        for (stream, keyid) in [(false, false), (true, false), (false, true)] {
            let what = format!("{} {md} stream={stream} keyid={keyid}", id.name);
            let der = sign_with_openssl(id, md, stream, keyid, &data);
            if stream {
                assert_eq!(der[1], 0x80, "{what}: -stream writes indefinite lengths");
            }
            let sc = SignedContent::parse(&der, &Limits::default()).expect(&what);
            assert_eq!(sc.content.as_deref(), Some(&data[..]), "{what}");
            let signer = &sc.signers[0];
            assert!(signer
                .sid
                .matches(&CertificateView::parse(&id.cert).unwrap()));
            let cert = sc.signer_certificate(signer).expect(&what);
            sc.verify(signer, &cert).expect(&what);
            // The content changed: the messageDigest no longer matches.
            let mut altered = sc.clone();
            altered.content.as_mut().unwrap()[7] ^= 1;
            assert!(matches!(
                altered.verify(signer, &cert),
                Err(CmsError::DigestMismatch)
            ));
            // A signature by another key.
            let other = CertificateView::parse(&rsa2048().cert).unwrap();
            if !std::ptr::eq(id, rsa2048()) {
                assert!(matches!(
                    sc.verify(signer, &other),
                    Err(CmsError::BadSignature(_))
                ));
            }
        }
    }
}

#[test]
fn openssl_enveloped_data_opens() {
    let id = rsa2048();
    let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let input = write(id, "plain", &data);
    let cert = id.cert_pem();
    for (flag, cipher) in [
        ("-aes256", ContentCipher::Aes256Cbc),
        ("-aes128", ContentCipher::Aes128Cbc),
        ("-aes192", ContentCipher::Aes192Cbc),
        ("-des3", ContentCipher::DesEde3Cbc),
        ("-des", ContentCipher::DesCbc),
    ] {
        for stream in [false, true] {
            let mut args = vec![
                "cms", "-encrypt", "-binary", "-outform", "DER", flag, "-in", &input,
            ];
            if stream {
                args.push("-stream");
            }
            args.extend(LEGACY);
            args.push(&cert);
            let der = openssl(id.dir.path(), &args, b"");
            let env = Envelope::parse(&der, &Limits::default()).unwrap();
            assert_eq!(env.cipher().unwrap(), cipher);
            assert_eq!(env.recipients.len(), 1);
            let plain = env.open(0, &mut |c| id.decrypt(c)).unwrap();
            assert_eq!(&plain[..], &data[..], "{flag} stream={stream}");
        }
    }
}

#[test]
fn sealed_data_opens_in_openssl() {
    let data = b"a certification request, or a degenerate SignedData".repeat(20);
    for id in [rsa2048(), rsa1024()] {
        let view = CertificateView::parse(&id.cert).unwrap();
        let recipient = Recipient {
            issuer: &view.issuer,
            serial: &view.serial,
            public_key: &view.public_key,
        };
        for cipher in ContentCipher::ALL {
            let der = enveloped::seal(&data, &recipient, cipher).unwrap();
            let path = write(id, "sealed.der", &der);
            let (cert, key) = (id.cert_pem(), id.key_pem());
            let mut args = vec![
                "cms", "-decrypt", "-inform", "DER", "-in", &path, "-recip", &cert, "-inkey", &key,
            ];
            args.extend(LEGACY);
            let plain = openssl(id.dir.path(), &args, b"");
            assert_eq!(plain, data, "{} {cipher:?}", id.name);
            // And our own reader opens it (2048: aws-lc-rs decrypts in the test).
            if std::ptr::eq(id, rsa2048()) {
                let env = Envelope::parse(&der, &Limits::default()).unwrap();
                assert_eq!(&env.open(0, &mut |c| id.decrypt(c)).unwrap()[..], &data[..]);
            }
        }
    }
}

#[test]
fn signed_data_verifies_in_openssl() {
    let id = rsa2048();
    let view = CertificateView::parse(&id.cert).unwrap();
    let signer = id.signer();
    let extra = [(
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.7"),
        der::asn1::PrintableStringRef::new("ABC")
            .unwrap()
            .to_der()
            .unwrap(),
    )];
    for (digest, content) in [
        (DigestAlgorithm::Sha256, &b"content"[..]),
        (DigestAlgorithm::Sha512, &b""[..]),
    ] {
        let req = SignRequest {
            content,
            digest,
            attributes: &extra,
            signing_time: Some(std::time::SystemTime::now()),
            certificates: &[&id.cert],
        };
        let der = signed::sign(&req, &signer, &view).unwrap();
        let path = write(id, "signed.der", &der);
        let out = openssl(
            id.dir.path(),
            &[
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                &path,
                "-noverify",
            ],
            b"",
        );
        assert_eq!(out, content);
        // Our reader agrees, and a signature over altered attributes fails.
        let sc = SignedContent::parse(&der, &Limits::default()).unwrap();
        sc.verify(&sc.signers[0], &view).unwrap();
        let mut bad = der.clone();
        let at = bad.windows(3).position(|w| w == b"ABC").unwrap();
        bad[at] = b'X';
        let sc = SignedContent::parse(&bad, &Limits::default()).unwrap();
        assert!(matches!(
            sc.verify(&sc.signers[0], &view),
            Err(CmsError::BadSignature(_))
        ));
    }
    // MD5 and SHA-1 are verified, never made.
    let req = SignRequest {
        content: b"x",
        digest: DigestAlgorithm::Sha1,
        attributes: &[],
        signing_time: None,
        certificates: &[],
    };
    assert!(matches!(
        signed::sign(&req, &signer, &view),
        Err(CmsError::UnsupportedAlgorithm(_))
    ));
    // A signer whose key is not the certificate's is refused.
    let other = CertificateView::parse(&rsa1024().cert).unwrap();
    let req = SignRequest {
        digest: DigestAlgorithm::Sha256,
        ..req
    };
    assert!(matches!(
        signed::sign(&req, &signer, &other),
        Err(CmsError::Key(_))
    ));
}

#[test]
fn degenerate_signed_data_lists_certificates() {
    let (a, b) = (rsa2048(), rsa1024());
    let der = signed::degenerate(&[&a.cert, &b.cert], &[]);
    let path = write(a, "degenerate.der", &der);
    let pem = openssl(
        a.dir.path(),
        &["pkcs7", "-inform", "DER", "-in", &path, "-print_certs"],
        b"",
    );
    let pem = String::from_utf8(pem).unwrap();
    let (first, second) = (
        pem.find("CN = peer").unwrap(),
        pem.find("CN = legacy").unwrap(),
    );
    assert!(first < second, "certificates in the order given");
    let sc = SignedContent::parse(&der, &Limits::default()).unwrap();
    assert_eq!(sc.certificates, [a.cert.clone(), b.cert.clone()]);
    assert!(sc.signers.is_empty() && sc.content.is_none());
    // The same through the derived types: what the hand encoding claims to be.
    let crl = openssl(
        a.dir.path(),
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            &a.cert_pem(),
            "-outform",
            "DER",
        ],
        b"",
    );
    assert_eq!(signed::degenerate(&[&a.cert], &[]), crl);
}

#[test]
fn no_padding_oracle() {
    let id = rsa2048();
    let view = CertificateView::parse(&id.cert).unwrap();
    let recipient = Recipient {
        issuer: &view.issuer,
        serial: &view.serial,
        public_key: &view.public_key,
    };
    for cipher in ContentCipher::ALL {
        let der = enveloped::seal(b"secret content", &recipient, cipher).unwrap();
        let env = Envelope::parse(&der, &Limits::default()).unwrap();
        // A tampered encrypted key: RSA padding fails (or, rarely, yields a wrong key).
        let mut bad_key = env.clone();
        bad_key.recipients[0].encrypted_key[10] ^= 0x55;
        let mut decrypt_errors = 0;
        let r1 = bad_key.open(0, &mut |c| {
            let r = id.decrypt(c);
            decrypt_errors += usize::from(r.is_err());
            r
        });
        // A key of the wrong length from the key transport.
        let r2 = env.open(0, &mut |_| Ok(SecretBytes::new(vec![7; 5])));
        // A key transport that fails outright (a token error looks the same).
        let r3 = env.open(0, &mut |_| Err(KeyError::Pin("locked".into())));
        // Implicit rejection decrypts with a random key instead: the same error as a bad
        // padding, or (about 1 time in 256, when the random plaintext happens to end in valid
        // CBC padding) bytes that are not the content — never a distinguishable error.
        for r in [r1, r2, r3] {
            match r {
                Err(e) => assert!(matches!(e, CmsError::Undecryptable), "{cipher:?}: {e}"),
                Ok(p) => assert_ne!(&p[..], b"secret content", "{cipher:?}"),
            }
        }
        assert_eq!(decrypt_errors, 1);
        // A tampered ciphertext: CBC padding fails, or the plaintext is garbage — either
        // way the same error, or bytes that differ from the content.
        let mut tampered = der.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let env2 = Envelope::parse(&tampered, &Limits::default()).unwrap();
        match env2.open(0, &mut |c| id.decrypt(c)) {
            Err(e) => assert!(matches!(e, CmsError::Undecryptable)),
            Ok(p) => assert_ne!(&p[..], b"secret content"),
        }
    }
}

#[test]
fn unsupported_algorithms_are_bad_alg() {
    let id = rsa2048();
    let input = write(id, "plain", b"x");
    let cert = id.cert_pem();
    let der = openssl(
        id.dir.path(),
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-aes-256-ofb",
            "-in",
            &input,
            &cert,
        ],
        b"",
    );
    let env = Envelope::parse(&der, &Limits::default()).unwrap();
    assert!(matches!(
        env.open(0, &mut |c| id.decrypt(c)),
        Err(CmsError::UnsupportedAlgorithm(_))
    ));
    // RSA-OAEP key transport.
    let der = openssl(
        id.dir.path(),
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-aes256",
            "-in",
            &input,
            "-recip",
            &cert,
            "-keyopt",
            "rsa_padding_mode:oaep",
        ],
        b"",
    );
    let env = Envelope::parse(&der, &Limits::default()).unwrap();
    assert!(matches!(
        env.open(0, &mut |c| id.decrypt(c)),
        Err(CmsError::UnsupportedAlgorithm(_))
    ));
}
