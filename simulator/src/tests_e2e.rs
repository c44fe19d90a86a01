//! Client state-machine tests against a scripted sync server on 127.0.0.1 (a stand-in that
//! answers with exact bytes, so every response shape — including broken ones — can be tried).
//! The tests against the real Dasher server live in `tests/tests/e2e/sim_*.rs`.

use crate::client::{ClientConfig, Ctx, SimClient, SyncError};
use crate::encode::{ContentEncoding, WireOptions};
use crate::events::Catalog;
use crate::fleet;
use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::transport::{Faults, RequestError, Transport};
use bytes::Bytes;
use dasher_sdk::wire::{ClientMode, SyncType};
use flate2::read::{GzDecoder, ZlibDecoder};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// A recorded request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    content_type: String,
    content_encoding: String,
    user_agent: String,
    xsrf: String,
    body: String,
}

/// Scripted answers: per stage a queue of `(status, body)`; when a queue is empty the stage
/// answers `200 {}` (rule download: `200 {"rules":[]}`).
#[derive(Default)]
struct Script {
    preflight: VecDeque<(u16, String)>,
    eventupload: VecDeque<(u16, String)>,
    ruledownload: VecDeque<(u16, String)>,
    postflight: VecDeque<(u16, String)>,
    xsrf_token: Option<String>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Script>>;

async fn serve(script: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let script = script.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let script = script.clone();
                    async move {
                        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        let (ct, ce, ua, xsrf) =
                            (h("content-type"), h("content-encoding"), h("user-agent"), h("x-xsrf-token"));
                        let path = req.uri().path().to_owned();
                        let raw = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let mut body = String::new();
                        match ce.as_str() {
                            "deflate" => drop(ZlibDecoder::new(&raw[..]).read_to_string(&mut body)),
                            "gzip" => drop(GzDecoder::new(&raw[..]).read_to_string(&mut body)),
                            _ => body = String::from_utf8_lossy(&raw).into_owned(),
                        }
                        let mut s = script.lock().unwrap();
                        s.seen.push(Seen {
                            path: path.clone(),
                            content_type: ct,
                            content_encoding: ce,
                            user_agent: ua,
                            xsrf: xsrf.clone(),
                            body,
                        });
                        let stage = path.split('/').nth(2).unwrap_or("");
                        let mut resp = hyper::Response::builder();
                        let (status, body) = if stage == "xsrf" {
                            match &s.xsrf_token {
                                Some(t) => {
                                    resp = resp.header("X-XSRF-TOKEN", t.as_str());
                                    (200, "{}".to_owned())
                                }
                                None => (404, String::new()),
                            }
                        } else if s.xsrf_token.as_ref().is_some_and(|t| *t != xsrf) {
                            (403, String::new())
                        } else {
                            let q = match stage {
                                "preflight" => &mut s.preflight,
                                "eventupload" => &mut s.eventupload,
                                "ruledownload" => &mut s.ruledownload,
                                _ => &mut s.postflight,
                            };
                            q.pop_front().unwrap_or_else(|| {
                                (200, if stage == "ruledownload" { r#"{"rules":[]}"#.into() } else { "{}".into() })
                            })
                        };
                        Ok::<_, std::convert::Infallible>(
                            resp.status(status).body(Full::new(Bytes::from(body))).unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}/santa/")
}

struct Rig {
    script: Shared,
    client: SimClient,
    ctx: Ctx,
}

async fn rig(g: Generation, wire: WireOptions) -> Rig {
    let script: Shared = Arc::default();
    let base = serve(script.clone()).await;
    let mix = [(g, 1)];
    let host = fleet::generate(9, 1, &mix).remove(0);
    let config = ClientConfig { base_url: base, wire, ..Default::default() };
    let client = SimClient::new(host, config, ClientMode::Monitor, 9, 0);
    let ctx = Ctx {
        transport: Transport::new(Arc::new(Metrics::default()), 0.0, Faults::default()),
        catalog: Catalog::new(9),
    };
    Rig { script, client, ctx }
}

const PLAIN: WireOptions = WireOptions { encoding: ContentEncoding::None, proto_transfer: false };
const TEAM_ALLOW: &str = r#"{"identifier":"EQHXZ8M8AV","policy":"ALLOWLIST","rule_type":"TEAMID"}"#;
const SID_BLOCK: &str =
    r#"{"identifier":"platform:com.apple.yes","policy":"BLOCKLIST","rule_type":"SIGNINGID","custom_msg":"no"}"#;

impl Rig {
    fn push(&self, stage: &str, status: u16, body: &str) {
        let mut s = self.script.lock().unwrap();
        let q = match stage {
            "preflight" => &mut s.preflight,
            "eventupload" => &mut s.eventupload,
            "ruledownload" => &mut s.ruledownload,
            _ => &mut s.postflight,
        };
        q.push_back((status, body.to_owned()));
    }
    fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
    fn rules(&self) -> usize {
        self.client.state.lock().unwrap().db.synced_len()
    }
}

#[tokio::test]
async fn clean_sync_with_pages_then_remove() {
    let r = rig(Generation::Nps2026_7, WireOptions::default()).await;
    r.push(
        "preflight",
        200,
        r#"{"sync_type":"CLEAN_ALL","batch_size":10,"client_mode":"LOCKDOWN","full_sync_interval":600}"#,
    );
    r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW}],"cursor":"p2"}}"#));
    r.push(
        "ruledownload",
        200,
        &format!(r#"{{"rules":[{SID_BLOCK},{{"identifier":"bad","policy":"ALLOWLIST","rule_type":"BINARY"}}]}}"#),
    );
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    let rep = rep.unwrap();
    assert_eq!(rep.sync_type, SyncType::CleanAll);
    assert_eq!((rep.rules_received, rep.rules_processed, rep.pages), (3, 2, 2));
    assert_eq!(r.rules(), 2);
    let seen = r.seen();
    let stages: Vec<_> = seen.iter().map(|s| s.path.split('/').nth(2).unwrap().to_owned()).collect();
    assert_eq!(stages, ["preflight", "ruledownload", "ruledownload", "postflight"], "clean sync skips event upload");
    assert!(seen[0].body.contains(r#""request_clean_sync":true"#), "fresh install asks for a clean sync");
    assert_eq!(seen[0].content_encoding, "deflate");
    assert_eq!(seen[0].content_type, "application/json");
    assert!(seen[0].user_agent.starts_with("santactl-sync/2026.7."));
    assert!(seen[2].body.starts_with(r#"{"cursor":"p2","machine_id":"#));
    assert!(seen[3].body.contains(r#""rules_received":3,"rules_processed":2"#));
    assert!(seen[3].body.contains(r#""syncType":"CLEAN_ALL""#));
    {
        let st = r.client.state.lock().unwrap();
        assert_eq!(st.settings.client_mode, ClientMode::Lockdown, "settings applied after postflight");
        assert_eq!(st.sync_type_required, SyncType::Normal);
    }
    // Next sync: NORMAL, REMOVE of the TEAMID rule.
    r.push("ruledownload", 200, r#"{"rules":[{"identifier":"EQHXZ8M8AV","policy":"REMOVE","rule_type":"TEAMID"}]}"#);
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert_eq!(rep.unwrap().sync_type, SyncType::Normal);
    assert_eq!(r.rules(), 1);
    let seen = r.seen();
    assert!(!seen[4].body.contains("request_clean_sync"), "flag cleared after a clean sync completed");
    assert!(seen[4].body.contains(r#""signingid_rule_count":1"#));
}

#[tokio::test]
async fn a_type_error_in_a_later_page_applies_nothing_and_keeps_settings() {
    let r = rig(Generation::Nps2026_7, PLAIN).await;
    r.push("preflight", 200, r#"{"client_mode":"LOCKDOWN"}"#);
    r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW}],"cursor":"p2"}}"#));
    r.push("ruledownload", 200, r#"{"rules":[],"cursor":{"page":3}}"#);
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert!(matches!(rep, Err(SyncError::Parse { stage: "ruledownload", .. })), "{rep:?}");
    assert_eq!(r.rules(), 0);
    let st = r.client.state.lock().unwrap();
    assert_eq!(st.settings.client_mode, ClientMode::Monitor, "no postflight → preflight settings not applied");
    assert_eq!(st.sync_type_required, SyncType::CleanAll, "clean request stays pending");
    assert!(r.seen().iter().all(|s| !s.path.contains("postflight")));
}

#[tokio::test]
async fn preflight_failure_retries_then_aborts_and_eventupload_failure_does_not() {
    let r = rig(Generation::Nps2025_6, PLAIN).await;
    for _ in 0..5 {
        r.push("preflight", 500, "");
    }
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert_eq!(rep, Err(SyncError::Request { stage: "preflight", error: RequestError::Status(500) }));
    assert_eq!(r.seen().len(), 5, "5 attempts");
    // Event upload failing (a 400: 2025.6 retries every non-200) does not stop the sync.
    {
        let mut st = r.client.state.lock().unwrap();
        st.pending.push_back((99, Default::default()));
    }
    r.push("preflight", 200, r#"{"sync_type":"NORMAL"}"#);
    for _ in 0..5 {
        r.push("eventupload", 400, "");
    }
    r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW}]}}"#));
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(r.rules(), 1);
    assert_eq!(r.client.state.lock().unwrap().pending.len(), 1, "failed events stay queued");
}

#[tokio::test]
async fn current_clients_stop_on_4xx_and_fetch_xsrf_once() {
    let r = rig(Generation::Nps2026_7, PLAIN).await;
    r.push("preflight", 404, "");
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert!(rep.is_err());
    assert_eq!(r.seen().len(), 1, "NPS ≥ 2026.4 does not retry a 404");
    r.script.lock().unwrap().xsrf_token = Some("tok".into());
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert!(rep.is_ok(), "{rep:?}");
    let seen = r.seen();
    assert!(seen[2].path.ends_with(&format!("/xsrf/{}", r.client.host.machine_id)));
    assert!(seen[3..].iter().all(|s| s.xsrf == "tok"));
}

#[tokio::test]
async fn each_generation_completes_a_sync_with_its_own_encoding() {
    for g in Generation::ALL {
        let r = rig(g, WireOptions::default()).await;
        r.push("preflight", 200, r#"{"sync_type":"CLEAN","clean_sync":true,"batch_size":50}"#);
        r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW},{SID_BLOCK}]}}"#));
        let (rep, _) = r.client.full_sync(&r.ctx).await;
        let rep = rep.unwrap_or_else(|e| panic!("{g}: {e}"));
        // Fresh install (CLEAN_ALL pending) + CLEAN → CLEAN_ALL; < 2024.1 reads clean_sync → all.
        assert_eq!(rep.sync_type, SyncType::CleanAll, "{g}");
        assert_eq!(r.rules(), 2, "{g}");
        let seen = r.seen();
        let post = seen.last().unwrap();
        match g {
            Generation::Gs2023_6 => assert!(post.body.is_empty() && post.content_encoding.is_empty(), "{g}"),
            Generation::Gs2024_5 => assert_eq!(post.body, r#"{"rules_received":2,"rules_processed":2}"#),
            Generation::Gs2024_6 | Generation::Gs2024_7 => {
                assert_eq!(post.content_type, "application/octet-stream");
                assert!(post.body.contains(r#""rules_received":"2""#), "{g}: {}", post.body);
            }
            _ => assert!(post.body.contains(r#""rules_received":2"#)),
        }
        let pre = &seen[0].body;
        assert_eq!(pre.contains("serial_number"), g == Generation::Gs2024_6, "{g}: {pre}");
        assert_eq!(pre.contains("machine_id"), g.is_proto_era(), "{g}");
        assert_eq!(pre.contains("rulesHash"), g == Generation::Nps2026_7, "{g}");
    }
}

#[tokio::test]
async fn a_clean_sync_with_zero_valid_rules_keeps_the_db() {
    let r = rig(Generation::Nps2026_7, PLAIN).await;
    r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW}]}}"#));
    r.push("preflight", 200, r#"{"sync_type":"CLEAN_ALL"}"#);
    assert!(r.client.full_sync(&r.ctx).await.0.is_ok());
    r.push("preflight", 200, r#"{"sync_type":"CLEAN_ALL"}"#);
    r.push("ruledownload", 200, r#"{"rules":[{"identifier":"zz","policy":"BLOCKLIST","rule_type":"TEAMID"}]}"#);
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert_eq!(rep.unwrap().rules_processed, 0);
    assert_eq!(r.rules(), 1, "zero valid rules → DB untouched");
}

#[tokio::test]
async fn blocks_upload_immediately_and_bundle_follow_ups_are_sent() {
    let r = rig(Generation::Nps2026_7, PLAIN).await;
    r.push("preflight", 200, r#"{"client_mode":"LOCKDOWN","enable_bundles":true}"#);
    assert!(r.client.full_sync(&r.ctx).await.0.is_ok());
    let before = r.seen().len();
    // Every execution is a BLOCK_UNKNOWN in lockdown with no rules; the server asks for every
    // bundle's binaries.
    for _ in 0..40 {
        let hashes: Vec<String> = r
            .ctx
            .catalog
            .binaries
            .iter()
            .filter_map(|b| b.bundle_hash.as_ref().map(|h| format!("{:?}", h.0)))
            .collect();
        r.push("eventupload", 200, &format!(r#"{{"event_upload_bundle_binaries":[{}]}}"#, hashes.join(",")));
        r.client.execute(&r.ctx, 1_787_234_591.0).await;
    }
    let uploads: Vec<_> = r.seen()[before..].iter().filter(|s| s.path.contains("eventupload")).cloned().collect();
    assert!(!uploads.is_empty());
    assert!(uploads.iter().any(|u| u.body.contains(r#""decision":"BLOCK_UNKNOWN""#)));
    assert!(uploads.iter().any(|u| u.body.contains(r#""decision":"BUNDLE_BINARY""#)), "bundle follow-ups");
}

#[tokio::test]
async fn pending_events_are_uploaded_in_batch_size_requests() {
    let r = rig(Generation::Nps2026_7, PLAIN).await;
    assert!(r.client.full_sync(&r.ctx).await.0.is_ok()); // the fresh install's clean sync
    {
        let mut st = r.client.state.lock().unwrap();
        for i in 0..7 {
            st.pending.push_back((
                i,
                dasher_sdk::wire::Event { file_sha256: format!("{i:064x}"), decision: 8, ..Default::default() },
            ));
        }
    }
    r.push("preflight", 200, r#"{"batch_size":3}"#);
    let before = r.seen().len();
    let (rep, _) = r.client.full_sync(&r.ctx).await;
    assert_eq!(rep.unwrap().events_uploaded, 7);
    let uploads: Vec<_> = r.seen()[before..].iter().filter(|s| s.path.contains("eventupload")).cloned().collect();
    let sizes: Vec<_> = uploads.iter().map(|u| u.body.matches("file_sha256").count()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert!(r.client.state.lock().unwrap().pending.is_empty());
}

#[tokio::test]
async fn legacy_clients_request_again_on_an_empty_cursor_proto_era_stop() {
    for (g, expected_pages) in [(Generation::Gs2024_5, 2), (Generation::Nps2026_7, 1)] {
        let r = rig(g, PLAIN).await;
        r.push("ruledownload", 200, &format!(r#"{{"rules":[{TEAM_ALLOW}],"cursor":""}}"#));
        let (rep, _) = r.client.full_sync(&r.ctx).await;
        assert_eq!(rep.unwrap().pages, expected_pages, "{g}");
        let seen = r.seen();
        if g == Generation::Gs2024_5 {
            let dl: Vec<_> = seen.iter().filter(|s| s.path.contains("ruledownload")).collect();
            assert_eq!(dl[0].body, "{}");
            assert_eq!(dl[1].body, r#"{"cursor":""}"#);
        }
    }
}
