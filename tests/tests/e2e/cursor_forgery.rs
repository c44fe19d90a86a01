//! Forged rule-download cursors over real HTTP (issue 11, items 1–2): a cursor is signed with
//! the store's key and bound to its machine and to the host's plan, so an edited, replayed or
//! inflated cursor is 400 and writes nothing; a real one survives a restart; the number of sets
//! a host may get is bounded; a sync request has a server-side time budget (503 after it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dasher_server::config::{Config, TagPolicy};
use dasher_server::sync::cursor::{Cursor, CursorSigner, Position};
use dasher_store::{SERVER_KV_NAMESPACE, StoreSpec};
use dasher_tests::{ClientRules, Reply, TestServer, component};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const PAGE: usize = 2;

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

fn sha(i: u32) -> String {
    format!("{:064x}", 0xc0de_0000u64 + u64::from(i))
}

/// A server with pages of two rules; `global` holds five, `host:B` and the tag set
/// `secret-tag` (only B carries that tag) one each. `store` may name the store to use.
async fn server(store: Option<StoreSpec>) -> TestServer {
    let s = TestServer::start_with(move |c| {
        c.sync.page_size_rules = PAGE;
        if store.is_some() {
            c.store = store;
        }
    })
    .await;
    let global: Vec<Value> =
        (0..5).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "BLOCKLIST"})).collect();
    s.put_rules(Value::Array(global)).await;
    s.put_rules(json!([
        {"identifier": sha(100), "rule_type": "BINARY", "policy": "ALLOWLIST", "rule_set": "host:B"},
        {"identifier": sha(200), "rule_type": "BINARY", "policy": "ALLOWLIST", "rule_set": "secret-tag"},
    ]))
    .await;
    let r = s.admin(Method::PUT, "/api/v1/hosts/B/tags", Some(json!({"tags": ["secret-tag"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    s
}

async fn page(s: &TestServer, id: &str, cursor: Option<&str>) -> Reply {
    let mut body = json!({ "machine_id": id });
    if let Some(c) = cursor {
        body["cursor"] = c.into();
    }
    s.stage("ruledownload", id, &body).await
}

/// Preflight, then the first page; returns that page's cursor.
async fn start_download(s: &TestServer, id: &str) -> String {
    let r = s.stage("preflight", id, &preflight(id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let first = page(s, id, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", String::from_utf8_lossy(&first.body));
    first.json()["cursor"].as_str().expect("more than one page").to_owned()
}

/// Pages from `cursor` to the end; returns the identifiers received.
async fn finish_download(s: &TestServer, id: &str, cursor: String) -> Vec<String> {
    let mut cursor = Some(cursor);
    let mut got = Vec::new();
    for _ in 0..100 {
        let Some(c) = cursor.take() else { return got };
        let r = page(s, id, Some(&c)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        got.extend(v["rules"].as_array().unwrap().iter().map(|r| r["identifier"].as_str().unwrap().to_owned()));
        cursor = v.get("cursor").and_then(Value::as_str).map(str::to_owned);
    }
    panic!("download did not end within 100 pages");
}

/// The host's sync state as the admin API shows it.
async fn sync_state(s: &TestServer, id: &str) -> Value {
    let r = s.admin(Method::GET, &format!("/api/v1/hosts/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["sync"].clone()
}

/// The JSON payload of a `d2.PAYLOAD.TAG` cursor.
fn payload(cursor: &str) -> Value {
    let (signed, _) = cursor.rsplit_once('.').unwrap();
    let b64 = signed.strip_prefix("d2.").expect("a d2. cursor");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

/// `cursor` with its payload replaced and its original tag kept (what a client can forge).
fn with_payload(cursor: &str, payload: &Value) -> String {
    let tag = cursor.rsplit_once('.').unwrap().1;
    format!("d2.{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap()))
}

/// Asserts a 400 naming the cursor that tells the client to start over, with no rules.
fn assert_refused(r: &Reply, why: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["field"], "cursor", "{why}: {v}");
    assert!(v["error"].as_str().unwrap().contains("restart the sync with a new preflight"), "{why}: {v}");
    assert!(v.get("rules").is_none(), "{why}: no rules with a refusal");
}

#[tokio::test]
async fn a_cursor_edited_to_read_other_hosts_sets_is_refused_and_acknowledges_nothing() {
    let s = server(None).await;
    let mut a = ClientRules::default();
    a.sync(&s, "A", preflight("A")).await;
    a.assert_matches_server(&s, "A").await;
    let before = sync_state(&s, "A").await;
    assert!(before["acked"].is_object(), "A acknowledged its first sync");

    let r = s.admin(Method::POST, "/api/v1/hosts/A/clean-sync", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let real = start_download(&s, "A").await;
    let mut forged = payload(&real);
    forged["sets"] = json!(["host:A", "host:B", "secret-tag", "global"]);
    forged["pos"] = json!({"Full": {"set": 1, "after": null}});
    let r = page(&s, "A", Some(&with_payload(&real, &forged))).await;
    assert_refused(&r, "sets edited to B's host set and an unentitled tag set");
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains(&sha(100)) && !body.contains(&sha(200)), "nothing of B's sets leaks: {body}");

    let after = sync_state(&s, "A").await;
    assert_eq!(after["acked"], before["acked"], "A's acknowledged state is unchanged");
    assert!(after["pending"].is_null(), "no forged download was recorded as pending: {after}");

    // The real download goes on, and acknowledges exactly A's sets.
    let rest = finish_download(&s, "A", real).await;
    assert!(!rest.contains(&sha(100)) && !rest.contains(&sha(200)), "{rest:?}");
    let pending = sync_state(&s, "A").await["pending"].clone();
    assert_eq!(pending["rule_sets"], json!(["host:A", "global"]), "{pending}");
}

#[tokio::test]
async fn a_cursor_with_an_edited_snapshot_position_or_machine_keeps_its_old_signature_and_is_refused() {
    let s = server(None).await;
    let real = start_download(&s, "A").await;
    let p = payload(&real);
    let edits: [(&str, Value); 5] = [
        ("at", json!(p["at"].as_u64().unwrap() - 1)),
        ("pos", json!({"Full": {"set": 0, "after": null}})),
        ("pos", json!({"Delta": {"after": {"version": 0, "seq": 0}}})),
        ("sent", json!(0)),
        ("machine", json!("B")),
    ];
    for (field, value) in edits {
        let mut forged = p.clone();
        forged[field] = value.clone();
        let r = page(&s, "A", Some(&with_payload(&real, &forged))).await;
        assert_refused(&r, &format!("{field} = {value}"));
        assert!(r.json()["error"].as_str().unwrap().contains("signature"), "{field}: {}", r.json());
    }
    // An unsigned cursor of the previous format is refused cleanly too.
    let old = format!("d1.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap()));
    assert_refused(&page(&s, "A", Some(&old)).await, "an unsigned d1. cursor");
    assert_refused(&page(&s, "A", Some("not a cursor")).await, "garbage");
    // None of it broke the real download.
    assert_eq!(finish_download(&s, "A", real).await.len(), 5 - PAGE);
}

#[tokio::test]
async fn a_cursor_issued_to_one_machine_is_refused_for_another() {
    let s = server(None).await;
    let for_a = start_download(&s, "A").await;
    let for_b = start_download(&s, "B").await;
    let r = page(&s, "B", Some(&for_a)).await;
    assert_refused(&r, "A's cursor presented by B");
    assert!(r.json()["error"].as_str().unwrap().contains("another machine"), "{}", r.json());
    assert!(sync_state(&s, "B").await["pending"].is_null());
    assert_eq!(finish_download(&s, "B", for_b).await.len(), 7 - PAGE, "B's own download goes on");
}

#[tokio::test]
async fn a_cursor_listing_a_set_many_times_is_refused() {
    let s = server(None).await;
    let real = start_download(&s, "A").await;
    let mut forged = payload(&real);
    let mut sets = vec![json!("host:A")];
    sets.extend(std::iter::repeat_n(json!("global"), 5_000));
    forged["sets"] = Value::Array(sets);
    assert_refused(&page(&s, "A", Some(&with_payload(&real, &forged))).await, "global listed 5,000 times");
    assert!(sync_state(&s, "A").await["pending"].is_null());
}

/// With the store's key (read here the way the server reads it), a correctly signed cursor is
/// still refused unless it names its machine and equals the host's plan.
#[tokio::test]
async fn even_a_correctly_signed_cursor_must_name_its_machine_and_equal_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Config::for_tests(dir.path()).store_spec();
    let store = dasher_store::open(&spec).unwrap();
    let signer = CursorSigner::load(&*store).await.unwrap();
    let key = store.kv_get(SERVER_KV_NAMESPACE, CursorSigner::KEY_NAME).await.unwrap().expect("key stored");
    assert_eq!(key.len(), CursorSigner::KEY_BYTES);
    drop(store);

    let s = server(Some(spec)).await;
    let real = start_download(&s, "A").await;
    start_download(&s, "B").await;
    let c = signer.decode(&real).expect("the server signs with the key kept in the store");
    assert_eq!(c.sets, vec!["host:A".to_owned(), "global".to_owned()]);
    let full = |sets: &[&str]| Cursor {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        pos: Position::Full { set: 0, after: None },
        ..c.clone()
    };

    let wider = signer.encode(&full(&["host:A", "host:B", "secret-tag", "global"]));
    assert_refused(&page(&s, "A", Some(&wider)).await, "signed, but sets beyond A's plan");
    let mut repeated = vec!["host:A"];
    repeated.extend(std::iter::repeat_n("global", 1_000));
    assert_refused(&page(&s, "A", Some(&signer.encode(&full(&repeated)))).await, "signed, global 1,000 times");
    let as_b = Cursor { sets: vec!["host:B".into(), "secret-tag".into(), "global".into()], ..full(&[]) };
    assert_refused(&page(&s, "B", Some(&signer.encode(&as_b))).await, "B's plan, but issued to A");
    let r = page(&s, "A", Some(&signer.encode(&full(&["host:A", "global"])))).await;
    assert_eq!(r.status, StatusCode::OK, "the plan itself, signed: {}", String::from_utf8_lossy(&r.body));
    for id in ["A", "B"] {
        assert!(sync_state(&s, id).await["pending"].is_null(), "{id}: nothing forged was recorded");
    }
}

#[tokio::test]
async fn a_cursor_still_works_after_a_restart_on_the_same_data() {
    let mut s = server(None).await;
    let cursor = start_download(&s, "A").await;
    s.restart().await;
    let rest = finish_download(&s, "A", cursor).await;
    assert_eq!(rest.len(), 5 - PAGE, "the key was kept in the store: the cursor is still valid");
}

#[tokio::test]
async fn a_multi_page_download_still_converges() {
    let s = server(None).await;
    let mut b = ClientRules::default();
    let (t, n, pages) = b.sync(&s, "B", preflight("B")).await;
    assert_eq!((t.as_str(), n), ("CLEAN", 7));
    assert!(pages >= 4, "seven rules in pages of two: {pages} pages");
    b.assert_matches_server(&s, "B").await;
    assert_eq!(sync_state(&s, "B").await["acked"]["rule_sets"], json!(["host:B", "secret-tag", "global"]));
    let (t, n, _) = b.sync(&s, "B", preflight("B")).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 0));
}

#[tokio::test]
async fn a_selection_over_max_rule_sets_per_host_keeps_the_first_sets_and_global() {
    let s = TestServer::start_with(|c| {
        c.limits.max_rule_sets_per_host = 4;
        let sets = (0..10).map(|i| format!("extra-{i}")).collect();
        c.tags.insert("wide".into(), TagPolicy { rule_sets: sets, ..TagPolicy::default() });
    })
    .await;
    s.put_rules(json!([
        {"identifier": sha(1), "rule_type": "BINARY", "policy": "BLOCKLIST"},
        {"identifier": sha(2), "rule_type": "BINARY", "policy": "BLOCKLIST", "rule_set": "extra-9"},
    ]))
    .await;
    s.admin(Method::PUT, "/api/v1/hosts/W/tags", Some(json!({"tags": ["wide"]}))).await;
    let mut w = ClientRules::default();
    w.sync(&s, "W", preflight("W")).await;
    w.assert_matches_server(&s, "W").await;
    let acked = sync_state(&s, "W").await["acked"]["rule_sets"].clone();
    assert_eq!(acked, json!(["host:W", "wide", "extra-0", "global"]), "first three, then global");
    assert!(w.0.contains_key(&("BINARY".into(), sha(1))) && !w.0.contains_key(&("BINARY".into(), sha(2))));
}

/// A request the server cannot finish in `sync_request_timeout_secs` is 503 (retry later): a
/// plugin that spins until its 10 s deadline holds this preflight far beyond the 1 s budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_over_its_time_budget_gets_503() {
    let plugins = tempfile::tempdir().unwrap();
    component("fault-loop", plugins.path());
    let dir = plugins.path().to_owned();
    let s = TestServer::start_with(move |c| {
        c.limits.sync_request_timeout_secs = 1;
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        p.limits.deadline_ms = 10_000;
        c.plugins = Some(p);
    })
    .await;
    let r = s.stage("preflight", "calm", &preflight("calm")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    s.admin(Method::PUT, "/api/v1/hosts/stuck/tags", Some(json!({"tags": ["fault"]}))).await;
    let r = s.stage("preflight", "stuck", &preflight("stuck")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&r.body));
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("limits.sync_request_timeout_secs") && error.contains("retry later"), "{error}");
    let m = String::from_utf8(s.send(Method::GET, "/metrics", &[], vec![]).await.body.to_vec()).unwrap();
    assert!(m.contains(r#"dasher_http_requests_total{stage="preflight",status="503"} 1"#), "{m}");
}

/// The cursor key lives in the server's namespace, which the plugin kv backend refuses even
/// when asked for it by name (plugin namespaces are `plugin:NAME`, so they never are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_cannot_reach_the_server_namespace() {
    use dasher_policy::KvBackend;
    let dir = tempfile::tempdir().unwrap();
    let store = dasher_store::open(&Config::for_tests(dir.path()).store_spec()).unwrap();
    CursorSigner::load(&*store).await.unwrap();
    let kv = dasher_server::policy::plugins::StoreKv::new(store.clone(), tokio::runtime::Handle::current());
    let results = tokio::task::spawn_blocking(move || {
        let key = CursorSigner::KEY_NAME;
        (
            kv.get(SERVER_KV_NAMESPACE, key).is_err(),
            kv.put(SERVER_KV_NAMESPACE, key, b"attacker's key").is_err(),
            kv.delete(SERVER_KV_NAMESPACE, key).is_err(),
            kv.apply(SERVER_KV_NAMESPACE, &[(key.to_owned(), None)].into()).is_err(),
            kv.put("plugin:p", key, b"its own").is_ok(),
        )
    })
    .await
    .unwrap();
    assert_eq!(results, (true, true, true, true, true), "get, put, delete, apply refused; own namespace fine");
    let key = store.kv_get(SERVER_KV_NAMESPACE, CursorSigner::KEY_NAME).await.unwrap().unwrap();
    assert_eq!(key.len(), CursorSigner::KEY_BYTES, "the key is untouched");
}
