//! `dasher-sim bench baseline-server`: a trivial hyper endpoint with fixed minimal answers per
//! stage, the denominator of every "vs trivial endpoint" figure.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// The fixed answer per stage: the smallest bodies a strict client accepts.
fn baseline_answer(path: &str) -> (u16, &'static str) {
    match path.rsplit('/').nth(1).unwrap_or("") {
        "preflight" => (200, r#"{"sync_type":"NORMAL","batch_size":50,"full_sync_interval":600}"#),
        "ruledownload" => (200, r#"{"rules":[]}"#),
        "eventupload" | "postflight" => (200, "{}"),
        _ => (404, ""),
    }
}

/// Serves the trivial endpoint (reads and discards the body, answers a constant) until the
/// process ends; returns the bound address.
pub async fn serve_baseline(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let (status, body) = baseline_answer(req.uri().path());
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("valid response"),
                    )
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}
