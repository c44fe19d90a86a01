//! Tooling: inspect, install, test against fixtures.

use crate::support::*;
use dasher_policy::tools;
use dasher_sdk::plugin::Hook;

#[test]
fn inspect_reads_metadata_without_compiling() {
    let dir = plugin_dir(&["staged-rollout"]);
    let i = tools::inspect(&dir.path().join("staged-rollout.wasm")).unwrap();
    assert_eq!(i.metadata.name, "staged-rollout");
    assert_eq!(i.metadata.hooks, vec![Hook::Init, Hook::Configure]);
    assert!(i.metadata.settings_schema.is_some());
    assert!(i.compatible.is_ok());
    assert!(i.to_string().contains("hooks:              init, configure"));
}

#[test]
fn install_refuses_files_that_are_not_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"\0asm\x01\0\0\0garbage").unwrap();
    let target = tempfile::tempdir().unwrap();
    assert!(tools::install(&junk, target.path()).is_err());
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0, "nothing left behind");
}

#[test]
fn test_runs_fixture_cases_through_the_host() {
    let dir = plugin_dir(&["staged-rollout"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/staged-rollout/fixtures");
    let report = tools::test(&dir.path().join("staged-rollout.wasm"), &fixtures).unwrap();
    assert!(report.cases.len() >= 3, "{report}");
    assert!(report.passed(), "{report}");
    let calls: Vec<_> = report.cases.iter().filter(|c| c.output_bytes > 0).collect();
    assert!(!calls.is_empty(), "{report}");
    assert!(calls.iter().all(|c| c.peak_memory_bytes > 0 && c.instructions > 0), "{report}");
}

#[test]
fn event_triage_fixtures_share_state_across_steps() {
    let dir = plugin_dir(&["event-triage"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/event-triage/fixtures");
    let report = tools::test(&dir.path().join("event-triage.wasm"), &fixtures).unwrap();
    assert!(report.cases.len() >= 4, "{report}");
    assert!(report.passed(), "{report}");
}

#[test]
fn review_fixtures_run_through_the_host() {
    let dir = plugin_dir(&["approval-voting"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/approval-voting/fixtures");
    let report = tools::test(&dir.path().join("approval-voting.wasm"), &fixtures).unwrap();
    assert!(report.cases.len() >= 5, "{report}");
    assert!(report.passed(), "{report}");
}

#[test]
fn fixture_failures_name_the_step_and_the_kv_key() {
    let dir = plugin_dir(&["event-triage"]);
    let fixtures = tempfile::tempdir().unwrap();
    let block = |id: u64, m: &str| {
        serde_json::json!({"hook": "triage", "input": {"host": {"machine_id": m}, "events": [
            {"id": id, "decision": "BLOCK_SIGNINGID", "team_id": "EQHXZ8M8AV", "signing_id": "EQHXZ8M8AV:x"}]}})
    };
    let mut second = block(2, "m2");
    second["expect"] = serde_json::json!({"verdicts": [{"event_id": 2, "proposals": []}]});
    let case = serde_json::json!({
        "settings": {"approved_team_ids": ["EQHXZ8M8AV"], "propose_after_hosts": 2},
        "steps": [block(1, "m1"), second],
    });
    std::fs::write(fixtures.path().join("a_step.json"), case.to_string()).unwrap();
    let kv_case = serde_json::json!({
        "settings": {"approved_team_ids": ["EQHXZ8M8AV"]},
        "hook": "triage", "input": block(1, "m1")["input"].clone(),
        "expect_kv": {"hosts:EQHXZ8M8AV:x": 5},
    });
    std::fs::write(fixtures.path().join("b_kv.json"), kv_case.to_string()).unwrap();
    std::fs::write(
        fixtures.path().join("c_error.json"),
        r#"{"hook":"init","settings":{"propose_after_hosts":0},"expect_error":"Team ID"}"#,
    )
    .unwrap();
    let report = tools::test(&dir.path().join("event-triage.wasm"), fixtures.path()).unwrap();
    let why: Vec<&str> = report.cases.iter().map(|c| c.failure.as_deref().unwrap_or("passed")).collect();
    assert!(why[0].starts_with("steps[1]: $.verdicts[0].proposals"), "{report}");
    assert!(why[1].contains(r#"kv "hosts:EQHXZ8M8AV:x""#) && why[1].contains(r#"got "1""#), "{report}");
    assert!(why[2].contains("expected a message containing \"Team ID\""), "{report}");
}

#[test]
fn test_reports_failing_cases() {
    let dir = plugin_dir(&["staged-rollout"]);
    let fixtures = tempfile::tempdir().unwrap();
    std::fs::write(
        fixtures.path().join("wrong.json"),
        r#"{"hook":"configure","settings":{},"input":{"machine_id":"m"},"expect":{"client_mode":"LOCKDOWN"}}"#,
    )
    .unwrap();
    let report = tools::test(&dir.path().join("staged-rollout.wasm"), fixtures.path()).unwrap();
    assert!(!report.passed());
    assert!(report.cases[0].failure.as_ref().unwrap().contains("client_mode"), "{report}");
}

#[test]
fn replay_shows_what_a_candidate_would_change() {
    let dir = plugin_dir(&["staged-rollout"]);
    let mut old = host("old");
    old.now_unix += 30 * 86_400;
    let hosts = vec![host("new"), old];
    let applied = vec![serde_json::json!({"client_mode": "MONITOR"}), serde_json::json!({"client_mode": "MONITOR"})];
    let r = tools::replay(
        &dir.path().join("staged-rollout.wasm"),
        r#"{"lockdown_after_days": 14}"#,
        Hook::Configure,
        &hosts,
        &applied,
    )
    .unwrap();
    assert!(!r[0].differs, "{r:?}");
    assert!(r[1].differs);
    assert_eq!(r[1].candidate.as_ref().unwrap()["client_mode"], "LOCKDOWN");
}
