//! Token profiles (`tokens/NAME.toml`) as keys::profile::Profiles::load reads each file: the
//! TOML into a TokenProfile, its check (incl. the pin-source), and the key URI it stands for.
#![no_main]

use certman::keys::profile::TokenProfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = toml::from_str::<TokenProfile>(text) else {
        return;
    };
    if profile.check().is_ok() {
        if let Ok(uri) = profile.location() {
            let _ = uri.to_string();
        }
    }
});
