//! A SCEP pkiMessage as the server receives it (POST body or GET message=, BER or DER):
//! protocols::scep::message::parse_request, then everything the server does with a
//! ReceivedMessage — signature check, recipients, cipher, opening the envelope (with a dummy
//! key transport, see certman_fuzz::dummy_decrypt) and the PKCS#10 inside.
#![no_main]

use certman::protocols::scep::message::{parse_request, MessageLimits, RequestContent};
use certman::x509::csr;
use certman_fuzz::dummy_decrypt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = MessageLimits::default();
    let Ok(msg) = parse_request(data, &limits) else {
        return;
    };
    let _ = msg.verify();
    let _ = msg.content_cipher();
    let recipients = msg.recipients();
    let opened = match recipients.first() {
        Some((issuer, serial)) if recipients.len() > 1 => {
            msg.open_for(issuer, serial, &mut dummy_decrypt, &limits)
        }
        _ => msg.open(&mut dummy_decrypt, &limits),
    };
    if let Ok(RequestContent::CertificationRequest(der)) = opened {
        let _ = csr::parse_request(&der);
    }
});
