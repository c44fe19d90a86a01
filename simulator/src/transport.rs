//! HTTP as `santasyncservice` does it (reference §2): POST with `User-Agent:
//! santactl-sync/<version>`, extra headers, XSRF fetched once on 403, up to 5 attempts with the
//! real back-off (scaled by a factor for load tests), 30 s per-request timeout, only 200 is
//! success. Plain `http://` to loopback only. Faults (dropped connections, corrupt bodies) are
//! injected here on demand.

use crate::encode::Encoded;
use crate::generation::Generation;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Fault probabilities (0.0–1.0) per request / per sync.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Abort the connection half-way through sending a request body.
    pub drop_connection: f64,
    /// Flip bytes in a request body.
    pub corrupt_body: f64,
    /// Abandon a sync after the first rule-download page (no postflight).
    pub kill_download: f64,
}

/// A request body that can fail half-way (to drop the connection on purpose).
pub struct FaultBody {
    data: Option<Bytes>,
    fail_after: bool,
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.fail_after {
            self.fail_after = false;
            return Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "fault: drop"))));
        }
        Poll::Ready(None)
    }
    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail_after
    }
    fn size_hint(&self) -> SizeHint {
        if self.fail_after {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Why a request failed after all attempts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A non-200 status.
    #[error("HTTP {0}")]
    Status(u16),
    /// Connection or protocol error.
    #[error("transport: {0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
}

impl RequestError {
    /// A short kind for reports.
    pub fn kind(&self) -> String {
        match self {
            RequestError::Status(s) => format!("http_{s}"),
            RequestError::Transport(_) => "transport".into(),
            RequestError::Timeout => "timeout".into(),
        }
    }
}

/// XSRF state, kept for the "process lifetime" of one simulated client (§2.4).
#[derive(Clone, Debug, Default)]
pub struct Xsrf {
    /// `(header name, token)` once fetched.
    pub token: Option<(String, String)>,
    /// A fetch was attempted (only once per lifetime).
    pub fetched: bool,
}

/// Shared HTTP client and retry policy.
pub struct Transport {
    client: Client<HttpConnector, FaultBody>,
    /// Multiplies the real back-off (1.0 = 4, 8, 16, 32 s).
    pub backoff_scale: f64,
    /// Per-request timeout (30 s like the client).
    pub timeout: Duration,
    /// Faults to inject.
    pub faults: Faults,
    /// Faults are only injected while this is set (cleared for the final convergence round).
    pub faults_enabled: std::sync::atomic::AtomicBool,
    /// Metrics sink.
    pub metrics: Arc<Metrics>,
}

/// One client's request context.
pub struct Caller<'a> {
    /// Santa version for the User-Agent.
    pub santa_version: &'a str,
    /// Generation (retry policy).
    pub generation: Generation,
    /// `SyncExtraHeaders`.
    pub extra_headers: &'a BTreeMap<String, String>,
    /// `SyncBaseURL` with trailing `/`.
    pub base_url: &'a str,
    /// Machine id.
    pub machine_id: &'a str,
}

/// Rejects anything but `http://` to a loopback host (the simulator has no TLS).
pub fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// to loopback is supported"))?;
    let host = rest.split('/').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        Ok(())
    } else {
        Err(format!("{url}: plain http is only allowed to localhost, 127.0.0.1 or ::1"))
    }
}

