//! TLS termination with rustls (ring provider): certificate and key from PEM files,
//! reloaded when they change, and optional client certificates (mTLS) checked against a
//! CA bundle. With `bind_identity`, a sync request is accepted only if the client
//! certificate's CN or one of its SANs equals the machine id in the URL, so a stolen
//! machine id alone is not enough to speak for a host.
//!
//! Reload is checked at handshake time: each new connection stats the configured files
//! (size and modification time) and, if any changed, builds a new configuration first.
//! A file that fails to parse keeps the previous configuration serving and is logged and
//! counted (`dasher_tls_reloads{reason="error"}`). Must never serve without a certificate.

pub use crate::config::TlsSettings;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A configuration that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {message}")]
    Pem {
        /// File.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The current server configuration, rebuilt when the files change.
pub struct TlsReloader {
    settings: TlsSettings,
    state: Mutex<(Stamp, Arc<ServerConfig>)>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl TlsReloader {
    /// Builds the first configuration; fails if the files are unusable.
    pub fn new(settings: TlsSettings, metrics: Arc<crate::metrics::Metrics>) -> Result<TlsReloader, TlsError> {
        let stamp = stamp(&settings);
        let config = build(&settings)?;
        Ok(TlsReloader { settings, state: Mutex::new((stamp, config)), metrics })
    }

    /// The settings this serves.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// An acceptor with the newest good configuration (rebuilt first if a file changed).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let now = stamp(&self.settings);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.0 {
            // Remember the stamp either way: a broken file is reported once, not per connection.
            state.0 = now;
            match build(&self.settings) {
                Ok(config) => {
                    state.1 = config;
                    self.metrics.record_tls_reload("ok");
                    tracing::info!(cert = %self.settings.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    self.metrics.record_tls_reload("error");
                    tracing::warn!(error = %e, "TLS reload failed; the previous certificate keeps serving");
                }
            }
        }
        tokio_rustls::TlsAcceptor::from(state.1.clone())
    }
}

fn stamp(s: &TlsSettings) -> Stamp {
    [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no CERTIFICATE in the file".into() });
    }
    Ok(certs)
}

fn build(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let chain = certs(&s.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&s.key)?)
        .map_err(|e| TlsError::Pem { path: s.key.clone(), message: format!("no usable private key: {e}") })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| TlsError::Pem { path: ca.clone(), message: e.to_string() })?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !s.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names a verified client certificate vouches for: subject CNs and DNS, URI and
/// e-mail SANs. Empty if the certificate cannot be parsed (rustls already verified it).
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Vec::new() };
    let mut names: Vec<String> =
        parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned())
                }
                _ => {}
            }
        }
    }
    names
}

/// True if `machine_id` is one of `names` (ASCII case-insensitive: DNS names are, and
/// Santa's hardware UUIDs are upper-case hex while certificate tooling often lowercases).
pub fn identity_matches(names: &[String], machine_id: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(machine_id))
}
