//! Downloading the CRLs of trusted certificates from their http CRL distribution points
//! (RouterOS `crl-download`): fetched through [`Fetcher`], then handed to the manager, which
//! verifies and stores them. `certman crl download` and the daemon's hourly job both use it;
//! the manager is reached through the small port [`CrlDownloads`].

use std::sync::Arc;

use super::fetch::{FetchError, FetchLimits, Fetcher, Resource};
use crate::error::ManagerError;
use crate::manager::{DownloadTarget, DownloadedCrl, Manager};

/// What [`fetch_crl`] fetches, for its error messages.
pub const CRL: Resource = Resource {
    name: "CRL",
    locations: "CRL distribution points",
};

/// The PEM label of a CRL (RFC 7468 §5).
const PEM_LABEL: &str = "X509 CRL";

/// What CRL downloads need from the certificate manager. Every method blocks (store, and
/// for the signature check, CPU): async callers go through `spawn_blocking`.
pub trait CrlDownloads: Send + Sync {
    /// The http CDPs of trusted certificates whose CRLs are not made here.
    fn crl_download_targets(&self) -> Result<Vec<DownloadTarget>, ManagerError>;
    /// Verifies a downloaded CRL against the store's trusted certificates and stores it.
    fn store_downloaded_crl(
        &self,
        target: &DownloadTarget,
        der: &[u8],
    ) -> Result<DownloadedCrl, ManagerError>;
}

impl CrlDownloads for Manager {
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
}

/// Downloads a CRL: DER is returned as is, PEM (`-----BEGIN X509 CRL-----`) is converted to
/// DER. Scheme, size, time and redirects are the fetcher's.
pub async fn fetch_crl(fetcher: &Fetcher, url: &str) -> Result<Vec<u8>, FetchError> {
    pem_to_der(fetcher.get(url, CRL).await?)
}

/// A PEM CRL as DER; anything else is handed on as it is (the manager parses and verifies it).
/// Public only for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn pem_to_der(body: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let Some(start) = body.windows(BEGIN.len()).position(|w| w == BEGIN) else {
        return Ok(body);
    };
    // PEM may follow text (`openssl crl -text` output); DER never starts with text.
    if start > 0 && body.first() == Some(&0x30) {
        return Ok(body);
    }
    let (label, der) = der::pem::decode_vec(&body[start..])
        .map_err(|e| FetchError::Content(format!("not a valid PEM file: {e}")))?;
    if label != PEM_LABEL {
        return Err(FetchError::Content(format!(
            "PEM {label} found where an {PEM_LABEL} was expected"
        )));
    }
    Ok(der)
}

/// Why a CRL was not stored, or downloads could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// It could not be downloaded (or the HTTP client could not be set up).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The manager refused it (bad signature, not a CRL, …) or could not store it.
    #[error(transparent)]
    Refused(ManagerError),
    /// The list of targets could not be read.
    #[error(transparent)]
    Targets(ManagerError),
    /// The storing job panicked.
    #[error("{0}")]
    Internal(String),
}

/// The outcome of downloading one target's CRL.
#[derive(Debug)]
pub struct DownloadOutcome {
    /// what was downloaded
    pub target: DownloadTarget,
    /// the stored CRL, or why there is none
    pub result: Result<DownloadedCrl, DownloadError>,
}

impl std::fmt::Display for DownloadOutcome {
    /// One line, as logged and as `crl download` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DownloadTarget { certificate, url } = &self.target;
        match &self.result {
            Ok(crl) => {
                write!(
                    f,
                    "CRL from {url} for {certificate} stored: issuer {}",
                    crl.issuer
                )?;
                if let Some(n) = crl.number {
                    write!(f, ", number {n}")?;
                }
                write!(f, ", {} entries", crl.entries)
            }
            Err(DownloadError::Refused(e)) => {
                write!(f, "CRL from {url} for {certificate} refused: {e}")
            }
            Err(e) => write!(f, "CRL download from {url} for {certificate} failed: {e}"),
        }
    }
}

impl DownloadOutcome {
    /// Logs the outcome: info when stored, warn otherwise.
    pub fn log(&self) {
        match &self.result {
            Ok(_) => tracing::info!("{self}"),
            Err(_) => tracing::warn!("{self}"),
        }
    }
}

/// Downloads and stores one target's CRL.
pub async fn download_one<P>(
    port: &Arc<P>,
    fetcher: &Fetcher,
    target: DownloadTarget,
) -> DownloadOutcome
where
    P: CrlDownloads + ?Sized + 'static,
{
    let fetched = fetch_crl(fetcher, &target.url).await;
    store_fetched(port, target, fetched).await
}

/// Hands a fetched CRL to the manager (on the blocking pool), which verifies and stores it.
pub async fn store_fetched<P>(
    port: &Arc<P>,
    target: DownloadTarget,
    fetched: Result<Vec<u8>, FetchError>,
) -> DownloadOutcome
where
    P: CrlDownloads + ?Sized + 'static,
{
    let result = match fetched {
        Err(e) => Err(DownloadError::Fetch(e)),
        Ok(der) => {
            let (port, t) = (port.clone(), target.clone());
            match tokio::task::spawn_blocking(move || port.store_downloaded_crl(&t, &der)).await {
                Ok(Ok(crl)) => Ok(crl),
                Ok(Err(e)) => Err(DownloadError::Refused(e)),
                Err(e) => Err(DownloadError::Internal(format!(
                    "storing a downloaded CRL: {e}"
                ))),
            }
        }
    };
    DownloadOutcome { target, result }
}

