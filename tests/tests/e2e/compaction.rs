//! Rule-history compaction over HTTP: the floor follows the oldest version an active host
//! builds on, hosts left behind get a clean sync, and a download whose snapshot was compacted
//! away is told to restart — and every host converges.

use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn preflight(id: &str) -> Value {
    json!({"serial_num": "C02XYZ", "hostname": "h", "os_version": "15.5", "os_build": "24F74",
           "santa_version": "2026.7", "primary_user": "u", "client_mode": "MONITOR", "machine_id": id})
}

fn rule(n: u32) -> Value {
    json!({"identifier": format!("{n:064x}"), "rule_type": "BINARY", "policy": "BLOCKLIST"})
}

async fn compact(s: &TestServer, body: Option<Value>) -> Value {
    let r = s.admin(Method::POST, "/api/v1/maintenance/compact-history", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_active_hosts_need_and_lagging_hosts_resync_clean() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (ClientRules::default(), ClientRules::default());
    let v1 = s.put_rules(json!([rule(1)])).await;
    a.sync(&s, "host-a", preflight("host-a")).await;
    s.put_rules(json!([rule(2)])).await;
    b.sync(&s, "host-b", preflight("host-b")).await;
    let v3 = s.put_rules(json!([rule(3)])).await;

    // Host A acknowledged v1, so nothing it needs may go.
    let r = compact(&s, None).await;
    assert_eq!((r["floor_after"].as_u64(), r["held_by"].as_str()), (Some(v1), Some("host-a")), "{r}");

    // After A catches up by delta, B (at v2) holds the floor.
    let (t, n, _) = a.sync(&s, "host-a", preflight("host-a")).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 2));
    let r = compact(&s, Some(json!({}))).await;
    assert_eq!((r["floor_after"].as_u64(), r["held_by"].as_str()), (Some(v1 + 1), Some("host-b")), "{r}");

    // Hosts not seen within the window don't hold history back.
    let r = compact(&s, Some(json!({"active_within_days": 0}))).await;
    assert!(r["floor_after"].as_u64() <= Some(v3), "{r}");

    // Forcing the floor to the head: B is behind it and gets one clean sync, A stays on deltas.
    let r = compact(&s, Some(json!({"keep_from": v3}))).await;
    assert_eq!(r["floor_after"].as_u64(), Some(v3), "{r}");
    let (t, _, _) = b.sync(&s, "host-b", preflight("host-b")).await;
    assert_eq!(t, "CLEAN");
    b.assert_matches_server(&s, "host-b").await;
    let host = s.admin(Method::GET, "/api/v1/hosts/host-b", None).await.json();
    assert_eq!(host["sync"]["last_sync_reason"], "acknowledged version compacted", "{host}");
    let (t, _, _) = a.sync(&s, "host-a", preflight("host-a")).await;
    assert_eq!(t, "NORMAL");
    a.assert_matches_server(&s, "host-a").await;

    // Bad requests name the problem.
    let r = s.admin(Method::POST, "/api/v1/maintenance/compact-history", Some(json!({"keep_from": v3 + 5}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("keep_from"));
    let r = s.admin(Method::POST, "/api/v1/maintenance/compact-history", Some(json!({"keep": 1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_snapshot_was_compacted_restarts_and_converges() {
    let s = TestServer::start_with(|c| c.sync.page_size_rules = 2).await;
    s.put_rules(json!((1..=5).map(rule).collect::<Vec<_>>())).await;
    let id = "host-c";
    let pre = s.stage("preflight", id, &preflight(id)).await;
    assert_eq!(pre.status, StatusCode::OK);
    let page = s.stage("ruledownload", id, &json!({"machine_id": id})).await.json();
    let cursor = page["cursor"].as_str().expect("a first page of a multi-page download has a cursor").to_owned();

    // The fleet moves on and an admin compacts everything up to the new head.
    let head = s.put_rules(json!([rule(6)])).await;
    compact(&s, Some(json!({"keep_from": head}))).await;
    let r = s.stage("ruledownload", id, &json!({"machine_id": id, "cursor": cursor})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("older than the kept rule history"));

    // The client fails the stage and syncs again from scratch: a full download at the head.
    let mut c = ClientRules::default();
    let (t, n, pages) = c.sync(&s, id, preflight(id)).await;
    assert_ne!(t, "NORMAL");
    assert_eq!(n, 6);
    assert!(pages >= 3, "{pages} pages of at most 2 rules");
    c.assert_matches_server(&s, id).await;
}
