//! `dasher-sim --scenario`: the shipped scenario files drive the example plugins with the
//! settings their comments give, and the per-group report shows what each group ended with —
//! the way a plugin author checks a policy at fleet scale.

use dasher_policy::PluginsConfig;
use dasher_sim::runner::{self, RunConfig};
use dasher_sim::scenario::Scenario;
use dasher_tests::{TOKEN, plugin_server};
use serde_json::{Value, json};
use std::time::Duration;

fn scenario(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../simulator/scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `file` with `hosts` hosts against a server with `plugin` configured with `settings`;
/// returns the report, and the server with its plugin directory (for follow-up checks).
async fn run(
    file: &str,
    hosts: usize,
    plugin: &'static str,
    settings: Value,
) -> (Value, (dasher_tests::TestServer, tempfile::TempDir)) {
    let (s, dir) = plugin_server(&[plugin], move |p: &mut PluginsConfig| {
        p.plugin.entry(plugin.into()).or_default().settings = settings;
    })
    .await;
    let cfg = RunConfig {
        server: s.handle.as_ref().unwrap().sync_base_url(),
        admin_token: Some(TOKEN.into()),
        hosts,
        duration: Duration::from_secs(2),
        concurrency: 16,
        closed_loop: true,
        backoff_scale: 0.0,
        executions_per_sync: 6,
        scenario: Some(scenario(file)),
        ..Default::default()
    };
    let report = runner::run(&cfg).await.unwrap();
    assert_eq!(report["converged_hosts"], json!(hosts), "{report:#}");
    (report, (s, dir))
}

fn modes(report: &Value, group: &str) -> Value {
    report["groups"][group]["client_mode"].clone()
}

/// Every host of `group` has a rule-set list containing `set`.
fn all_have_set(report: &Value, group: &str, set: &str) -> bool {
    let g = &report["groups"][group];
    let sets = g["rule_sets"].as_object().unwrap_or_else(|| panic!("no rule sets for {group}: {report:#}"));
    let with: u64 = sets.iter().filter(|(k, _)| k.split(',').any(|s| s == set)).map(|(_, n)| n.as_u64().unwrap()).sum();
    with == g["hosts"].as_u64().unwrap() && with > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rollout_scenario_ends_each_group_in_its_mode() {
    let settings = json!({"lockdown_hostnames": ["kiosk-*"], "lockdown_groups": ["it"],
                          "lockdown_os_at_least": "26.0", "exempt_hostnames": ["build-*"]});
    let (report, _s) = run("staged-rollout.toml", 60, "staged-rollout", settings).await;
    let g = &report["groups"];
    assert_eq!(g["kiosks"]["hosts"], 3, "shares 5/5/5/60/25 of 60 hosts: {report:#}");
    assert_eq!(g["desks-tahoe"]["hosts"], 36);
    assert_eq!(modes(&report, "kiosks"), json!({"LOCKDOWN": 3}), "{report:#}");
    assert_eq!(modes(&report, "it"), json!({"LOCKDOWN": 3}));
    assert_eq!(modes(&report, "build-hosts"), json!({"MONITOR": 3}), "exempt although in group it");
    assert_eq!(modes(&report, "desks-tahoe"), json!({"LOCKDOWN": 36}));
    assert_eq!(modes(&report, "desks-older"), json!({"MONITOR": 15}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruleset_targeting_scenario_gives_each_group_its_sets() {
    let settings = json!({"always": ["global"], "targets": [
        {"rule_set": "developer-tools", "groups": ["engineering"]},
        {"rule_set": "kiosk", "tags": ["kiosk"]},
        {"rule_set": "sequoia-compat", "os_major": [15]}]});
    let (report, _s) = run("ruleset-targeting.toml", 40, "ruleset-targeting", settings).await;
    assert!(all_have_set(&report, "engineering", "developer-tools"), "{report:#}");
    assert!(all_have_set(&report, "kiosks", "kiosk"), "tags set from the scenario: {report:#}");
    assert!(all_have_set(&report, "sequoia-sales", "sequoia-compat"), "{report:#}");
    assert!(!all_have_set(&report, "engineering", "kiosk"));
    assert!(all_have_set(&report, "sequoia-sales", "global"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_triage_scenario_proposes_the_approved_vendor() {
    let settings = json!({"approved_team_ids": ["EQHXZ8M8AV", "BJ4HAAB9B3"], "propose_after_hosts": 3});
    let (report, (s, _dir)) = run("event-triage.toml", 30, "event-triage", settings).await;
    assert!(report["groups"]["design"]["blocked_executions"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["groups"]["engineering"]["blocked_executions"].as_u64().unwrap() > 0, "{report:#}");
    let proposals = s.admin(http::Method::GET, "/api/v1/proposals", None).await.json();
    let ids: Vec<&str> =
        proposals["proposals"].as_array().unwrap().iter().filter_map(|p| p["rule"]["identifier"].as_str()).collect();
    assert!(ids.contains(&"BJ4HAAB9B3:us.zoom.xos"), "zoom blocked on >= 3 design hosts is proposed: {ids:?}");
    assert!(!ids.iter().any(|i| i.contains("figma")), "Figma's Team ID is not approved: {ids:?}");
}
