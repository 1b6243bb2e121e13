//! `certman create-certificate-request` and `certman sign-certificate-request`.

use std::path::PathBuf;

use clap::Args;

use super::out::outln;
use super::{cwd, new_secret, secret, CliError, Ctx};
use crate::error::ManagerError;
use crate::manager::{CreateRequest, KeyLocation, SignRequestFile};

/// `create-certificate-request template=… [key-passphrase=…] [file-name=…] [on-smart-card=…]`,
/// also in RouterOS v2.8's words: `certificate-request-file-name`, `file-name` (the key file),
/// `passphrase`, `rsa-key-bits`, `country-name`, `state-or-province-name`, `locality-name`,
/// `organization-name`, `organization-unit-name`, `common-name`, `email-address`,
/// `challenge-password`, `unstructured-address` (v2.8 asks for them one by one; here they are
/// properties, and with them no template is needed).
#[derive(Debug, Args)]
pub struct CreateRequestArgs {
    /// The template (also `template=`); it is consumed.
    #[arg(value_name = "TEMPLATE")]
    pub template_pos: Option<String>,
    /// The template; it is consumed. Without one, the properties below describe the request.
    #[arg(long, conflicts_with = "template_pos")]
    pub template: Option<String>,
    /// Encrypts the key file (needed for a software key). v2.8: `passphrase`.
    #[arg(long, visible_alias = "passphrase")]
    pub key_passphrase: Option<String>,
    /// Where to read the key passphrase: file:PATH, env:VAR, fd:N or prompt.
    #[arg(
        long,
        visible_alias = "passphrase-source",
        conflicts_with = "key_passphrase"
    )]
    pub key_passphrase_source: Option<String>,
    /// The challengePassword to put in the request.
    #[arg(long)]
    pub challenge_password: Option<String>,
    /// Where to read the challenge password.
    #[arg(long, conflicts_with = "challenge_password")]
    pub challenge_password_source: Option<String>,
    /// Base file name (default certificate-request: writes .pem and _key.pem); with
    /// certificate-request-file-name, the key file's own name (v2.8).
    #[arg(long)]
    pub file_name: Option<String>,
    /// The request file's own name (v2.8).
    #[arg(long)]
    pub certificate_request_file_name: Option<String>,
    /// Generate the key on this token profile (`yes` = the default token).
    #[arg(long, conflicts_with = "key")]
    pub on_smart_card: Option<String>,
    /// Generate the key at this key URI (pkcs11:…, piv:…).
    #[arg(long)]
    pub key: Option<String>,
    /// Subject CN (over the template's).
    #[arg(long)]
    pub common_name: Option<String>,
    /// Subject C, two letters. v2.8: `country-name`.
    #[arg(long, visible_alias = "country-name")]
    pub country: Option<String>,
    /// Subject ST. v2.8: `state-or-province-name`.
    #[arg(long, visible_alias = "state-or-province-name")]
    pub state: Option<String>,
    /// Subject L. v2.8: `locality-name`.
    #[arg(long, visible_alias = "locality-name")]
    pub locality: Option<String>,
    /// Subject O. v2.8: `organization-name`.
    #[arg(long, visible_alias = "organization-name")]
    pub organization: Option<String>,
    /// Subject OU. v2.8: `organization-unit-name` (X.520: organizational-unit-name).
    #[arg(long, visible_aliases = ["organization-unit-name", "organizational-unit-name"])]
    pub unit: Option<String>,
    /// The subject's emailAddress (PKCS#9). v2.8: `email-address`.
    #[arg(long)]
    pub email_address: Option<String>,
    /// The PKCS#9 unstructuredAddress attribute (v2.8).
    #[arg(long)]
    pub unstructured_address: Option<String>,
    /// Key type: rsa, ec, ed25519 (over the template's).
    #[arg(long)]
    pub key_type: Option<String>,
    /// Key size (over the template's).
    #[arg(long, conflicts_with = "rsa_key_bits")]
    pub key_size: Option<String>,
    /// An RSA key of this many bits (v2.8): key-type=rsa key-size=BITS.
    #[arg(long, conflicts_with = "key_type")]
    pub rsa_key_bits: Option<String>,
}

impl CreateRequestArgs {
    /// Template properties given on the command line, as `set` names them.
    fn properties(&self) -> Vec<(String, String)> {
        let rsa = self.rsa_key_bits.as_ref().map(|_| "rsa".to_owned());
        [
            ("common-name", &self.common_name),
            ("country", &self.country),
            ("state", &self.state),
            ("locality", &self.locality),
            ("organization", &self.organization),
            ("unit", &self.unit),
            ("key-type", &self.key_type),
            ("key-type", &rsa),
            ("key-size", &self.key_size),
            ("key-size", &self.rsa_key_bits),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
        .collect()
    }

    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let template = match &self.template_pos {
            Some(t) => Some(ctx.name(t)?),
            None => self.template.clone(),
        };
        let properties = self.properties();
        if template.is_none()
            && properties.is_empty()
            && self.email_address.is_none()
            && self.unstructured_address.is_none()
        {
            return Err(ManagerError::InvalidValue(
                "give template=NAME, or the request's fields (common-name=…, country-name=…, …)"
                    .into(),
            )
            .into());
        }
        let key_location = match (&self.on_smart_card, &self.key) {
            (Some(p), _) => KeyLocation::Profile(p.clone()),
            (_, Some(uri)) => KeyLocation::Uri(uri.parse()?),
            _ => KeyLocation::Software,
        };
        let soft = matches!(key_location, KeyLocation::Software);
        let files = ctx
            .manager_creating()?
            .create_certificate_request(&CreateRequest {
                template,
                properties,
                email_address: self.email_address.clone(),
                unstructured_address: self.unstructured_address.clone(),
                // A software key's file needs a passphrase: ask for one (twice) on a terminal.
                key_passphrase: new_secret(
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
                request_file_name: self.certificate_request_file_name.clone(),
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
