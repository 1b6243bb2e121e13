//! Unencrypted private keys: PKCS#8 loaded by the soft key importer (SoftSigner::from_pkcs8:
//! RSA incl. the legacy <2048-bit path, EC, Ed25519), and PKCS#1 RSAPrivateKey / SEC1
//! ECPrivateKey DER as `import` reads them (wrapped into PKCS#8, then loaded).
#![no_main]

use certman::keys::soft::SoftSigner;
use certman::x509::import::read_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SoftSigner::from_pkcs8(data);
    // Only DER here (PEM is the import_file target's): the PKCS#1 / SEC1 wrappers.
    if data.first() == Some(&0x30) {
        if let Ok(contents) = read_file(data, None) {
            for key in &contents.keys {
                let _ = SoftSigner::from_pkcs8(key.secret_bytes());
            }
        }
    }
});
