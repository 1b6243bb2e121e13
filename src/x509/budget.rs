//! Work budgets for the key derivations outside input asks for. A passphrase-protected file
//! names its own cost (PBKDF2 iterations, scrypt's N·r·p, PKCS#12 KDF rounds); a hostile one
//! asks for hours of CPU or a petabyte of memory. Every derivation is priced before it runs,
//! in units of one PBKDF2 iteration (scrypt: N·r·p, about the same CPU per unit), against
//! three limits: one derivation, one file, one command. Over a limit → refused, nothing done.

/// The most work one key derivation may take (10 million PBKDF2 iterations: about 5 s of
/// PBKDF2-HMAC-SHA256 here; OWASP's 600,000 is well inside).
pub const MAX_KDF_WORK: u64 = 10_000_000;
/// The most for all derivations of one file (a PKCS#12 file's MAC and every bag).
pub const MAX_FILE_WORK: u64 = 20_000_000;
/// The most for one command (`decrypt` opening every key kept encrypted).
pub const MAX_COMMAND_WORK: u64 = 40_000_000;
/// The most memory one derivation may take (scrypt: 128·r·(N + p) bytes).
pub const MAX_KDF_MEMORY: u64 = 64 * 1024 * 1024;

/// Work spent so far against a limit.
#[derive(Debug)]
pub struct Budget {
    used: u64,
    limit: u64,
    scope: &'static str,
}

impl Budget {
    /// A budget for one file.
    pub fn file() -> Budget {
        Budget {
            used: 0,
            limit: MAX_FILE_WORK,
            scope: "one file",
        }
    }

    /// A budget for one command.
    pub fn command() -> Budget {
        Budget {
            used: 0,
            limit: MAX_COMMAND_WORK,
            scope: "one command",
        }
    }

    /// Whether `units` more would fit (nothing is spent): a whole file priced up front.
    pub fn afford(&self, units: u64, what: &str) -> Result<(), String> {
        let total = self.used.saturating_add(units);
        if total > self.limit {
            return Err(format!(
                "{what} asks for {total} iterations of key derivation in all; certman does at \
                 most {} for {}",
                self.limit, self.scope
            ));
        }
        Ok(())
    }

    /// Charges one derivation of `units` (`what` names it: "PKCS#12 MAC", "PBKDF2 of the
    /// key"); the reason it is refused, if it is.
    pub fn charge(&mut self, units: u64, what: &str) -> Result<(), String> {
        if units > MAX_KDF_WORK {
            return Err(format!(
                "{what} asks for {units} iterations of key derivation; certman does at most \
                 {MAX_KDF_WORK} for one key"
            ));
        }
        let total = self.used.saturating_add(units);
        if total > self.limit {
            return Err(format!(
                "{what} would bring the key derivation for {} to {total} iterations; at most {} \
                 are done",
                self.scope, self.limit
            ));
        }
        self.used = total;
        Ok(())
    }
}

/// What a PKCS#5 scheme (PBES1, PBES2 with PBKDF2 or scrypt) costs, in units; refused when
/// its memory is over [`MAX_KDF_MEMORY`].
pub fn scheme_cost(scheme: &pkcs5::EncryptionScheme) -> Result<u64, String> {
    match scheme {
        pkcs5::EncryptionScheme::Pbes1(a) => Ok(u64::from(a.parameters.iteration_count)),
        pkcs5::EncryptionScheme::Pbes2(p) => match &p.kdf {
            pkcs5::pbes2::Kdf::Pbkdf2(k) => {
                // one PBKDF2 run per block of the PRF's output that the key needs
                let out = p.encryption.key_size() as u64;
                let prf = match k.prf {
                    pkcs5::pbes2::Pbkdf2Prf::HmacWithSha1 => 20,
                    pkcs5::pbes2::Pbkdf2Prf::HmacWithSha224 => 28,
                    pkcs5::pbes2::Pbkdf2Prf::HmacWithSha256 => 32,
                    pkcs5::pbes2::Pbkdf2Prf::HmacWithSha384 => 48,
                    pkcs5::pbes2::Pbkdf2Prf::HmacWithSha512 => 64,
                    _ => 20, // the smallest: the most blocks
                };
                Ok(u64::from(k.iteration_count).saturating_mul(out.div_ceil(prf).max(1)))
            }
            pkcs5::pbes2::Kdf::Scrypt(s) => {
                let (n, r, p) = (
                    s.cost_parameter,
                    u64::from(s.block_size),
                    u64::from(s.parallelization),
                );
                // RFC 7914 §2: N is a power of 2. pkcs5 0.8.1 panics on N = 0 (it takes
                // log2(0)); the other non-powers it refuses. Found by the pkcs8_encrypted
                // fuzz target.
                if !n.is_power_of_two() {
                    return Err(format!("scrypt with N={n}, which is not a power of 2"));
                }
                // scrypt holds V (128·r·N bytes) and B (128·r·p bytes) at once: with N small,
                // p alone could ask for 637 MB within the work limit (N=2, r=65535, p=76).
                let memory = 128u64.saturating_mul(r).saturating_mul(n.saturating_add(p));
                if memory > MAX_KDF_MEMORY {
                    return Err(format!(
                        "scrypt with N={n}, r={r}, p={p} needs {} MiB of memory; certman gives one \
                         key derivation at most {} MiB",
                        memory >> 20,
                        MAX_KDF_MEMORY >> 20
                    ));
                }
                Ok(n.saturating_mul(r).saturating_mul(p))
            }
            _ => Err("an unknown key derivation function".into()),
        },
        _ => Err("an unknown encryption scheme".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_derivation_one_file_and_one_command_are_each_bounded() {
        let mut b = Budget::file();
        assert!(b.charge(MAX_KDF_WORK, "a").is_ok());
        let e = b.charge(MAX_KDF_WORK + 1, "the MAC").unwrap_err();
        assert!(e.contains("at most 10000000 for one key"), "{e}");
        assert!(b.charge(MAX_KDF_WORK, "b").is_ok());
        let e = b.charge(1, "a third bag").unwrap_err();
        assert!(e.contains("one file") && e.contains("20000000"), "{e}");
        let mut c = Budget::command();
        for _ in 0..4 {
            c.charge(MAX_KDF_WORK, "k").unwrap();
        }
        assert!(c.charge(1, "k").unwrap_err().contains("one command"));
        // a refused charge spends nothing
        let mut d = Budget::file();
        d.charge(MAX_KDF_WORK + 1, "x").unwrap_err();
        d.charge(MAX_KDF_WORK, "y").unwrap();
        d.charge(u64::MAX, "z").unwrap_err();
        d.charge(MAX_KDF_WORK, "w").unwrap();
    }
}
