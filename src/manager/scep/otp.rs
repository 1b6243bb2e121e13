//! `scep-server otp generate|print`: one-time challenge passwords. The password is shown
//! once; the store keeps only a hash of it (salted with the store's salt), and it is consumed
//! in the transaction that issues the certificate it was given for.

use std::time::SystemTime;

use super::{find_server, micros_to_time};
use crate::error::{ManagerError, Result};
use crate::manager::Manager;
use crate::secret::SecretString;
use crate::store::{now_micros, TxnMode};

/// The longest `minutes-valid` (a year).
const MAX_MINUTES_VALID: u32 = 525_600;

/// A password just generated: shown once.
#[derive(Debug)]
pub struct GeneratedOtp {
    /// the password (RouterOS: 20 hex characters)
    pub password: SecretString,
    /// when it expires
    pub expires: SystemTime,
    /// the server it is good for (`None` = any)
    pub server: Option<String>,
}

/// An OTP as `otp print` shows it: never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpView {
    /// `#`
    pub number: usize,
    /// the server it is good for (`None` = any)
    pub server: Option<String>,
    /// `created`
    pub created: SystemTime,
    /// `expires`
    pub expires: SystemTime,
    /// `used`: when it was consumed
    pub used: Option<SystemTime>,
    /// flag E
    pub expired: bool,
}

/// The stored form of a password: SHA-256 over a label, the store's salt and the password.
/// The passwords are 80 random bits, so a fast hash is enough; the salt keeps one store's
/// hashes useless for another.
pub(super) fn otp_hash(salt: &[u8], password: &str) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"certman scep otp v1\0");
    ctx.update(&(salt.len() as u32).to_be_bytes());
    ctx.update(salt);
    ctx.update(password.as_bytes());
    ctx.finish().as_ref().to_vec()
}

impl Manager {
    /// `scep-server otp generate [scep-server=REF] minutes-valid=N`.
    pub fn scep_otp_generate(
        &self,
        server: Option<&str>,
        minutes_valid: u32,
    ) -> Result<GeneratedOtp> {
        if minutes_valid == 0 || minutes_valid > MAX_MINUTES_VALID {
            return Err(ManagerError::InvalidValue(format!(
                "minutes-valid={minutes_valid}: must be 1-{MAX_MINUTES_VALID}"
            )));
        }
        let mut raw = zeroize::Zeroizing::new([0u8; 10]);
        aws_lc_rs::rand::fill(raw.as_mut())
            .map_err(|_| ManagerError::Failed("the random generator failed".into()))?;
        let password = SecretString::new(hex::encode_upper(raw.as_ref()));
        let hash = otp_hash(self.store.salt(), password.secret_str());
        let expires_at = now_micros() + i64::from(minutes_valid) * 60_000_000;
        let path = self.write(|txn| {
            let server = match server {
                Some(r) => Some(find_server(txn, r)?),
                None => None,
            };
            txn.insert_otp(server.as_ref().map(|s| s.id), &hash, expires_at)?;
            Ok(server.map(|s| s.server.path))
        })?;
        Ok(GeneratedOtp {
            password,
            expires: micros_to_time(expires_at),
            server: path,
        })
    }

    /// `scep-server otp print`.
    pub fn scep_otps(&self) -> Result<Vec<OtpView>> {
        let txn = self.store.begin(TxnMode::Read)?;
        let servers = txn.scep_servers()?;
        let now = now_micros();
        Ok(txn
            .otps()?
            .into_iter()
            .enumerate()
            .map(|(number, o)| OtpView {
                number,
                server: o.server_id.and_then(|id| {
                    servers
                        .iter()
                        .find(|s| s.id == id)
                        .map(|s| s.server.path.clone())
                }),
                created: micros_to_time(o.created_at),
                expires: micros_to_time(o.expires_at),
                used: o.used_at.map(micros_to_time),
                expired: o.used_at.is_none() && o.expires_at <= now,
            })
            .collect())
    }
}
