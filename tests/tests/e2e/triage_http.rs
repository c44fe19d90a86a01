//! Triage end to end with the real `event-triage` plugin compiled to a component: events
//! uploaded over HTTP get verdicts stored beside them (dropped noise hidden by default, kept
//! with `include_dropped`), a binary of an approved vendor blocked on K hosts becomes a
//! pending proposal, and approving it puts the rule into hosts' next delta sync; rejecting
//! and auto-applying go through the same path. Triage runs off the request path, so every
//! check polls the admin API with a generous deadline.

use dasher_store::ProposalScope;
use dasher_tests::component;
use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const TEAM: &str = "EQHXZ8M8AV";
const APP: &str = "EQHXZ8M8AV:com.vendor.app";
const OTHER: &str = "EQHXZ8M8AV:com.vendor.helper";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// A server running `event-triage` (K = 3 hosts) with `settings` merged in.
async fn server(plugins: &Path, extra_settings: Value, auto_apply: Vec<ProposalScope>) -> TestServer {
    let dir = plugins.to_owned();
    TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        // Behaviour, not speed: a loaded 2-core machine must not hit the default deadlines.
        p.limits.deadline_ms = 5_000;
        p.limits.triage_deadline_ms = 5_000;
        p.auto_apply_proposals = auto_apply;
        let mut settings = json!({"approved_team_ids": [TEAM], "propose_after_hosts": 3});
        for (k, v) in extra_settings.as_object().cloned().unwrap_or_default() {
            settings[k] = v;
        }
        p.plugin.entry("event-triage".into()).or_default().settings = settings;
        c.plugins = Some(p);
    })
    .await
}

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

fn sha(n: u32) -> String {
    format!("{n:064x}")
}

fn blocked(team: &str, signing_id: &str, n: u32) -> Value {
    json!({"file_sha256": sha(n), "file_path": "/Applications/Vendor.app/Contents/MacOS", "file_name": "vendor",
           "execution_time": 1_767_225_600.0 + f64::from(n), "decision": "BLOCK_UNKNOWN", "pid": n,
           "team_id": team, "signing_id": signing_id})
}

fn platform_noise(n: u32) -> Value {
    json!({"file_sha256": sha(n), "file_path": "/bin", "file_name": "ls", "execution_time": 1_767_225_700.0,
           "decision": "ALLOW_BINARY", "pid": n, "signing_id": "platform:com.apple.ls"})
}

