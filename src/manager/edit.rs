//! Templates and entries: `add`, `print`, `set`, `remove` (RouterOS's rules for what may
//! change and what goes with what).

use super::template::{self, TemplateProperties, TEMPLATE_PROPERTIES};
use super::{validate_name, view, Entry, Manager};
use crate::error::{ManagerError, ObjectKind, Refusal, Result};
use crate::keys::KeyHandle;
use crate::store::{Lock, Transaction, TxnMode};
use crate::x509;

/// What `remove` removed.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// names of removed templates
    pub templates: Vec<String>,
    /// names of removed certificates, the asked-for ones and the chains they took with them
    pub certificates: Vec<String>,
    /// (certificate, key URI) of token keys left on their tokens
    pub token_keys_kept: Vec<(String, String)>,
    /// (certificate, key URI) of token keys destroyed (`--delete-key`)
    pub token_keys_deleted: Vec<(String, String)>,
    /// the first token key that could not be destroyed (and how many more), a
    /// [`ManagerError::TokenKeyNotDeleted`] keeping the key error's kind (a PIN failure is
    /// still a PIN failure)
    pub token_key_error: Option<ManagerError>,
}

/// Changes for `set NAME …`.
#[derive(Clone, Debug, Default)]
pub struct SetRequest {
    /// the template or certificate
    pub name: String,
    /// (property, value) in the order given; `name` and `trusted` included
    pub changes: Vec<(String, String)>,
}

impl Manager {
    // ---------------------------------------------------------------- add

    /// `add name=… [copy-from=…] props…`: adds a template.
    pub fn add_template(
        &self,
        name: &str,
        copy_from: Option<&str>,
        changes: &[(String, String)],
    ) -> Result<()> {
        validate_name(name)?;
        self.write(|txn| {
            let mut props = match copy_from {
                Some(src) => copy_properties(txn, src)?,
                None => TemplateProperties::default(),
            };
            for (k, v) in changes {
                props.set(k, v)?;
            }
            props.resolve()?;
            // the store refuses a name in use (NameTaken: "already in use")
            txn.insert_template(name, &props.to_json())?;
            Ok(())
        })
    }

    // ---------------------------------------------------------------- print

    /// All templates and certificates in creation order, or those named (in the order asked).
    pub fn entries(&self, names: &[String]) -> Result<Vec<Entry>> {
        let txn = self.store.begin(TxnMode::Read)?;
        if names.is_empty() {
            return view::collect(txn.as_ref());
        }
        names
            .iter()
            .map(|n| {
                view::lookup(txn.as_ref(), n)?
                    .ok_or_else(|| ManagerError::not_found(ObjectKind::Entry, n))
            })
            .collect()
    }

    /// One entry by name.
    pub fn entry(&self, name: &str) -> Result<Entry> {
        let txn = self.store.begin(TxnMode::Read)?;
        view::lookup(txn.as_ref(), name)?
            .ok_or_else(|| ManagerError::not_found(ObjectKind::Entry, name))
    }

    // ---------------------------------------------------------------- set

