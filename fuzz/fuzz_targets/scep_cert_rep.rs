//! A SCEP CertRep as the client receives it: protocols::scep::message::decode_cert_rep with the
//! fixture CA as trusted signer and a dummy key transport (certman_fuzz::dummy_decrypt). The
//! fuzzer cannot sign, so the steps decode_cert_rep takes after the signature check are also
//! run on the same bytes with the same public parsers: the envelope in the SignedData, its
//! opening, and the degenerate SignedData inside.
#![no_main]

use certman::protocols::scep::message::{decode_cert_rep, MessageLimits};
use certman::x509::cms::{Envelope, SignedContent, ID_DATA};
use certman_fuzz::{cms_limits, dummy_decrypt, CA_CERT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = MessageLimits::default();
    let _ = decode_cert_rep(data, &[CA_CERT], &mut dummy_decrypt, &limits);

    if data.len() > limits.max_input {
        return;
    }
    let cms = cms_limits(&limits);
    let Ok(signed) = SignedContent::parse(data, &cms) else {
        return;
    };
    for signer in &signed.signers {
        let _ = signer.digest();
        let _ = signer.single_attribute(ID_DATA);
        let _ = signed.signer_certificate(signer);
    }
    let Some(content) = signed.content.as_deref() else {
        return;
    };
    let Ok(envelope) = Envelope::parse(content, &cms) else {
        return;
    };
    let _ = envelope.cipher();
    for i in 0..envelope.recipients.len() {
        if let Ok(plaintext) = envelope.open(i, &mut dummy_decrypt) {
            if let Ok(inner) = SignedContent::parse(&plaintext, &cms) {
                for cert in &inner.certificates {
                    let _ = certman::x509::inspect_certificate(cert);
                }
                for crl in &inner.crls {
                    let _ = certman::x509::crl::inspect_crl(crl);
                }
            }
        }
    }
});
