//! The accept loops: one per listener (the main one and, with `admin.listen`, the admin
//! one). Owns connection-level limits — at most `limits.max_connections` open per
//! listener (more are closed at accept and counted), `limits.header_read_timeout_secs` for
//! request headers and for the TLS handshake — and graceful draining: on shutdown a loop
//! stops accepting and waits up to 30 s for in-flight requests. Never reads bodies.

use crate::http::{self, AppState, ConnInfo, Surface};
use crate::tls::{TlsReloader, certificate_names};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a stopping listener waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener and what it serves.
pub(crate) struct Listener {
    pub(crate) tcp: TcpListener,
    pub(crate) surface: Surface,
    pub(crate) tls: Option<Arc<TlsReloader>>,
}

/// Decrements the open-connections gauge when a connection task ends, however it ends.
struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Accepts until `stop` flips, then drains.
pub(crate) async fn run(listener: Listener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let limits = &state.sync.config.limits;
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs.max(1));
    let max_connections = limits.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    state.metrics.record_connection_refused();
                    tracing::warn!(%peer, max_connections, "connection limit reached; closing a new connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let watcher = graceful.watcher();
                let state = state.clone();
                let tls = listener.tls.clone();
                let surface = listener.surface;
                tokio::spawn(async move {
                    let _permit = permit;
                    let open = state.metrics.connections_open().clone();
                    open.inc();
                    let _guard = OpenGuard(open);
                    match tls {
                        None => {
                            let info = ConnInfo { surface, tls: false, peer_names: None };
                            serve_connection(stream, info, state, watcher, header_timeout).await;
                        }
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            let stream = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let peer_names =
                                stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(certificate_names);
                            let info = ConnInfo { surface, tls: true, peer_names };
                            serve_connection(stream, info, state, watcher, header_timeout).await;
                        }
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {} s", DRAIN_TIMEOUT.as_secs());
    }
}

async fn serve_connection<IO>(io: IO, info: ConnInfo, state: Arc<AppState>, watcher: Watcher, header_timeout: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(state, req, info).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