/// `certman crl download`: downloads the CRL of every target now (whatever `crl-download`
/// says), one after the other, and stores those that verify. Blocks; runs its own small
/// runtime.
pub fn download_crls<P>(
    port: &Arc<P>,
    limits: &FetchLimits,
) -> Result<Vec<DownloadOutcome>, DownloadError>
where
    P: CrlDownloads + ?Sized + 'static,
{
    let targets = port
        .crl_download_targets()
        .map_err(DownloadError::Targets)?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    download_with(port, Fetcher::new(*limits)?, targets)
}

fn download_with<P>(
    port: &Arc<P>,
    fetcher: Fetcher,
    targets: Vec<DownloadTarget>,
) -> Result<Vec<DownloadOutcome>, DownloadError>
where
    P: CrlDownloads + ?Sized + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError::Setup(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(async {
        let mut outcomes = Vec::with_capacity(targets.len());
        for target in targets {
            outcomes.push(download_one(port, &fetcher, target).await);
        }
        outcomes
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{
        fake_der, test_fetcher, test_limits, FakeDownloads, Reply, TestServer,
    };

    fn fetch(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(fetch_crl(&test_fetcher(limits), url))
    }

    #[test]
    fn der_is_returned_as_served_and_pem_is_converted() {
        let der = fake_der(300);
        let pem = der::pem::encode_string(PEM_LABEL, der::pem::LineEnding::LF, &der).unwrap();
        let with_text = format!("Certificate Revocation List (CRL):\n  Version 2\n{pem}");
        let cert_pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
        let s = TestServer::start(vec![
            ("/a.crl", Reply::Body(der.clone())),
            ("/a.pem", Reply::Body(pem.into_bytes())),
            ("/text.pem", Reply::Body(with_text.into_bytes())),
            ("/cert.pem", Reply::Body(cert_pem.into_bytes())),
            ("/unsized.crl", Reply::Unsized(der.clone())),
        ]);
        let l = test_limits();
        assert_eq!(fetch(&s.url("/a.crl"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/a.pem"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/text.pem"), &l).unwrap(), der);
        assert_eq!(fetch(&s.url("/unsized.crl"), &l).unwrap(), der);
        let e = fetch(&s.url("/cert.pem"), &l).unwrap_err();
        assert!(matches!(e, FetchError::Content(_)), "{e:?}");
        assert!(e.to_string().contains("PEM CERTIFICATE"), "{e}");
    }

    #[test]
    fn download_crls_stores_what_verifies_and_reports_every_target() {
        let good = fake_der(100);
        let s = TestServer::start(vec![
            ("/good.crl", Reply::Body(good.clone())),
            ("/bad-sig.crl", Reply::Body(fake_der(60))),
        ]);
        let fake = Arc::new(FakeDownloads::default());
        fake.set_targets(vec![
            ("root", s.url("/good.crl")),
            ("other", s.url("/bad-sig.crl")),
            ("gone", s.url("/missing.crl")),
        ]);
        fake.refuse_der(fake_der(60), "signature does not verify");
        let l = test_limits();
        let outcomes = download_with(
            &fake,
            test_fetcher(&l),
            fake.crl_download_targets().unwrap(),
        )
        .unwrap();
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].result.is_ok());
        assert_eq!(
            outcomes[0].to_string(),
            format!(
                "CRL from {} for root stored: issuer root, number 7, 0 entries",
                s.url("/good.crl")
            )
        );
        assert!(matches!(outcomes[1].result, Err(DownloadError::Refused(_))));
        assert_eq!(
            outcomes[1].to_string(),
            format!(
                "CRL from {} for other refused: signature does not verify",
                s.url("/bad-sig.crl")
            )
        );
        assert!(matches!(
            outcomes[2].result,
            Err(DownloadError::Fetch(FetchError::Status(_)))
        ));
        assert_eq!(
            outcomes[2].to_string(),
            format!(
                "CRL download from {} for gone failed: the server answered 404 Not Found",
                s.url("/missing.crl")
            )
        );
        // only the good one reached the store, byte for byte; the refused one was offered
        let stored = fake.stored();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].0.certificate, "root");
        assert_eq!(stored[0].1, good);
        assert_eq!(fake.offered(), 2);
    }

    #[test]
    fn download_crls_without_targets_does_nothing() {
        let fake = Arc::new(FakeDownloads::default());
        assert!(download_crls(&fake, &test_limits()).unwrap().is_empty());
    }

    #[test]
    fn download_crls_reports_a_failing_target_list() {
        let fake = Arc::new(FakeDownloads::default());
        fake.fail_store("disk on fire");
        let e = download_crls(&fake, &test_limits()).unwrap_err();
        assert!(
            matches!(e, DownloadError::Targets(ManagerError::Store(_))),
            "{e:?}"
        );
    }
}
