//! The service's timers: renewal of local CAs' CRLs (every 24 h by default, as RouterOS), the
//! hourly download of trusted certificates' CRLs when `crl-download=yes`, and the SCEP
//! clients' steps (polls, retries, renewals, next CA).
//!
//! Each is a [`Job`] that one node of a store runs at a time: every round starts by asking
//! the store whether this node leads it ([`ServiceBackend::lead`]), and a node that does not
//! skips the round. When the leader dies, the next node to ask takes the job over, so a job
//! moves within one of its intervals. Serving CRLs and answering SCEP run on every node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{blocking, Config, ServiceBackend, SHUTDOWN_GRACE};
use crate::manager::{renewal_problem, ClientTiming, CrlRenewal, HealthProblem};
use crate::protocols::crl_download::{fetch_crl, store_fetched, DownloadOutcome};
use crate::protocols::fetch::Fetcher;
use crate::protocols::scep::enrolment::Enroller;
use crate::protocols::scep::message::MessageLimits;
use crate::store::Job;

/// When the timers fire, and how long shutdown waits. Built from the config; tests shorten it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// how often to look for CRLs that are due
    pub renew_check: Duration,
    /// the first look, after start
    pub renew_first: Duration,
    /// a CRL older than this is renewed
    pub crl_max_age: Duration,
    /// how often to download trusted certificates' CRLs (when `crl-download=yes`)
    pub download_interval: Duration,
    /// the first download, after start
    pub download_first: Duration,
    /// how long shutdown waits for requests and jobs in flight
    pub grace: Duration,
    /// how often to look for SCEP clients with something to do
    pub scep_interval: Duration,
    /// the SCEP clients' pacing
    pub scep_timing: ClientTiming,
}

impl Schedule {
    /// The schedule a config sets: renewal looks right at start, the first download 10 s later
    /// (the service is up and logging by then).
    pub fn from_config(config: &Config) -> Self {
        Schedule {
            renew_check: Duration::from_secs(config.crl_renew_check),
            renew_first: Duration::ZERO,
            crl_max_age: Duration::from_secs(config.crl_max_age * 3600),
            download_interval: Duration::from_secs(config.crl_download_interval),
            download_first: Duration::from_secs(10),
            grace: SHUTDOWN_GRACE,
            scep_interval: Duration::from_secs(config.scep_client_interval),
            scep_timing: ClientTiming {
                retry_base: Duration::from_secs(config.scep_client_retry),
                check: Duration::from_secs(config.scep_client_check),
            },
        }
    }

    /// A schedule whose timers do not fire within a test.
    #[cfg(test)]
    pub(crate) fn quiet() -> Self {
        let hour = Duration::from_secs(3600);
        Schedule {
            renew_check: hour,
            renew_first: hour,
            crl_max_age: 24 * hour,
            download_interval: hour,
            download_first: hour,
            grace: Duration::from_secs(5),
            scep_interval: hour,
            scep_timing: ClientTiming::default(),
        }
    }
}

/// What the last CRL renewal look found wrong (a token absent, a PIN failed, another
/// failure), for `/health`. Replaced at every look: a CA that stays due is tried again each
/// time, so its problem stays while it lasts, and leaves once its CRL is renewed (by this
/// look, or by the CLI meanwhile). A CA given up on after a PIN failure is no longer tried: the
/// manager reports it (`Manager::health`).
#[derive(Debug, Default)]
pub(crate) struct RenewalProblems(Mutex<Vec<HealthProblem>>);

impl RenewalProblems {
    /// Keeps the problems of one look. A look that could not read the store (reported with no
    /// CA) keeps the previous ones: it says nothing about the CAs.
    pub(crate) fn record(&self, renewals: &[CrlRenewal]) {
        if renewals
            .iter()
            .any(|r| r.ca.is_empty() && r.result.is_err())
        {
            return;
        }
        let problems = renewals.iter().filter_map(renewal_problem).collect();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = problems;
    }

    /// The problems of the last look.
    pub(crate) fn current(&self) -> Vec<HealthProblem> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The jobs this node leads, as its timers last learnt it (`/health` shows them: which node of
/// several renews the CRLs is one request away).
#[derive(Debug, Default)]
pub(crate) struct Leadership(Mutex<Vec<Job>>);

impl Leadership {
    fn set(&self, job: Job, leads: bool) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|j| *j != job);
        if leads {
            jobs.push(job);
        }
    }

