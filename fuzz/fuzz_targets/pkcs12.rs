//! PKCS#12 files (x509::pkcs12::decode) with a fixed passphrase: the whole file priced by
//! x509::budget, MAC check, PBES2 and legacy PKCS#12-KDF bag decryption, bags. Files asking
//! for up to the budget's work are done: single inputs can take seconds.
#![no_main]

use certman::x509::pkcs12;
use certman_fuzz::PASSPHRASE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pkcs12::decode(data, PASSPHRASE);
});
