//! The circuit breaker with the real fault fixture: after K faults a hook's breaker opens and
//! calls fail static without entering the guest (proved by the fixture's kv write on every
//! healthy entry and by the call counters, never by timing); after the cool-down one trial
//! call decides; a new generation (reload, settings change, rollback) starts closed.

use crate::support::*;
use dasher_policy::{BreakerConfig, BreakerState, BreakerStatus, OnFailure, PluginManager, PluginsConfig, Source};
use dasher_sdk::domain::HostFacts;
use dasher_sdk::plugin::Hook;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Opens after 3 faults; a cool-down of an hour, so "still open" never depends on timing.
fn long_cool_down() -> BreakerConfig {
    BreakerConfig {
        open_after_faults: 3,
        min_fault_percent: 50,
        window_secs: 3_600,
        cool_down_ms: 3_600_000,
        max_cool_down_ms: 3_600_000,
    }
}

fn faulty(machine_id: &str) -> HostFacts {
    let mut h = host(machine_id);
    h.tags.push("fault".into());
    h
}

fn trap_config(dir: &std::path::Path) -> PluginsConfig {
    let mut cfg = config(dir, &[]);
    cfg.breaker = long_cool_down();
    cfg
}

fn breaker(m: &PluginManager, hook: Hook) -> BreakerStatus {
    let status = m.status();
    let p = status.plugins.iter().find(|p| p.name == "fault-trap").expect("fault-trap loaded");
    p.breakers.iter().find(|b| b.hook == hook).cloned().unwrap_or_else(|| panic!("no {hook} breaker: {p:?}"))
}

/// Calls `configure` for a faulting host until the breaker trips (exactly `n` times).
async fn trip(m: &PluginManager, n: u32) {
    for i in 0..n {
        let d = timeout(NO_HANG, m.configure(&faulty("bad"))).await.expect("did not hang");
        assert_eq!(d.faults[0].kind, "trap", "fault {i} entered the guest: {d:?}");
    }
    assert_eq!(breaker(m, Hook::Configure).state, BreakerState::Open);
}

