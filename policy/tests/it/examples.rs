//! Each example plugin through the real host.

use crate::support::*;
use dasher_policy::Source;
use dasher_sdk::plugin::{Action, ProposalScope};
use dasher_sdk::wire::ClientMode;
use dasher_store::model::{EventKind, EventRecord, NewEvent};
use serde_json::json;

#[tokio::test]
async fn staged_rollout_configures_through_the_host() {
    let dir = plugin_dir(&["staged-rollout"]);
    let (m, _) = start(config(
        dir.path(),
        &[("staged-rollout", json!({"lockdown_after_days": 14, "lockdown_hostnames": ["lab-*"]}))],
    ));
    let status = m.status();
    assert_eq!(status.plugins.len(), 1, "{status:?}");
    let mut h = host("new-host");
    let d = m.configure(&h).await;
    assert_eq!(d.value.client_mode, Some(ClientMode::Monitor));
    assert_eq!(d.made_by[0].plugin, "staged-rollout");
    assert_eq!(d.made_by[0].generation, status.plugins[0].hash);
    assert_eq!(d.made_by[0].source, Source::Live);
    h.now_unix += 15 * 86_400;
    assert_eq!(m.configure(&h).await.value.client_mode, Some(ClientMode::Lockdown));
    let mut lab = host("x");
    lab.hostname = "lab-7".into();
    assert_eq!(m.configure(&lab).await.value.client_mode, Some(ClientMode::Lockdown));
    // Only declared hooks are called: no select-rules or triage opinion.
    let s = m.select_rules(&h).await;
    assert!(s.made_by.is_empty() && s.value.rule_sets.is_none());
    assert!(m.status().plugins[0].calls >= 3);
}

#[tokio::test]
async fn staged_rollout_bad_settings_reject_the_load() {
    let dir = plugin_dir(&["staged-rollout"]);
    let (m, _) = start(config(dir.path(), &[("staged-rollout", json!({"lockdown_after_days": 99999}))]));
    let status = m.status();
    assert!(status.plugins.is_empty());
    assert!(status.load_errors[0].error.contains("lockdown_after_days"), "{status:?}");
}

#[tokio::test]
async fn ruleset_targeting_selects_through_the_host() {
    let dir = plugin_dir(&["ruleset-targeting"]);
    let settings = json!({"always": ["global"], "targets": [{"rule_set": "developer-tools", "groups": ["engineering"]}, {"rule_set": "laptops", "model_families": ["MacBookPro"]}]});
    let (m, _) = start(config(dir.path(), &[("ruleset-targeting", settings)]));
    let mut h = host("eng-1");
    h.primary_user_groups = vec!["engineering".into()];
    let d = m.select_rules(&h).await;
    assert_eq!(d.value.rule_sets.unwrap(), vec!["developer-tools", "laptops", "global"]);
    assert!(!d.degraded);
}

fn blocked(id: u64, machine: &str, team: &str, signing_id: &str) -> EventRecord {
    EventRecord {
        id,
        machine_id: machine.into(),
        event: NewEvent {
            kind: EventKind::Execution,
            dedupe_key: format!("k{id}"),
            decision: "BLOCK_UNKNOWN".into(),
            file_sha256: "cd".repeat(32),
            file_bundle_hash: String::new(),
            occurred_at_unix: 1.0,
            received_at_unix: 2,
            body: json!({"file_sha256": "cd".repeat(32), "file_name": "tool", "decision": "BLOCK_UNKNOWN", "team_id": team, "signing_id": signing_id}),
        },
        triage: None,
    }
}

#[tokio::test]
async fn event_triage_labels_drops_and_proposes_via_kv() {
    let dir = plugin_dir(&["event-triage"]);
    let (m, kv) = start(config(
        dir.path(),
        &[("event-triage", json!({"approved_team_ids": ["EQHXZ8M8AV"], "propose_after_hosts": 3}))],
    ));
    let mut noise = blocked(10, "m0", "", "platform:com.apple.ls");
    noise.event.decision = "ALLOW_BINARY".into();
    noise.event.body["decision"] = json!("ALLOW_BINARY");
    let d = m.triage(&host("m0"), &[noise, blocked(11, "m0", "ZMCG7MLDV9", "ZMCG7MLDV9:com.other")]).await;
    assert_eq!(d.value.get(10).unwrap().action, Some(Action::Drop));
    assert_eq!(d.value.get(11).unwrap().labels, vec!["team:ZMCG7MLDV9"]);
    let approved = |id, m: &str| blocked(id, m, "EQHXZ8M8AV", "EQHXZ8M8AV:com.vendor.app");
    for (i, machine) in ["m1", "m2"].iter().enumerate() {
        let d = m.triage(&host(machine), &[approved(20 + i as u64, machine)]).await;
        assert!(d.value.verdicts[0].proposals.is_empty());
    }
    let d = m.triage(&host("m3"), &[approved(30, "m3")]).await;
    let p = &d.value.verdicts[0].proposals[0];
    assert_eq!(p.scope, ProposalScope::Global);
    assert_eq!(p.rule.identifier, "EQHXZ8M8AV:com.vendor.app");
    // Prevalence lives in the plugin's namespace of the server's kv.
    let ns = kv.dump("plugin:event-triage");
    assert_eq!(ns.get("hosts:EQHXZ8M8AV:com.vendor.app").map(Vec::as_slice), Some(&b"3"[..]), "{ns:?}");
    assert!(ns.contains_key("seen:EQHXZ8M8AV:com.vendor.app:m3"), "{:?}", ns.keys().collect::<Vec<_>>());
}
