//! The virtual PIV card of the card tests (`scripts/virtual-piv.sh start`, its reader exported
//! as `CERTMAN_PIV_READER`) and `yubico-piv-tool`, its independent witness.

use std::process::{Command, Output};

use super::softhsm::tokens_required;

/// The card's default PIN.
pub const PIV_PIN: &str = "123456";

/// The card's reader; `None` (with a note) when there is no card — a panic instead under
/// `CERTMAN_REQUIRE_TOKENS=1`.
pub fn piv_reader() -> Option<String> {
    match std::env::var("CERTMAN_PIV_READER") {
        Ok(r) if !r.is_empty() => Some(r),
        _ => {
            assert!(
                !tokens_required(),
                "CERTMAN_REQUIRE_TOKENS=1 but no virtual PIV card: scripts/virtual-piv.sh start, export CERTMAN_PIV_READER"
            );
            eprintln!("skipping: no virtual PIV card (CERTMAN_PIV_READER unset)");
            None
        }
    }
}

/// `yubico-piv-tool -r READER args…`.
pub fn piv_tool(reader: &str, args: &[&str]) -> Output {
    Command::new("yubico-piv-tool")
        .arg("-r")
        .arg(reader)
        .args(args)
        .output()
        .expect("yubico-piv-tool is needed (scripts/setup.sh installs it)")
}
