//! The certificate manager as the service's backend: each method is the manager's own (its
//! CRL-download port is implemented in `protocols::crl_download`, its SCEP port in
//! `protocols::scep::server`).

use std::time::Duration;

use super::ServiceBackend;
use crate::error::ManagerError;
use crate::manager::{
    CrlRenewal, HealthProblem, Manager, ScepServerView, ServedCrl, Settings, StatusReport,
};
use crate::protocols::scep::server::ScepCa;
use crate::store::Job;

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

    fn check_store(&self) -> Result<(), ManagerError> {
        Manager::check_store(self)
    }

    fn lead(&self, job: Job) -> Result<bool, ManagerError> {
        Manager::lead(self, job)
    }

    fn health(&self) -> Result<Vec<HealthProblem>, ManagerError> {
        Manager::health(self)
    }

    fn status(&self) -> Result<StatusReport, ManagerError> {
        Manager::status(self)
    }

    fn scep_ca(&self) -> Option<&dyn ScepCa> {
        Some(self)
    }

    fn scep_servers(&self) -> Result<Vec<ScepServerView>, ManagerError> {
        Manager::scep_servers(self)
    }

    fn scep_clients(
        self: std::sync::Arc<Self>,
    ) -> Option<std::sync::Arc<dyn crate::protocols::scep::enrolment::ScepClients>> {
        Some(self)
    }
}