/// Polls (bounded) until the configure breaker's cool-down is over.
async fn wait_half_open(m: &PluginManager) {
    let started = Instant::now();
    for _ in 0..10_000 {
        if breaker(m, Hook::Configure).state == BreakerState::HalfOpen {
            return;
        }
        assert!(started.elapsed() < NO_HANG, "breaker never became half-open: {:?}", breaker(m, Hook::Configure));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("breaker never became half-open");
}

/// kv keys the fixture saved with a call that returned (`configured:<id>` on every healthy
/// `configure` entry; its atomic `attempts:<id>` counters of trapped calls are left out).
fn saved(kv: &dasher_policy::MemoryKv) -> Vec<String> {
    kv.dump("plugin:fault-trap").into_keys().filter(|k| k.starts_with("configured:")).collect()
}

#[tokio::test]
async fn after_k_faults_the_breaker_opens_and_calls_fail_static_without_entering_the_guest() {
    let dir = plugin_dir(&["fault-trap"]);
    let (m, kv) = start(trap_config(dir.path()));
    let good = host("was-good");
    let live = m.configure(&good).await;
    assert_eq!(live.made_by[0].source, Source::Live);

    trip(&m, 3).await;
    let b = breaker(&m, Hook::Configure);
    assert_eq!((b.times_opened, b.skipped_calls, b.faults_in_window), (1, 0, 3), "{b:?}");
    assert!(b.open_until_unix_ms.is_some(), "says until when: {b:?}");
    let calls_when_opened = m.status().plugins[0].calls;

    // A healthy host the plugin would answer (and record in kv) is skipped: no opinion.
    let fresh = m.configure(&host("fresh")).await;
    assert_eq!(fresh.faults[0].kind, "breaker_open", "{fresh:?}");
    assert_eq!(fresh.made_by[0].source, Source::NoOpinion);
    assert!(fresh.degraded && !fresh.reject);
    // A host with a last good decision keeps it, exactly as after a fault.
    let kept = m.configure(&good).await;
    assert_eq!((kept.made_by[0].source, &kept.value), (Source::LastGood, &live.value));
    let bad = m.configure(&faulty("bad")).await;
    assert_eq!(bad.faults[0].kind, "breaker_open", "a faulting host does not pay the trap either");

    // Proof that the guest was not entered: it writes `configured:<id>` on every healthy
    // call, and no call was counted; the trapped calls saved nothing either.
    assert_eq!(saved(&kv), vec!["configured:was-good"]);
    let status = &m.status().plugins[0];
    assert_eq!(status.calls, calls_when_opened, "{status:?}");
    assert_eq!(status.skipped_calls, 3);
    assert!(status.degraded);
    assert_eq!(breaker(&m, Hook::Configure).skipped_calls, 3);

    // Each hook has its own breaker: select-rules still runs live.
    let s = m.select_rules(&host("fresh")).await;
    assert_eq!(s.made_by[0].source, Source::Live, "{s:?}");
    assert_eq!(breaker(&m, Hook::SelectRules).state, BreakerState::Closed);

    // on_failure = "reject" plugins still reject while skipped (a config change that does
    // not touch settings, mode or limits keeps the generation and its open breaker).
    let mut cfg = trap_config(dir.path());
    cfg.plugin.entry("fault-trap".into()).or_default().on_failure = OnFailure::Reject;
    let report = m.update_config(cfg).await;
    assert!(!report.swapped, "{report:?}");
    let d = m.configure(&host("fresh")).await;
    assert!(d.reject && d.faults[0].kind == "breaker_open", "{d:?}");
    assert_eq!(saved(&kv), vec!["configured:was-good"]);
}

#[tokio::test]
async fn after_the_cool_down_a_trial_call_decides_and_a_good_one_closes_the_breaker() {
    let dir = plugin_dir(&["fault-trap"]);
    let (m, kv) = start(trap_config(dir.path()));
    trip(&m, 3).await;
    assert_eq!(m.configure(&host("skipped")).await.faults[0].kind, "breaker_open");

    // Breaker settings apply to the running generation: shorten the cool-down to 1 ms.
    let mut cfg = trap_config(dir.path());
    cfg.breaker.cool_down_ms = 1;
    cfg.breaker.max_cool_down_ms = 1_000;
    assert!(!m.update_config(cfg).await.swapped);

    // A trial for a faulting host enters the guest, faults, and opens it again for twice
    // the cool-down.
    wait_half_open(&m).await;
    let trial = m.configure(&faulty("bad")).await;
    assert_eq!(trial.faults[0].kind, "trap", "the trial entered the guest: {trial:?}");
    let b = breaker(&m, Hook::Configure);
    assert_eq!((b.cool_down_ms, b.times_opened), (2, 1), "{b:?}");

    // A trial that answers closes it; the guest ran (its kv write was saved).
    wait_half_open(&m).await;
    let d = m.configure(&host("healthy")).await;
    assert_eq!(d.made_by[0].source, Source::Live, "{d:?}");
    assert!(d.faults.is_empty());
    let b = breaker(&m, Hook::Configure);
    assert_eq!((b.state, b.cool_down_ms, b.faults_in_window), (BreakerState::Closed, 1, 0), "{b:?}");
    assert!(!m.status().plugins[0].degraded);
    assert_eq!(saved(&kv), vec!["configured:healthy"], "only live calls save state; skipped/trapped ones none");

    // Closing starts a fresh window: one more fault does not reopen it.
    assert_eq!(m.configure(&faulty("bad")).await.faults[0].kind, "trap");
    assert_eq!(breaker(&m, Hook::Configure).state, BreakerState::Closed);
}

#[tokio::test]
async fn a_new_generation_starts_with_its_breakers_closed() {
    let dir = plugin_dir(&["fault-trap"]);
    let (m, kv) = start(trap_config(dir.path()));
    let first = m.status().plugins[0].hash.clone();
    trip(&m, 3).await;

    // Hot reload of a changed file: new generation, closed breaker, calls enter the guest.
    let patched = dasher_policy::tools::set_min_server_version(&component("fault-trap"), "0.0.1").unwrap();
    std::fs::write(dir.path().join("fault-trap.wasm"), patched).unwrap();
    let report = m.reload().await;
    assert!(report.swapped && report.errors.is_empty(), "{report:?}");
    assert_ne!(m.status().plugins[0].hash, first);
    let b = breaker(&m, Hook::Configure);
    assert_eq!((b.state, b.times_opened, b.skipped_calls), (BreakerState::Closed, 0, 0), "{b:?}");
    assert_eq!(m.configure(&host("after-reload")).await.made_by[0].source, Source::Live);
    assert!(saved(&kv).contains(&"configured:after-reload".to_owned()));

    // Trip the new generation, then a settings change (re-initialised generation) resets it.
    trip(&m, 3).await;
    let mut cfg = trap_config(dir.path());
    cfg.plugin.entry("fault-trap".into()).or_default().settings = json!({"when_tag": "broken"});
    let report = m.update_config(cfg).await;
    assert!(report.swapped, "{report:?}");
    assert_eq!(breaker(&m, Hook::Configure).state, BreakerState::Closed);
    assert_eq!(m.configure(&faulty("bad")).await.made_by[0].source, Source::Live, "no longer faults for it");

    // Rolling back to the first generation (its breaker was left open above) starts it closed.
    let report = m.update_config(trap_config(dir.path())).await;
    assert!(report.swapped, "default settings again: {report:?}");
    trip(&m, 3).await;
    let (_, to) = m.rollback("fault-trap").expect("an older generation is kept");
    assert_eq!(m.status().plugins[0].hash, to);
    assert_eq!(breaker(&m, Hook::Configure).state, BreakerState::Closed);
    assert_eq!(m.configure(&host("after-rollback")).await.made_by[0].source, Source::Live);
}
