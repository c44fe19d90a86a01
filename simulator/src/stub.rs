//! A minimal Santa sync server serving one fixed rule set, for smoke-testing the simulator and
//! measuring its own overhead (`dasher-sim stub-server`). It is not Dasher and makes no policy:
//! preflight answers CLEAN when the client asks for one, rule download pages the set with a
//! string cursor, and `GET /api/v1/hosts/{id}/effective-rules` returns the same set.

use bytes::Bytes;
use dasher_sdk::domain::Rule;
use dasher_sdk::wire::{self, Policy, PreflightRequest, RuleType};
use flate2::read::{GzDecoder, ZlibDecoder};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

/// A deterministic rule set of `n` rules (mixed types, like a mature fleet).
pub fn rule_set(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let (rule_type, identifier) = match i % 10 {
                0..5 => (RuleType::SigningId, format!("EQHXZ8M8AV:com.example.app{i}")),
                5..8 => (RuleType::Binary, format!("{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15 + 1)),
                8 => (RuleType::TeamId, format!("T{i:09}")),
                _ => (RuleType::Certificate, format!("{:064x}", i as u128 * 0xC2B2_AE3D_27D4_EB4F + 7)),
            };
            Rule {
                identifier,
                rule_type,
                policy: if i % 7 == 0 { Policy::Blocklist } else { Policy::Allowlist },
                custom_msg: (i % 7 == 0).then(|| "Blocked by IT".to_owned()),
                custom_url: None,
                cel_expr: None,
                notification_app_name: None,
                event_detail_button_label: None,
                comment: None,
            }
        })
        .collect()
}

fn inflate(encoding: &str, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ok = match encoding {
        "deflate" | "zlib" => ZlibDecoder::new(raw).read_to_end(&mut out).is_ok(),
        "gzip" => GzDecoder::new(raw).read_to_end(&mut out).is_ok(),
        _ => return raw.to_vec(),
    };
    if ok { out } else { Vec::new() }
}

/// Serves until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr, rules: Vec<Rule>, page_size: usize) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let rules = Arc::new(rules);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let rules = rules.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let rules = rules.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let enc = req
                            .headers()
                            .get("content-encoding")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let raw = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let body = inflate(&enc, &raw);
                        let (status, out) = answer(&path, &body, &rules, page_size.max(1));
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(out)))
                                .expect("valid response"),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}

fn answer(path: &str, body: &[u8], rules: &[Rule], page: usize) -> (u16, String) {
    if path.starts_with("/api/v1/hosts/") && path.ends_with("/effective-rules") {
        let v = serde_json::json!({"machine_id": path.split('/').nth(4), "version": 1, "rules": rules});
        return (200, v.to_string());
    }
    let stage = path.rsplit('/').nth(1).unwrap_or("");
    match stage {
        "preflight" => {
            let Ok(req) = serde_json::from_slice::<PreflightRequest>(body) else { return (400, "{}".into()) };
            let t = if req.request_clean_sync { "CLEAN" } else { "NORMAL" };
            (
                200,
                format!(
                    r#"{{"sync_type":"{t}","clean_sync":{},"batch_size":50,"full_sync_interval":600}}"#,
                    req.request_clean_sync
                ),
            )
        }
        "ruledownload" => {
            let req: wire::RuleDownloadRequest = serde_json::from_slice(body).unwrap_or_default();
            let start: usize = req.cursor.parse().unwrap_or(0).min(rules.len());
            let end = (start + page).min(rules.len());
            let resp = wire::RuleDownloadResponse {
                rules: rules[start..end].iter().map(Rule::to_wire).collect(),
                cursor: (end < rules.len()).then(|| end.to_string()),
            };
            (200, serde_json::to_string(&resp).expect("responses serialize"))
        }
        "eventupload" | "postflight" => (200, "{}".into()),
        _ => (404, String::new()),
    }
}
