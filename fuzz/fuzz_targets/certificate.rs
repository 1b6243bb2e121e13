//! A certificate as `import`, `verify` and the SCEP layers read it: DER (x509::inspect_certificate,
//! the lenient CMS view, the self-signature check) and PEM (the import path's PEM reader).
#![no_main]

use certman::protocols::scep::message::MessageCertificate;
use certman::x509;
use certman::x509::cms::CertificateView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = x509::inspect_certificate(data) {
        // Self-signed or not, checking the signature with its own key must not panic.
        let _ = x509::verify_certificate_signature(data, &info.public_key);
        let _ = x509::public_key_digest_hex(&info.public_key);
        let _ = x509::certificate_pem(data);
    }
    if let Ok(view) = CertificateView::parse(data) {
        let _ = view.has_key_identifier(b"\x01\x02");
        let _ = view.is_issuer_serial(&view.issuer.clone(), &view.serial.clone());
    }
    let _ = MessageCertificate::parse(data);
    // The same bytes as a PEM/DER file to import (certificates are checked there too).
    let _ = x509::import::read_file(data, None);
});
