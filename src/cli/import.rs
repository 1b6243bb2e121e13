//! `certman import`: certificates and keys from files, RouterOS counters.

use std::path::PathBuf;

use clap::Args;

use super::out::outln;
use super::{CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::ImportRequest;

/// `import [file-name=FILE|DIR] [passphrase=…|passphrase-source=…] [name=…] [trusted=yes|no]`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file or a directory (default: every file in the current directory).
    #[arg(long)]
    pub file_name: Option<PathBuf>,
    /// Opens encrypted keys.
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Where to read the passphrase: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "passphrase")]
    pub passphrase_source: Option<String>,
    /// Name of the imported certificate (more get _1, _2, …).
    #[arg(long)]
    pub name: Option<String>,
    /// Mark the imported certificates trusted.
    #[arg(long, value_parser = super::yes_no)]
    pub trusted: Option<bool>,
}

impl ImportArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let passphrase = super::secret(
            &self.passphrase,
            &self.passphrase_source,
            "passphrase",
            "passphrase",
            false,
        )?;
        let r = ctx.manager_creating()?.import(&ImportRequest {
            file_name: self.file_name.clone(),
            passphrase,
            name: self.name.clone(),
            trusted: self.trusted,
            dir: super::cwd()?,
        })?;
        for (file, why) in &r.errors {
            eprintln!(
                "certman import: {}: {}",
                super::output::esc(&file.display().to_string()),
                super::output::esc(why)
            );
        }
        if r.keys_kept_encrypted > 0 && !ctx.quiet {
            eprintln!(
                "certman import: {} encrypted private key(s) kept encrypted (flag Q): `certman decrypt passphrase=…` opens them",
                r.keys_kept_encrypted
            );
        }
        // kept encrypted keys, in the counter that counts them (v2.8 shows them as Q)
        let with_cert = r.keys_kept_encrypted - r.keys_kept_encrypted_with_no_certificate;
        let still = |n: usize, flag: &str| match n {
            0 => String::new(),
            n => format!(" ({n} still encrypted{flag}, run decrypt)"),
        };
        if ctx.json {
            outln!(
                "{}",
                serde_json::json!({
                    "certificates-imported": r.certificates_imported,
                    "private-keys-imported": r.private_keys_imported,
                    "files-imported": r.files_imported,
                    "decryption-failures": r.decryption_failures,
                    "keys-with-no-certificate": r.keys_with_no_certificate,
                    "keys-still-encrypted": r.keys_kept_encrypted,
                })
            );
        } else if !ctx.quiet {
            outln!("  certificates-imported: {}", r.certificates_imported);
            outln!(
                "  private-keys-imported: {}{}",
                r.private_keys_imported,
                still(with_cert, ": flag Q")
            );
            outln!("  files-imported: {}", r.files_imported);
            outln!("  decryption-failures: {}", r.decryption_failures);
            outln!(
                "  keys-with-no-certificate: {}{}",
                r.keys_with_no_certificate,
                still(r.keys_kept_encrypted_with_no_certificate, "")
            );
        }
        if r.files_imported == 0 && !r.errors.is_empty() {
            return Err(ManagerError::InvalidValue(format!(
                "nothing was imported ({} file(s) could not be read)",
                r.errors.len()
            ))
            .into());
        }
        Ok(())
    }
}

/// `decrypt passphrase=…` (RouterOS v2.8)
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Opens the keys imported still encrypted.
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Where to read it: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "passphrase")]
    pub passphrase_source: Option<String>,
}

impl DecryptArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let pass = super::secret(
            &self.passphrase,
            &self.passphrase_source,
            "passphrase",
            "passphrase",
            true,
        )?
        .ok_or_else(|| ManagerError::InvalidValue("passphrase= is needed".into()))?;
        let n = ctx.manager()?.decrypt_keys(&pass)?;
        if ctx.json {
            outln!("{}", serde_json::json!({ "keys-decrypted": n }));
        } else if !ctx.quiet {
            outln!("  keys-decrypted: {n}");
        }
        Ok(())
    }
}

/// `reset-certificate-cache` (RouterOS v2.8)
#[derive(Debug, Args)]
pub struct ResetCacheArgs {}

impl ResetCacheArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let n = ctx.manager()?.reset_certificate_cache()?;
        if ctx.json {
            outln!("{}", serde_json::json!({ "keys-dropped": n }));
        }
        Ok(())
    }
}
