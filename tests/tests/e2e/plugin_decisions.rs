//! What the server does with plugin decisions beyond their value, over real HTTP with real
//! compiled plugins: provenance (which plugin generation, or the config file, decided each
//! setting) and shadow decisions in the host API; plugin host rules delivered to the host
//! and removed again by a normal sync; a reject-on-failure plugin that fails turns the
//! preflight into a 503 and leaves the host's rules alone, as does fail-static.

use dasher_policy::{Mode, OnFailure, PluginsConfig};
use dasher_tests::plugin_server;
use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const TEAM: &str = "EQHXZ8M8AV";

/// A server with the named plugins, in that chain order ([`plugin_server`]).
async fn server(
    names: &[&str],
    tweak: impl FnOnce(&mut PluginsConfig) + Send + 'static,
) -> (TestServer, tempfile::TempDir) {
    plugin_server(names, tweak).await
}

/// Settings of ruleset-targeting pinning an allow rule on hosts tagged `cad`.
fn pin_settings() -> Value {
    json!({"always": ["global"], "pins": [{"tags": ["cad"], "rules": [
        {"identifier": TEAM, "rule_type": "TEAMID", "policy": "ALLOWLIST", "custom_msg": "licensed CAD suite"}]}]})
}

fn preflight(id: &str, hostname: &str) -> Value {
    json!({"hostname": hostname, "santa_version": "2026.7.1", "machine_id": id, "client_mode": "MONITOR",
           "os_version": "15.5", "model_identifier": "Mac15,7", "primary_user_groups": ["eng"]})
}

