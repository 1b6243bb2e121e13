//! PKCS#12 files (x509::pkcs12::decode) with a fixed passphrase: MAC check, PBES2 and legacy
//! PKCS#12-KDF bag decryption, bags. Iteration counts come from the input (capped per step
//! at pkcs12::MAX_ITERATIONS, not yet per file): single inputs can be slow.
#![no_main]

use certman::x509::pkcs12;
use certman_fuzz::PASSPHRASE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkcs12::decode(data, PASSPHRASE);
});
