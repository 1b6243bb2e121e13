//! What a SCEP client reads from a server besides CertReps: GetCACert bodies (one DER
//! certificate or a degenerate SignedData; protocols::scep::client::parse_ca_certificates and
//! the classification's recipient/signers), GetNextCACert bodies (parse_next_ca, signed by the
//! fixture CA) and GetCACaps (Capabilities::parse).
#![no_main]

use certman::protocols::scep::client::{parse_ca_certificates, parse_next_ca, Capabilities};
use certman::protocols::scep::message::MessageLimits;
use certman_fuzz::CA_CERT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = MessageLimits::default();
    for content_type in [
        Some("application/x-x509-ca-cert"),
        Some("application/x-x509-ca-ra-cert"),
    ] {
        if let Ok(cas) = parse_ca_certificates(content_type, data, &limits) {
            let _ = cas.recipient();
            let _ = cas.signers();
        }
    }
    if let Ok(cas) = parse_next_ca(data, &[CA_CERT], &limits) {
        let _ = cas.recipient();
        let _ = cas.signers();
    }
    let caps = Capabilities::parse(data);
    let _ = (
        caps.cipher(),
        caps.digest(),
        caps.weak_digests_only(),
        caps.summary(),
    );
});
