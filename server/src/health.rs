//! `dasher healthcheck`: asks a running server's `/healthz`, for container health checks
//! (a scratch image has no curl).

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `Ok` if `url` (plain `http://`) answers 200 within 5 s; otherwise why not, as a sentence.
pub async fn check(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are checked (the probe runs inside the container)"));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let answer = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| format!("{url} did not answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {e}"))?;
    match answer.status() {
        http::StatusCode::OK => Ok(()),
        status => Err(format!("{url} answered {status}")),
    }
}
