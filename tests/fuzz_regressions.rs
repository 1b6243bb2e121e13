//! Inputs that crashed a fuzz target (`fuzz/`, `scripts/fuzz.sh`), fed to the parser that
//! crashed: each must now be refused with a clean error. The inputs are in
//! `tests/fixtures/fuzz/<target>/`, as the fuzzer wrote them.

use certman::x509::budget::Budget;
use certman::x509::import::{open_encrypted_key, read_file, ImportError};

fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/fuzz/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The error of every way `import` and `decrypt` read an encrypted key: opened with a
/// passphrase, read as a file with one, and read as a file without one (kept encrypted,
/// flag Q — but priced first).
fn refusals(der: &[u8]) -> Vec<String> {
    let invalid = |r: Result<_, ImportError>| match r {
        Err(e @ ImportError::Invalid(_)) => e.to_string(),
        Err(e) => panic!("refused as a wrong passphrase, not as invalid: {e}"),
        Ok(_) => panic!("accepted"),
    };
    vec![
        invalid(open_encrypted_key(der, "fuzz", &mut Budget::file()).map(|_| ())),
        invalid(read_file(der, Some("fuzz")).map(|_| ())),
        invalid(read_file(der, None).map(|_| ())),
    ]
}

/// pkcs8_encrypted: PBES2 with scrypt N = 0 made pkcs5 0.8.1 panic (`attempt to subtract with
/// overflow` taking log2(0) in `TryFrom<&ScryptParams> for scrypt::Params`; in release its
/// `expect("should always fit")`), through `import` and `decrypt`.
#[test]
fn pkcs8_with_scrypt_n_zero_is_refused() {
    for e in refusals(&fixture("pkcs8_encrypted/scrypt-n-0.der")) {
        assert!(e.contains("N=0") && e.contains("power of 2"), "{e}");
    }
}

/// Found next to the one above (crafted, not by the fuzzer): scrypt N=2, r=65535, p=76 is
/// within the work limit (N·r·p < 10^7) and was priced at 128·r·N = 16 MiB, but scrypt also
/// allocates 128·r·p bytes: 637 MB and 688 MB peak RSS for one key (the acceptance is 256 MiB).
#[test]
fn pkcs8_with_scrypt_memory_in_p_is_refused() {
    for e in refusals(&fixture("pkcs8_encrypted/scrypt-p-76.der")) {
        assert!(e.contains("p=76") && e.contains("MiB of memory"), "{e}");
    }
}
