//! Fault fixtures: the manager keeps answering, within the deadline, with the last good
//! decision or the configured fallback, and records the fault.

use crate::support::*;
use dasher_policy::{Fallback, Source};
use dasher_sdk::domain::{ConfigDecision, HostFacts};
use dasher_sdk::plugin::SelectionDecision;
use dasher_sdk::wire::ClientMode;
use serde_json::json;
use tokio::time::timeout;

fn faulty(h: &HostFacts) -> HostFacts {
    let mut h = h.clone();
    h.tags.push("fault".into());
    h
}

/// Runs every hook of `fixture` against a triggering host and checks fail-static.
async fn check_fixture(fixture: &str, expected_kind: &str) {
    let dir = plugin_dir(&[fixture]);
    let mut cfg = config(dir.path(), &[]);
    cfg.fallback = Fallback {
        configure: Some(ConfigDecision {
            client_mode: Some(ClientMode::Lockdown),
            batch_size: Some(42),
            ..Default::default()
        }),
        select_rules: Some(SelectionDecision::replacing(["fallback-set"])),
    };
    cfg.breaker.open_after_faults = 0; // every call really runs the guest
    if expected_kind == "oom" {
        // Reaching 32 MiB takes a few page-zeroing grows: allow for 2 busy shared cores.
        cfg.limits.deadline_ms = 2_000;
        cfg.limits.triage_deadline_ms = 2_000;
    }
    let (m, _) = start(cfg);
    assert_eq!(m.status().plugins.len(), 1, "{fixture} loads: {:?}", m.status().load_errors);

    // A host with no last good decision gets the fallback, three calls in a row (the
    // deadline must hold on the 2nd and 3rd call too, on fresh instances).
    let bad = faulty(&host("never-good"));
    for _ in 0..3 {
        let d = timeout(NO_HANG, m.configure(&bad)).await.expect("configure did not hang");
        assert_eq!(d.value.batch_size, Some(42), "{fixture}: fallback applies");
        assert!(d.degraded);
        assert_eq!(d.made_by[0].source, Source::Fallback);
        assert_eq!(d.faults[0].kind, expected_kind, "{fixture}: {:?}", d.faults);
    }
    let s = timeout(NO_HANG, m.select_rules(&bad)).await.expect("select-rules did not hang");
    assert_eq!(s.value.rule_sets.unwrap(), vec!["fallback-set"]);
    assert_eq!(s.faults[0].kind, expected_kind);
    let t = timeout(NO_HANG, m.triage(&bad, &[])).await.expect("triage did not hang");
    assert!(t.degraded && t.value.verdicts.is_empty());

    // A host that got a good decision keeps it when the plugin later fails for it.
    let good = host("was-good");
    let live = m.configure(&good).await;
    assert_eq!(live.made_by[0].source, Source::Live);
    let d = timeout(NO_HANG, m.configure(&faulty(&good))).await.expect("did not hang");
    assert_eq!(d.made_by[0].source, Source::LastGood, "{fixture}");
    assert_eq!(d.value, live.value, "{fixture}: last good decision, never weakened");

    // The plugin still answers healthy hosts (a trapped instance was replaced).
    assert_eq!(m.configure(&host("healthy")).await.made_by[0].source, Source::Live);

    let status = &m.status().plugins[0];
    assert!(status.errors >= 6, "{fixture}: {status:?}");
    assert!(status.faults.get(expected_kind).copied().unwrap_or(0) >= 5, "{fixture}: {status:?}");
    assert!(status.last_error.is_some());
}

#[tokio::test]
async fn trap_fails_static() {
    check_fixture("fault-trap", "trap").await;
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_deadline() {
    check_fixture("fault-loop", "timeout").await;
}

#[tokio::test]
async fn unbounded_memory_is_stopped_by_the_limit() {
    check_fixture("fault-memory", "oom").await;
}

#[tokio::test]
async fn invalid_output_is_rejected() {
    check_fixture("fault-invalid-output", "invalid_output").await;
}

#[tokio::test]
async fn on_failure_reject_asks_for_a_503() {
    let dir = plugin_dir(&["fault-trap", "staged-rollout"]);
    let mut cfg = config(dir.path(), &[]);
    cfg.plugin.entry("fault-trap".into()).or_default().on_failure = dasher_policy::OnFailure::Reject;
    let (m, _) = start(cfg);
    assert!(m.configure(&faulty(&host("h"))).await.reject);
    assert!(!m.configure(&host("h")).await.reject);
}

#[tokio::test]
async fn a_plugin_failing_its_smoke_test_is_not_loaded() {
    let dir = plugin_dir(&["fault-trap", "staged-rollout"]);
    let (m, _) = start(config(dir.path(), &[("fault-trap", json!({"when_tag": "*"}))]));
    let status = m.status();
    assert_eq!(status.plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["staged-rollout"]);
    assert!(status.load_errors[0].error.contains("smoke test"), "{status:?}");
}

#[tokio::test]
async fn a_plugin_needing_a_newer_server_is_refused_naming_both_versions() {
    let bytes = component("staged-rollout");
    let patched = dasher_policy::tools::set_min_server_version(&bytes, "99.0.0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("staged-rollout.wasm"), patched).unwrap();
    let (m, _) = start(config(dir.path(), &[]));
    let err = &m.status().load_errors[0].error;
    assert!(err.contains("99.0.0") && err.contains(dasher_policy::SERVER_VERSION), "{err}");
}

/// A call's buffered kv writes are saved when it returns and dropped when it traps, while an
/// atomic kv operation before the trap stays applied (the example event-triage test covers
/// reading a call's own unsaved writes: prevalence within a batch).
#[tokio::test]
async fn a_trapped_call_saves_none_of_its_kv_writes() {
    let dir = plugin_dir(&["fault-trap"]);
    let mut cfg = config(dir.path(), &[]);
    cfg.breaker.open_after_faults = 0;
    let (m, kv) = start(cfg);
    assert_eq!(m.configure(&host("ok")).await.made_by[0].source, Source::Live);
    let d = timeout(NO_HANG, m.configure(&faulty(&host("bad")))).await.expect("did not hang");
    assert_eq!(d.faults[0].kind, "trap");
    let saved = kv.dump("plugin:fault-trap");
    // The atomic increment before the panic stays applied; the buffered set is dropped.
    assert_eq!(saved.keys().collect::<Vec<_>>(), vec!["attempts:bad", "configured:ok"], "{saved:?}");
    assert_eq!(saved["attempts:bad"], b"1");
    let d = timeout(NO_HANG, m.configure(&faulty(&host("bad")))).await.expect("did not hang");
    assert_eq!(d.faults[0].kind, "trap");
    let saved = kv.dump("plugin:fault-trap");
    assert_eq!(saved["attempts:bad"], b"2", "each trapped call's increment counted once");
    assert!(!saved.contains_key("trapped:bad"), "{saved:?}");
}
