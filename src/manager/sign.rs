//! `sign`: a template becomes a self-signed certificate or one issued by a local CA; and
//! `issue_batch`, its bulk form.

use std::collections::HashSet;

use super::issue::{validate_crl_host, Issued};
use super::template::TemplateProperties;
use super::{crl_url, validate_name, Entry, KeyLocation, Manager};
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::keys::KeyHandle;
use crate::store::TxnMode;

/// `sign TEMPLATE …`.
#[derive(Clone, Debug, Default)]
pub struct SignRequest {
    /// the template to consume
    pub template: String,
    /// the certificate's name (default: the template's)
    pub name: Option<String>,
    /// the issuing CA (absent: self-signed)
    pub ca: Option<String>,
    /// `ca-crl-host=HOST[:PORT]` for a CA
    pub ca_crl_host: Option<String>,
    /// where the key goes
    pub key_location: KeyLocation,
}

impl Manager {
    // ---------------------------------------------------------------- sign

    /// `sign TEMPLATE [name=] [ca=] [ca-crl-host=] …`: makes a self-signed certificate (no `ca`)
    /// or issues one from a local CA. The template is consumed in the same transaction.
    pub fn sign(&self, req: &SignRequest) -> Result<Entry> {
        let (template_id, props, name, issuer) = {
            let txn = self.store.begin(TxnMode::Read)?;
            let t = txn
                .template(&req.template)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Template, &req.template))?;
            let name = req.name.clone().unwrap_or_else(|| t.name.clone());
            validate_name(&name)?;
            if name != t.name && txn.name_in_use(&name)? {
                return Err(ManagerError::refused(
                    Refusal::NameInUse,
                    format!("name \"{name}\" is already in use"),
                    Some("choose another name= for the certificate"),
                ));
            }
            let issuer = match &req.ca {
                Some(ca) => Some(self.load_issuer(txn.as_ref(), ca)?),
                None => None,
            };
            (
                t.id,
                TemplateProperties::from_json(&t.properties)?,
                name,
                issuer,
            )
        };
        if let Some(h) = &req.ca_crl_host {
            validate_crl_host(h)?;
        }
        let resolved = props.resolve()?;
        let location = self.resolve_location(&req.key_location)?;
        let provider = self.provider_for(&location)?;
        let mut plan = self.plan(
            &props,
            &resolved,
            issuer.as_ref(),
            req.ca_crl_host.as_deref(),
        )?;
        if issuer.is_none() {
            // A root CA made with ca-crl-host names its own CRL (as RouterOS does): that is
            // where a store trusting it downloads the CRL from.
            if let Some(h) = &plan.ca_crl_host {
                plan.crl_distribution_point = Some(crl_url(h, &name));
            }
        }
        let issued = self.prepare(&plan, &name, provider, &location, true)?;
        // RouterOS writes the certificate onto the card beside its key.
        let on_token = match (&issued.key, provider.certificate_objects()) {
            (Some(k), Some(objects)) if k.sealed.is_none() => {
                let handle = KeyHandle {
                    uri: k.uri.clone(),
                    sealed: None,
                };
                if let Err(e) = objects.store_certificate(&handle, &issued.record.der) {
                    self.discard_key(provider, issued.key.as_ref());
                    return Err(e.into());
                }
                Some((objects, handle))
            }
            _ => None,
        };
        let result = self.write(|txn| {
            if let Some(issuer) = &plan.issuer_check {
                issuer.recheck(txn)?;
            }
            // consumed once: a sign of the same template meanwhile took it (or renamed it)
            match txn.template(&req.template)? {
                Some(t) if t.id == template_id && txn.delete_template(t.id)? => {}
                _ => return Err(ManagerError::not_found(ObjectKind::Template, &req.template)),
            }
            // the name is the store's to refuse (NameTaken), if taken meanwhile
            let id = Self::insert_issued(txn, &issued)?;
            self.after_insert(txn, id)
        });
        if let Err(e) = result {
            if let Some((objects, handle)) = &on_token {
                let _ = objects.delete_certificate(handle);
            }
            self.discard_key(provider, issued.key.as_ref());
            return Err(e);
        }
        self.entry(&name)
    }

    /// Issues one certificate per name from `template` by `ca`, all in one transaction, so
    /// that each is durable (fsync'd) when this returns — the batch form of `sign` for bulk
    /// issuance (`benches/issue.rs`, scripts). Keys are generated in software. `threads` > 1
    /// signs in parallel.
    pub fn issue_batch(
        &self,
        ca: &str,
        template: &TemplateProperties,
        names: &[String],
        threads: usize,
    ) -> Result<usize> {
        let resolved = template.resolve()?;
        let issuer = {
            let txn = self.store.begin(TxnMode::Read)?;
            let mut seen = HashSet::new();
            for n in names {
                validate_name(n)?;
                if !seen.insert(n) || txn.name_in_use(n)? {
                    return Err(ManagerError::refused(
                        Refusal::NameInUse,
                        format!("name \"{n}\" is already in use"),
                        None,
                    ));
                }
            }
            self.load_issuer(txn.as_ref(), ca)?
        };
        let plan = self.plan(template, &resolved, Some(&issuer), None)?;
        let soft = self.keys.soft();
        let threads = threads.clamp(1, 64).min(names.len().max(1));
        let chunk = names.len().div_ceil(threads).max(1);
        let sign_part = |part: &[String]| {
            part.iter()
                .map(|n| self.prepare(&plan, n, soft, &KeyLocation::Software, false))
                .collect::<Result<Vec<_>>>()
        };
        // One thread: sign right here (a new thread would also seed a new RNG state).
        let prepared: Vec<Result<Vec<Issued>>> = if threads == 1 {
            vec![sign_part(names)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = names
                    .chunks(chunk)
                    .map(|part| s.spawn(|| sign_part(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(ManagerError::Failed("a signing thread panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        let issued = prepared.into_iter().collect::<Result<Vec<_>>>()?;
        self.write(|txn| {
            if let Some(issuer) = &plan.issuer_check {
                issuer.recheck(txn)?;
            }
            let mut n = 0;
            for issued in issued.iter().flatten() {
                let id = Self::insert_issued(txn, issued)?;
                // Every certificate of the batch names the same CDP: one claim will do.
                if plan.is_ca || n == 0 {
                    self.after_insert(txn, id)?;
                }
                n += 1;
            }
            Ok(n)
        })
    }
}
