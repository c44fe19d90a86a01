//! The decision contract over real HTTP with real compiled plugins: a `select-rules` decision
//! adds to or replaces the host's default selection; shadow counters count hosts, with one
//! definition of "differs" shared by counters and host records, and shadow triage verdicts
//! are stored beside the applied ones; the `review` hook (approval-voting) approves a binary
//! for the requesting hosts after N users' requests, the next sync delivers it, and an
//! admin's block rule is never overridden.

use dasher_tests::{ClientRules, TestServer, component};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A server with the named plugins (chain order), `[tags.eng].rule_sets = ["dev-tools"]`,
/// and `tweak` applied to the plugin config.
async fn server(
    names: &[&str],
    tweak: impl FnOnce(&mut dasher_policy::PluginsConfig) + Send + 'static,
) -> (TestServer, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    for name in names {
        component(name, plugins.path());
    }
    let dir = plugins.path().to_owned();
    let order = names.iter().map(|n| n.to_string()).collect();
    let s = TestServer::start_with(move |c| {
        c.tags.entry("eng".into()).or_default().rule_sets = vec!["dev-tools".into()];
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        // Behaviour, not speed: a loaded 2-core machine must not hit the default deadlines.
        p.limits.deadline_ms = 5_000;
        p.limits.triage_deadline_ms = 5_000;
        p.order = order;
        tweak(&mut p);
        c.plugins = Some(p);
    })
    .await;
    (s, plugins)
}

fn preflight(id: &str, hostname: &str) -> Value {
    json!({"hostname": hostname, "santa_version": "2026.7.1", "machine_id": id, "client_mode": "MONITOR",
           "os_version": "15.5", "model_identifier": "Mac15,7", "primary_user_groups": ["eng"]})
}

async fn ok(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = s.admin(method, path, body).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn plugin_status(s: &TestServer, name: &str) -> Value {
    let all = ok(s, Method::GET, "/api/v1/plugins", None).await;
    let plugins = all["plugins"].as_array().cloned().unwrap_or_default();
    plugins.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} not listed"))
}

