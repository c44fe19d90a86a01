//! Chaining in configured order and the documented merge rules, through the host.

use crate::support::*;
use dasher_policy::Mode;
use dasher_sdk::plugin::Action;
use dasher_sdk::wire::ClientMode;
use dasher_store::model::{EventKind, EventRecord, NewEvent};
use serde_json::json;

fn ordered(dir: &std::path::Path, order: &[&str]) -> dasher_policy::PluginsConfig {
    let mut cfg = config(dir, &[("ruleset-targeting", json!({"always": ["global"]}))]);
    cfg.order = order.iter().map(|s| (*s).to_owned()).collect();
    cfg
}

#[tokio::test]
async fn configure_later_plugin_wins_per_field() {
    let dir = plugin_dir(&["staged-rollout", "fault-trap"]);
    // staged-rollout says MONITOR for a new host; fault-trap (healthy host) says LOCKDOWN, batch 7.
    let (m, _) = start(ordered(dir.path(), &["staged-rollout", "fault-trap"]));
    let d = m.configure(&host("new")).await;
    assert_eq!(d.value.client_mode, Some(ClientMode::Lockdown));
    assert_eq!(d.value.batch_size, Some(7));
    assert_eq!(d.made_by.iter().map(|c| c.plugin.as_str()).collect::<Vec<_>>(), vec!["staged-rollout", "fault-trap"]);

    let (m, _) = start(ordered(dir.path(), &["fault-trap", "staged-rollout"]));
    let d = m.configure(&host("new")).await;
    assert_eq!(d.value.client_mode, Some(ClientMode::Monitor), "later plugin's field wins");
    assert_eq!(d.value.batch_size, Some(7), "unset fields do not erase earlier opinions");
}

#[tokio::test]
async fn select_rules_unions_with_later_plugin_first() {
    let dir = plugin_dir(&["ruleset-targeting", "fault-loop"]);
    let (m, _) = start(ordered(dir.path(), &["ruleset-targeting", "fault-loop"]));
    assert_eq!(m.select_rules(&host("h")).await.value.rule_sets.unwrap(), vec!["fault-loop-set", "global"]);
    let (m, _) = start(ordered(dir.path(), &["fault-loop", "ruleset-targeting"]));
    assert_eq!(m.select_rules(&host("h")).await.value.rule_sets.unwrap(), vec!["global", "fault-loop-set"]);
}

#[tokio::test]
async fn triage_keep_wins_and_labels_union() {
    let dir = plugin_dir(&["event-triage", "fault-memory"]);
    let (m, _) = start(ordered(dir.path(), &[]));
    let record = EventRecord {
        id: 5,
        machine_id: "h".into(),
        event: NewEvent {
            kind: EventKind::Execution,
            dedupe_key: "k".into(),
            decision: "ALLOW_BINARY".into(),
            file_sha256: "ef".repeat(32),
            file_bundle_hash: String::new(),
            occurred_at_unix: 0.0,
            received_at_unix: 0,
            body: json!({"signing_id": "platform:com.apple.ls", "decision": "ALLOW_BINARY"}),
        },
        triage: None,
    };
    let d = m.triage(&host("h"), &[record]).await;
    // event-triage drops platform noise; fault-memory keeps everything: keep wins.
    let v = d.value.get(5).unwrap();
    assert_eq!(v.action, Some(Action::Keep));
    assert_eq!(v.labels, vec!["fault-memory"]);
    assert_eq!(d.made_by.len(), 2);
}

#[tokio::test]
async fn shadow_plugin_is_recorded_not_applied() {
    let dir = plugin_dir(&["staged-rollout", "fault-trap"]);
    let mut cfg = ordered(dir.path(), &[]);
    cfg.plugin.entry("fault-trap".into()).or_default().mode = Mode::Shadow;
    let (m, _) = start(cfg);
    let d = m.configure(&host("new")).await;
    assert_eq!(d.value.client_mode, Some(ClientMode::Monitor), "shadow LOCKDOWN not applied");
    assert_eq!(d.value.batch_size, None);
    assert_eq!(d.made_by.len(), 1);
    assert_eq!(d.shadow.len(), 1);
    assert_eq!(d.shadow[0].decision.as_ref().unwrap()["client_mode"], "LOCKDOWN");
    let count = |m: &dasher_policy::PluginManager| {
        m.status().plugins.iter().find(|p| p.name == "fault-trap").unwrap().shadow_disagreements
    };
    assert_eq!(count(&m), 0, "the manager does not judge differences: its caller does");
    let trap = &d.shadow[0];
    m.note_shadow_disagreement(&trap.plugin, &trap.generation);
    m.note_shadow_disagreement(&trap.plugin, "an-old-generation");
    assert_eq!(count(&m), 1, "counted for the active generation only");
    assert_eq!(m.status().plugins.iter().find(|p| p.name == "fault-trap").unwrap().mode, Mode::Shadow);
}
