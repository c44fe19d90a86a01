//! Issue 11, items 3, 9 and 10 over real loopback HTTP: per-stage body limits, bounded
//! inventory strings and lists (a cut list keeps the host syncing and says so in its record),
//! unknown Santa versions answered as the oldest generation, and a standing CLEAN sync type
//! refused in the config file.

use dasher_sdk::wire::ClientMode;
use dasher_server::config::Config;
use dasher_tests::{ClientRules, TestServer};
use flate2::Compression;
use flate2::write::ZlibEncoder;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Write;

fn preflight(id: &str) -> Value {
    json!({"serial_num": "C02XYZ", "hostname": format!("{id}.example.com"), "santa_version": "2026.7.1",
           "machine_id": id, "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7",
           "primary_user": "alice"})
}

/// Zlib-compresses `parts` written one after the other (so a body that inflates to tens of
/// megabytes is never held uncompressed).
fn zlib_of(parts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
    for p in parts {
        e.write_all(&p).unwrap();
    }
    e.finish().unwrap()
}

async fn deflated_preflight(s: &TestServer, id: &str, body: Vec<u8>) -> dasher_tests::Reply {
    let headers = [("content-type", "application/json"), ("content-encoding", "deflate")];
    s.send(Method::POST, &format!("/santa/preflight/{id}"), &headers, body).await
}

