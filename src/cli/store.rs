//! `certman store reseal` and `certman store seal-key-generate`: the sealing key of the
//! store's secrets at rest.

use clap::{Args, Subcommand};

use super::out::outln;
use super::{CliError, Ctx};
use crate::seal::SealingKeySource;

/// `store …`
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// Store commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Seal every secret at rest (software keys, keys kept encrypted, CA export passphrases,
    /// SCEP clients' challenges and requests) again under another sealing key:
    /// `store reseal seal-key-source=NEW`.
    ///
    /// The current key is the global --seal-key-source given before `store`
    /// ($CERTMAN_SEAL_KEY_SOURCE; the machine id by default). Every secret is opened with it
    /// first, and all are re-sealed in one transaction: when one does not open, nothing
    /// changes. Afterwards the store's secrets open with NEW only.
    Reseal {
        /// The new source: machine-id, file:PATH, pkcs11:… or piv:… (written
        /// seal-key-source=NEW too).
        #[arg(value_name = "SEAL-KEY-SOURCE")]
        new_source: String,
    },
    /// Make the secret key of a pkcs11: seal-key-source on its token (a 32-byte
    /// CKK_GENERIC_SECRET, sensitive, never extractable); refused when an object with its
    /// label is there. `pkcs11-tool --keygen --key-type GENERIC:32 --label L --sensitive
    /// --login` makes one too.
    SealKeyGenerate {
        /// pkcs11:token=LABEL;object=LABEL?module-path=…&pin-source=file:… (or
        /// pkcs11:object=LABEL?profile=NAME).
        #[arg(value_name = "SEAL-KEY-SOURCE")]
        source: String,
    },
}

impl StoreArgs {
    /// Runs the command.
    pub fn run(&self, ctx: &Ctx) -> Result<(), CliError> {
        match &self.command {
            StoreCommand::Reseal { new_source } => {
                let to = SealingKeySource::parse(new_source)
                    .map_err(crate::error::ManagerError::from)?;
                let report = ctx.manager()?.reseal(&to)?;
                if ctx.json {
                    let map: serde_json::Map<String, serde_json::Value> = report
                        .counts()
                        .iter()
                        .map(|(k, n)| ((*k).to_owned(), serde_json::json!(n)))
                        .collect();
                    outln!("{}", serde_json::Value::Object(map));
                } else if !ctx.quiet {
                    for (name, n) in report.counts() {
                        outln!("  {name}: {n}");
                    }
                }
            }
            StoreCommand::SealKeyGenerate { source } => {
                let source =
                    SealingKeySource::parse(source).map_err(crate::error::ManagerError::from)?;
                let (label, serial) = ctx.generate_seal_key(&source)?;
                if ctx.json {
                    outln!(
                        "{}",
                        serde_json::json!({ "token": label, "serial": serial, "seal-key-generated": true })
                    );
                } else if !ctx.quiet {
                    outln!("  seal-key-generated: yes");
                    outln!("  token: {label}");
                    outln!("  serial: {serial}");
                }
            }
        }
        Ok(())
    }
}

/// `store reseal seal-key-source=NEW`: after `store reseal` the option names the new source
/// (the command's argument), not the global current one (which goes before `store`).
pub(crate) fn reseal_target(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(i) = args
        .iter()
        .take_while(|a| *a != "--")
        .collect::<Vec<_>>()
        .windows(2)
        .position(|w| w[0] == "store" && w[1] == "reseal")
    else {
        return args;
    };
    let mut out = args[..i + 2].to_vec();
    let mut rest = args[i + 2..].iter();
    while let Some(a) = rest.next() {
        match a.to_str() {
            Some(s) if s.starts_with("--seal-key-source=") => {
                out.push(s["--seal-key-source=".len()..].into());
            }
            Some("--seal-key-source") => {
                if let Some(v) = rest.next() {
                    out.push(v.clone());
                }
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    fn words(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn after_store_reseal_the_option_names_the_new_source() {
        let argv = |v: &[&str]| super::super::normalize_args(words(v));
        let want = words(&[
            "certman",
            "--seal-key-source=file:/old",
            "store",
            "reseal",
            "pkcs11:object=s?profile=p",
        ]);
        for new in [
            &["seal-key-source=pkcs11:object=s?profile=p"][..],
            &["--seal-key-source=pkcs11:object=s?profile=p"],
            &["--seal-key-source", "pkcs11:object=s?profile=p"],
            &["pkcs11:object=s?profile=p"],
        ] {
            let mut v = vec!["certman", "seal-key-source=file:/old", "store", "reseal"];
            v.extend(new);
            assert_eq!(argv(&v), want, "{new:?}");
        }
        // elsewhere the option stays the global one
        assert_eq!(
            argv(&["certman", "print", "seal-key-source=file:/k"]),
            words(&["certman", "print", "--seal-key-source=file:/k"])
        );
        let cli = <super::super::Cli as clap::Parser>::try_parse_from(argv(&[
            "certman",
            "store",
            "reseal",
            "seal-key-source=machine-id",
        ]))
        .unwrap();
        assert_eq!(cli.seal_key_source, None);
    }
}
