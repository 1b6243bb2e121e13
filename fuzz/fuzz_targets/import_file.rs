//! `import` of one file: x509::import::read_file (PEM blocks, DER certificate, PKCS#8 plain and
//! encrypted, PKCS#12, SEC1, PKCS#1), without and with a passphrase, then each key loaded as the
//! soft key importer loads it (SoftSigner::from_pkcs8).
#![no_main]

use certman::keys::soft::SoftSigner;
use certman::x509::import::read_file;
use certman_fuzz::PASSPHRASE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for pass in [None, Some(PASSPHRASE)] {
        if let Ok(contents) = read_file(data, pass) {
            for key in &contents.keys {
                let _ = SoftSigner::from_pkcs8(key.secret_bytes());
            }
        }
    }
});
