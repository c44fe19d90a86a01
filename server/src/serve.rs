//! The accept loops: one per listener (the main one and, with `admin.listen`, the admin
//! one). Owns connection-level limits and graceful draining; never reads bodies.
//!
//! Every connection state has a bound:
//! - TLS handshake: `limits.header_read_timeout_secs`;
//! - the first request (protocol detection, a partial HTTP/2 preface, HTTP/2 SETTINGS with no
//!   stream, HTTP/1 headers): its headers must be complete within
//!   `limits.header_read_timeout_secs` of accept, or of the TLS handshake's end (hyper's own
//!   HTTP/1 header timeout as well);
//! - idle between requests (HTTP/1 keep-alive, HTTP/2 with no open stream):
//!   `limits.idle_connection_timeout_secs` (hyper's HTTP/1 header timeout also runs from the end
//!   of the previous request, so an idle HTTP/1 connection goes after the smaller of the two);
//! - HTTP/2: keep-alive pings (`limits.http2_keep_alive_interval_secs`), at most
//!   `limits.http2_max_concurrent_streams` streams and `limits.http2_max_header_list_bytes`;
//! - closing (idle, evicted): the close handshake (HTTP/2 GOAWAY) gets `header_read_timeout_secs`,
//!   then the socket is dropped.
//!
//! At most `limits.max_connections` are open per listener and `limits.max_connections_per_peer`
//! per client address ([`conns::ConnTable`]). At either limit the longest-idle connection (no
//! request in progress) is closed to make room; only when every connection is busy is the new
//! one refused. Refusals are counted in metrics one by one and logged as one line per reason
//! every [`REFUSAL_LOG_PERIOD`]. On shutdown a loop stops accepting, asks every connection to
//! finish (in-flight requests complete, idle ones close) and waits up to 30 s.

mod conns;

use crate::http::{self, AppState, ConnInfo, Surface};
use crate::tls::{TlsReloader, certificate_names};
use bytes::Bytes;
use conns::{Conn, ConnTable, Refusal, RefusalLog, RequestGuard};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// How long a stopping listener waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Refused connections are logged as one line per reason at most this often.
pub(crate) const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

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

/// What every connection of one listener shares.
struct Shared {
    state: Arc<AppState>,
    surface: Surface,
    tls: Option<Arc<TlsReloader>>,
    builder: auto::Builder<TokioExecutor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    permits: Arc<Semaphore>,
    refusals: RefusalLog,
}

impl Shared {
    fn refuse(&self, why: Refusal) {
        self.state.metrics.record_connection_refused();
        self.refusals.refused(why);
    }
}

/// Accepts until `stop` flips, then drains.
pub(crate) async fn run(listener: Listener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let config = state.sync.config.snapshot();
    let limits = &config.limits;
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs.max(1));
    let idle_timeout = Duration::from_secs(limits.idle_connection_timeout_secs.max(1));
    let table = ConnTable::new(limits.max_connections_per_peer, header_timeout, idle_timeout);
    let shared = Arc::new(Shared {
        builder: builder(limits, header_timeout),
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        state: state.clone(),
        surface: listener.surface,
        tls: listener.tls.clone(),
        header_timeout,
        idle_timeout,
        refusals: RefusalLog::default(),
    });
    // Every connection task holds a sender; the channel closes when the last one ends.
    let (running, mut all_done) = mpsc::channel::<()>(1);
    let mut log_tick = tokio::time::interval_at(Instant::now() + REFUSAL_LOG_PERIOD, REFUSAL_LOG_PERIOD);
    log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                let reservation = match table.reserve(peer.ip()) {
                    Ok(r) => r,
                    Err(why) => {
                        shared.refuse(why);
                        continue;
                    }
                };
                if reservation.replaced {
                    shared.refusals.evicted();
                }
                // At the limit, an idle connection makes room: wait for its permit.
                let permit = match shared.permits.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) if reservation.replaced => None,
                    Err(_) if table.evict_longest_idle() => {
                        shared.refusals.evicted();
                        None
                    }
                    Err(_) => {
                        shared.refuse(Refusal::ConnectionLimit);
                        continue;
                    }
                };
                // Registered here, in accept order, so "longest idle" means what it says.
                let admitted = match permit {
                    Some(p) => Ok(reservation.register(p)),
                    None => Err(reservation),
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let stop = stop.clone();
                let running = running.clone();
                tokio::spawn(async move {
                    let _running = running;
                    let conn = match admitted {
                        Ok(conn) => conn,
                        // The closing connection gets `header_timeout` for its close handshake.
                        Err(reservation) => {
                            let wait = 2 * shared.header_timeout;
                            match tokio::time::timeout(wait, shared.permits.clone().acquire_owned()).await {
                                Ok(Ok(p)) => reservation.register(p),
                                _ => {
                                    shared.refuse(Refusal::ConnectionLimit);
                                    return;
                                }
                            }
                        }
                    };
                    let open = shared.state.metrics.connections_open().clone();
                    open.inc();
                    let _open = OpenGuard(open);
                    serve_tcp(stream, peer, conn, shared, stop).await;
                });
            }
            _ = log_tick.tick() => shared.refusals.flush(REFUSAL_LOG_PERIOD),
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    drop(running);
    if tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), all_done.recv()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {} s", DRAIN_TIMEOUT.as_secs());
    }
    shared.refusals.flush(REFUSAL_LOG_PERIOD);
}