    /// The jobs led, in [`Job::ALL`]'s order.
    pub(crate) fn current(&self) -> Vec<Job> {
        let jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Job::ALL.into_iter().filter(|j| jobs.contains(j)).collect()
    }
}

/// Starts the timers; they end when `stop` turns true (or its sender is dropped), never in the
/// middle of a backend call. Each renewal look's problems go to `problems`, what this node
/// leads to `leadership`.
pub(crate) fn spawn(
    backend: Arc<dyn ServiceBackend>,
    schedule: Schedule,
    fetcher: Fetcher,
    problems: Arc<RenewalProblems>,
    leadership: Arc<Leadership>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let renew = {
        let (backend, mut stop) = (backend.clone(), stop.clone());
        let shown = leadership.clone();
        tokio::spawn(async move {
            let mut ticks = ticker(schedule.renew_first, schedule.renew_check);
            let mut leading = Leading::new(Job::CrlRenewal, shown);
            while next_tick(&mut ticks, &mut stop).await {
                if !leading.check(&backend).await {
                    continue;
                }
                if let Some(renewals) = renew_tick(&backend, schedule.crl_max_age).await {
                    problems.record(&renewals);
                }
            }
        })
    };
    let mut handles = vec![renew];
    if let Some(port) = backend.clone().scep_clients() {
        let enroller = Enroller {
            port,
            fetcher: fetcher.clone(),
            limits: MessageLimits::default(),
            timing: schedule.scep_timing,
        };
        let (backend, mut stop) = (backend.clone(), stop.clone());
        let shown = leadership.clone();
        handles.push(tokio::spawn(async move {
            let mut ticks = ticker(Duration::ZERO, schedule.scep_interval);
            let mut leading = Leading::new(Job::ScepClients, shown);
            while next_tick(&mut ticks, &mut stop).await {
                if !leading.check(&backend).await {
                    continue;
                }
                scep_client_tick(&enroller, &mut stop).await;
            }
        }));
    }
    let download = {
        let mut stop = stop;
        let shown = leadership;
        tokio::spawn(async move {
            let mut ticks = ticker(schedule.download_first, schedule.download_interval);
            let mut leading = Leading::new(Job::CrlDownload, shown);
            while next_tick(&mut ticks, &mut stop).await {
                if !leading.check(&backend).await {
                    continue;
                }
                download_tick(&backend, &fetcher, &mut stop).await;
            }
        })
    };
    handles.push(download);
    handles
}

/// One look at the SCEP clients: each one whose time has come takes its step (one after the
/// other; a stop request ends the round between clients or during an exchange). Each outcome
/// is logged; a challenge password never is.
pub(crate) async fn scep_client_tick(enroller: &Enroller, stop: &mut watch::Receiver<bool>) {
    let port = enroller.port.clone();
    let due = match tokio::task::spawn_blocking(move || port.scep_clients_due()).await {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::warn!("SCEP clients skipped: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("SCEP clients skipped: {e}");
            return;
        }
    };
    for name in due {
        let outcome = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            r = enroller.step(&name, false) => r,
        };
        match outcome {
            Ok(Some(v)) => tracing::info!(
                "SCEP client {}: {}{}",
                v.name,
                v.status.as_str(),
                if v.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.detail)
                }
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!("SCEP client {name}: {e}"),
        }
    }
}

/// Whether this node leads a job, asked at each of its rounds; a change is logged once.
pub(crate) struct Leading {
    job: Job,
    /// the last answer (none yet)
    last: Option<bool>,
    /// where it is shown
    shown: Arc<Leadership>,
}

impl Leading {
    pub(crate) fn new(job: Job, shown: Arc<Leadership>) -> Self {
        Leading {
            job,
            last: None,
            shown,
        }
    }

    /// Whether this node runs the job's round now. A store that cannot say is a round
    /// skipped (warned), as a node that cannot reach the store could not do the job either.
    pub(crate) async fn check(&mut self, backend: &Arc<dyn ServiceBackend>) -> bool {
        let job = self.job;
        let leads = match blocking(backend, "asking for leadership", move |b| b.lead(job)).await {
            Ok(Ok(leads)) => leads,
            Ok(Err(e)) => {
                tracing::warn!(
                    "{}: round skipped: cannot tell who leads: {e}",
                    job.as_str()
                );
                false
            }
            Err(e) => {
                tracing::error!("{}: round skipped: {e}", job.as_str());
                false
            }
        };
        if self.last != Some(leads) {
            if leads {
                tracing::info!("{}: this node leads", job.as_str());
            } else {
                tracing::info!("{}: another node leads; this one stands by", job.as_str());
            }
            self.last = Some(leads);
            self.shown.set(job, leads);
        }
        leads
    }
}

