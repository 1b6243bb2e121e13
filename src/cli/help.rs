//! What `--help` shows beyond the options: that properties take the RouterOS `name=value`
//! form, and examples for every command. Kept in one table (rather than an attribute on each
//! Args struct) so that one test sees every command has its examples, and the man page and
//! `--help` show the same ones.

use clap::{Command, CommandFactory};

use super::Cli;

/// The line every command's help ends with, above its examples.
const FORMS: &str = "Properties may be given as name=value (RouterOS) or --name value; \
                     add --json for machine-readable output.";

/// Examples, by command path (words after `certman`), in RouterOS form.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("add", &[
        "certman add name=ca common-name=\"My CA\" key-usage=key-cert-sign,crl-sign days-valid=3650",
        "certman add name=srv copy-from=ca common-name=srv.example subject-alt-name=DNS:srv.example key-usage=tls-server",
    ]),
    ("sign", &[
        "certman sign ca name=root",
        "certman sign srv ca=root",
        "certman sign ca-tpl name=ca on-smart-card=softhsm ca-crl-host=127.0.0.1:8080",
    ]),
    ("print", &[
        "certman print",
        "certman print detail root",
        "certman print where trusted=yes count-only",
        "certman print detail where expires-after<30d and !revoked",
        "certman print tree",
        "certman print --json",
    ]),
    ("script", &[
        "certman script setup.rsc",
        "certman script --continue bulk.rsc",
        "certman script -",
    ]),
    ("set", &["certman set srv name=www trusted=yes", "certman set tpl days-valid=90"]),
    ("remove", &["certman remove srv", "certman remove 0 delete-key=yes"]),
    ("export-certificate", &[
        "certman export-certificate srv",
        "certman export-certificate srv type=pkcs12 export-passphrase-source=prompt",
    ]),
    ("card-verify", &["certman card-verify ca"]),
    ("card-reinstall", &["certman card-reinstall ca"]),
    ("token", &["certman token print"]),
    ("token print", &["certman token print", "certman token print softhsm --login"]),
    ("token inventory", &["certman token inventory", "certman token inventory 54ba277744b66a33 --json"]),
    ("token lost", &[
        "certman token lost 54ba277744b66a33 dry-run",
        "certman token lost 54ba277744b66a33",
        "certman token lost 54ba277744b66a33 reason=ca-compromise",
    ]),
    ("store", &["certman store reseal seal-key-source=file:/etc/certman/seal.key"]),
    ("store reseal", &[
        "certman store reseal seal-key-source=file:/etc/certman/seal.key",
        "certman store reseal seal-key-source=pkcs11:object=seal?profile=hsm",
    ]),
    ("store seal-key-generate", &["certman store seal-key-generate pkcs11:object=seal?profile=hsm"]),
    ("ca-set-passphrase", &["certman ca-set-passphrase root passphrase-source=prompt"]),
    ("decrypt", &["certman decrypt passphrase-source=env:KEY_PASS"]),
    ("reset-certificate-cache", &["certman reset-certificate-cache"]),
    ("import", &[
        "certman import file-name=cert.pem",
        "certman import file-name=bundle.p12 passphrase-source=prompt name=vpn trusted=yes",
    ]),
    ("create-certificate-request", &[
        "certman create-certificate-request template=srv key-passphrase-source=prompt",
    ]),
    ("sign-certificate-request", &[
        "certman sign-certificate-request ca=root file-name=certificate-request.pem days-valid=90",
    ]),
    ("issued-revoke", &["certman issued-revoke srv reason=key-compromise"]),
    ("crl", &["certman crl print", "certman crl renew root"]),
    ("crl print", &["certman crl print"]),
    ("crl download", &["certman crl download"]),
    ("crl flush", &["certman crl flush"]),
    ("crl renew", &["certman crl renew", "certman crl renew root"]),
    ("crl presign", &[
        "certman crl presign root count=30",
        "certman crl presign root count=8 interval=1w",
    ]),
    ("crl export", &["certman crl export root", "certman crl export root file-name=- | openssl crl -inform DER"]),
    ("settings", &["certman settings print", "certman settings set crl-download=yes crl-use=yes"]),
    ("settings print", &["certman settings print"]),
    ("settings set", &["certman settings set crl-download=yes crl-use=yes"]),
    ("verify", &[
        "certman verify cert_export_srv.crt purpose=tls-server dns-name=srv.example",
        "certman verify file-name=srv.pem at=2030-01-01 crl=root.crl",
    ]),
    ("scep-server", &[
        "certman scep-server add ca-cert=root path=/scep/root",
        "certman scep-server otp generate minutes-valid=60",
    ]),
    ("scep-server add", &["certman scep-server add ca-cert=root path=/scep/root days-valid=30"]),
    ("scep-server print", &["certman scep-server print", "certman scep-server print detail"]),
    ("scep-server set", &["certman scep-server set root request-lifetime=1h"]),
    ("scep-server remove", &["certman scep-server remove root"]),
    ("scep-server enable", &["certman scep-server enable root"]),
    ("scep-server disable", &["certman scep-server disable 0"]),
    ("scep-server otp", &["certman scep-server otp generate minutes-valid=60"]),
    ("scep-server otp generate", &[
        "certman scep-server otp generate minutes-valid=60 scep-server=/scep/root",
    ]),
    ("scep-server otp print", &["certman scep-server otp print"]),
    ("scep-server requests", &["certman scep-server requests print"]),
    ("scep-server requests print", &["certman scep-server requests print detail"]),
    ("scep-server requests grant", &["certman scep-server requests grant 0"]),
    ("scep-server requests reject", &["certman scep-server requests reject 0"]),
    ("scep-server ra", &["certman scep-server ra print"]),
    ("scep-server ra add", &[
        "certman scep-server ra add name=ra server-url=http://ca.example/scep/root/pkiclient.exe template=ra-tpl challenge-password-source=prompt",
    ]),
    ("scep-server ra print", &["certman scep-server ra print detail"]),
    ("scep-server ra renew", &["certman scep-server ra renew ra"]),
    ("serve", &["certman serve listen=127.0.0.1:8080", "certman serve config=/etc/certman/serve.toml"]),
    ("add-scep", &[
        "certman add-scep template=dev scep-url=http://ca.example/scep/root/pkiclient.exe challenge-password-source=prompt",
    ]),
    ("scep-renew", &["certman scep-renew dev"]),
    ("completions", &[
        "certman completions bash > /usr/share/bash-completion/completions/certman",
        "certman completions zsh > \"${fpath[1]}/_certman\"",
        "certman completions fish > ~/.config/fish/completions/certman.fish",
    ]),
    ("man", &["certman man > /usr/local/share/man/man1/certman.1", "certman man | man -l -"]),
    ("agent", &["certman agent", "certman agent idle-timeout=30m", "certman agent idle-timeout=0 --json"]),
];