    /// `set NAME prop=value…`: any property of a template; only `name` and `trusted` of a
    /// certificate (the rest is read-only once signed).
    pub fn set(&self, req: &SetRequest) -> Result<()> {
        let new_name = req
            .changes
            .iter()
            .rev()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone());
        if let Some(n) = &new_name {
            validate_name(n)?;
        }
        self.write(|txn| self.set_in(txn, req, new_name.as_deref()))
    }

    fn set_in(
        &self,
        txn: &mut dyn Transaction,
        req: &SetRequest,
        new_name: Option<&str>,
    ) -> Result<()> {
        // A taken name is refused before anything else is looked at (the store refuses it
        // too, as it is written: NameTaken).
        if let Some(n) = new_name {
            if n != req.name && txn.name_in_use(n)? {
                return Err(ManagerError::refused(
                    Refusal::NameInUse,
                    format!("name \"{n}\" is already in use"),
                    None,
                ));
            }
        }
        if let Some(t) = txn.template(&req.name)? {
            let mut props = TemplateProperties::from_json(&t.properties)?;
            for (k, v) in req.changes.iter().filter(|(k, _)| k != "name") {
                props.set(k, v)?;
            }
            props.resolve()?;
            txn.update_template(t.id, new_name.unwrap_or(&t.name), &props.to_json())?;
        } else if let Some(c) = txn.certificate(&req.name)? {
            let mut trusted = c.cert.trusted;
            for (k, v) in &req.changes {
                match k.as_str() {
                    "name" => {}
                    "trusted" => trusted = template::parse_yes_no("trusted", v)?,
                    "pin-source" => set_pin_source(txn, &c, v)?,
                    other => {
                        if !TEMPLATE_PROPERTIES.contains(&other) {
                            return Err(ManagerError::InvalidValue(format!(
                                "unknown property '{other}'"
                            )));
                        }
                        return Err(ManagerError::refused(
                            Refusal::ReadOnlyProperty,
                            format!("{other} of certificate \"{}\" is read-only after signing", req.name),
                            Some("only name and trusted can change; make a new template to change the rest"),
                        ));
                    }
                }
            }
            if let Some(n) = new_name {
                self.check_crl_rename(txn, &c, n)?;
            }
            txn.update_certificate(c.id, new_name.unwrap_or(&c.cert.name), trusted)?;
        } else {
            return Err(ManagerError::not_found(ObjectKind::Entry, &req.name));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- remove

    /// `remove NAME…`: templates and self-signed/imported certificates go; a CA takes every
    /// certificate it issued with it (recursively); an issued certificate is refused. All or
    /// nothing.
    pub fn remove(&self, names: &[String], delete_token_keys: bool) -> Result<RemoveReport> {
        let (mut report, token_keys) = self.write(|txn| remove_in(txn, names))?;
        // Token keys outlive their certificates unless asked: a token is the operator's.
        for (name, handle) in token_keys {
            if !delete_token_keys {
                report.token_keys_kept.push((name, handle.uri.to_string()));
                continue;
            }
            let result = self.keys.provider(&handle.uri).and_then(|p| {
                if let Some(objects) = p.certificate_objects() {
                    objects.delete_certificate(&handle)?;
                }
                p.delete(&handle)
            });
            match result {
                Ok(()) => report
                    .token_keys_deleted
                    .push((name, handle.uri.to_string())),
                Err(source) => match &mut report.token_key_error {
                    Some(ManagerError::TokenKeyNotDeleted { more, .. }) => *more += 1,
                    _ => {
                        report.token_key_error = Some(ManagerError::TokenKeyNotDeleted {
                            certificate: name,
                            uri: handle.uri.to_string(),
                            source,
                            more: 0,
                        })
                    }
                },
            }
        }
        Ok(report)
    }
}

/// A token key whose last certificate went: (that certificate's name, the key).
type OrphanedTokenKey = (String, KeyHandle);

/// The rows `remove` deletes, in `txn`; the token keys whose last user went, to deal with
/// after the commit.
fn remove_in(
    txn: &mut dyn Transaction,
    names: &[String],
) -> Result<(RemoveReport, Vec<OrphanedTokenKey>)> {
    let mut token_keys: Vec<OrphanedTokenKey> = Vec::new();
    let mut report = RemoveReport::default();
    // Issued certificates last, so that `remove leaf ca` works like `remove ca leaf`: the
    // leaf goes with its CA; asked for alone it is refused.
    let mut ordered: Vec<&String> = Vec::with_capacity(names.len());
    let mut issued = Vec::new();
    for name in names {
        match txn.certificate(name)? {
            Some(c) if c.cert.issuer_id.is_some() => issued.push(name),
            _ => ordered.push(name),
        }
    }
    ordered.extend(issued);
    for name in ordered {
        if let Some(t) = txn.template(name)? {
            txn.delete_template(t.id)?;
            report.templates.push(t.name);
            continue;
        }
        let Some(c) = txn.certificate(name)? else {
            if report.certificates.contains(name) {
                continue; // already removed with its CA
            }
            return Err(ManagerError::not_found(ObjectKind::Entry, name));
        };
        if let Some(issuer_id) = c.cert.issuer_id {
            let ca = txn
                .certificate_by_id(issuer_id)?
                .map(|r| r.cert.name)
                .unwrap_or_default();
            return Err(ManagerError::refused(
                Refusal::IssuedCertificate,
                format!("\"{name}\" was issued by CA \"{ca}\" and cannot be removed"),
                Some(&format!(
                    "revoke it with `certman issued-revoke {name}`; issued certificates go when their CA is removed"
                )),
            ));
        }
        // Depth-first: every descendant before its issuer (foreign keys).
        let mut order = Vec::new();
        let mut stack = vec![(c.id, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
            } else {
                stack.push((id, true));
                // what a CA issued, read under its lock: an issuance that re-checks the CA
                // under the same lock sees it gone
                txn.lock(Lock::Ca(id))?;
                for child in txn.issued_by(id)? {
                    stack.push((child, false));
                }
            }
        }
        refuse_if_serving(txn, &order)?;
        for id in order {
            let rec = txn
                .certificate_by_id(id)?
                .ok_or_else(|| ManagerError::not_found(ObjectKind::Certificate, id.to_string()))?;
            txn.delete_certificate(id)?;
            if let Some(key_id) = &rec.cert.key_id {
                if txn.key_users(key_id)? == 0 {
                    if let Some(k) = txn.key(key_id)? {
                        if k.sealed.is_none() {
                            token_keys.push((
                                rec.cert.name.clone(),
                                KeyHandle {
                                    uri: k.uri.parse()?,
                                    sealed: None,
                                },
                            ));
                        }
                    }
                    txn.delete_key(key_id)?;
                }
            }
            report.certificates.push(rec.cert.name);
        }
    }
    Ok((report, token_keys))
}

/// `set NAME pin-source=SRC`: where the PIN of the certificate's token key is read from. A
/// key made from a profile reads the profile's (change the profile instead).
fn set_pin_source(
    txn: &mut dyn Transaction,
    c: &crate::store::CertificateRecord,
    source: &str,
) -> Result<()> {
    source.parse::<crate::secret::SecretSource>()?;
    let refuse = |why: String| ManagerError::refused(Refusal::NotOnToken, why, None);
    let key_id = c
        .cert
        .key_id
        .as_deref()
        .ok_or_else(|| refuse(format!("certificate \"{}\" has no key here", c.cert.name)))?;
    let key = txn.key(key_id)?.ok_or(crate::error::StoreError::Conflict)?;
    let uri: crate::keys::KeyUri = key.uri.parse()?;
    if key.sealed.is_some() || uri.scheme() == crate::keys::Scheme::Soft {
        return Err(refuse(format!(
            "pin-source applies to keys on a token; \"{}\" has a software key",
            c.cert.name
        )));
    }
    if let Some(profile) = uri.query_str("profile") {
        return Err(ManagerError::refused(
            Refusal::ReadOnlyProperty,
            format!(
                "the key of \"{}\" takes its PIN from token profile {profile}",
                c.cert.name
            ),
            Some("change pin-source in the profile; it applies to every key made from it"),
        ));
    }
    let changed = uri.with_query("pin-source", source).without_secrets();
    txn.set_key_uri(key_id, &changed.to_string())?;
    Ok(())
}

/// A certificate a SCEP server uses (as its CA, RA or next CA) is not removed under it, nor
/// the CA of a SCEP client whose own certificate stays.
fn refuse_if_serving(txn: &dyn Transaction, ids: &[i64]) -> Result<()> {
    for c in txn.scep_clients()? {
        if c.state.certificate_id.is_some_and(|own| ids.contains(&own)) {
            continue;
        }
        let used = [c.state.ca_id, c.state.next_ca_id];
        if let Some(id) = ids.iter().find(|id| used.contains(&Some(**id))) {
            let name = txn
                .certificate_by_id(*id)?
                .map(|r| r.cert.name)
                .unwrap_or_default();
            return Err(ManagerError::refused(
                Refusal::UsedByScepServer,
                format!(
                    "\"{name}\" is the CA of SCEP client {}, which renews against it",
                    c.client.name
                ),
                Some("remove the client's certificate first (it takes the client with it)"),
            ));
        }
    }
    for s in txn.scep_servers()? {
        let used = [Some(s.server.ca_id), s.server.ra_id, s.server.next_ca_id];
        if let Some(id) = ids.iter().find(|id| used.contains(&Some(**id))) {
            let name = txn
                .certificate_by_id(*id)?
                .map(|c| c.cert.name)
                .unwrap_or_default();
            return Err(ManagerError::refused(
                Refusal::UsedByScepServer,
                format!("\"{name}\" is used by the SCEP server at {}", s.server.path),
                Some(&format!(
                    "remove the server first (`certman scep-server remove {}`) or change it with scep-server set",
                    s.server.path
                )),
            ));
        }
    }
    Ok(())
}

fn copy_properties(txn: &dyn Transaction, src: &str) -> Result<TemplateProperties> {
    if let Some(t) = txn.template(src)? {
        return TemplateProperties::from_json(&t.properties);
    }
    // copy-from a certificate: take what it was made of, as RouterOS does.
    let c = txn
        .certificate(src)?
        .ok_or_else(|| ManagerError::not_found(ObjectKind::CopySource, src))?;
    let info = x509::inspect_certificate(&c.cert.der)?;
    let mut p = TemplateProperties::from_json(&c.cert.properties).unwrap_or_default();
    let f = info.subject_fields;
    p.common_name = f.common_name;
    p.country = f.country;
    p.state = f.state;
    p.locality = f.locality;
    p.organization = f.organization;
    p.unit = f.unit;
    p.subject_alt_name = (!info.subject_alt_name.is_empty()).then_some(info.subject_alt_name);
    if let Some(a) = info.key_algorithm {
        p.key_type = Some(a.key_type().to_owned());
        p.key_size = match a {
            crate::keys::KeyAlgorithm::Ed25519 => None,
            _ => Some(a.key_size()),
        };
    }
    p.key_usage = (!info.key_usage.is_empty()).then(|| info.key_usage.to_string());
    Ok(p)
}