fn ticker(first: Duration, every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(Instant::now() + first, every);
    // After a long tick (a slow token, many downloads), wait a full interval again rather
    // than firing the missed ticks back to back.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next tick; false when the service is stopping.
async fn next_tick(ticks: &mut tokio::time::Interval, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => false,
        _ = ticks.tick() => true,
    }
}

/// One renewal look: renews every CRL older than `max_age`, logs each renewal and failure.
/// `None` when the look itself failed (a panic on the blocking pool).
pub(crate) async fn renew_tick(
    backend: &Arc<dyn ServiceBackend>,
    max_age: Duration,
) -> Option<Vec<CrlRenewal>> {
    match blocking(backend, "renewing CRLs", move |b| b.renew_due_crls(max_age)).await {
        Ok(renewals) => {
            for r in &renewals {
                match &r.result {
                    Ok(number) => tracing::info!("CRL of {} renewed: number {number}", r.ca),
                    Err(e) => tracing::error!("CRL of {} not renewed: {e}", r.ca),
                }
            }
            Some(renewals)
        }
        Err(e) => {
            tracing::error!("CRL renewal failed: {e}");
            None
        }
    }
}

/// One download round, if `crl-download=yes` (read now, so that `settings set` takes effect at
/// the next round): every target's CRL fetched, verified and stored by the backend, one after
/// the other. `None` when the round did not run. A stop request ends it between downloads, or
/// during a fetch; a CRL being stored is stored.
pub(crate) async fn download_tick(
    backend: &Arc<dyn ServiceBackend>,
    fetcher: &Fetcher,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<DownloadOutcome>> {
    let settings = match blocking(backend, "reading settings", |b| b.settings()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("CRL download skipped: cannot read the settings: {e}");
            return None;
        }
        Err(e) => {
            tracing::error!("CRL download skipped: {e}");
            return None;
        }
    };
    if !settings.crl_download {
        tracing::debug!("crl-download=no: no CRLs downloaded");
        return None;
    }
    let targets = match blocking(backend, "listing CRL download targets", |b| {
        b.crl_download_targets()
    })
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!("CRL download skipped: cannot list the trusted certificates: {e}");
            return None;
        }
        Err(e) => {
            tracing::error!("CRL download skipped: {e}");
            return None;
        }
    };
    tracing::debug!("downloading {} CRLs", targets.len());
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in targets {
        let fetched = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            r = fetch_crl(fetcher, &target.url) => r,
        };
        let outcome = store_fetched(backend, target, fetched).await;
        outcome.log();
        outcomes.push(outcome);
    }
    Some(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Settings;
    use crate::protocols::crl_download::DownloadError;
    use crate::protocols::testing::{fake_der, test_fetcher, test_limits, Reply, TestServer};
    use crate::service::testing::{capture_logs, FakeBackend};

    fn backend(fake: &Arc<FakeBackend>) -> Arc<dyn ServiceBackend> {
        fake.clone()
    }

    #[tokio::test]
    async fn a_renewal_tick_renews_with_the_max_age_and_logs_each_ca() {
        let logs = capture_logs();
        let fake = Arc::new(FakeBackend::default());
        fake.set_due(&["a", "b c"], Some("card-ca"));
        let max_age = Duration::from_secs(24 * 3600);
        let renewals = renew_tick(&backend(&fake), max_age).await.unwrap();
        assert_eq!(fake.renew_calls(), [max_age]);
        let got: Vec<(String, Option<u64>)> = renewals
            .iter()
            .map(|r| (r.ca.clone(), r.result.as_ref().ok().copied()))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), Some(1)),
                ("b c".to_owned(), Some(2)),
                ("card-ca".to_owned(), None)
            ]
        );
        let text = logs.text();
        assert!(
            text.contains("INFO") && text.contains("CRL of a renewed: number 1"),
            "{text}"
        );
        assert!(text.contains("CRL of b c renewed: number 2"), "{text}");
        assert!(
            text.contains("ERROR")
                && text.contains("CRL of card-ca not renewed: token absent: token not present"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn renewal_problems_are_those_of_the_last_look() {
        use crate::manager::HealthReason;
        let fake = Arc::new(FakeBackend::default());
        let problems = RenewalProblems::default();
        fake.set_due(&["a"], Some("card-ca"));
        let max_age = Duration::from_secs(3600);
        problems.record(&renew_tick(&backend(&fake), max_age).await.unwrap());
        let now = problems.current();
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].reason, HealthReason::TokenAbsent);
        assert_eq!(now[0].ca.as_deref(), Some("card-ca"));
        assert!(now[0].message.contains("\"card-ca\""), "{}", now[0].message);
        assert_eq!(
            now[0].detail.as_deref(),
            Some("token absent: token not present")
        );
        // A look that could not read the store says nothing about the CAs: kept.
        problems.record(&[CrlRenewal {
            ca: String::new(),
            result: Err(crate::error::ManagerError::InvalidValue("locked".into())),
        }]);
        assert_eq!(problems.current().len(), 1);
        // The token is back: the next look renews, and the problem is gone.
        fake.set_due(&["a", "card-ca"], None);
        problems.record(&renew_tick(&backend(&fake), max_age).await.unwrap());
        assert!(problems.current().is_empty());
    }

    #[tokio::test]
    async fn a_download_tick_does_nothing_with_crl_download_off() {
        let s = TestServer::start(vec![("/a.crl", Reply::Body(fake_der(10)))]);
        let fake = Arc::new(FakeBackend::default());
        fake.set_targets(vec![("root", s.url("/a.crl"))]);
        let (_tx, mut stop) = watch::channel(false);
        let l = test_limits();
        let r = download_tick(&backend(&fake), &test_fetcher(&l), &mut stop).await;
        assert!(r.is_none());
        assert_eq!(fake.offered(), 0);
        assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_download_tick_stores_good_crls_and_logs_refusals() {
        let logs = capture_logs();
        let good = fake_der(10);
        let bad = fake_der(11);
        let s = TestServer::start(vec![
            ("/good.crl", Reply::Body(good.clone())),
            ("/bad.crl", Reply::Body(bad.clone())),
        ]);
        let fake = Arc::new(FakeBackend::default());
        fake.set_settings(Settings {
            crl_download: true,
            crl_use: false,
        });
        fake.set_targets(vec![
            ("root", s.url("/good.crl")),
            ("ca", s.url("/bad.crl")),
            ("tls", "https://example.invalid/x.crl".into()),
        ]);
        fake.refuse_der(bad, "signature does not verify");
        let (_tx, mut stop) = watch::channel(false);
        let l = test_limits();
        let outcomes = download_tick(&backend(&fake), &test_fetcher(&l), &mut stop)
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].result.is_ok());
        assert!(matches!(outcomes[1].result, Err(DownloadError::Refused(_))));
        assert!(matches!(outcomes[2].result, Err(DownloadError::Fetch(_))));
        assert_eq!(fake.stored().len(), 1);
        assert_eq!(fake.stored()[0].1, good);
        let text = logs.text();
        let good_line = format!(
            "CRL from {} for root stored: issuer root, number 7, 0 entries",
            s.url("/good.crl")
        );
        let bad_line = format!(
            "CRL from {} for ca refused: signature does not verify",
            s.url("/bad.crl")
        );
        assert!(text.contains(&good_line), "{text}");
        assert!(text.contains(&bad_line), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains(" WARN ") && l.contains(&bad_line)),
            "{text}"
        );
        assert!(
            text.contains("CRL download from https://example.invalid/x.crl for tls failed: https:// CRL distribution points are not downloaded"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_download_tick_stops_between_downloads_when_asked() {
        let s = TestServer::start(vec![("/a.crl", Reply::Body(fake_der(10)))]);
        let fake = Arc::new(FakeBackend::default());
        fake.set_settings(Settings {
            crl_download: true,
            crl_use: false,
        });
        fake.set_targets(vec![("a", s.url("/a.crl")), ("b", s.url("/a.crl"))]);
        let (tx, mut stop) = watch::channel(false);
        tx.send(true).unwrap();
        let l = test_limits();
        let outcomes = download_tick(&backend(&fake), &test_fetcher(&l), &mut stop)
            .await
            .unwrap();
        assert!(outcomes.is_empty());
        assert_eq!(fake.offered(), 0);
    }

    #[tokio::test]
    async fn the_timers_tick_read_the_settings_each_time_and_stop() {
        let der = fake_der(10);
        let s = TestServer::start(vec![("/a.crl", Reply::Body(der.clone()))]);
        let fake = Arc::new(FakeBackend::default());
        fake.set_targets(vec![("root", s.url("/a.crl"))]);
        fake.set_due(&["ca"], None);
        let schedule = Schedule {
            renew_check: Duration::from_millis(40),
            renew_first: Duration::ZERO,
            crl_max_age: Duration::from_secs(7200),
            download_interval: Duration::from_millis(40),
            download_first: Duration::ZERO,
            grace: Duration::from_secs(1),
            scep_interval: Duration::from_secs(3600),
            scep_timing: ClientTiming::default(),
        };
        let (tx, stop) = watch::channel(false);
        let l = test_limits();
        let problems = Arc::new(RenewalProblems::default());
        let handles = spawn(
            backend(&fake),
            schedule,
            test_fetcher(&l),
            problems.clone(),
            Arc::default(),
            stop,
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        // crl-download=no so far: nothing fetched
        assert_eq!(fake.offered(), 0);
        assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // `settings set crl-download=yes` from the CLI: the next round downloads
        fake.set_settings(Settings {
            crl_download: true,
            crl_use: false,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        for h in handles {
            tokio::time::timeout(Duration::from_secs(1), h)
                .await
                .expect("a timer did not stop")
                .unwrap();
        }
        let calls = fake.renew_calls();
        assert!(calls.len() >= 3, "{calls:?}");
        assert!(calls.iter().all(|d| *d == Duration::from_secs(7200)));
        let stored = fake.stored();
        assert!(stored.len() >= 2, "{}", stored.len());
        assert!(stored
            .iter()
            .all(|(t, d)| t.certificate == "root" && *d == der));
        // stopped: no more calls
        let (n_renew, n_stored) = (fake.renew_calls().len(), fake.stored().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            (fake.renew_calls().len(), fake.stored().len()),
            (n_renew, n_stored)
        );
    }

    #[tokio::test]
    async fn a_node_that_does_not_lead_skips_the_rounds_until_it_leads() {
        let logs = capture_logs();
        let fake = Arc::new(FakeBackend::default());
        fake.set_due(&["ca"], None);
        fake.set_settings(Settings {
            crl_download: true,
            crl_use: false,
        });
        fake.set_led_elsewhere(&[Job::CrlRenewal, Job::CrlDownload]);
        let leadership = Arc::new(Leadership::default());
        let mut schedule = Schedule::quiet();
        schedule.renew_check = Duration::from_millis(30);
        schedule.renew_first = Duration::ZERO;
        schedule.download_interval = Duration::from_millis(30);
        schedule.download_first = Duration::ZERO;
        let (tx, stop) = watch::channel(false);
        let l = test_limits();
        let handles = spawn(
            backend(&fake),
            schedule,
            test_fetcher(&l),
            Arc::new(RenewalProblems::default()),
            leadership.clone(),
            stop,
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(fake.renew_calls().is_empty(), "renewed while led elsewhere");
        assert_eq!(fake.offered(), 0);
        assert_eq!(leadership.current(), []);
        // the leader is gone: this node takes renewal over at its next round
        fake.set_led_elsewhere(&[Job::CrlDownload]);
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(true).unwrap();
        for h in handles {
            h.await.unwrap();
        }
        assert!(!fake.renew_calls().is_empty());
        assert_eq!(leadership.current(), [Job::CrlRenewal]);
        let text = logs.text();
        assert_eq!(
            text.matches("crl-renewal: another node leads").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("crl-renewal: this node leads").count(),
            1,
            "{text}"
        );
        assert!(text.contains("crl-download: another node leads"), "{text}");
    }

    #[test]
    fn the_config_sets_the_schedule() {
        let c = Config {
            crl_renew_check: 5,
            crl_max_age: 12,
            crl_download_interval: 600,
            ..Config::default()
        };
        let s = Schedule::from_config(&c);
        assert_eq!(s.renew_check, Duration::from_secs(5));
        assert_eq!(s.crl_max_age, Duration::from_secs(12 * 3600));
        assert_eq!(s.download_interval, Duration::from_secs(600));
        assert_eq!(s.renew_first, Duration::ZERO);
        assert_eq!(s.grace, SHUTDOWN_GRACE);
    }
}