/// The text under a command's options: the `name=value` note and its examples.
fn after_help(examples: &[&str]) -> String {
    let mut s = format!("{FORMS}\n\nExamples:\n");
    for e in examples {
        s.push_str("  ");
        s.push_str(e);
        s.push('\n');
    }
    s
}

fn with_examples(mut cmd: Command, path: &str) -> Command {
    if let Some((_, examples)) = EXAMPLES.iter().find(|(p, _)| *p == path) {
        cmd = cmd.after_help(after_help(examples));
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(name, |s| with_examples(s, &sub_path));
    }
    cmd
}

/// The `certman` command as parsed and documented: clap's, with the examples.
pub fn command() -> Command {
    let top = Cli::command().after_help(after_help(&[
        "certman add name=ca common-name=\"My CA\" key-usage=key-cert-sign,crl-sign",
        "certman sign ca",
        "certman print",
    ]));
    with_examples(top, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(cmd: &Command, prefix: &str, out: &mut Vec<String>) {
        for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = if prefix.is_empty() {
                s.get_name().to_owned()
            } else {
                format!("{prefix} {}", s.get_name())
            };
            paths(s, &p, out);
            out.push(p);
        }
    }

    #[test]
    fn every_command_has_examples_of_itself_and_no_example_is_stale() {
        let mut all = Vec::new();
        paths(&Cli::command(), "", &mut all);
        for p in &all {
            let examples = EXAMPLES.iter().find(|(q, _)| q == p);
            assert!(examples.is_some(), "no examples for `certman {p}`");
            let first_word = p.split(' ').next().unwrap_or_default();
            for e in examples.map(|(_, e)| *e).unwrap_or_default() {
                assert!(
                    e.starts_with(&format!("certman {first_word}")),
                    "`certman {p}` example is of another command: {e}"
                );
            }
        }
        for (p, _) in EXAMPLES {
            assert!(all.iter().any(|q| q == p), "examples for no command: {p}");
        }
    }

    #[test]
    fn every_example_parses() {
        for (p, examples) in EXAMPLES {
            for e in *examples {
                // the command line up to a shell pipe or redirection, split as a shell would
                let line = e.split(['|', '>']).next().unwrap_or_default();
                let words = shell_words(line);
                let args = super::super::normalize_args(words.into_iter().map(Into::into));
                if let Err(err) = command().try_get_matches_from(&args) {
                    panic!("example of `certman {p}` does not parse: {e}\n{err}");
                }
            }
        }
    }

    /// Splits on blanks, keeping double-quoted text together (quotes removed).
    fn shell_words(s: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut any = false;
        for c in s.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if any {
                        words.push(std::mem::take(&mut cur));
                        any = false;
                    }
                }
                c => {
                    cur.push(c);
                    any = true;
                }
            }
        }
        if any {
            words.push(cur);
        }
        words
    }
}
