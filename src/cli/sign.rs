//! `certman sign`: self-sign a template, or issue it from a local CA.

use clap::Args;

use super::{CliError, Ctx};
use crate::manager::{KeyLocation, SignRequest};

/// `sign TEMPLATE [name=] [ca=] [ca-crl-host=] [on-smart-card=|ca-on-smart-card=|key=]`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The template to sign (also `template=`).
    #[arg(value_name = "TEMPLATE", required_unless_present = "template")]
    pub template_pos: Option<String>,
    /// The template to sign.
    #[arg(long, conflicts_with = "template_pos")]
    pub template: Option<String>,
    /// The certificate's name (default: the template's).
    #[arg(long)]
    pub name: Option<String>,
    /// The issuing CA (absent: self-signed).
    #[arg(long)]
    pub ca: Option<String>,
    /// For a CA: HOST[:PORT] that serves its CRL; put into every certificate it issues.
    #[arg(long)]
    pub ca_crl_host: Option<String>,
    /// Generate the key on this token profile (`yes` = the default token).
    #[arg(long, conflicts_with_all = ["ca_on_smart_card", "key"])]
    pub on_smart_card: Option<String>,
    /// Generate the CA's key on this token profile.
    #[arg(long, conflicts_with = "key")]
    pub ca_on_smart_card: Option<String>,
    /// Generate the key at this key URI (pkcs11:…, piv:…).
    #[arg(long)]
    pub key: Option<String>,
}

impl SignArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        let key_location = match (&self.on_smart_card, &self.ca_on_smart_card, &self.key) {
            (Some(p), _, _) | (_, Some(p), _) => KeyLocation::Profile(p.clone()),
            (_, _, Some(uri)) => KeyLocation::Uri(uri.parse()?),
            _ => KeyLocation::Software,
        };
        let req = SignRequest {
            template: match &self.template_pos {
                Some(t) => ctx.name(t)?,
                None => self.template.clone().unwrap_or_default(),
            },
            name: self.name.clone(),
            ca: self.ca.clone(),
            ca_crl_host: self.ca_crl_host.clone(),
            key_location,
        };
        let entry = ctx.manager()?.sign(&req)?;
        super::print_signed(ctx, &entry);
        Ok(())
    }
}