/// GETs `path` until `done` holds (asynchronous work); panics after 60 s.
async fn poll(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = ok(s, Method::GET, path, None).await;
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: condition not met within 60 s; last answer: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rule sets a full sync of `id` acknowledged.
async fn synced_sets(s: &TestServer, id: &str) -> Value {
    let mut client = ClientRules::default();
    client.sync(s, id, preflight(id, &format!("{id}.example.com"))).await;
    ok(s, Method::GET, &format!("/api/v1/hosts/{id}"), None).await["sync"]["acked"]["rule_sets"].clone()
}

async fn set_tags(s: &TestServer, id: &str, tags: Value) {
    ok(s, Method::PUT, &format!("/api/v1/hosts/{id}/tags"), Some(json!({ "tags": tags }))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_adds_to_the_tag_sets_or_replaces_them_as_it_says() {
    let targets = json!([{"rule_set": "extra", "groups": ["eng"]}]);
    let settings = json!({"targets": targets.clone(), "mode": "add"});
    let (s, _p) = server(&["ruleset-targeting"], move |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = settings;
    })
    .await;
    set_tags(&s, "add-1", json!(["eng"])).await;
    assert_eq!(
        synced_sets(&s, "add-1").await,
        json!(["host:add-1", "eng", "dev-tools", "extra", "global"]),
        "add: the tag's set and its [tags.eng].rule_sets stay, the plugin's set is added before global"
    );
    let decided = &ok(&s, Method::GET, "/api/v1/hosts/add-1", None).await["sync"]["decided"];
    assert_eq!(decided["rule_sets_by"][0], json!({"by": "config"}), "both the config and the plugin chose: {decided}");
    assert_eq!(decided["rule_sets_by"][1]["by"], "ruleset-targeting");
    drop(s);

    let settings = json!({"targets": targets, "mode": "replace"});
    let (s, _p) = server(&["ruleset-targeting"], move |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = settings;
    })
    .await;
    set_tags(&s, "rep-1", json!(["eng"])).await;
    assert_eq!(
        synced_sets(&s, "rep-1").await,
        json!(["host:rep-1", "extra", "global"]),
        "replace: the default selection is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counters_count_the_hosts_that_differ_not_the_calls() {
    // staged-rollout in shadow: LOCKDOWN for lab-* hosts, MONITOR (what the config applies)
    // for the others. Of N hosts K are labs; each syncs twice.
    let (s, _p) = server(&["staged-rollout", "event-triage"], |p| {
        let rollout = p.plugin.entry("staged-rollout".into()).or_default();
        rollout.settings = json!({"lockdown_hostnames": ["lab-*"]});
        rollout.mode = dasher_policy::Mode::Shadow;
        let triage = p.plugin.entry("event-triage".into()).or_default();
        triage.mode = dasher_policy::Mode::Shadow;
    })
    .await;
    const N: usize = 7;
    const K: usize = 3;
    for round in 0..2 {
        for i in 0..N {
            let (id, hostname) = if i < K {
                (format!("lab-{i}"), format!("lab-{i}.example.com"))
            } else {
                (format!("desk-{i}"), format!("desk-{i}.example.com"))
            };
            let r = s.stage("preflight", &id, &preflight(&id, &hostname)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.json()["client_mode"], "MONITOR", "round {round}: the shadow LOCKDOWN is not applied");
        }
    }
    let status = plugin_status(&s, "staged-rollout").await;
    assert_eq!(status["shadow_hosts_differing"], K, "{status}");
    assert_eq!(status["shadow_disagreements"], K, "a host that keeps differing counts once: {status}");
    for (id, differs) in [("lab-0", true), ("desk-5", false)] {
        let h = ok(&s, Method::GET, &format!("/api/v1/hosts/{id}"), None).await;
        let shadow = h["sync"]["decided"]["shadow"].as_array().cloned().unwrap_or_default();
        let configure = shadow.iter().find(|d| d["hook"] == "configure").expect("shadow configure recorded");
        assert_eq!(configure["differs"], differs, "{id}: the record says what the counters count: {h}");
    }
    let metrics = String::from_utf8_lossy(&s.send(Method::GET, "/metrics", &[], vec![]).await.body).into_owned();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("dasher_plugin_shadow_disagreements_total{") && l.contains("staged-rollout"))
        .unwrap_or_else(|| panic!("no shadow metric for staged-rollout in:\n{metrics}"));
    assert!(line.ends_with(&format!(" {K}")), "{line}");

    // Shadow triage: the verdict is stored beside the (empty) applied one and shown.
    let event = json!({"file_sha256": "ab".repeat(32), "file_path": "/Applications/X.app", "file_name": "x",
        "execution_time": 1_767_225_600.0, "decision": "BLOCK_UNKNOWN", "pid": 1,
        "team_id": "EQHXZ8M8AV", "signing_id": "EQHXZ8M8AV:com.x"});
    let r = s.stage("eventupload", "desk-5", &json!({"events": [event], "machine_id": "desk-5"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let events = poll(&s, "/api/v1/events?machine_id=desk-5", |v| {
        v["events"].as_array().is_some_and(|e| e.iter().any(|e| e["triage"]["shadow"].is_array()))
    })
    .await;
    let triage = &events["events"][0]["triage"];
    assert_eq!(triage["labels"], json!([]), "shadow labels are not applied: {triage}");
    let shadow = &triage["shadow"][0];
    assert_eq!(shadow["plugin"], "event-triage");
    assert_eq!(shadow["labels"], json!(["team:EQHXZ8M8AV"]));
    assert_eq!(shadow["differs"], true, "{triage}");
    let status = plugin_status(&s, "event-triage").await;
    assert_eq!(status["shadow_hosts_differing"], 1, "{status}");
}

fn binary(n: u32) -> String {
    format!("{n:064x}")
}

async fn request(s: &TestServer, machine_id: &str, sha256: &str, user: &str) -> Value {
    let body = json!({"machine_id": machine_id, "sha256": sha256, "user": user, "justification": "I need it"});
    ok(s, Method::POST, "/api/v1/proposals/requests", Some(body)).await
}

async fn proposals(s: &TestServer) -> Vec<Value> {
    ok(s, Method::GET, "/api/v1/proposals?limit=100", None).await["proposals"].as_array().cloned().unwrap_or_default()
}

fn holds(client: &ClientRules, sha256: &str, policy: &str) -> bool {
    client.0.get(&("BINARY".to_owned(), sha256.to_owned())).is_some_and(|r| r["policy"] == policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_voting_allows_a_binary_on_the_requesting_hosts_after_n_users() {
    let (s, _p) = server(&["approval-voting"], |p| {
        p.plugin.entry("approval-voting".into()).or_default().settings = json!({"host_votes": 2, "global_votes": 3});
    })
    .await;
    let generation = plugin_status(&s, "approval-voting").await["hash"].as_str().unwrap().to_owned();
    let app = binary(0xa11);
    let mut m1 = ClientRules::default();
    let mut m3 = ClientRules::default();
    m1.sync(&s, "m1", preflight("m1", "m1.example.com")).await;
    m3.sync(&s, "m3", preflight("m3", "m3.example.com")).await;

    // One user, even asking from two hosts, is one vote: left pending.
    let p = request(&s, "m1", &app, "alice").await;
    request(&s, "m2", &app, "alice").await;
    assert_eq!(p["status"], "pending");
    assert_eq!(proposals(&s).await.len(), 1, "nothing approved yet");

    // The second distinct user: approved for the requesting hosts, by the plugin generation.
    let original = request(&s, "m1", &app, "bob").await;
    assert_eq!(original["status"], "pending", "the global proposal stays for M votes or an admin: {original}");
    assert_eq!(original["hosts"], json!(["m1", "m2"]), "every host that raised it");
    let all = proposals(&s).await;
    let approved: Vec<&Value> = all.iter().filter(|p| p["status"] == "approved").collect();
    let mut sets: Vec<&str> = approved.iter().map(|p| p["rule_set"].as_str().unwrap()).collect();
    sets.sort();
    assert_eq!(sets, ["host:m1", "host:m2"], "{all:?}");
    for p in &approved {
        assert_eq!(p["decided_by"], format!("plugin:approval-voting@{generation}"), "{p}");
        assert_eq!(p["rule"]["identifier"], app);
    }

    // The next sync delivers it to a requesting host, not to the others.
    m1.sync(&s, "m1", preflight("m1", "m1.example.com")).await;
    assert!(holds(&m1, &app, "ALLOWLIST"), "{m1:?}");
    m3.sync(&s, "m3", preflight("m3", "m3.example.com")).await;
    assert!(!holds(&m3, &app, "ALLOWLIST"), "not requested from m3: {m3:?}");

    // M = 3 users: the binary (unsigned: no Team ID known) is allowed fleet-wide.
    let original = request(&s, "m3", &app, "carol").await;
    assert_eq!(original["status"], "approved", "{original}");
    assert_eq!(original["decided_by"], format!("plugin:approval-voting@{generation}"));
    m3.sync(&s, "m3", preflight("m3", "m3.example.com")).await;
    assert!(holds(&m3, &app, "ALLOWLIST"), "{m3:?}");

    // Never over an admin's block rule, however many ask.
    let blocked = binary(0xbad);
    s.put_rules(json!([{"identifier": blocked, "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
    for (host, user) in [("m1", "alice"), ("m2", "bob"), ("m3", "carol")] {
        assert_eq!(request(&s, host, &blocked, user).await["status"], "pending");
    }
    let all = proposals(&s).await;
    assert!(
        !all.iter().any(|p| p["rule"]["identifier"] == blocked && p["status"] == "approved"),
        "an admin block rule was overridden: {all:?}"
    );
    m1.sync(&s, "m1", preflight("m1", "m1.example.com")).await;
    assert!(holds(&m1, &blocked, "BLOCKLIST"), "{m1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_requests_are_validated_field_by_field() {
    let (s, _p) = server(&[], |_| {}).await;
    for (body, field) in [
        (json!({"machine_id": "m1", "sha256": "nope"}), "sha256"),
        (json!({"machine_id": "", "sha256": binary(1)}), "machine_id"),
        (json!({"machine_id": "m1", "sha256": binary(1), "user": "x".repeat(300)}), "user"),
        (json!({"machine_id": "m1", "sha256": binary(1), "justification": "x".repeat(5000)}), "justification"),
    ] {
        let r = s.admin(Method::POST, "/api/v1/proposals/requests", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json()["field"], field, "{}", String::from_utf8_lossy(&r.body));
    }
    // Without review plugins a request just waits for an admin.
    let p = request(&s, "m1", &binary(1), "alice").await;
    assert_eq!((p["status"].as_str(), p["rule_set"].as_str()), (Some("pending"), Some("global")));
}
