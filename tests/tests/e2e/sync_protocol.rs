//! The real server on loopback, driven over HTTP the way each Santa generation speaks.

use dasher_tests::{ClientRules, TestServer};
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::{Method, StatusCode};
use prost::Message;
use serde_json::{Value, json};
use std::io::Write;

const MID: &str = "50C7E1EB-2EF5-42D4-A084-A7966FC45A95";

fn sha(n: u32) -> String {
    format!("{n:064x}")
}

fn nps_preflight(id: &str) -> Value {
    json!({"serial_num":"C02XXXXXXXXX","hostname":"mac1.example.com","os_version":"15.5","os_build":"24F74",
           "model_identifier":"Mac15,7","santa_version":"2026.7.123456789","primary_user":"alice",
           "client_mode":"MONITOR","machine_id":id,"sipStatus":111,"primary_user_groups":["eng"]})
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn full_then_incremental_syncs_track_every_rule_edit() {
    let s = TestServer::start_with(|c| c.sync.page_size_rules = 7).await;
    let rules: Vec<Value> =
        (0..20).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "BLOCKLIST"})).collect();
    s.put_rules(Value::Array(rules)).await;
    let mut client = ClientRules::default();

    let (t, n, pages) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!((t.as_str(), n, pages), ("CLEAN", 20, 3), "first sync is clean and paged");
    client.assert_matches_server(&s, MID).await;

    let (t, n, _) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 0), "nothing changed, nothing sent");

    // Add, change, remove.
    s.put_rules(json!([
        {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
        {"identifier": sha(1), "rule_type": "BINARY", "policy": "ALLOWLIST", "custom_msg": "ok now"},
        {"identifier": sha(2), "rule_type": "BINARY", "policy": "REMOVE"},
    ]))
    .await;
    let (t, n, _) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 3), "only the three changes are sent");
    client.assert_matches_server(&s, MID).await;
    assert!(!client.0.contains_key(&("BINARY".into(), sha(2))));

    // Host-specific rules win over global ones.
    s.put_rules(json!([{"identifier": sha(3), "rule_type": "BINARY", "policy": "ALLOWLIST", "rule_set": format!("host:{MID}")}]))
        .await;
    let (t, n, _) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 1));
    assert_eq!(client.0[&("BINARY".into(), sha(3))]["policy"], "ALLOWLIST");
    client.assert_matches_server(&s, MID).await;
    // A later global edit of that key is sent, still resolved to the host's rule.
    s.put_rules(json!([{"identifier": sha(3), "rule_type": "BINARY", "policy": "BLOCKLIST", "custom_msg": "global"}]))
        .await;
    let (t, n, _) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 1));
    assert_eq!(client.0[&("BINARY".into(), sha(3))]["policy"], "ALLOWLIST");
    client.assert_matches_server(&s, MID).await;

    // A tag change selects another rule set: one clean sync brings the host there.
    s.put_rules(json!([{"identifier": "platform:com.apple.yes", "rule_type": "SIGNINGID", "policy": "BLOCKLIST", "rule_set": "lab"}]))
        .await;
    let r = s.admin(Method::PUT, &format!("/api/v1/hosts/{MID}/tags"), Some(json!({"tags": ["lab"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let (t, _, _) = client.sync(&s, MID, nps_preflight(MID)).await;
    assert_eq!(t, "CLEAN");
    client.assert_matches_server(&s, MID).await;
    assert!(client.0.contains_key(&("SIGNINGID".into(), "platform:com.apple.yes".into())));

    // Removing the tag: the lab rule leaves the host.
    s.admin(Method::PUT, &format!("/api/v1/hosts/{MID}/tags"), Some(json!({"tags": []}))).await;
    client.sync(&s, MID, nps_preflight(MID)).await;
    client.assert_matches_server(&s, MID).await;
    assert!(!client.0.contains_key(&("SIGNINGID".into(), "platform:com.apple.yes".into())));
}

#[tokio::test]
async fn clean_requests_drift_and_empty_clean_syncs() {
    let s = TestServer::start().await;
    let mut client = ClientRules::default();
    let (t, n, _) = client.sync(&s, "empty-host", nps_preflight("empty-host")).await;
    assert_eq!(t, "CLEAN");
    assert_eq!(n, 1, "an empty clean sync still carries one REMOVE so the client wipes its rules");
    assert!(client.0.is_empty());

    s.put_rules(json!([{"identifier": sha(9), "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
    client.sync(&s, "empty-host", nps_preflight("empty-host")).await;

    // The client asks for a clean sync.
    let mut pre = nps_preflight("empty-host");
    pre["request_clean_sync"] = true.into();
    assert_eq!(client.sync(&s, "empty-host", pre).await.0, "CLEAN");

    // An admin asks for one.
    let r = s.admin(Method::POST, "/api/v1/hosts/empty-host/clean-sync", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(client.sync(&s, "empty-host", nps_preflight("empty-host")).await.0, "CLEAN");
    assert_eq!(client.sync(&s, "empty-host", nps_preflight("empty-host")).await.0, "NORMAL", "request cleared");

    // rulesHash drift: acknowledged "h1", then the host reports "h2".
    let mut pre = nps_preflight("empty-host");
    pre["rulesHash"] = "h1".into();
    let r = s.stage("preflight", "empty-host", &pre).await;
    assert_eq!(r.json()["sync_type"], "NORMAL");
    s.stage("ruledownload", "empty-host", &json!({})).await;
    s.stage("postflight", "empty-host", &json!({"rulesHash": "h1"})).await;
    pre["rulesHash"] = "h2".into();
    assert_eq!(s.stage("preflight", "empty-host", &pre).await.json()["sync_type"], "CLEAN");
}

#[tokio::test]
async fn every_generation_is_parsed_and_answered_in_its_dialect() {
    let s = TestServer::start().await;
    // Legacy 2023.10: all counts present, no machine_id, fcm_token; gets clean_sync only.
    let legacy = json!({"serial_num":"C02ABC","hostname":"old.example.com","os_version":"13.6","os_build":"22G120",
        "model_identifier":"MacBookPro16,1","santa_version":"2023.10.1","primary_user":"","fcm_token":"tok",
        "binary_rule_count":0,"certificate_rule_count":0,"compiler_rule_count":0,"transitive_rule_count":0,
        "teamid_rule_count":0,"signingid_rule_count":0,"client_mode":"MONITOR","request_clean_sync":true});
    let r = s.stage("preflight", "legacy-1", &legacy).await.json();
    assert_eq!(r["clean_sync"], true);
    assert!(r.get("sync_type").is_none(), "clients < 2024.1 only read clean_sync");
    assert_eq!(r["full_sync_interval"], 600);
    assert!(r.get("removable_media_policy").is_none());
    let host = s.admin(Method::GET, "/api/v1/hosts/legacy-1", None).await.json();
    assert_eq!(host["inventory"]["push_notification_token"], "tok");

    // 2024.6: octet-stream, serial_number, counters as strings, deflate body.
    let body = br#"{"serial_number":"C02DEF","santa_version":"2024.6.655965194","binary_rule_count":"12","machine_id":"g-2024-6","client_mode":"LOCKDOWN"}"#;
    let r = s
        .send(
            Method::POST,
            "/santa/preflight/g-2024-6",
            &[("content-type", "application/octet-stream"), ("content-encoding", "deflate")],
            zlib(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["sync_type"], "CLEAN");
    let host = s.admin(Method::GET, "/api/v1/hosts/g-2024-6", None).await.json();
    assert_eq!(host["inventory"]["serial_number"], "C02DEF");
    assert_eq!(host["inventory"]["rule_counts"]["binary"], 12);
    let post = br#"{"rules_received":"3","rules_processed":"3","machine_id":"g-2024-6"}"#;
    let r = s.send(Method::POST, "/santa/postflight/g-2024-6", &[("content-encoding", "gzip")], gzip(post)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), b"{}");

    // Pre-2023.8 postflight: empty body, no headers.
    assert_eq!(s.send(Method::POST, "/santa/postflight/legacy-1", &[], vec![]).await.status, StatusCode::OK);

    // NPS 2026.x: STANDALONE understood; older clients get LOCKDOWN instead (never weaker).
    let s2 = TestServer::start_with(|c| c.defaults.client_mode = Some(dasher_sdk::wire::ClientMode::Standalone)).await;
    assert_eq!(s2.stage("preflight", MID, &nps_preflight(MID)).await.json()["client_mode"], "STANDALONE");
    assert_eq!(s2.stage("preflight", "legacy-1", &legacy).await.json()["client_mode"], "LOCKDOWN");

    // Doctor probe, GET and POST; XSRF is not used.
    assert_eq!(s.send(Method::GET, "/santa/preflight/santactl-doctor-test", &[], vec![]).await.status, StatusCode::OK);
    assert_eq!(s.send(Method::POST, "/santa/preflight/santactl-doctor-test", &[], vec![]).await.status, StatusCode::OK);
    assert_eq!(s.send(Method::POST, "/santa/xsrf/x", &[], vec![]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn binary_protobuf_transfer() {
    use dasher_sdk::wire::{PreflightRequest, PreflightResponse, RuleDownloadRequest, RuleDownloadResponse};
    let s = TestServer::start().await;
    s.put_rules(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}])).await;
    let req = PreflightRequest { santa_version: "2026.7.1".into(), machine_id: "pb".into(), ..Default::default() };
    let ct = [("content-type", "application/x-protobuf")];
    let r = s.send(Method::POST, "/santa/preflight/pb", &ct, req.encode_to_vec()).await;
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let resp = PreflightResponse::decode(r.body.as_ref()).unwrap();
    assert_eq!(resp.sync_type_value(), Some(dasher_sdk::wire::SyncType::Clean));
    let r = s.send(Method::POST, "/santa/ruledownload/pb", &ct, RuleDownloadRequest::default().encode_to_vec()).await;
    let resp = RuleDownloadResponse::decode(r.body.as_ref()).unwrap();
    assert_eq!(resp.rules.len(), 1);
    assert_eq!(resp.rules[0].identifier, "EQHXZ8M8AV");
    assert!(resp.cursor.is_none());
}

#[tokio::test]
async fn events_are_stored_deduplicated_and_queryable() {
    let s = TestServer::start().await;
    let event = |i: u32| {
        json!({"file_sha256": sha(i), "file_path": "/usr/local/bin", "file_name": "tool",
        "decision": "BLOCK_BINARY", "execution_time": 1751111111.5, "pid": 100 + i, "team_id": "EQHXZ8M8AV",
        "signing_chain": [{"sha256": sha(99), "cn": "Developer ID", "valid_from": 1603996358.0, "valid_until": 1792863581}],
        "entitlementInfo": {"entitlementsFiltered": false}, "csFlags": 603980545, "signingStatus": "SIGNING_STATUS_PRODUCTION"})
    };
    let events: Vec<Value> = (0..2000).map(event).collect();
    let r = s.stage("eventupload", MID, &json!({"events": events, "machine_id": MID})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body.as_ref(), b"{}");
    // The same events again (immediate upload + stored copy) plus one legacy "UNKNOWN".
    let mut again: Vec<Value> = (0..10).map(event).collect();
    again.push(json!({"file_sha256": sha(5000), "file_path": "/bin", "file_name": "x", "decision": "UNKNOWN", "quarantine_timestamp": 0}));
    assert_eq!(s.stage("eventupload", MID, &json!({"events": again})).await.status, StatusCode::OK);

    let all = s.admin(Method::GET, &format!("/api/v1/events?machine_id={MID}&limit=10000"), None).await.json();
    assert_eq!(all["events"].as_array().unwrap().len(), 2001, "duplicates skipped, nothing lost");
    let one = s.admin(Method::GET, &format!("/api/v1/events?file_sha256={}", sha(7)), None).await.json();
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    assert_eq!(one["events"][0]["body"]["team_id"], "EQHXZ8M8AV");
    let unknown = s.admin(Method::GET, "/api/v1/events?decision=DECISION_UNKNOWN", None).await.json();
    assert_eq!(unknown["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn data_survives_a_restart_on_both_engines() {
    for engine in ["redb", "sled"] {
        let mut s = TestServer::start_with(|c| {
            c.store = Some(format!("{engine}:{}", c.data_dir.join(format!("db.{engine}")).display()).parse().unwrap())
        })
        .await;
        s.put_rules(json!([{"identifier": sha(1), "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
        let mut client = ClientRules::default();
        client.sync(&s, MID, nps_preflight(MID)).await;
        s.stage("eventupload", MID, &json!({"events": [{"file_sha256": sha(2), "decision": "BLOCK_BINARY"}]})).await;
        s.restart().await;
        s.put_rules(json!([{"identifier": sha(3), "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
        let (t, n, _) = client.sync(&s, MID, nps_preflight(MID)).await;
        assert_eq!((t.as_str(), n), ("NORMAL", 1), "{engine}: the acknowledged version survived the restart");
        client.assert_matches_server(&s, MID).await;
        let ev = s.admin(Method::GET, "/api/v1/events", None).await.json();
        assert_eq!(ev["events"].as_array().unwrap().len(), 1, "{engine}: the event survived the restart");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_server_keeps_serving() {
    let s = TestServer::start_with(|c| {
        c.limits.max_body_bytes = 64 << 10;
        c.limits.max_inflated_bytes = 1 << 20;
        c.limits.max_events_per_upload = 100;
    })
    .await;
    let post = |path: &'static str, headers: Vec<(&'static str, &'static str)>, body: Vec<u8>| {
        let s = &s;
        async move { s.send(Method::POST, path, &headers, body).await }
    };
    let r = post("/santa/preflight/m1", vec![], b"{not json".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("invalid JSON"));
    let r = post("/santa/preflight/m1", vec![], br#"{"binary_rule_count": [1]}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "wrong type");
    let r = post("/santa/preflight/m1", vec![], br#"{"request_clean_sync": "maybe"}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut truncated = zlib(br#"{"serial_num":"C02","hostname":"h"}"#);
    truncated.truncate(8);
    let r = post("/santa/preflight/m1", vec![("content-encoding", "deflate")], truncated).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "truncated zlib");
    let r = post("/santa/preflight/m1", vec![("content-encoding", "gzip")], b"\x1f\x8bgarbage".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "garbage gzip");
    let r = post("/santa/preflight/m1", vec![("content-encoding", "br")], b"{}".to_vec()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bomb = zlib(&vec![b' '; 64 << 20]);
    let r = post("/santa/eventupload/m1", vec![("content-encoding", "deflate")], bomb).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "decompression bomb");
    let r = post("/santa/eventupload/m1", vec![], vec![b' '; 100 << 10]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "oversized body");
    let many: Vec<Value> = (0..101).map(|i| json!({"file_sha256": sha(i), "decision": "BLOCK_BINARY"})).collect();
    let r = s.stage("eventupload", "m1", &json!({"events": many})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "too many events");
    let q = s.admin(Method::GET, "/api/v1/events?machine_id=m1", None).await.json();
    assert!(q["events"].as_array().unwrap().is_empty(), "a refused upload stores nothing");

    for bad in ["/santa/preflight/a%2Fb", "/santa/preflight/..", "/santa/preflight/a%00b", "/santa/preflight/a%20b"] {
        let r = s.send(Method::POST, bad, &[], b"{}".to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json()["field"], "machine_id");
    }
    let long = format!("/santa/preflight/{}", "x".repeat(10_000));
    assert_eq!(s.send(Method::POST, &long, &[], b"{}".to_vec()).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.send(Method::POST, "/santa/preflight/a/b", &[], b"{}".to_vec()).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.send(Method::GET, "/santa/preflight/m1", &[], vec![]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.send(Method::POST, "/santa/preflight/", &[], vec![]).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.send(Method::POST, "/santa/bogus/m1", &[], vec![]).await.status, StatusCode::NOT_FOUND);

    // Cursors the server never issued, issued to another machine, or from the future.
    s.stage("preflight", "m1", &nps_preflight("m1")).await;
    for cursor in ["p2", "d1.e30", "d1.!!"] {
        let r = s.stage("ruledownload", "m1", &json!({"cursor": cursor})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{cursor}");
        assert_eq!(r.json()["field"], "cursor");
    }
    let legacy_object_cursor = s.stage("ruledownload", "m1", &json!({"cursor": {"page": 2}})).await;
    assert_eq!(legacy_object_cursor.status, StatusCode::BAD_REQUEST);
    let s2 = TestServer::start_with(|c| c.sync.page_size_rules = 1).await;
    s2.put_rules(json!([{"identifier": sha(1), "rule_type": "BINARY", "policy": "BLOCKLIST"},
                        {"identifier": sha(2), "rule_type": "BINARY", "policy": "BLOCKLIST"}]))
        .await;
    s2.stage("preflight", "m1", &nps_preflight("m1")).await;
    let first = s2.stage("ruledownload", "m1", &json!({})).await.json();
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    let r = s2.stage("ruledownload", "m2", &json!({"cursor": cursor})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "another machine's cursor");
    let s3 = TestServer::start().await;
    s3.stage("preflight", "m1", &nps_preflight("m1")).await;
    let r = s3.stage("ruledownload", "m1", &json!({"cursor": cursor})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a cursor naming a version this server never had");

    // Postflight without preflight is accepted and acknowledges nothing.
    assert_eq!(s.stage("postflight", "never-seen", &json!({"rules_received": 5})).await.status, StatusCode::OK);

    // Admin input errors name the field; no token, no access.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"rules": [{"identifier": "xyz", "rule_type": "BINARY", "policy": "BLOCKLIST"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "rules[0].identifier");
    let r = s
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"rules": [{"identifier": sha(1), "rule_type": "BINARY", "policy": "MAYBE"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "rules[0]");
    let r = s.admin(Method::POST, "/api/v1/rules", Some(json!({"rules": [{"identifier": sha(1), "rule_type": "BINARY", "policy": "ALLOWLIST", "rule_set": "../x"}]}))).await;
    assert_eq!(r.json()["field"], "rules[0].rule_set");
    let r = s.admin(Method::GET, "/api/v1/events?limit=0", None).await;
    assert_eq!(r.json()["field"], "limit");
    assert_eq!(s.send(Method::GET, "/api/v1/hosts", &[], vec![]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.send(Method::GET, "/api/v1/hosts", &[("authorization", "Bearer nope")], vec![]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Still serving.
    assert_eq!(s.stage("preflight", "m1", &nps_preflight("m1")).await.status, StatusCode::OK);
    assert_eq!(s.send(Method::GET, "/healthz", &[], vec![]).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_event_uploads_during_a_full_sync_lose_nothing() {
    let s = std::sync::Arc::new(TestServer::start_with(|c| c.sync.page_size_rules = 5).await);
    let rules: Vec<Value> =
        (0..50).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "BLOCKLIST"})).collect();
    s.put_rules(Value::Array(rules)).await;
    let uploads: Vec<_> = (0..8)
        .map(|batch| {
            let s = s.clone();
            tokio::spawn(async move {
                let events: Vec<Value> = (0..25)
                    .map(|i| json!({"file_sha256": sha(batch * 100 + i), "decision": "BLOCK_UNKNOWN", "pid": i}))
                    .collect();
                s.stage("eventupload", MID, &json!({"events": events})).await.status
            })
        })
        .collect();
    let mut client = ClientRules::default();
    client.sync(&s, MID, nps_preflight(MID)).await;
    for u in uploads {
        assert_eq!(u.await.unwrap(), StatusCode::OK);
    }
    client.assert_matches_server(&s, MID).await;
    let ev = s.admin(Method::GET, &format!("/api/v1/events?machine_id={MID}&limit=1000"), None).await.json();
    assert_eq!(ev["events"].as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn legacy_clients_without_rules_hash_are_checked_by_rule_counts() {
    let s = TestServer::start().await;
    s.put_rules(json!([{"identifier": sha(1), "rule_type": "BINARY", "policy": "BLOCKLIST"},
                       {"identifier": sha(2), "rule_type": "BINARY", "policy": "ALLOWLIST"},
                       {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}]))
        .await;
    let legacy = |binary: u32, teamid: u32| {
        json!({"serial_num":"C02OLD","santa_version":"2024.5.1","client_mode":"MONITOR","primary_user":"",
               "binary_rule_count": binary,"certificate_rule_count":0,"compiler_rule_count":0,
               "transitive_rule_count":0,"teamid_rule_count": teamid,"signingid_rule_count":0,"cdhash_rule_count":0})
    };
    let mut client = ClientRules::default();
    assert_eq!(client.sync(&s, "old-mac", legacy(0, 0)).await.0, "CLEAN");
    assert_eq!(client.sync(&s, "old-mac", legacy(2, 1)).await.0, "NORMAL", "counts match what was delivered");
    assert_eq!(client.sync(&s, "old-mac", legacy(1, 1)).await.0, "CLEAN", "a rule went missing on the client");
    client.assert_matches_server(&s, "old-mac").await;
}
