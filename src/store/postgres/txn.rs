
//! PLACEHOLDER (never to land)
use super::PgTxn;
use crate::store::*;

impl Transaction for PgTxn {
    fn commit(self: Box<Self>) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn lock(&mut self, what: Lock) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn name_in_use(&self, name: &str) -> Result<bool> {
        unimplemented!("placeholder")
    }

    fn template(&self, name: &str) -> Result<Option<TemplateRecord>> {
        unimplemented!("placeholder")
    }

    fn templates(&self) -> Result<Vec<TemplateRecord>> {
        unimplemented!("placeholder")
    }

    fn insert_template(&mut self, name: &str, properties: &str) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn update_template(&mut self, id: i64, name: &str, properties: &str) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn delete_template(&mut self, id: i64) -> Result<bool> {
        unimplemented!("placeholder")
    }

    fn certificate(&self, name: &str) -> Result<Option<CertificateRecord>> {
        unimplemented!("placeholder")
    }

    fn certificate_by_id(&self, id: i64) -> Result<Option<CertificateRecord>> {
        unimplemented!("placeholder")
    }

    fn certificates(&self) -> Result<Vec<CertificateRecord>> {
        unimplemented!("placeholder")
    }

    fn last_certificate_id(&self) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn issued_by(&self, issuer_id: i64) -> Result<Vec<i64>> {
        unimplemented!("placeholder")
    }

    fn insert_certificate(&mut self, cert: &NewCertificate) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn certificate_by_fingerprint(&self, fingerprint: &str) -> Result<Option<CertificateRecord>> {
        unimplemented!("placeholder")
    }

    fn certificate_by_serial(
        &self,
        issuer_id: i64,
        serial: &str,
    ) -> Result<Option<CertificateRecord>> {
        unimplemented!("placeholder")
    }

    fn set_certificate_key(&mut self, id: i64, key_id: &str) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn update_certificate(&mut self, id: i64, name: &str, trusted: bool) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn replace_certificate(&mut self, id: i64, cert: &NewCertificate) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn delete_certificate(&mut self, id: i64) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        unimplemented!("placeholder")
    }

    fn key_uris(&self) -> Result<Vec<(String, String)>> {
        unimplemented!("placeholder")
    }

    fn insert_key(&mut self, key: &KeyRecord) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn delete_key(&mut self, id: &str) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn set_key_uri(&mut self, id: &str, uri: &str) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn key_users(&self, id: &str) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn insert_encrypted_key(&mut self, sealed: &[u8], hint: Option<i64>) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn encrypted_keys(&self) -> Result<Vec<EncryptedKeyRecord>> {
        unimplemented!("placeholder")
    }

    fn set_encrypted_key_copy(
        &mut self,
        id: i64,
        key_id: Option<&str>,
        certificate_id: Option<i64>,
    ) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn clear_certificate_key(&mut self, id: i64) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn set_ca_passphrase(&mut self, certificate_id: i64, sealed: &[u8]) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn ca_passphrase(&self, certificate_id: i64) -> Result<Option<Vec<u8>>> {
        unimplemented!("placeholder")
    }

    fn insert_request(&mut self, request: &NewRequest) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn requests(&self) -> Result<Vec<RequestRecord>> {
        unimplemented!("placeholder")
    }

    fn insert_revocation(&mut self, r: &RevocationRecord) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn revocation(&self, certificate_id: i64) -> Result<Option<RevocationRecord>> {
        unimplemented!("placeholder")
    }

    fn revocation_entries(&self, ca_id: i64, cutoff: i64, out: &mut Vec<u8>) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn crl(&self, ca_id: i64) -> Result<Option<CrlRecord>> {
        unimplemented!("placeholder")
    }

    fn crl_state(&self, ca_id: i64) -> Result<Option<(u64, i64)>> {
        unimplemented!("placeholder")
    }

    fn crl_summaries(&self) -> Result<Vec<CrlRecord>> {
        unimplemented!("placeholder")
    }

    fn put_crl(&mut self, crl: &CrlRecord) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn crl_path_owner(&self, path: &str) -> Result<Option<i64>> {
        unimplemented!("placeholder")
    }

    fn claim_crl_path(&mut self, path: &str, ca_id: i64) -> Result<i64> {
        unimplemented!("placeholder")
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        unimplemented!("placeholder")
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn downloaded_crl(&self, certificate_id: i64) -> Result<Option<DownloadedCrlRecord>> {
        unimplemented!("placeholder")
    }

    fn downloaded_crls(&self) -> Result<Vec<DownloadedCrlRecord>> {
        unimplemented!("placeholder")
    }

    fn put_downloaded_crl(&mut self, crl: &DownloadedCrlRecord) -> Result<()> {
        unimplemented!("placeholder")
    }

    fn delete_downloaded_crls(&mut self) -> Result<usize> {
        unimplemented!("placeholder")
    }

    fn certificates_with_crl(&self) -> Result<Vec<i64>> {
        unimplemented!("placeholder")
    }
}
