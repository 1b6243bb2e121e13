//! PKCS#10 requests (PEM or DER) as `sign-certificate-request` and the SCEP server read them:
//! x509::csr::parse_request (with its self-signature check) and request_der.
#![no_main]

use certman::x509::csr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(der) = csr::request_der(data) {
        let _ = csr::request_pem(&der);
    }
    if let Ok(info) = csr::parse_request(data) {
        let _ = certman::x509::general_names_to_string(&info.subject_alt_names);
        let _ = certman::x509::subject_fields(&info.subject);
    }
});
