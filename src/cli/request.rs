//! `certman create-certificate-request` and `certman sign-certificate-request`.

use std::path::PathBuf;

use clap::Args;

use super::out::outln;
use super::{cwd, secret, CliError, Ctx};
use crate::manager::{CreateRequest, KeyLocation, SignRequestFile};

/// `create-certificate-request template=… [key-passphrase=…] [file-name=…] [on-smart-card=…]`
#[derive(Debug, Args)]
pub struct CreateRequestArgs {
    /// The template (also `template=`); it is consumed.
    #[arg(value_name = "TEMPLATE", required_unless_present = "template")]
    pub template_pos: Option<String>,
    /// The template; it is consumed.
    #[arg(long, conflicts_with = "template_pos")]
    pub template: Option<String>,
    /// Encrypts the key file (needed for a software key).
    #[arg(long)]
    pub key_passphrase: Option<String>,
    /// Where to read the key passphrase: file:PATH, env:VAR, fd:N or prompt.
    #[arg(long, conflicts_with = "key_passphrase")]
    pub key_passphrase_source: Option<String>,
    /// The challengePassword to put in the request.
    #[arg(long)]
    pub challenge_password: Option<String>,
    /// Where to read the challenge password.
    #[arg(long, conflicts_with = "challenge_password")]
    pub challenge_password_source: Option<String>,
    /// Base file name (default certificate-request: writes .pem and _key.pem).
    #[arg(long)]
    pub file_name: Option<String>,
    /// Generate the key on this token profile (`yes` = the default token).
    #[arg(long, conflicts_with = "key")]
    pub on_smart_card: Option<String>,
    /// Generate the key at this key URI (pkcs11:…, piv:…).
    #[arg(long)]
    pub key: Option<String>,
}

impl CreateRequestArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let key_location = match (&self.on_smart_card, &self.key) {
            (Some(p), _) => KeyLocation::Profile(p.clone()),
            (_, Some(uri)) => KeyLocation::Uri(uri.parse()?),
            _ => KeyLocation::Software,
        };
        let soft = matches!(key_location, KeyLocation::Software);
        let files = ctx.manager()?.create_certificate_request(&CreateRequest {
            template: match &self.template_pos {
                Some(t) => ctx.name(t)?,
                None => self.template.clone().unwrap_or_default(),
            },
            // A software key's file needs a passphrase: ask for one on a terminal.
            key_passphrase: secret(
                &self.key_passphrase,
                &self.key_passphrase_source,
                "key passphrase",
                "key-passphrase",
                soft,
            )?,
            challenge_password: secret(
                &self.challenge_password,
                &self.challenge_password_source,
                "challenge password",
                "challenge-password",
                false,
            )?,
            file_name: self.file_name.clone(),
            dir: cwd()?,
            key_location,
        })?;
        super::print_files(ctx, &files);
        Ok(())
    }
}

/// `sign-certificate-request ca=… file-name=… [days-valid=…] [name=…]`
#[derive(Debug, Args)]
pub struct SignRequestArgs {
    /// The issuing CA.
    #[arg(long)]
    pub ca: String,
    /// The PKCS#10 request (PEM or DER).
    #[arg(long)]
    pub file_name: PathBuf,
    /// Validity in days (default 365).
    #[arg(long)]
    pub days_valid: Option<u32>,
    /// The certificate's name (default: the request's common name).
    #[arg(long)]
    pub name: Option<String>,
    /// Issue a CA certificate if the request asks for one (refused otherwise).
    #[arg(long, num_args = 0..=1, default_missing_value = "yes", value_parser = super::yes_no)]
    pub allow_ca: Option<bool>,
}

impl SignRequestArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let (entry, file) = ctx.manager()?.sign_certificate_request(&SignRequestFile {
            ca: self.ca.clone(),
            file: self.file_name.clone(),
            days_valid: self.days_valid,
            name: self.name.clone(),
            allow_ca: self.allow_ca.unwrap_or(false),
            dir: cwd()?,
        })?;
        if ctx.json {
            // the entry as `sign` prints it, and the file as `export-certificate` names it
            let mut j = super::output::entry_json(0, &entry);
            j["files"] = super::files_json(std::slice::from_ref(&file))["files"].take();
            super::json::print(&j);
        } else if !ctx.quiet {
            super::print_signed(ctx, &entry);
            outln!("wrote {}", file.display());
        }
        Ok(())
    }
}
