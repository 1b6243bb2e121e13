//! A fake [`ServiceBackend`] for the service's unit tests: CRLs and targets set by the test,
//! every call recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::ServiceBackend;
use crate::error::{ManagerError, StoreError};
use crate::manager::status::{Counts, Expiry};
use crate::manager::{
    CrlRenewal, DownloadTarget, DownloadedCrl, HealthProblem, ServedCrl, Settings, StatusReport,
};
use crate::protocols::crl_download::CrlDownloads;
use crate::protocols::testing::FakeDownloads;
use crate::store::Job;

#[derive(Default)]
pub(crate) struct FakeBackend {
    /// CA name → its CRL
    crls: Mutex<HashMap<String, ServedCrl>>,
    /// every store read fails with this
    store_error: Mutex<Option<String>>,
    settings: Mutex<Settings>,
    /// the CRL-download port: targets, what is offered and stored
    downloads: FakeDownloads,
    /// CAs that renew_due_crls reports (Ok) and one that fails
    due: Mutex<Vec<String>>,
    failing_ca: Mutex<Option<String>>,
    renew_calls: Mutex<Vec<Duration>>,
    next_number: AtomicU64,
    pub served_calls: AtomicUsize,
    /// how long each served_crl call blocks
    served_delay: Mutex<Duration>,
    /// how long each renew_due_crls call blocks, and how many have returned
    renew_delay: Mutex<Duration>,
    pub renewals_done: AtomicUsize,
    /// what `health` reports
    problems: Mutex<Vec<HealthProblem>>,
    /// what `status` reports (an empty store when unset)
    status: Mutex<Option<StatusReport>>,
    /// jobs another node leads
    led_elsewhere: Mutex<Vec<Job>>,
}

/// The report of an empty store at `generated`.
pub(crate) fn empty_report(generated: i64) -> StatusReport {
    StatusReport {
        generated,
        counts: Counts::default(),
        ca_tree: Vec::new(),
        more_cas: 0,
        unrooted: Vec::new(),
        more_unrooted: 0,
        expiry: Expiry {
            bands: Vec::new(),
            later: 0,
            revoked: 0,
        },
        tokens: Vec::new(),
        crls: Vec::new(),
        more_crls: 0,
        scep_servers: Vec::new(),
        scep_clients: Vec::new(),
    }
}

fn store_error(m: &str) -> ManagerError {
    ManagerError::Store(StoreError::Corrupt(m.to_owned()))
}

impl FakeBackend {
    pub(crate) fn set_crl(&self, crl: ServedCrl) {
        self.crls.lock().unwrap().insert(crl.ca.clone(), crl);
    }

    pub(crate) fn fail_store(&self, message: &str) {
        *self.store_error.lock().unwrap() = Some(message.to_owned());
        self.downloads.fail_store(message);
    }

    pub(crate) fn set_settings(&self, s: Settings) {
        *self.settings.lock().unwrap() = s;
    }

    pub(crate) fn set_targets(&self, targets: Vec<(&str, String)>) {
        self.downloads.set_targets(targets);
    }

    pub(crate) fn refuse_der(&self, der: Vec<u8>, why: &str) {
        self.downloads.refuse_der(der, why);
    }

    pub(crate) fn stored(&self) -> Vec<(DownloadTarget, Vec<u8>)> {
        self.downloads.stored()
    }

    /// how many CRLs were handed to store_downloaded_crl
    pub(crate) fn offered(&self) -> usize {
        self.downloads.offered()
    }

    pub(crate) fn set_due(&self, cas: &[&str], failing: Option<&str>) {
        *self.due.lock().unwrap() = cas.iter().map(|c| c.to_string()).collect();
        *self.failing_ca.lock().unwrap() = failing.map(str::to_owned);
    }

    pub(crate) fn renew_calls(&self) -> Vec<Duration> {
        self.renew_calls.lock().unwrap().clone()
    }

