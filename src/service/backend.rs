//! The certificate manager as the service's backend: each method is the manager's own.

use std::time::Duration;

use super::ServiceBackend;
use crate::error::ManagerError;
use crate::manager::{CrlRenewal, DownloadTarget, DownloadedCrl, Manager, ServedCrl, Settings};

impl ServiceBackend for Manager {
    fn served_crl(&self, file: &str) -> Result<Option<ServedCrl>, ManagerError> {
        Manager::served_crl(self, file)
    }

    fn renew_due_crls(&self, max_age: Duration) -> Vec<CrlRenewal> {
        Manager::renew_due_crls(self, max_age)
    }

    fn settings(&self) -> Result<Settings, ManagerError> {
        Manager::settings(self)
    }

    fn crl_download_targets(&self) -> Result<Vec<DownloadTarget>, ManagerError> {
        Manager::crl_download_targets(self)
    }

    fn store_downloaded_crl(
        &self,
        target: &DownloadTarget,
        der: &[u8],
    ) -> Result<DownloadedCrl, ManagerError> {
        Manager::store_downloaded_crl(self, target, der)
    }

    fn check_store(&self) -> Result<(), ManagerError> {
        Manager::check_store(self)
    }
}
