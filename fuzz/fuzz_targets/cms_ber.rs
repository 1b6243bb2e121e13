//! The BER → DER normaliser every CMS input goes through first (x509::cms::ber::normalize),
//! with the default limits and with small ones. Its output is DER by its own rules, so
//! normalising it again must give it back unchanged (within the same limits).
#![no_main]

use certman::x509::cms::ber::normalize;
use certman::x509::cms::{BerLimits, CmsError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = BerLimits {
        max_input: 4096,
        max_depth: 8,
        max_elements: 64,
        max_output: 4096,
    };
    for limits in [BerLimits::default(), small] {
        let Ok(der) = normalize(data, &limits) else {
            continue;
        };
        assert!(der.len() <= limits.max_output, "output over max_output");
        match normalize(&der, &limits) {
            Ok(again) => assert_eq!(again, der, "normalising DER output changed it"),
            Err(CmsError::Limit(_)) => {}
            Err(e) => panic!("the normaliser's own output does not read back: {e}"),
        }
    }
});
