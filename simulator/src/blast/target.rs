//! The trivial target: answers every Santa stage with a fixed minimal valid response (NORMAL
//! sync, no rules), in JSON or binary protobuf as the request was. Blasting it measures the load
//! generator (and loopback TCP) alone — the ceiling every Dasher figure is compared with.

use super::http1::{self, StageKind};
use dasher_sdk::wire::{PreflightResponse, SyncType};
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Prepared responses, head and body.
struct Answers {
    json: [Vec<u8>; 5],
    proto: [Vec<u8>; 5],
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut out =
        format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n", body.len())
            .into_bytes();
    out.extend_from_slice(body);
    out
}

fn index(s: StageKind) -> usize {
    match s {
        StageKind::Preflight => 0,
        StageKind::EventUpload => 1,
        StageKind::RuleDownload => 2,
        StageKind::Postflight => 3,
        StageKind::Other => 4,
    }
}

impl Answers {
    fn new() -> Answers {
        let json = "application/json";
        let pb = "application/x-protobuf";
        let pre = PreflightResponse {
            sync_type: Some(SyncType::Normal as i32),
            batch_size: Some(50),
            full_sync_interval: Some(600),
            ..Default::default()
        };
        Answers {
            json: [
                response(200, json, br#"{"sync_type":"NORMAL","batch_size":50,"full_sync_interval":600}"#),
                response(200, json, b"{}"),
                response(200, json, br#"{"rules":[]}"#),
                response(200, json, b"{}"),
                response(404, json, b""),
            ],
            // An empty protobuf body is the default message (no rules, no cursor).
            proto: [
                response(200, pb, &pre.encode_to_vec()),
                response(200, pb, b""),
                response(200, pb, b""),
                response(200, pb, b""),
                response(404, pb, b""),
            ],
        }
    }
}

/// Binds `addr` and serves the trivial target until the runtime stops; returns the bound
/// address.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let answers = Arc::new(Answers::new());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(16 << 10);
                while let Ok(Some(req)) = http1::read_request(&mut stream, &mut buf).await {
                    let set = if req.protobuf { &answers.proto } else { &answers.json };
                    if stream.write_all(&set[index(req.stage)]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(local)
}
