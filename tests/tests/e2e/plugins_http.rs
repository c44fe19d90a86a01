//! Real plugins from plugins/, compiled to components, loaded by the real server, decide
//! over HTTP: staged rollout sets the client mode, rule-set targeting picks rule sets, and
//! a faulting plugin never breaks a sync.

use dasher_tests::component;
use dasher_tests::{ClientRules, TestServer};
use http::StatusCode;
use serde_json::json;

fn preflight(id: &str, hostname: &str) -> serde_json::Value {
    json!({"hostname": hostname, "santa_version": "2026.7.1", "machine_id": id, "client_mode": "MONITOR",
           "os_version": "15.5", "model_identifier": "Mac15,7", "primary_user_groups": ["eng"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_decide_modes_and_faults_fall_back() {
    let plugins = tempfile::tempdir().unwrap();
    component("staged-rollout", plugins.path());
    component("fault-trap", plugins.path());
    let dir = plugins.path().to_owned();
    let s = TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        // Behaviour, not speed: a loaded 2-core CI machine must not hit the 10 ms deadline.
        p.limits.deadline_ms = 5_000;
        p.order = vec!["staged-rollout".into(), "fault-trap".into()];
        p.plugin.entry("staged-rollout".into()).or_default().settings = json!({"lockdown_hostnames": ["lab-*"]});
        c.plugins = Some(p);
    })
    .await;

    let lab = s.stage("preflight", "lab-1", &preflight("lab-1", "lab-042.example.com")).await;
    assert_eq!(lab.status, StatusCode::OK, "{}", String::from_utf8_lossy(&lab.body));
    assert_eq!(lab.json()["client_mode"], "LOCKDOWN");
    let office = s.stage("preflight", "office-1", &preflight("office-1", "mac-7.example.com")).await.json();
    assert_eq!(office["batch_size"], 7, "the later plugin in the chain refines the earlier one");
    assert_eq!(office["enable_bundles"], false, "config defaults fill what plugins leave open");

    // Now the second plugin traps for lab-1: its last good decision keeps applying and
    // whole syncs keep working.
    let r = s.admin(http::Method::PUT, "/api/v1/hosts/lab-1/tags", Some(json!({"tags": ["fault"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let lab = s.stage("preflight", "lab-1", &preflight("lab-1", "lab-042.example.com")).await;
    assert_eq!(lab.status, StatusCode::OK);
    assert_eq!(lab.json()["client_mode"], "LOCKDOWN", "a faulting plugin never weakens the mode");
    s.put_rules(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}])).await;
    let mut client = ClientRules::default();
    for _ in 0..3 {
        client.sync(&s, "lab-1", preflight("lab-1", "lab-042.example.com")).await;
    }
    client.assert_matches_server(&s, "lab-1").await;

    let status = s.admin(http::Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(status.status, StatusCode::OK);
    let plugins = status.json()["plugins"].as_array().cloned().unwrap_or_default();
    let trap = plugins.iter().find(|p| p["name"] == "fault-trap").expect("fault-trap listed");
    assert!(trap["errors"].as_u64().unwrap() >= 1, "the fault is counted: {trap}");
    let rollout = plugins.iter().find(|p| p["name"] == "staged-rollout").expect("staged-rollout listed");
    assert_eq!(rollout["errors"], 0);
    assert!(rollout["calls"].as_u64().unwrap() >= 3);
}
