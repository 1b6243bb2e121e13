//! An EncryptedPrivateKeyInfo (PBES2 with PBKDF2 or scrypt, legacy PBES1) opened with a fixed
//! passphrase as `import passphrase=` and `decrypt` do (x509::import::open_encrypted_key), then
//! the key loaded as the importer loads it. The KDF parameters come from the input, priced
//! by x509::budget before anything runs (one file's budget per input).
#![no_main]

use certman::keys::soft::SoftSigner;
use certman::x509::budget::Budget;
use certman::x509::import::open_encrypted_key;
use certman_fuzz::PASSPHRASE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pkcs8) = open_encrypted_key(data, PASSPHRASE, &mut Budget::file()) {
        let _ = SoftSigner::from_pkcs8(pkcs8.secret_bytes());
    }
});
