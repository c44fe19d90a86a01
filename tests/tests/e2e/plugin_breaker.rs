//! A plugin that keeps faulting is skipped by its circuit breaker, over real HTTP with the
//! real fault fixture: `GET /api/v1/plugins` and `/metrics` report the open breaker, until
//! when, and the calls skipped; syncs keep succeeding with fail-static decisions (the last
//! good decision, else the config defaults), the guest is not entered, and a host's plugin
//! host rules are never removed while the plugin is skipped.

use dasher_policy::{BreakerConfig, PluginsConfig};
use dasher_tests::plugin_server;
use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

const TEAM: &str = "EQHXZ8M8AV";

/// A server with the named plugins, in that chain order ([`plugin_server`]).
async fn server(
    names: &[&str],
    tweak: impl FnOnce(&mut PluginsConfig) + Send + 'static,
) -> (TestServer, tempfile::TempDir) {
    plugin_server(names, tweak).await
}

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7",
           "primary_user_groups": ["eng"]})
}

async fn set_tags(s: &TestServer, id: &str, tags: Value) {
    let r = s.admin(Method::PUT, &format!("/api/v1/hosts/{id}/tags"), Some(json!({ "tags": tags }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

async fn plugin_status(s: &TestServer, name: &str) -> Value {
    let r = s.admin(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let plugins = r.json()["plugins"].as_array().cloned().unwrap_or_default();
    plugins.into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} not listed"))
}

fn breaker<'a>(status: &'a Value, hook: &str) -> &'a Value {
    status["breakers"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["hook"] == hook))
        .unwrap_or_else(|| panic!("no {hook} breaker: {status}"))
}

/// A preflight that must succeed; returns its response.
async fn preflight_ok(s: &TestServer, id: &str) -> Value {
    let r = s.stage("preflight", id, &preflight(id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn holds_pin(client: &ClientRules) -> bool {
    client.0.get(&("TEAMID".to_owned(), TEAM.to_owned())).is_some_and(|r| r["policy"] == "ALLOWLIST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_is_reported_and_syncs_keep_succeeding_with_fail_static_decisions() {
    let (s, _plugins) = server(&["ruleset-targeting", "fault-trap"], |p| {
        p.plugin.entry("ruleset-targeting".into()).or_default().settings = json!({"always": ["global"],
            "pins": [{"tags": ["cad"], "rules": [{"identifier": TEAM, "rule_type": "TEAMID", "policy": "ALLOWLIST"}]}]});
        // An hour's cool-down: "still open" never depends on how fast this machine is.
        p.breaker = BreakerConfig {
            open_after_faults: 2,
            min_fault_percent: 10,
            window_secs: 3_600,
            cool_down_ms: 3_600_000,
            max_cool_down_ms: 3_600_000,
        };
    })
    .await;

    // A healthy host gets fault-trap's live answers (LOCKDOWN, batch size 7) and the pin.
    set_tags(&s, "cad-1", json!(["cad"])).await;
    let live = preflight_ok(&s, "cad-1").await;
    assert_eq!((live["client_mode"].as_str(), live["batch_size"].as_u64()), (Some("LOCKDOWN"), Some(7)));
    let mut cad = ClientRules::default();
    cad.sync(&s, "cad-1", preflight("cad-1")).await;
    assert!(holds_pin(&cad), "{cad:?}");

    // Two preflights of a host the plugin traps for open both of its breakers; both succeed.
    set_tags(&s, "bad-1", json!(["fault"])).await;
    for _ in 0..2 {
        preflight_ok(&s, "bad-1").await;
    }
    let trap = plugin_status(&s, "fault-trap").await;
    assert_eq!(trap["degraded"], true, "{trap}");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    for hook in ["configure", "select-rules"] {
        let b = breaker(&trap, hook);
        assert_eq!(b["state"], "open", "{b}");
        assert!(b["open_until_unix_ms"].as_u64().is_some_and(|t| t > now_ms), "until when: {b}");
        assert_eq!((b["times_opened"].as_u64(), b["skipped_calls"].as_u64()), (Some(1), Some(0)), "{b}");
    }
    assert_eq!(breaker(&trap, "triage")["state"], "closed");
    let (calls, errors) = (trap["calls"].clone(), trap["errors"].clone());

    // While it is open, cad-1 stops matching the pin. Its preflight keeps fault-trap's last
    // good decision, and the skipped (degraded) selection must not remove the pinned rule.
    set_tags(&s, "cad-1", json!([])).await;
    let kept = preflight_ok(&s, "cad-1").await;
    assert_eq!((kept["client_mode"].as_str(), kept["batch_size"].as_u64()), (Some("LOCKDOWN"), Some(7)));
    assert_eq!(cad.sync(&s, "cad-1", preflight("cad-1")).await.1, 0, "nothing removed");
    assert!(holds_pin(&cad), "a skipped plugin never removes host rules");
    cad.assert_matches_server(&s, "cad-1").await;
    let h = s.admin(Method::GET, "/api/v1/hosts/cad-1", None).await.json();
    let chain = h["sync"]["decided"]["chain"].as_array().cloned().unwrap_or_default();
    for hook in ["configure", "select-rules"] {
        let part = chain.iter().find(|c| c["hook"] == hook && c["by"] == "fault-trap");
        assert_eq!(part.map(|c| c["source"].clone()), Some(json!("last_good")), "{hook}: {chain:?}");
    }

    // A host the plugin never answered for syncs on the config defaults.
    let fresh = preflight_ok(&s, "new-1").await;
    assert_eq!((fresh["client_mode"].as_str(), fresh["batch_size"].as_u64()), (Some("MONITOR"), Some(50)));
    let mut new = ClientRules::default();
    new.sync(&s, "new-1", preflight("new-1")).await;
    new.assert_matches_server(&s, "new-1").await;

    // Four preflights skipped both hooks (and the two effective-rules reads select-rules
    // again); none of them entered the guest.
    let trap = plugin_status(&s, "fault-trap").await;
    assert_eq!((&trap["calls"], &trap["errors"]), (&calls, &errors), "{trap}");
    assert_eq!(breaker(&trap, "configure")["skipped_calls"], 4, "{trap}");
    assert_eq!(breaker(&trap, "select-rules")["skipped_calls"], 6, "{trap}");
    assert_eq!(trap["skipped_calls"], 10);

    let metrics = s.send(Method::GET, "/metrics", &[], vec![]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let generation = trap["hash"].as_str().unwrap();
    let labels = format!(r#"{{plugin="fault-trap",generation="{generation}",hook="configure"}}"#);
    assert!(text.contains(&format!("dasher_plugin_breaker_open{labels} 1\n")), "{text}");
    assert!(text.contains(&format!("dasher_plugin_calls_skipped_total{labels} 4\n")), "{text}");
    assert!(text.contains(&format!("dasher_plugin_breaker_open_until_seconds{labels} ")), "{text}");
}
