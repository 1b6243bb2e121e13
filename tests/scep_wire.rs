//! The SCEP operations no packaged client exercises, on the wire with certman's own message
//! layer as the client: CertPoll with the same transactionID after a grant, GetCert and GetCRL,
//! the nonces and transactionID echoed, the client's cipher used for the reply, a GET
//! PKIOperation with a URL-encoded message, a POST without Content-Type, a disabled server
//! answering nothing, and a CA-only server's GetNextCACert refused.

mod common;

use std::time::Duration;

use certman::protocols::scep::message::{
    ContentCipher, FailInfo, MessageCertificate, MessageDigest, MessageType, PkiStatus,
    ReplyPayload, RequestContent,
};
use common::daemon::*;
use common::scep::*;
use common::*;

const PATH: &str = "/scep/test/pkiclient.exe?operation=PKIOperation";

fn seed_store() -> Env {
    let env = Env::new();
    env.ok(&["add", "common-name=ca", "name=ca-tpl"]);
    env.ok(&["sign", "ca-tpl", "name=ca"]);
    env.ok(&["scep-server", "add", "ca-cert=ca", "path=/scep/test"]);
    env
}

fn post(d: &Daemon, body: &[u8]) -> Vec<u8> {
    let (status, head, reply) = http_post(d.port, PATH, body);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/x-pki-message"), "{head}");
    reply
}

fn certificate(payload: &Option<ReplyPayload>) -> Vec<u8> {
    match payload {
        Some(ReplyPayload::Certificates(c)) => c[0].clone(),
        other => panic!("expected certificates, got {other:?}"),
    }
}

#[test]
fn a_granted_request_is_fetched_by_certpoll_with_its_transaction_id() {
    let env = seed_store();
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let (_, _, ca) = d.get("/scep/test?operation=GetCACert");
    let ca_view = MessageCertificate::parse(&ca).unwrap();
    let dev = Device::new("polled");
    let pkcs_req = dev.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(dev.csr("polled", None)),
        &ca,
        ContentCipher::DesEde3Cbc,
        MessageDigest::Sha256,
    );
    let rep = dev.read_reply(&post(&d, &pkcs_req), &ca);
    assert_eq!(rep.status, PkiStatus::Pending);
    assert_eq!(
        rep.recipient_nonce,
        vec![7u8; 16],
        "recipientNonce echoes senderNonce"
    );
    assert_eq!(rep.sender_nonce.len(), 16);
    let txid = rep.transaction_id.clone();
    let subject = MessageCertificate::parse(&dev.certificate).unwrap().subject;
    let poll = dev.request(
        MessageType::CertPoll,
        &RequestContent::IssuerAndSubject {
            issuer: ca_view.subject.clone(),
            subject,
        },
        &ca,
        ContentCipher::DesEde3Cbc,
        MessageDigest::Sha256,
    );
    let rep = dev.read_reply(&post(&d, &poll), &ca);
    assert_eq!(
        (rep.status, rep.transaction_id.as_str()),
        (PkiStatus::Pending, txid.as_str())
    );
    env.ok(&["scep-server", "requests", "grant", &txid]);
    let rep = dev.read_reply(&post(&d, &poll), &ca);
    assert_eq!(rep.status, PkiStatus::Success);
    assert_eq!(rep.transaction_id, txid, "transactionID kept across polls");
    let issued = certificate(&rep.payload);
    let crt = env.path("polled.der");
    std::fs::write(&crt, &issued).unwrap();
    let text = openssl(
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "polled.der",
            "-noout",
            "-subject",
        ],
        &env.path(""),
    );
    assert!(text.contains("CN = polled"), "{text}");
    // The reply used the client's cipher (3DES), as the log says.
    d.wait_for_log("CertPoll transaction-id", Duration::from_secs(10));
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("CertPoll") && l.contains("DesEde3Cbc")),
        "{log}"
    );

    // GetCert and GetCRL for it, by issuer and serial number.
    let serial = MessageCertificate::parse(&issued).unwrap().serial;
    let by_serial = RequestContent::IssuerAndSerial {
        issuer: ca_view.subject.clone(),
        serial: serial.clone(),
    };
    let get_cert = dev.request(
        MessageType::GetCert,
        &by_serial,
        &ca,
        ContentCipher::Aes128Cbc,
        MessageDigest::Sha256,
    );
    let rep = dev.read_reply(&post(&d, &get_cert), &ca);
    assert_eq!(certificate(&rep.payload), issued);
    let get_crl = dev.request(
        MessageType::GetCrl,
        &by_serial,
        &ca,
        ContentCipher::Aes128Cbc,
        MessageDigest::Sha256,
    );
    let rep = dev.read_reply(&post(&d, &get_crl), &ca);
    let Some(ReplyPayload::Crl(crl)) = rep.payload else {
        panic!("no CRL: {:?}", rep.status)
    };
    assert_eq!(crl, crl_der(&env, "ca"), "the CA's current CRL");
    // An unknown serial: badCertId.
    let unknown = dev.request(
        MessageType::GetCert,
        &RequestContent::IssuerAndSerial {
            issuer: ca_view.subject,
            serial: vec![0x01, 0x02, 0x03],
        },
        &ca,
        ContentCipher::Aes128Cbc,
        MessageDigest::Sha256,
    );
    let rep = dev.read_reply(&post(&d, &unknown), &ca);
    assert_eq!(rep.status, PkiStatus::Failure(FailInfo::BadCertId));
    d.stop();
}

#[test]
fn get_and_post_as_clients_send_them_and_a_disabled_server_answers_nothing() {
    let env = seed_store();
    let mut d = Daemon::start(&env, "127.0.0.1:0");
    let (_, _, ca) = d.get("/scep/test?operation=GetCACert");
    let dev = Device::new("get");
    let msg = dev.request(
        MessageType::PkcsReq,
        &RequestContent::CertificationRequest(dev.csr("get", Some(&otp(&env, 5)))),
        &ca,
        ContentCipher::Aes256Cbc,
        MessageDigest::Sha512,
    );
    // GET with message= base64, URL-encoded (+ / = escaped), upper-case operation name.
    let b64 = base64_encode(&msg);
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let (status, head, reply) = d.get(&format!(
        "/scep/test/cgi-bin/pkiclient.exe?operation=PKIOperation&message={encoded}"
    ));
    assert_eq!(status, 200, "{head}");
    let rep = dev.read_reply(&reply, &ca);
    assert_eq!(rep.status, PkiStatus::Success);
    d.wait_for_log("digest=Sha512", Duration::from_secs(10));
    // The same message again by POST without Content-Type: answered from the queue.
    let rep = dev.read_reply(&post(&d, &msg), &ca);
    assert_eq!(
        certificate(&rep.payload),
        certificate(&dev.read_reply(&reply, &ca).payload)
    );
    // GetNextCACert without a next CA: refused, not advertised.
    let (status, _, _) = d.get("/scep/test?operation=GetNextCACert");
    assert_eq!(status, 404);
    // Unknown operation, and a disabled server.
    let (status, _, _) = d.get("/scep/test?operation=Nope");
    assert_eq!(status, 400);
    env.ok(&["scep-server", "disable", "test"]);
    let (status, _, _) = d.get("/scep/test?operation=GetCACaps");
    assert_eq!(status, 404);
    env.ok(&["scep-server", "enable", "test"]);
    let (status, _, _) = d.get("/scep/test?operation=GetCACaps");
    assert_eq!(status, 200);
    d.stop();
}

fn base64_encode(b: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    Base64::encode_string(b)
}