/// The hyper builder with every protocol bound from `[limits]`.
fn builder(limits: &crate::config::Limits, header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut h2 = builder.http2();
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(limits.http2_max_header_list_bytes);
    if limits.http2_keep_alive_interval_secs > 0 {
        let interval = Duration::from_secs(limits.http2_keep_alive_interval_secs);
        // A peer that does not answer a ping within the same time is gone.
        h2.keep_alive_interval(interval).keep_alive_timeout(interval);
    }
    builder
}

/// Resolves once the server is stopping (or its handle is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one accepted connection: the TLS handshake if configured, then HTTP.
async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Conn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let surface = shared.surface;
    let Some(tls) = shared.tls.clone() else {
        let info = ConnInfo { surface, tls: false, peer_names: None };
        return serve_connection(stream, peer, info, conn, shared, stop).await;
    };
    let handshake = tokio::time::timeout(shared.header_timeout, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = conn.evicted() => return,
        _ = stopping(&mut stop) => return,
    };
    conn.restart_idle_clock();
    let peer_names = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(certificate_names);
    let info = ConnInfo { surface, tls: true, peer_names };
    serve_connection(stream, peer, info, conn, shared, stop).await;
}

/// Serves HTTP on `io` until the peer closes, the connection stays idle past its bound, the
/// table evicts it, or the server stops; then closes it gracefully within a bound.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    info: ConnInfo,
    conn: Conn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let info = Arc::new(info);
    let service = {
        let (conn, state) = (conn.clone(), shared.state.clone());
        hyper::service::service_fn(move |req| {
            let request = conn.request_started();
            let (state, info) = (state.clone(), info.clone());
            async move {
                let resp = http::handle(state, req, info).await;
                Ok::<_, Infallible>(resp.map(|body| TrackedBody { body, _request: request }))
            }
        })
    };
    let connection = shared.builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let (grace, why) = loop {
        // While a request is in progress there is no idle deadline: look again later.
        let wake = conn.idle_deadline().unwrap_or_else(|| Instant::now() + shared.idle_timeout);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopping(&mut stop) => break (DRAIN_TIMEOUT, "server stopping"),
            _ = conn.evicted() => break (shared.header_timeout, "idle connection closed to admit a new one"),
            _ = tokio::time::sleep_until(wake) => {
                if conn.idle_deadline().is_some_and(|d| d <= Instant::now()) {
                    break (shared.header_timeout, "idle past its bound");
                }
            }
        }
    };
    tracing::debug!(%peer, why, "closing connection");
    conn.closing();
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(grace, connection).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error while closing"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!(%peer, "connection did not close within {} s; dropped", grace.as_secs()),
    }
}

/// A response body that counts its request as in progress until hyper is done with it, so a
/// connection writing a large response to a slow client is not idle.
struct TrackedBody {
    body: Full<Bytes>,
    _request: RequestGuard,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
