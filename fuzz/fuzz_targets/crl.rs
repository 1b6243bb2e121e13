//! A CRL as downloaded from a CDP: protocols::crl_download::pem_to_der (PEM or DER body), then
//! what the manager reads of it (x509::crl::inspect_crl, the signature check against a fixed
//! CA key) and what a later revocation reuses of a CRL (x509::crl::revoked_entries).
#![no_main]

use std::sync::OnceLock;

use certman::protocols::crl_download::pem_to_der;
use certman::x509::crl;
use certman::x509::inspect_certificate;
use libfuzzer_sys::fuzz_target;
use spki::SubjectPublicKeyInfoOwned;

fn ca_key() -> &'static SubjectPublicKeyInfoOwned {
    static KEY: OnceLock<SubjectPublicKeyInfoOwned> = OnceLock::new();
    KEY.get_or_init(|| {
        inspect_certificate(certman_fuzz::CA_CERT)
            .expect("fixture CA")
            .public_key
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(der) = pem_to_der(data.to_vec()) else {
        return;
    };
    if crl::inspect_crl(&der).is_ok() {
        let _ = crl::verify_crl_signature(&der, ca_key());
    }
    let _ = crl::revoked_entries(&der);
});
