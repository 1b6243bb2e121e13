//! Writes seed inputs for the SCEP targets with certman's own encoders and the fixture
//! identities: `make_scep_seeds CORPUS_DIR CSR.der CRL.der` writes into CORPUS_DIR/scep_request,
//! scep_cert_rep, scep_ca_certs and cms_ber (file names are content hashes: idempotent).
//!
//! Each enveloped seed is written twice: as made, and with its encryptedKey overwritten (same
//! length) by what certman_fuzz::dummy_decrypt reads as the real content key, so that the
//! targets' dummy key transport opens it and the plaintext parsers see real content.

use std::path::Path;

use certman::keys::soft::SoftSigner;
use certman::protocols::scep::client::Capabilities;
use certman::protocols::scep::message::{
    degenerate_certificates, encode_cert_rep, encode_request, signed_certificates, CertRep,
    ContentCipher, FailInfo, MessageCertificate, MessageDigest, MessageLimits, MessageType,
    PkiRequest, PkiStatus, ReplyPayload, RequestContent,
};
use certman::x509::cms::{Envelope, SignedContent};
use certman_fuzz::{cms_limits, CA_CERT, CA_KEY, REQUESTER_CERT, REQUESTER_KEY};

fn write(dir: &Path, target: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    let name =
        hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref());
    std::fs::write(d.join(format!("seed-{name}")), data).expect("write seed");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The message with its (only) recipient's encryptedKey replaced by `[len] ‖ content key`.
fn with_clear_key(message: &[u8], recipient_key: &[u8]) -> Option<Vec<u8>> {
    let cms = cms_limits(&MessageLimits::default());
    let signed = SignedContent::parse(message, &cms).ok()?;
    let envelope = Envelope::parse(signed.content.as_deref()?, &cms).ok()?;
    let encrypted = &envelope.recipients.first()?.encrypted_key;
    let private = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(recipient_key).ok()?;
    let private = aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(private).ok()?;
    let mut out = vec![0u8; private.min_output_size()];
    let key = private.decrypt(encrypted, &mut out).ok()?.to_vec();
    let at = message
        .windows(encrypted.len())
        .position(|w| w == encrypted.as_slice())?;
    let mut patched = message.to_vec();
    patched[at] = u8::try_from(key.len()).ok()?;
    patched[at + 1..at + 1 + key.len()].copy_from_slice(&key);
    Some(patched)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, csr, crl] = args.as_slice() else {
        eprintln!("usage: make_scep_seeds CORPUS_DIR CSR.der CRL.der");
        std::process::exit(2);
    };
    let out = Path::new(out);
    let csr = std::fs::read(csr).expect("CSR file");
    let crl = std::fs::read(crl).expect("CRL file");
    let ca_signer = SoftSigner::from_pkcs8(CA_KEY).expect("fixture CA key");
    let req_signer = SoftSigner::from_pkcs8(REQUESTER_KEY).expect("fixture requester key");
    let ca = MessageCertificate::parse(CA_CERT).expect("fixture CA");
    let requester = MessageCertificate::parse(REQUESTER_CERT).expect("fixture requester");

    let contents = [
        (
            MessageType::PkcsReq,
            RequestContent::CertificationRequest(csr.clone()),
        ),
        (
            MessageType::RenewalReq,
            RequestContent::CertificationRequest(csr),
        ),
        (
            MessageType::CertPoll,
            RequestContent::IssuerAndSubject {
                issuer: ca.subject.clone(),
                subject: requester.subject.clone(),
            },
        ),
        (
            MessageType::GetCert,
            RequestContent::IssuerAndSerial {
                issuer: ca.subject.clone(),
                serial: requester.serial.clone(),
            },
        ),
        (
            MessageType::GetCrl,
            RequestContent::IssuerAndSerial {
                issuer: ca.subject.clone(),
                serial: ca.serial.clone(),
            },
        ),
    ];
    let mut n = 0;
    for (i, cipher) in ContentCipher::ALL.into_iter().enumerate() {
        let digest = [MessageDigest::Sha256, MessageDigest::Sha512][i % 2];
        for (message_type, content) in &contents {
            let req = PkiRequest {
                message_type: *message_type,
                transaction_id: "FUZZ0123456789ABCDEF",
                sender_nonce: &[7u8; 16],
                content,
                cipher,
                digest,
                recipient: &ca,
            };
            let msg = encode_request(&req, &req_signer, REQUESTER_CERT).expect("pkiMessage");
            write(out, "scep_request", &msg);
            write(out, "cms_ber", &msg);
            if let Some(p) = with_clear_key(&msg, CA_KEY) {
                write(out, "scep_request", &p);
            }
            n += 1;
        }
        let payloads = [
            (
                PkiStatus::Success,
                Some(ReplyPayload::Certificates(vec![
                    REQUESTER_CERT.to_vec(),
                    CA_CERT.to_vec(),
                ])),
            ),
            (PkiStatus::Success, Some(ReplyPayload::Crl(crl.clone()))),
            (PkiStatus::Failure(FailInfo::BadRequest), None),
            (PkiStatus::Pending, None),
        ];
        for (status, payload) in payloads {
            let rep = CertRep {
                transaction_id: "FUZZ0123456789ABCDEF",
                recipient_nonce: &[7u8; 16],
                status,
                digest,
                cipher,
                payload,
                recipient: Some(&requester),
            };
            let msg = encode_cert_rep(&rep, &ca_signer, CA_CERT).expect("CertRep");
            write(out, "scep_cert_rep", &msg);
            write(out, "cms_ber", &msg);
            if let Some(p) = with_clear_key(&msg, REQUESTER_KEY) {
                write(out, "scep_cert_rep", &p);
            }
            n += 1;
        }
    }
    let next = signed_certificates(&[REQUESTER_CERT], &ca_signer, CA_CERT).expect("next CA");
    for body in [
        CA_CERT.to_vec(),
        degenerate_certificates(&[CA_CERT]),
        degenerate_certificates(&[REQUESTER_CERT, CA_CERT]),
        next,
        b"AES\nDES3\nSHA-1\nSHA-256\nSHA-512\nPOSTPKIOperation\nRenewal\nGetNextCACert\nSCEPStandard\n"
            .to_vec(),
    ] {
        write(out, "scep_ca_certs", &body);
        write(out, "cms_ber", &body);
        n += 1;
    }
    let _ = Capabilities::parse(b"");
    println!(
        "make_scep_seeds: {n} seeds (and their clear-key twins) written under {}",
        out.display()
    );
}
