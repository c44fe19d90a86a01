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
fn review_fixtures_run_through_the_host() {
    let dir = plugin_dir(&["approval-voting"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/approval-voting/fixtures");
    let report = tools::test(&dir.path().join("approval-voting.wasm"), &fixtures).unwrap();
    assert!(report.cases.len() >= 5, "{report}");
    assert!(report.passed(), "{report}");
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