fn error_of(r: &dasher_tests::Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

/// The old server stored a 60 MB hostname (8 such hosts made `GET /api/v1/hosts` 407 MB).
#[tokio::test]
async fn an_oversized_preflight_is_refused_before_it_is_stored() {
    let s = TestServer::start().await;
    // 60 MB inflated, ~60 KB as sent: within max_body_bytes, far past max_preflight_bytes.
    let chunk = vec![b'a'; 1 << 20];
    let body = zlib_of(
        std::iter::once(br#"{"santa_version":"2026.7.1","hostname":""#.to_vec())
            .chain(std::iter::repeat_n(chunk, 60))
            .chain(std::iter::once(br#""}"#.to_vec())),
    );
    assert!(body.len() < 1 << 20, "the bomb is small as sent ({} bytes)", body.len());
    let r = deflated_preflight(&s, "big-name", body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&r.body));
    assert!(error_of(&r).contains("limits.max_preflight_bytes"), "names the limit: {}", error_of(&r));

    // Within the stage limit but over the string limit: 400 naming the field, nothing stored.
    let mut pre = preflight("long-name");
    pre["hostname"] = "h".repeat(2048).into();
    let r = s.stage("preflight", "long-name", &pre).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "hostname", "{}", r.json());
    assert!(error_of(&r).contains("limits.max_inventory_string_bytes"), "{}", error_of(&r));
    for id in ["big-name", "long-name"] {
        let r = s.admin(Method::GET, &format!("/api/v1/hosts/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id} must not be stored");
    }
    // The same host with a normal report syncs.
    assert_eq!(s.stage("preflight", "long-name", &preflight("long-name")).await.status, StatusCode::OK);

    // Postflight strings and body are bounded too.
    let r = s.stage("postflight", "long-name", &json!({"rulesHash": "0".repeat(4096)})).await;
    assert_eq!((r.status, r.json()["field"].clone()), (StatusCode::BAD_REQUEST, json!("rules_hash")));
    let r = s.stage("postflight", "long-name", &json!({"machine_id": "m".repeat(100 << 10)})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(&r).contains("limits.max_postflight_bytes"), "{}", error_of(&r));
}

/// 16.7 million empty groups in a 65 KB zlib body took the old server 18.6 s and 3.4 GB.
#[tokio::test]
async fn a_zlib_bomb_of_user_groups_gets_413_and_others_are_still_served() {
    let s = TestServer::start().await;
    let groups: usize = 16_700_000;
    let chunk = br#""","#.repeat(100_000);
    let body = zlib_of(
        std::iter::once(br#"{"santa_version":"2026.7.1","primary_user_groups":["#.to_vec())
            .chain(std::iter::repeat_n(chunk, groups / 100_000))
            .chain(std::iter::once(br#""x"]}"#.to_vec())),
    );
    assert!(body.len() < 200_000, "a small body as sent ({} bytes)", body.len());
    let r = deflated_preflight(&s, "bomb", body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&r.body));
    assert!(error_of(&r).contains("inflates to more than"), "{}", error_of(&r));

    let mut client = ClientRules::default();
    let (sync_type, _, _) = client.sync(&s, "bystander", preflight("bystander")).await;
    assert_eq!(sync_type, "CLEAN", "another host syncs normally right after");

    // The most groups a preflight within max_preflight_bytes can carry is decoded, cut to
    // max_user_groups and recorded as cut.
    let most = (256 << 10) / 3 - 100;
    let body = zlib_of([
        br#"{"santa_version":"2026.7.1","primary_user_groups":["#.to_vec(),
        br#""","#.repeat(most),
        br#""x"]}"#.to_vec(),
    ]);
    let r = deflated_preflight(&s, "most-groups", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let host = s.admin(Method::GET, "/api/v1/hosts/most-groups", None).await.json();
    assert_eq!(host["inventory"]["truncated"]["primary_user_groups"], most + 1);
    assert_eq!(host["inventory"]["primary_user_groups"].as_array().unwrap().len(), 256);
}

/// A real host over a list limit keeps syncing: the first N are kept and its record says so.
#[tokio::test]
async fn a_long_group_list_is_cut_the_host_syncs_and_its_record_says_so() {
    let s = TestServer::start().await;
    let groups: Vec<String> = (0..1000).map(|i| format!("group-{i:04}")).collect();
    let mut pre = preflight("many-groups");
    pre["primary_user_groups"] = json!(groups);
    let mut client = ClientRules::default();
    assert_eq!(client.sync(&s, "many-groups", pre.clone()).await.0, "CLEAN");
    assert_eq!(client.sync(&s, "many-groups", pre.clone()).await.0, "NORMAL", "the cut list is stable");

    let host = s.admin(Method::GET, "/api/v1/hosts/many-groups", None).await.json();
    let inv = &host["inventory"];
    assert_eq!(inv["primary_user_groups"], json!(groups[..256]), "the first max_user_groups are kept");
    assert_eq!(inv["truncated"], json!({"primary_user_groups": 1000}), "{inv}");
    assert_eq!(host["sync"]["last_outcome"], "ok");
    let listed = s.admin(Method::GET, "/api/v1/hosts?limit=10", None).await.json();
    assert_eq!(listed["hosts"][0]["inventory"]["truncated"]["primary_user_groups"], 1000);

    // Once it reports a list within the limit, the mark goes away.
    pre["primary_user_groups"] = json!(["staff"]);
    assert_eq!(s.stage("preflight", "many-groups", &pre).await.status, StatusCode::OK);
    let host = s.admin(Method::GET, "/api/v1/hosts/many-groups", None).await.json();
    assert!(host["inventory"].get("truncated").is_none(), "{}", host["inventory"]);

    // A kept group longer than the string limit is refused by name.
    pre["primary_user_groups"] = json!(["staff", "g".repeat(1025)]);
    let r = s.stage("preflight", "many-groups", &pre).await;
    assert_eq!((r.status, r.json()["field"].clone()), (StatusCode::BAD_REQUEST, json!("primary_user_groups[1]")));
}

/// An empty or garbage `santa_version` was answered as the newest client.
#[tokio::test]
async fn an_unknown_santa_version_is_answered_as_the_oldest_generation() {
    let s = TestServer::start_with(|c| {
        c.defaults.client_mode = Some(ClientMode::Standalone);
        c.defaults.block_usb_mount = Some(true);
        c.defaults.event_detail_url = Some("https://santa.example/e/%file_sha%".into());
    })
    .await;
    s.put_rules(json!([
        {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
        {"identifier": "a".repeat(40), "rule_type": "CDHASH", "policy": "BLOCKLIST"},
        {"identifier": "EQHXZ8M8AV:com.example.tool", "rule_type": "SIGNINGID", "policy": "SILENT_TTY_BLOCKLIST"},
    ]))
    .await;

    let current = s.stage("preflight", "current", &preflight("current")).await.json();
    assert_eq!(current["client_mode"], "STANDALONE");
    assert_eq!(current["sync_type"], "CLEAN");
    assert_eq!(current["removable_media_policy"], json!({"block": true}));
    assert!(current.get("event_detail_url").is_some());

    for (id, version) in [("no-version", Value::Null), ("empty", json!("")), ("garbage", json!("santa-next"))] {
        let mut pre = preflight(id);
        pre["santa_version"] = version;
        let r = s.stage("preflight", id, &pre).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["client_mode"], "LOCKDOWN", "{id}: never STANDALONE, never weaker");
        assert!(v.get("removable_media_policy").is_none(), "{id}: {v}");
        assert!(v.get("event_detail_url").is_none(), "{id}: {v}");
        assert!(v.get("sync_type").is_none(), "{id}: the oldest clients only read clean_sync: {v}");
        assert_eq!(v["clean_sync"], true, "{id}: a first sync is clean");
        assert_eq!(v["block_usb_mount"], true);
        let page = s.stage("ruledownload", id, &json!({})).await.json();
        let rules = page["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{id}: only the TEAMID rule: {page}");
        assert_eq!(rules[0]["rule_type"], "TEAMID");
        // Its next sync is not a clean one because of the odd version (it did not change).
        assert_eq!(s.stage("postflight", id, &json!({"rules_received": 1, "rules_processed": 1})).await.status, 200);
        let again = s.stage("preflight", id, &pre).await.json();
        assert!(again.get("clean_sync").is_none(), "{id}: {again}");
    }
}

/// A tag (or `[defaults]`) with `sync_type = "CLEAN_ALL"` forced a CLEAN_ALL at every sync.
#[tokio::test]
async fn a_standing_clean_sync_type_in_the_config_is_refused() {
    for (toml, key) in [
        ("[tags.lab.config]\nsync_type = \"CLEAN_ALL\"", "tags.lab.config.sync_type"),
        ("[defaults]\nsync_type = \"CLEAN\"", "defaults.sync_type"),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("/api/v1/hosts/{machine_id}/clean-sync"), "{err}");
    }
    // Also when the config is built in code: the server refuses to start with it.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.tags.entry("lab".into()).or_default().config.sync_type = Some(dasher_sdk::wire::SyncType::CleanAll);
    let err = format!("{:#}", dasher_server::start(config).await.err().expect("the server refuses to start"));
    assert!(err.contains("tags.lab.config.sync_type"), "{err}");
}