async fn host(s: &TestServer, id: &str) -> Value {
    let r = s.admin(Method::GET, &format!("/api/v1/hosts/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn plugin_status(s: &TestServer, name: &str) -> Value {
    let r = s.admin(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let plugins = r.json()["plugins"].as_array().cloned().unwrap_or_default();
    plugins.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} not listed"))
}

async fn set_tags(s: &TestServer, id: &str, tags: Value) {
    let r = s.admin(Method::PUT, &format!("/api/v1/hosts/{id}/tags"), Some(json!({ "tags": tags }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

async fn plugin_host_set(s: &TestServer, id: &str) -> Vec<Value> {
    let r = s.admin(Method::GET, &format!("/api/v1/rules?rule_set=plugin-host:{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()["rules"].as_array().cloned().unwrap_or_default()
}

fn holds_pin(client: &ClientRules) -> bool {
    client.0.get(&("TEAMID".to_owned(), TEAM.to_owned())).is_some_and(|r| r["policy"] == "ALLOWLIST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_names_plugin_generations_and_shadow_decisions_are_recorded_not_applied() {
    let (s, _plugins) = server(&["staged-rollout", "fault-trap"], |p| {
        p.plugin.entry("staged-rollout".into()).or_default().settings = json!({"lockdown_hostnames": ["lab-*"]});
        // fault-trap answers LOCKDOWN, batch size 7 and rule set fault-trap-set: in shadow
        // mode none of it may reach the host.
        p.plugin.entry("fault-trap".into()).or_default().mode = Mode::Shadow;
    })
    .await;
    let rollout = plugin_status(&s, "staged-rollout").await["hash"].as_str().unwrap().to_owned();
    let trap = plugin_status(&s, "fault-trap").await["hash"].as_str().unwrap().to_owned();

    let mut client = ClientRules::default();
    let pre = s.stage("preflight", "office-1", &preflight("office-1", "mac-7.example.com")).await;
    assert_eq!(pre.status, StatusCode::OK, "{}", String::from_utf8_lossy(&pre.body));
    assert_eq!(pre.json()["client_mode"], "MONITOR", "the shadow plugin's LOCKDOWN is not applied");
    assert_eq!(pre.json()["batch_size"], 50, "config default, not the shadow plugin's 7");
    client.sync(&s, "office-1", preflight("office-1", "mac-7.example.com")).await;

    let h = host(&s, "office-1").await;
    let decided = &h["sync"]["decided"];
    assert_eq!(
        decided["settings"]["client_mode"],
        json!({"value": "MONITOR", "by": {"by": "staged-rollout", "generation": rollout, "source": "live"}}),
        "{decided}"
    );
    assert_eq!(decided["settings"]["batch_size"], json!({"value": 50, "by": {"by": "config"}}));
    assert_eq!(decided["settings"]["enable_bundles"]["by"]["by"], "config");
    assert_eq!(decided["rule_sets_by"], json!([{"by": "config"}]), "no enforcing plugin selects rule sets");
    let chain = decided["chain"].as_array().unwrap();
    assert!(
        chain.iter().any(|c| c["hook"] == "configure" && c["by"] == "staged-rollout" && c["generation"] == rollout),
        "{decided}"
    );
    assert!(!chain.iter().any(|c| c["by"] == "fault-trap"), "a shadow plugin is not part of the chain: {decided}");
    assert!(
        !h["sync"]["acked"]["rule_sets"].as_array().unwrap().iter().any(|s| s == "fault-trap-set"),
        "shadow rule-set selection not applied: {h}"
    );

    let shadow = decided["shadow"].as_array().unwrap();
    let configure = shadow.iter().find(|d| d["hook"] == "configure").expect("shadow configure recorded");
    assert_eq!(configure["plugin"], "fault-trap");
    assert_eq!(configure["generation"], trap);
    assert_eq!(configure["decision"]["client_mode"], "LOCKDOWN");
    assert_eq!(configure["decision"]["batch_size"], 7);
    assert_eq!(configure["differs"], true);
    let select = shadow.iter().find(|d| d["hook"] == "select-rules").expect("shadow select-rules recorded");
    assert_eq!(select["decision"]["rule_sets"], json!(["fault-trap-set"]));
    assert_eq!(select["differs"], true);

    // A lab host gets LOCKDOWN from staged-rollout; the shadow plugin agrees on the mode but
    // still differs on the batch size. Both hosts count once in the fleet figure.
    let lab = s.stage("preflight", "lab-1", &preflight("lab-1", "lab-042.example.com")).await.json();
    assert_eq!(lab["client_mode"], "LOCKDOWN");
    let status = plugin_status(&s, "fault-trap").await;
    assert_eq!(status["shadow_hosts_differing"], 2, "{status}");
    assert_eq!(plugin_status(&s, "staged-rollout").await["shadow_hosts_differing"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_host_rules_reach_the_host_and_are_removed_when_the_plugin_stops_returning_them() {
    let (s, _plugins) = server(&["ruleset-targeting"], |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = pin_settings();
    })
    .await;
    let generation = plugin_status(&s, "ruleset-targeting").await["hash"].as_str().unwrap().to_owned();
    s.put_rules(json!([{"identifier": "a".repeat(64), "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
    set_tags(&s, "cad-1", json!(["cad"])).await;

    let mut client = ClientRules::default();
    let pre = preflight("cad-1", "cad-1.example.com");
    client.sync(&s, "cad-1", pre.clone()).await;
    assert!(holds_pin(&client), "pinned rule downloaded: {client:?}");
    assert_eq!(client.0.len(), 2);
    client.assert_matches_server(&s, "cad-1").await;
    let h = host(&s, "cad-1").await;
    assert_eq!(h["sync"]["acked"]["rule_sets"], json!(["host:cad-1", "plugin-host:cad-1", "global"]));
    let decided = &h["sync"]["decided"];
    assert_eq!(decided["host_rules"], 1);
    assert_eq!(
        decided["host_rules_by"],
        json!([{"by": "ruleset-targeting", "generation": generation, "source": "live"}])
    );
    assert_eq!(decided["rule_sets_by"][0]["by"], "ruleset-targeting");
    assert_eq!(plugin_host_set(&s, "cad-1").await.len(), 1);

    // The set is the plugins' alone: the admin API refuses to write it or tag with it.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"rules": [{"identifier": TEAM, "rule_type": "TEAMID", "policy": "BLOCKLIST",
                                   "rule_set": "plugin-host:cad-1"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["field"], "rules[0].rule_set");
    let r = s.admin(Method::PUT, "/api/v1/hosts/cad-1/tags", Some(json!({"tags": ["plugin-host:x"]}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Same output: nothing changes, nothing is sent.
    assert_eq!(client.sync(&s, "cad-1", pre.clone()).await, ("NORMAL".into(), 0, 1));

    // The host stops matching the pin: the plugin's output changes, and the next normal
    // sync delivers a REMOVE.
    set_tags(&s, "cad-1", json!([])).await;
    let (sync_type, received, _) = client.sync(&s, "cad-1", pre.clone()).await;
    assert_eq!((sync_type.as_str(), received), ("NORMAL", 1), "a delta carrying the REMOVE, not a clean sync");
    assert!(!holds_pin(&client), "pinned rule removed: {client:?}");
    assert_eq!(client.0.len(), 1);
    client.assert_matches_server(&s, "cad-1").await;
    assert!(plugin_host_set(&s, "cad-1").await.is_empty());
    assert_eq!(host(&s, "cad-1").await["sync"]["decided"]["host_rules"], 0);

    // The emptied set stays selected, so pinning again is a normal sync too.
    set_tags(&s, "cad-1", json!(["cad"])).await;
    let (sync_type, received, _) = client.sync(&s, "cad-1", pre).await;
    assert_eq!((sync_type.as_str(), received), ("NORMAL", 1));
    assert!(holds_pin(&client));
    client.assert_matches_server(&s, "cad-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reject_plugin_makes_preflight_503_and_the_host_keeps_its_rules() {
    let (s, _plugins) = server(&["ruleset-targeting", "fault-trap"], |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = pin_settings();
        p.plugin.entry("fault-trap".into()).or_default().on_failure = OnFailure::Reject;
    })
    .await;
    set_tags(&s, "cad-2", json!(["cad"])).await;
    let mut client = ClientRules::default();
    let pre = preflight("cad-2", "cad-2.example.com");
    client.sync(&s, "cad-2", pre.clone()).await;
    assert!(holds_pin(&client));
    let before = host(&s, "cad-2").await;

    // fault-trap now traps for this host, which also stops matching the pin.
    set_tags(&s, "cad-2", json!(["fault"])).await;
    let r = s.stage("preflight", "cad-2", &preflight("cad-2", "renamed.example.com")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&r.body));
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("fault-trap") && error.contains("reject"), "{error}");
    assert!(error.contains("keeps its current state"), "{error}");

    assert_eq!(plugin_host_set(&s, "cad-2").await.len(), 1, "the pinned rule stays");
    let after = host(&s, "cad-2").await;
    assert_eq!(after["sync"]["acked"], before["sync"]["acked"]);
    assert_eq!(after["sync"]["decided"], before["sync"]["decided"]);
    assert!(after["sync"]["last_outcome"].as_str().unwrap().starts_with("policy_rejected"), "{after}");
    assert_eq!(
        after["inventory"]["hostname"], "renamed.example.com",
        "a refused preflight still records what it reported"
    );

    // Healthy again: the sync goes through and applies the plugin's current output.
    set_tags(&s, "cad-2", json!([])).await;
    let (sync_type, received, _) = client.sync(&s, "cad-2", pre).await;
    assert_eq!((sync_type.as_str(), received), ("NORMAL", 1));
    assert!(!holds_pin(&client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_static_fault_keeps_the_plugin_host_set_unchanged() {
    let (s, _plugins) = server(&["ruleset-targeting", "fault-trap"], |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = pin_settings();
    })
    .await;
    set_tags(&s, "cad-3", json!(["cad"])).await;
    let mut client = ClientRules::default();
    let pre = preflight("cad-3", "cad-3.example.com");
    client.sync(&s, "cad-3", pre.clone()).await;
    assert!(holds_pin(&client));

    // fault-trap traps (its last good answer applies) while ruleset-targeting would drop the
    // pin: the degraded decision must not remove anything.
    set_tags(&s, "cad-3", json!(["fault"])).await;
    let (sync_type, received, _) = client.sync(&s, "cad-3", pre).await;
    assert_eq!((sync_type.as_str(), received), ("NORMAL", 0));
    assert!(holds_pin(&client), "a plugin fault never removes host rules");
    assert_eq!(plugin_host_set(&s, "cad-3").await.len(), 1);
    let decided = host(&s, "cad-3").await["sync"]["decided"].clone();
    assert_eq!(decided["host_rules"], Value::Null, "kept unchanged: {decided}");
    let trap =
        decided["chain"].as_array().unwrap().iter().find(|c| c["hook"] == "select-rules" && c["by"] == "fault-trap");
    assert_eq!(trap.expect("fault-trap in the select-rules chain")["source"], "last_good");
}
