//! Key URIs (`pkcs11:…`, `piv:…`, `soft:…`) as given on the command line, in token profiles and
//! read back from the store: keys::KeyUri's FromStr. What parses must print (with and without
//! secrets) and parse back to the same URI — the store keeps URIs as text.
#![no_main]

use certman::keys::KeyUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = s.parse::<KeyUri>() else {
        return;
    };
    let full = uri.secret_uri_string();
    let again: KeyUri = full
        .parse()
        .unwrap_or_else(|e| panic!("{full:?} (from {s:?}) does not parse back: {e}"));
    assert_eq!(
        again, uri,
        "{full:?} (from {s:?}) parses back to another URI"
    );
    let stored = uri.without_secrets();
    let printed = stored.to_string();
    let back: KeyUri = printed
        .parse()
        .unwrap_or_else(|e| panic!("{printed:?} (from {s:?}) does not parse back: {e}"));
    assert_eq!(
        back, stored,
        "{printed:?} (from {s:?}) parses back to another URI"
    );
    let _ = uri.store_id();
    let _ = uri.soft_id();
});
