//! `certman export-certificate`: PEM certificate, and the key encrypted with a passphrase.

use clap::{Args, ValueEnum};

use super::{CliError, Ctx};
use crate::manager::{ExportRequest, ExportType};

/// Export file types.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeArg {
    /// PEM certificate (+ `.key`, encrypted PKCS#8, with a passphrase)
    Pem,
    /// PKCS#12 (`.p12`): certificate, CA chain, and the key with a passphrase
    Pkcs12,
}

/// `export-certificate NAME [type=pem] [export-passphrase=…|export-passphrase-source=…] [file-name=…]`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The certificate to export.
    pub name: String,
    /// File type.
    #[arg(long = "type", value_enum, default_value = "pem", value_name = "TYPE")]
    pub kind: TypeArg,
    /// Export the private key too, encrypted with this passphrase.
    #[arg(long)]
    pub export_passphrase: Option<String>,
    /// Where to read the passphrase: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "export_passphrase")]
    pub export_passphrase_source: Option<String>,
    /// type=pkcs12: 3DES and a SHA-1 MAC (old Windows, Java) instead of AES-256.
    #[arg(long, num_args = 0..=1, default_missing_value = "yes", value_parser = super::yes_no)]
    pub legacy: Option<bool>,
    /// Base file name (default cert_export_NAME).
    #[arg(long)]
    pub file_name: Option<String>,
}

impl ExportArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let passphrase = super::new_secret(
            &self.export_passphrase,
            &self.export_passphrase_source,
            "export passphrase",
            "export-passphrase",
            false,
        )?;
        let files = ctx.manager()?.export_certificate(&ExportRequest {
            name: ctx.name(&self.name)?,
            kind: match self.kind {
                TypeArg::Pem => ExportType::Pem,
                TypeArg::Pkcs12 => ExportType::Pkcs12 {
                    legacy: self.legacy.unwrap_or(false),
                },
            },
            passphrase,
            file_name: self.file_name.clone(),
            dir: super::cwd()?,
        })?;
        super::print_files(ctx, &files);
        Ok(())
    }
}