    pub(crate) fn set_served_delay(&self, d: Duration) {
        *self.served_delay.lock().unwrap() = d;
    }

    pub(crate) fn set_problems(&self, problems: Vec<HealthProblem>) {
        *self.problems.lock().unwrap() = problems;
    }

    pub(crate) fn set_led_elsewhere(&self, jobs: &[Job]) {
        *self.led_elsewhere.lock().unwrap() = jobs.to_vec();
    }

    pub(crate) fn set_status(&self, report: StatusReport) {
        *self.status.lock().unwrap() = Some(report);
    }

    pub(crate) fn set_renew_delay(&self, d: Duration) {
        *self.renew_delay.lock().unwrap() = d;
    }

    fn check(&self) -> Result<(), ManagerError> {
        match &*self.store_error.lock().unwrap() {
            Some(m) => Err(store_error(m)),
            None => Ok(()),
        }
    }
}

impl ServiceBackend for FakeBackend {
    fn served_crl(&self, file: &str) -> Result<Option<ServedCrl>, ManagerError> {
        self.served_calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.served_delay.lock().unwrap();
        std::thread::sleep(delay);
        self.check()?;
        let Some(ca) = file.strip_suffix(".crl") else {
            return Ok(None);
        };
        Ok(self.crls.lock().unwrap().get(ca).cloned())
    }

    fn renew_due_crls(&self, max_age: Duration) -> Vec<CrlRenewal> {
        self.renew_calls.lock().unwrap().push(max_age);
        let delay = *self.renew_delay.lock().unwrap();
        std::thread::sleep(delay);
        self.renewals_done.fetch_add(1, Ordering::SeqCst);
        let mut out: Vec<CrlRenewal> = self
            .due
            .lock()
            .unwrap()
            .iter()
            .map(|ca| CrlRenewal {
                ca: ca.clone(),
                result: Ok(self.next_number.fetch_add(1, Ordering::SeqCst) + 1),
            })
            .collect();
        if let Some(ca) = &*self.failing_ca.lock().unwrap() {
            out.push(CrlRenewal {
                ca: ca.clone(),
                result: Err(ManagerError::Key(crate::error::KeyError::TokenAbsent(
                    "token not present".into(),
                ))),
            });
        }
        out
    }

    fn settings(&self) -> Result<Settings, ManagerError> {
        self.check()?;
        Ok(*self.settings.lock().unwrap())
    }

    fn check_store(&self) -> Result<(), ManagerError> {
        self.check()
    }

    fn lead(&self, job: Job) -> Result<bool, ManagerError> {
        self.check()?;
        Ok(!self.led_elsewhere.lock().unwrap().contains(&job))
    }

    fn health(&self) -> Result<Vec<HealthProblem>, ManagerError> {
        self.check()?;
        Ok(self.problems.lock().unwrap().clone())
    }

    fn status(&self) -> Result<StatusReport, ManagerError> {
        self.check()?;
        Ok(self
            .status
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| empty_report(0)))
    }
}

impl CrlDownloads for FakeBackend {
    fn crl_download_targets(&self) -> Result<Vec<DownloadTarget>, ManagerError> {
        self.downloads.crl_download_targets()
    }

    fn store_downloaded_crl(
        &self,
        target: &DownloadTarget,
        der: &[u8],
    ) -> Result<DownloadedCrl, ManagerError> {
        self.downloads.store_downloaded_crl(target, der)
    }
}

/// Log lines written while the returned guard lives, on this thread (a `#[tokio::test]` runs
/// its tasks on the test thread).
pub(crate) struct Logs {
    buf: std::sync::Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

struct LogWriter(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's log output, formatted as `serve` formats it (without colours).
pub(crate) fn capture_logs() -> Logs {
    let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("certman=debug"))
        .with_writer(move || LogWriter(writer.clone()))
        .with_ansi(false)
        .finish();
    Logs {
        buf,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}
