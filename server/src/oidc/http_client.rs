//! The HTTP client the OIDC library talks to the identity provider with: the workspace's own
//! hyper + rustls (ring) stack, one HTTP/1.1 connection per request (sign-ins are rare and
//! discovery is cached, so no pool), HTTPS only, no redirects followed, every request bounded
//! in time and in response size. Trusts Mozilla's roots ([`webpki_roots`]) plus the optional
//! `ca_file` of `[ui.oidc]` (an internal IdP's CA).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Largest response body accepted from the identity provider (discovery, keys, tokens).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A request to the identity provider that failed before an HTTP answer came back.
#[derive(Debug, thiserror::Error)]
pub enum IdpHttpError {
    /// Only `https://` URLs are fetched.
    #[error("{0} is not an https:// URL; Dasher talks to the identity provider over TLS only")]
    NotHttps(String),
    /// The URL has no host.
    #[error("{0} has no host name")]
    NoHost(String),
    /// TCP connect failed.
    #[error("could not connect to {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate).
    #[error("TLS with {host} failed: {source} (if the identity provider uses an internal CA, set ui.oidc.ca_file)")]
    Tls {
        /// Host.
        host: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP-level failure.
    #[error("HTTP exchange with {host} failed: {source}")]
    Http {
        /// Host.
        host: String,
        /// Cause.
        source: hyper::Error,
    },
    /// The answer was larger than [`MAX_RESPONSE_BYTES`].
    #[error("the answer from {0} is larger than 1 MiB")]
    TooLarge(String),
    /// No answer within the time bound.
    #[error("{host} did not answer within {secs} seconds")]
    Timeout {
        /// Host.
        host: String,
        /// The bound.
        secs: u64,
    },
}

/// A failure building the client's TLS trust.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA file could not be read.
    #[error("cannot read ui.oidc.ca_file {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("ui.oidc.ca_file {path}: {message}")]
    Pem {
        /// File.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Rustls(String),
}

/// The HTTP client for the identity provider (cheap to clone).
#[derive(Clone)]
pub struct IdpHttpClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for IdpHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpHttpClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl IdpHttpClient {
    /// A client trusting Mozilla's roots plus the certificates in `ca_file`, giving up on a
    /// request after `timeout`.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<IdpHttpClient, TrustError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| TrustError::Read { path: shown.clone(), source })?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TrustError::Pem { path: shown.clone(), message: e.to_string() })?;
            if certs.is_empty() {
                return Err(TrustError::Pem { path: shown, message: "no CERTIFICATE in the file".into() });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TrustError::Pem { path: shown.clone(), message: e.to_string() })?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(IdpHttpClient { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), timeout })
    }

    /// Sends one request and reads the whole answer (any status; redirects are not followed).
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, IdpHttpError> {
        let uri = request.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(IdpHttpError::NotHttps(uri.to_string()));
        }
        let host = uri.host().ok_or_else(|| IdpHttpError::NoHost(uri.to_string()))?.to_owned();
        let secs = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, self.exchange(request, &host))
            .await
            .map_err(|_| IdpHttpError::Timeout { host, secs })?
    }

    async fn exchange(&self, request: HttpRequest, host: &str) -> Result<HttpResponse, IdpHttpError> {
        let port = request.uri().port_u16().unwrap_or(443);
        // `http::Uri` keeps the brackets of an IPv6 literal; sockets and SNI want it bare.
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|source| IdpHttpError::Connect { host: host.to_owned(), port, source })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(bare).map_err(|e| IdpHttpError::Tls {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        let tls =
            self.tls.connect(name, tcp).await.map_err(|source| IdpHttpError::Tls { host: host.to_owned(), source })?;
        let http_err = |source| IdpHttpError::Http { host: host.to_owned(), source };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(http_err)?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let (mut parts, body) = request.into_parts();
        // HTTP/1.1 origin form plus Host, as servers expect from a client.
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.to_owned());
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        parts.uri = path.parse().expect("a path and query taken from a valid URI");
        if let Ok(value) = http::HeaderValue::from_str(&authority) {
            parts.headers.insert(http::header::HOST, value);
        }
        let answer = sender.send_request(http::Request::from_parts(parts, Full::new(Bytes::from(body)))).await;
        let result = match answer {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                    Ok(collected) => Ok(http::Response::from_parts(parts, collected.to_bytes().to_vec())),
                    Err(e) => match e.downcast::<hyper::Error>() {
                        Ok(e) => Err(http_err(*e)),
                        Err(_) => Err(IdpHttpError::TooLarge(host.to_owned())),
                    },
                }
            }
            Err(e) => Err(http_err(e)),
        };
        driver.abort();
        result
    }
}

impl<'c> AsyncHttpClient<'c> for IdpHttpClient {
    type Error = IdpHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