async fn upload(s: &TestServer, id: &str, events: Vec<Value>) {
    let r = s.stage("eventupload", id, &json!({"events": events, "machine_id": id})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

/// GETs `path` until `done` holds (triage is asynchronous); panics after 30 s.
async fn poll(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.admin(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: condition not met within 30 s; last answer: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn list<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    v[field].as_array().unwrap_or_else(|| panic!("{field} is an array: {v}"))
}

fn has_rule(client: &ClientRules, identifier: &str) -> bool {
    client.0.get(&("SIGNINGID".to_owned(), identifier.to_owned())).is_some_and(|r| r["policy"] == "ALLOWLIST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_records_verdicts_and_proposals_are_reviewed() {
    let plugins = tempfile::tempdir().unwrap();
    component("event-triage", plugins.path());
    let s = server(plugins.path(), json!({}), vec![]).await;
    let mut clients: Vec<ClientRules> = vec![ClientRules::default(); HOSTS.len()];
    for (id, client) in HOSTS.iter().zip(&mut clients) {
        client.sync(&s, id, preflight(id)).await;
    }

    // h1: a vendor block, platform noise, a block from a team that is not approved.
    upload(&s, "h1", vec![blocked(TEAM, APP, 1), platform_noise(2), blocked("ZMCG7MLDV9", "ZMCG7MLDV9:com.x", 3)])
        .await;
    // The same two vendor binaries blocked on h2 and h3: K = 3 distinct hosts for APP and OTHER.
    upload(&s, "h1", vec![blocked(TEAM, OTHER, 4)]).await;
    for (n, id) in [(10, "h2"), (20, "h3")] {
        upload(&s, id, vec![blocked(TEAM, APP, n), blocked(TEAM, OTHER, n + 1)]).await;
    }

    // Both proposals appear, pending, de-duplicated per (rule set, rule).
    let pending = poll(&s, "/api/v1/proposals?status=pending", |v| list(v, "proposals").len() == 2).await;
    let find = |ident: &str| {
        list(&pending, "proposals").iter().find(|p| p["rule"]["identifier"] == ident).cloned().expect(ident)
    };
    let app = find(APP);
    assert_eq!(app["status"], "pending");
    assert_eq!(app["scope"], "global");
    assert_eq!(app["rule_set"], "global");
    assert_eq!(app["rule"]["rule_type"], "SIGNINGID");
    assert_eq!(app["rule"]["policy"], "ALLOWLIST");
    assert_eq!(app["count"], 1);
    assert_eq!(app["hosts"], json!(["h3"]), "the host whose upload crossed K");
    assert!(app["reason"].as_str().unwrap().contains("3 hosts"), "{app}");
    assert_eq!(app["proposed_by"][0]["plugin"], "event-triage");
    assert!(!app["proposed_by"][0]["generation"].as_str().unwrap().is_empty());
    let other = find(OTHER);
    let (app_id, other_id) = (app["id"].as_u64().unwrap(), other["id"].as_u64().unwrap());

    // Verdicts are stored with the events. Dropped noise is hidden by default, still stored.
    let all_h1 = poll(&s, "/api/v1/events?machine_id=h1&include_dropped=true", |v| {
        let events = list(v, "events");
        events.len() == 4 && events.iter().all(|e| e.get("triage").is_some())
    })
    .await;
    let noise: Vec<&Value> =
        list(&all_h1, "events").iter().filter(|e| e["triage"]["action"] == "drop").collect::<Vec<_>>();
    assert_eq!(noise.len(), 1, "the platform execution is dropped: {all_h1}");
    assert_eq!(noise[0]["decision"], "ALLOW_BINARY");
    assert_eq!(noise[0]["triage"]["made_by"][0]["plugin"], "event-triage");
    let visible = s.admin(Method::GET, "/api/v1/events?machine_id=h1", None).await.json();
    let visible = list(&visible, "events");
    assert_eq!(visible.len(), 3, "dropped events are hidden by default");
    assert!(visible.iter().all(|e| e["triage"]["action"] == "keep"));
    let vendor = s.admin(Method::GET, "/api/v1/events?label=team:EQHXZ8M8AV", None).await.json();
    assert_eq!(list(&vendor, "events").len(), 6, "label filter: both vendor binaries on three hosts");
    let unapproved = s.admin(Method::GET, "/api/v1/events?label=team%3AZMCG7MLDV9", None).await.json();
    let unapproved = list(&unapproved, "events");
    assert_eq!(unapproved.len(), 1);
    assert_eq!(unapproved[0]["triage"]["severity"], "medium");
    assert!(!unapproved[0]["triage"]["labels"].as_array().unwrap().contains(&json!("approved-vendor")));
    let bad = s.admin(Method::GET, "/api/v1/events?include_dropped=yes", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["field"], "include_dropped");

    // Approve: the rule is committed into the global set; a host's next NORMAL sync gets it.
    let approve = format!("/api/v1/proposals/{app_id}/approve");
    let r = s.admin(Method::POST, &approve, Some(json!({"by": "alice"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let approved = r.json();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "alice");
    assert!(approved["applied_version"].as_u64().unwrap() >= 1);
    let (sync_type, received, _) = clients[0].sync(&s, "h1", preflight("h1")).await;
    assert_eq!(sync_type, "NORMAL", "delivered by delta sync");
    assert_eq!(received, 1);
    assert!(has_rule(&clients[0], APP), "h1 downloaded the approved rule: {:?}", clients[0]);
    clients[0].assert_matches_server(&s, "h1").await;

    // Deciding twice is a conflict; unknown and malformed ids are 404 and 400.
    let again = s.admin(Method::POST, &approve, None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.json()["error"].as_str().unwrap().contains("already approved by alice"), "{}", again.json());
    let r = s.admin(Method::POST, &format!("/api/v1/proposals/{app_id}/reject"), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(s.admin(Method::POST, "/api/v1/proposals/999/approve", None).await.status, StatusCode::NOT_FOUND);
    let r = s.admin(Method::POST, "/api/v1/proposals/abc/approve", None).await;
    assert_eq!((r.status, r.json()["field"].clone()), (StatusCode::BAD_REQUEST, json!("id")));

    // Reject: nothing is committed; approving a rejected proposal is a conflict.
    let r = s.admin(Method::POST, &format!("/api/v1/proposals/{other_id}/reject"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!((r.json()["status"].clone(), r.json()["decided_by"].clone()), (json!("rejected"), json!("admin")));
    let r = s.admin(Method::POST, &format!("/api/v1/proposals/{other_id}/approve"), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"].as_str().unwrap().contains("already rejected"), "{}", r.json());
    clients[1].sync(&s, "h2", preflight("h2")).await;
    assert!(has_rule(&clients[1], APP));
    assert!(!has_rule(&clients[1], OTHER), "a rejected proposal never reaches a host");
    clients[1].assert_matches_server(&s, "h2").await;

    let by_status = |status: &'static str| {
        let s = &s;
        async move {
            let v = s.admin(Method::GET, &format!("/api/v1/proposals?status={status}"), None).await.json();
            list(&v, "proposals").iter().map(|p| p["id"].as_u64().unwrap()).collect::<Vec<u64>>()
        }
    };
    assert_eq!(by_status("approved").await, vec![app_id]);
    assert_eq!(by_status("rejected").await, vec![other_id]);
    assert!(by_status("pending").await.is_empty());
    let r = s.admin(Method::GET, "/api/v1/proposals?status=maybe", None).await;
    assert_eq!((r.status, r.json()["field"].clone()), (StatusCode::BAD_REQUEST, json!("status")));
    let one = s.admin(Method::GET, &format!("/api/v1/proposals/{other_id}"), None).await;
    assert_eq!(one.json()["status"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_scopes_are_applied_without_review() {
    let plugins = tempfile::tempdir().unwrap();
    component("event-triage", plugins.path());
    let s =
        server(plugins.path(), json!({"proposal_rule_set": "approved-vendors"}), vec![ProposalScope::RuleSet]).await;
    let r = s.admin(Method::PUT, "/api/v1/hosts/h1/tags", Some(json!({"tags": ["approved-vendors"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut h1 = ClientRules::default();
    h1.sync(&s, "h1", preflight("h1")).await;
    for (n, id) in [(1, "h1"), (2, "h2"), (3, "h3")] {
        upload(&s, id, vec![blocked(TEAM, APP, n)]).await;
    }

    let approved = poll(&s, "/api/v1/proposals?status=approved", |v| !list(v, "proposals").is_empty()).await;
    let p = &list(&approved, "proposals")[0];
    assert_eq!((p["scope"].clone(), p["rule_set"].clone()), (json!("rule_set"), json!("approved-vendors")));
    assert_eq!(p["decided_by"], "auto-apply");
    let pending = s.admin(Method::GET, "/api/v1/proposals?status=pending", None).await.json();
    assert!(list(&pending, "proposals").is_empty(), "nothing waits for review");
    let rules = s.admin(Method::GET, "/api/v1/rules?rule_set=approved-vendors", None).await.json();
    assert_eq!(list(&rules, "rules")[0]["identifier"], APP);

    let (sync_type, _, _) = h1.sync(&s, "h1", preflight("h1")).await;
    assert_eq!(sync_type, "NORMAL");
    assert!(has_rule(&h1, APP), "the tagged host got the auto-applied rule: {h1:?}");
    h1.assert_matches_server(&s, "h1").await;
    let mut h2 = ClientRules::default();
    h2.sync(&s, "h2", preflight("h2")).await;
    assert!(!has_rule(&h2, APP), "hosts outside the rule set do not get it");
}
