//! TLS to the PostgreSQL server: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! (URL query parameters), carried out with rustls on the aws-lc-rs provider.
//!
//! What each `sslmode` does (as libpq, except where said):
//! - `disable`: no TLS;
//! - `allow`, `prefer` (the default): TLS when the server offers it, else plain; the server's
//!   certificate is **not** checked, so this protects against a passive listener only
//!   (`allow` is taken as `prefer`: TLS is asked for first);
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert` is
//!   given, which makes it `verify-ca` (libpq does the same when its root file exists);
//! - `verify-ca`: TLS, and the server's certificate must chain to a CA in `sslrootcert=FILE`
//!   (PEM); its names are not checked;
//! - `verify-full`: as `verify-ca`, and the certificate must name the host of the URL (a DNS
//!   name, or an IP address in its subjectAltName).
//!
//! Unlike libpq, no default file is read: `~/.postgresql/root.crt` and `postgresql.crt` count
//! only when the URL names them, and `verify-ca`/`verify-full` without `sslrootcert` are
//! refused. `sslrootcert=system`, `sslcrl` and encrypted client keys (`sslpassword`) are not
//! supported. A unix-socket host never uses TLS (PostgreSQL has none there), whatever the mode.
//! A client certificate (`sslcert` with `sslkey`, PEM) is presented when the server asks; the
//! key file must not be open to group or others (libpq's rule).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use der::Decode;
use postgres::config::SslMode as PgSslMode;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters of a URL, taken out of it (tokio-postgres knows only `sslmode`'s
/// `disable`/`prefer`/`require`, and no file parameter).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TlsParams {
    /// `None`: not given (taken as `prefer`)
    pub(super) mode: Option<SslMode>,
    pub(super) root_cert: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
}

/// `url` without its TLS parameters, and those parameters (values percent-decoded).
pub(super) fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams {
        mode: None,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), params));
    };
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{key}: not UTF-8 once percent-decoded"))
        };
        let path = || -> Result<Option<PathBuf>, String> {
            let v = decoded()?;
            if v.is_empty() {
                return Err(format!("{key}: empty"));
            }
            Ok(Some(PathBuf::from(v)))
        };
        match key {
            "sslmode" => {
                let v = decoded()?;
                params.mode = Some(SslMode::parse(&v).ok_or_else(|| {
                    format!(
                        "sslmode={v}: expected disable, allow, prefer, require, verify-ca or \
                         verify-full"
                    )
                })?);
            }
            "sslrootcert" => {
                params.root_cert = path()?;
                if params.root_cert.as_deref() == Some(Path::new("system")) {
                    return Err(
                        "sslrootcert=system is not supported: name a PEM file of the \
                                CA certificates to trust"
                            .into(),
                    );
                }
            }
            "sslcert" => params.client_cert = path()?,
            "sslkey" => params.client_key = path()?,
            "sslpassword" => {
                return Err(
                    "sslpassword is not supported: give an unencrypted sslkey file \
                            (mode 0600)"
                        .into(),
                )
            }
            "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key} is not supported: the server's certificate is checked against \
                     sslrootcert without revocation"
                ))
            }
            _ => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, params))
}

/// How a store's connections are made: without TLS, or with this connector.
#[derive(Clone)]
pub(super) enum Tls {
    None,
    Rustls(MakeRustls),
}

impl TlsParams {
    /// The sslmode tokio-postgres is to negotiate and the connector for `params`, for a store
    /// whose hosts are `hosts` (`true`: a unix socket; `false`: TCP with a host name or
    /// address).
    pub(super) fn connector(&self, hosts: &[bool]) -> Result<(PgSslMode, Tls), String> {
        let mode = match (self.mode, &self.root_cert) {
            // libpq: require with a root file is verify-ca
            (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
            (Some(m), _) => m,
            (None, _) => SslMode::Prefer,
        };
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("sslcert and sslkey go together: give both files or neither".into());
        }
        if mode == SslMode::Disable {
            return Ok((PgSslMode::Disable, Tls::None));
        }
        let strict = !matches!(mode, SslMode::Allow | SslMode::Prefer);
        if hosts.is_empty() && strict {
            return Err(format!(
                "sslmode={}: TLS needs the server's name or address as host=",
                mode.name()
            ));
        }
        if hosts.iter().all(|unix| *unix) {
            // only unix sockets, or hostaddr= without host= (no name to check: plain, as before)
            return Ok((PgSslMode::Disable, Tls::None));
        }
        if hosts.iter().any(|unix| *unix) && strict {
            return Err(format!(
                "sslmode={}: a unix-socket host cannot use TLS; list TCP hosts only",
                mode.name()
            ));
        }
        let verify = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let Some(file) = &self.root_cert else {
                    return Err(format!(
                        "sslmode={} needs sslrootcert=FILE (PEM, the CA certificates to trust)",
                        mode.name()
                    ));
                };
                Verify::Chain {
                    roots: load_roots(file)?,
                    file: file.clone(),
                    names: mode == SslMode::VerifyFull,
                }
            }
            _ => Verify::Nothing,
        };
        let config = client_config(
            verify,
            self.client_cert.as_deref().zip(self.client_key.as_deref()),
        )?;
        let pg_mode = if strict {
            PgSslMode::Require
        } else {
            PgSslMode::Prefer
        };
        Ok((
            pg_mode,
            Tls::Rustls(MakeRustls {
                config: Arc::new(config),
                mode,
            }),
        ))
    }
}

/// What is checked of the server's certificate.
enum Verify {
    /// nothing (`prefer`, `require`): only that the server holds the key of the certificate
    /// it presents
    Nothing,
    /// its chain to `roots` (read from `file`), and with `names` the host name
    Chain {
        roots: RootCertStore,
        file: PathBuf,
        names: bool,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_roots(file: &Path) -> Result<RootCertStore, String> {
    let shown = file.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("sslrootcert {shown}: {}", pem_error(e)))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: {}", pem_error(e)))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: a certificate is refused: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown}: no PEM certificate in it"));
    }
    Ok(roots)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("not PEM ({e:?})"),
    }
}

fn client_config(verify: Verify, client: Option<(&Path, &Path)>) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(NoCheck(provider.clone())),
        Verify::Chain { roots, file, names } => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert {}: {e}", file.display()))?;
            Arc::new(ChainCheck { inner, names })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert {}: {}", cert.display(), pem_error(e)))?;
            if chain.is_empty() {
                return Err(format!(
                    "sslcert {}: no PEM certificate in it",
                    cert.display()
                ));
            }
            check_key_mode(key)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey {}: {}", key.display(), pem_error(e)))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
    }
}

/// libpq's rule for the client key file: no access for group or others (0640 allowed when
/// root owns it).
fn check_key_mode(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| format!("sslkey {}: {e}", key.display()))?;
    let open = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & open != 0 {
        return Err(format!(
            "sslkey {}: group or others may access it (mode {:04o}): chmod 0600",
            key.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// `prefer`/`require`: any certificate, but the handshake's signatures are checked (the
/// server holds the key of the certificate it shows).
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (`names` false: a name mismatch, found only once the chain is good, is let
/// through) and `verify-full`.
#[derive(Debug)]
struct ChainCheck {
    inner: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres's connector maker: one rustls configuration for every connection.
#[derive(Clone)]
pub(super) struct MakeRustls {
    config: Arc<ClientConfig>,
    mode: SslMode,
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// `domain` is empty for a unix-socket host: tokio-postgres asks that server for TLS
    /// only with `prefer`, which it declines, so the connector is never used.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = if domain.is_empty() {
            None
        } else {
            Some(ServerName::try_from(domain.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("host {domain:?} is neither a DNS name nor an IP address"),
                )
            })?)
        };
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
            mode: self.mode,
        })
    }
}

/// One connection's handshake.
pub(super) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: Option<ServerName<'static>>,
    mode: SslMode,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let Some(name) = self.name else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS without a host name",
                ));
            };
            let host = name.to_str().into_owned();
            self.connector
                .connect(name, stream)
                .await
                .map(RustlsStream)
                .map_err(|e| explain(e, &host, self.mode))
        })
    }
}

/// A handshake's failure in one line that says what was refused.
fn explain(e: io::Error, host: &str, mode: SslMode) -> io::Error {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e;
    };
    let mode = mode.name();
    let text = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not trusted (sslmode={mode}): it does not chain to \
             a CA in sslrootcert"
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => format!(
            "the server's certificate does not name {host} (sslmode={mode}): it names {}",
            if presented.is_empty() {
                "nothing (no subjectAltName)".to_owned()
            } else {
                presented.join(", ")
            }
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            format!("the server's certificate does not name {host} (sslmode={mode})")
        }
        rustls::Error::InvalidCertificate(c) => {
            format!("the server's certificate is refused (sslmode={mode}): {c}")
        }
        other => format!("TLS with {host} failed (sslmode={mode}): {other}"),
    };
    io::Error::new(e.kind(), text)
}

/// A TLS connection to the server.
pub(super) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    /// `tls-server-end-point` (RFC 5929): the server certificate's hash, by the hash of its
    /// signature algorithm (SHA-256 for SHA-1 and MD5), for SCRAM-SHA-256-PLUS.
    fn channel_binding(&self) -> ChannelBinding {
        use const_oid::db::rfc5912 as oids;
        let (_, session) = self.0.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return ChannelBinding::none();
        };
        let Ok(parsed) = x509_cert::Certificate::from_der(cert.as_ref()) else {
            return ChannelBinding::none();
        };
        let oid = parsed.signature_algorithm().oid;
        let digest = if [oids::SHA_384_WITH_RSA_ENCRYPTION, oids::ECDSA_WITH_SHA_384].contains(&oid)
        {
            Sha384::digest(cert.as_ref()).to_vec()
        } else if [oids::SHA_512_WITH_RSA_ENCRYPTION, oids::ECDSA_WITH_SHA_512].contains(&oid) {
            Sha512::digest(cert.as_ref()).to_vec()
        } else if [
            oids::SHA_256_WITH_RSA_ENCRYPTION,
            oids::ECDSA_WITH_SHA_256,
            oids::SHA_1_WITH_RSA_ENCRYPTION,
            oids::MD_5_WITH_RSA_ENCRYPTION,
        ]
        .contains(&oid)
        {
            Sha256::digest(cert.as_ref()).to_vec()
        } else {
            // Ed25519, RSA-PSS (hash in the parameters): no binding, SCRAM without it
            return ChannelBinding::none();
        };
        ChannelBinding::tls_server_end_point(digest)
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_of_the_url() {
        let (rest, p) = split_url(
            "postgresql://ca@db:5432/certman?sslmode=verify-full&application_name=x\
             &sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://ca@db:5432/certman?application_name=x");
        assert_eq!(p.mode, Some(SslMode::VerifyFull));
        assert_eq!(
            p.root_cert.as_deref(),
            Some(Path::new("/etc/ca dir/root.pem"))
        );
        assert_eq!(p.client_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(p.client_key.as_deref(), Some(Path::new("/k.pem")));

        let (rest, p) = split_url("postgresql:///certman?host=/run/pg").unwrap();
        assert_eq!(rest, "postgresql:///certman?host=/run/pg");
        assert_eq!(p.mode, None);
        let (rest, _) = split_url("postgresql://db/certman?sslmode=disable").unwrap();
        assert_eq!(rest, "postgresql://db/certman");

        for bad in [
            "postgresql://db/c?sslmode=on",
            "postgresql://db/c?sslrootcert=system",
            "postgresql://db/c?sslrootcert=",
            "postgresql://db/c?sslpassword=x",
            "postgresql://db/c?sslcrl=/crl.pem",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_map_to_negotiation_and_checks() {
        let p = |mode, root: Option<&str>| TlsParams {
            mode,
            root_cert: root.map(PathBuf::from),
            client_cert: None,
            client_key: None,
        };
        let tcp = [false];
        let unix = [true];
        // no TLS on unix sockets, nor with disable
        for mode in [None, Some(SslMode::Require), Some(SslMode::VerifyFull)] {
            let (m, t) = p(mode, Some("/nonexistent")).connector(&unix).unwrap();
            assert_eq!(m, PgSslMode::Disable);
            assert!(matches!(t, Tls::None));
        }
        let (m, t) = p(Some(SslMode::Disable), None).connector(&tcp).unwrap();
        assert!(m == PgSslMode::Disable && matches!(t, Tls::None));
        // prefer is the default; allow is prefer
        for mode in [None, Some(SslMode::Allow), Some(SslMode::Prefer)] {
            let (m, t) = p(mode, None).connector(&tcp).unwrap();
            assert!(m == PgSslMode::Prefer && matches!(t, Tls::Rustls(_)));
        }
        let (m, _) = p(Some(SslMode::Require), None).connector(&tcp).unwrap();
        assert_eq!(m, PgSslMode::Require);
        // verify-* need a root file; require with one is verify-ca (which reads it)
        let e = p(Some(SslMode::VerifyCa), None)
            .connector(&tcp)
            .err()
            .unwrap();
        assert!(e.contains("needs sslrootcert"), "{e}");
        let e = p(Some(SslMode::Require), Some("/nonexistent/root.pem"))
            .connector(&tcp)
            .err()
            .unwrap();
        assert!(e.starts_with("sslrootcert /nonexistent/root.pem: "), "{e}");
        // a unix socket among TCP hosts cannot do require
        assert!(p(Some(SslMode::Require), None)
            .connector(&[false, true])
            .is_err());
        let mut half = p(Some(SslMode::Require), None);
        half.client_cert = Some("/c.pem".into());
        assert!(half.connector(&tcp).err().unwrap().contains("go together"));
    }
}