impl Transport {
    /// A transport with the client's real timeouts.
    pub fn new(metrics: Arc<Metrics>, backoff_scale: f64, faults: Faults) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
        Transport {
            client,
            backoff_scale,
            timeout: Duration::from_secs(30),
            faults,
            faults_enabled: std::sync::atomic::AtomicBool::new(true),
            metrics,
        }
    }

    #[allow(clippy::too_many_arguments)] // one request's knobs; a struct would only rename them
    async fn send_once(
        &self,
        url: &str,
        body: Option<&Encoded>,
        caller: &Caller<'_>,
        xsrf: Option<&(String, String)>,
        timeout: Duration,
        fault_drop: bool,
        fault_corrupt: bool,
    ) -> Result<(u16, http::HeaderMap, Bytes), RequestError> {
        let mut b = hyper::Request::post(url).header("user-agent", format!("santactl-sync/{}", caller.santa_version));
        let mut data = Bytes::new();
        if let Some(e) = body {
            b = b.header("content-type", e.content_type);
            if let Some(ce) = e.content_encoding {
                b = b.header("content-encoding", ce);
            }
            let mut raw = e.body.clone();
            if fault_corrupt && !raw.is_empty() {
                let mid = raw.len() / 2;
                for x in raw.iter_mut().skip(mid.saturating_sub(4)).take(8) {
                    *x ^= 0x5a;
                }
                if e.content_encoding.is_none() {
                    raw.insert(0, b'}');
                }
            }
            data = Bytes::from(raw);
        }
        for (k, v) in caller.extra_headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some((name, token)) = xsrf {
            b = b.header(name.as_str(), token.as_str());
        }
        Metrics::add(&self.metrics.bytes_sent, data.len() as u64);
        let body = if fault_drop {
            let half = data.slice(..data.len() / 2);
            FaultBody { data: Some(half), fail_after: true }
        } else {
            FaultBody { data: Some(data), fail_after: false }
        };
        let req = b.body(body).map_err(|e| RequestError::Transport(e.to_string()))?;
        Metrics::add(&self.metrics.requests, 1);
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| RequestError::Transport(e.to_string()))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.map_err(|e| RequestError::Transport(e.to_string()))?.to_bytes();
            Ok::<_, RequestError>((status, headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(timeout, fut).await.map_err(|_| RequestError::Timeout)??;
        Metrics::add(&self.metrics.bytes_received, body.len() as u64);
        Ok((status, headers, body))
    }

    /// POSTs a stage request with the client's retry loop. Returns the 200 body, and whether
    /// a fault was injected into any attempt.
    pub async fn post_stage(
        &self,
        stage: &'static str,
        body: &Encoded,
        caller: &Caller<'_>,
        xsrf: &mut Xsrf,
        rng: &mut impl Rng,
    ) -> (Result<Bytes, RequestError>, bool) {
        let url = format!("{}{stage}/{}", caller.base_url, caller.machine_id);
        let mut last = RequestError::Transport("no attempt".into());
        let mut faulted = false;
        for attempt in 1..=5u32 {
            if attempt >= 2 {
                Metrics::add(&self.metrics.retries, 1);
                let secs = caller.generation.backoff_secs(attempt) as f64 * self.backoff_scale;
                if secs > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
            }
            let on = self.faults_enabled.load(std::sync::atomic::Ordering::Relaxed);
            let drop = on && self.faults.drop_connection > 0.0 && rng.random_bool(self.faults.drop_connection.min(1.0));
            let corrupt = on && self.faults.corrupt_body > 0.0 && rng.random_bool(self.faults.corrupt_body.min(1.0));
            if drop || corrupt {
                faulted = true;
                Metrics::add(&self.metrics.faults_injected, 1);
            }
            let started = Instant::now();
            let result =
                self.send_once(&url, Some(body), caller, xsrf.token.as_ref(), self.timeout, drop, corrupt).await;
            self.metrics.record(stage, started.elapsed().as_micros() as u64);
            match result {
                Ok((200, _, body)) => return (Ok(body), faulted),
                Ok((403, _, _)) if !xsrf.fetched => {
                    xsrf.fetched = true;
                    self.fetch_xsrf(caller, xsrf).await;
                    last = RequestError::Status(403);
                }
                Ok((status, _, _)) => {
                    last = RequestError::Status(status);
                    let transient = matches!(status, 403 | 408 | 429);
                    if (400..500).contains(&status) && !transient && caller.generation.stops_on_4xx() {
                        break;
                    }
                }
                Err(e) => last = e,
            }
        }
        (Err(last), faulted)
    }

    async fn fetch_xsrf(&self, caller: &Caller<'_>, xsrf: &mut Xsrf) {
        let url = format!("{}xsrf/{}", caller.base_url, caller.machine_id);
        let started = Instant::now();
        // Before NPS 2026.2 the XSRF POST did not carry SyncExtraHeaders (§2.4).
        let none = BTreeMap::new();
        let c = Caller {
            extra_headers: if caller.generation.at_least(2026, 2) { caller.extra_headers } else { &none },
            ..*caller
        };
        let r = self.send_once(&url, None, &c, None, Duration::from_secs(10), false, false).await;
        self.metrics.record("xsrf", started.elapsed().as_micros() as u64);
        if let Ok((200, headers, _)) = r
            && let Some(token) = headers.get("x-xsrf-token").and_then(|v| v.to_str().ok())
        {
            let name = headers
                .get("x-xsrf-token-header")
                .and_then(|v| v.to_str().ok())
                .filter(|n| !n.is_empty())
                .unwrap_or("X-XSRF-TOKEN");
            xsrf.token = Some((name.to_owned(), token.to_owned()));
        }
    }

    /// A plain GET with a bearer token (admin API).
    pub async fn get_json(&self, url: &str, bearer: &str) -> Result<serde_json::Value, RequestError> {
        let (status, body) = self.get_text(url, bearer).await?;
        if status != 200 {
            return Err(RequestError::Status(status));
        }
        serde_json::from_slice(&body).map_err(|e| RequestError::Transport(format!("bad JSON: {e}")))
    }

    /// A plain GET with a bearer token returning status and raw body (`/metrics` text).
    pub async fn get_text(&self, url: &str, bearer: &str) -> Result<(u16, Bytes), RequestError> {
        let req = hyper::Request::get(url)
            .header("authorization", format!("Bearer {bearer}"))
            .body(FaultBody { data: None, fail_after: false })
            .map_err(|e| RequestError::Transport(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(|e| RequestError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| RequestError::Transport(e.to_string()))?.to_bytes();
        Ok((status, body))
    }

    /// A JSON request with a bearer token (admin API helpers for tests and `replay`).
    pub async fn send_json(
        &self,
        method: http::Method,
        url: &str,
        bearer: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, Bytes), RequestError> {
        let data = Bytes::from(serde_json::to_vec(body).expect("values serialize"));
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(FaultBody { data: Some(data), fail_after: false })
            .map_err(|e| RequestError::Transport(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(|e| RequestError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| RequestError::Transport(e.to_string()))?.to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http() {
        assert!(check_base_url("http://127.0.0.1:8080/santa/").is_ok());
        assert!(check_base_url("http://localhost/").is_ok());
        assert!(check_base_url("http://[::1]:9/x/").is_ok());
        assert!(check_base_url("http://example.com/").is_err());
        assert!(check_base_url("https://127.0.0.1/").is_err());
    }
}
