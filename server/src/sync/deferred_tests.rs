use super::*;
use dasher_store::{Decider, DecisionProvenance, RuleAck, SyncPlan};

const NOW: i64 = 1_000_000;

fn inventory(seen: i64) -> HostInventory {
    HostInventory {
        machine_id: "m1".into(),
        santa_version: "2025.5".into(),
        hostname: "a.example".into(),
        first_seen_unix: 10,
        last_seen_unix: seen,
        ..Default::default()
    }
}

fn plan(started: i64) -> SyncPlan {
    SyncPlan {
        sync_type: Some(SyncType::Normal),
        rule_sets: vec!["global".into()],
        started_unix: started,
        policy_clean: None,
    }
}

/// The state a completed NORMAL sync leaves, preflight at `at`.
fn stored(at: i64) -> HostSyncState {
    HostSyncState {
        acked: Some(RuleAck { version: 3, rule_sets: vec!["global".into()], ..Default::default() }),
        last_sync_type: Some(SyncType::Normal),
        last_sync_reason: "incremental".into(),
        last_preflight_unix: at,
        last_postflight_unix: at + 1,
        last_outcome: SyncOutcome::Ok,
        plan: Some(plan(at)),
        decided: Some(DecisionProvenance { decided_unix: at, ..Default::default() }),
        ..Default::default()
    }
}

/// What a preflight at `now` computes from `old` when nothing changed.
fn preflight(old: &HostSyncState, now: i64) -> HostSyncState {
    let mut s = old.clone();
    s.plan = Some(plan(now));
    s.pending = None;
    s.last_preflight_unix = now;
    s.last_outcome = SyncOutcome::InProgress;
    s.decided = Some(DecisionProvenance { decided_unix: now, ..Default::default() });
    s
}

#[test]
fn only_time_changes_are_deferred() {
    let (inv_old, old) = (inventory(NOW - 30), stored(NOW - 30));
    let new = preflight(&old, NOW);
    assert!(unchanged(Some(&inv_old), &old, &inventory(NOW), &new, NOW));

    // Anything else is written at once.
    assert!(!unchanged(None, &old, &inventory(NOW), &new, NOW), "first preflight");
    let other_host = HostInventory { hostname: "b.example".into(), ..inventory(NOW) };
    assert!(!unchanged(Some(&inv_old), &old, &other_host, &new, NOW), "inventory changed");
    let mut clean = new.clone();
    clean.plan.as_mut().unwrap().sync_type = Some(SyncType::Clean);
    clean.last_sync_type = Some(SyncType::Clean);
    assert!(!unchanged(Some(&inv_old), &old, &inventory(NOW), &clean, NOW), "clean sync");
    let mut reason = new.clone();
    reason.last_sync_reason = "rule count drift".into();
    assert!(!unchanged(Some(&inv_old), &old, &inventory(NOW), &reason, NOW), "other reason");
    let mut by = new.clone();
    by.decided.as_mut().unwrap().rule_sets_by.push(Decider { by: "ruleset-targeting".into(), ..Default::default() });
    assert!(!unchanged(Some(&inv_old), &old, &inventory(NOW), &by, NOW), "other provenance");
    let mut sets = new.clone();
    sets.plan.as_mut().unwrap().rule_sets.push("team".into());
    assert!(!unchanged(Some(&inv_old), &old, &inventory(NOW), &sets, NOW), "other sets");

    // The stored sync did not complete, or is too old.
    for outcome in [SyncOutcome::Incomplete, SyncOutcome::InProgress] {
        let old = HostSyncState { last_outcome: outcome, ..stored(NOW - 30) };
        assert!(!unchanged(Some(&inv_old), &old, &inventory(NOW), &preflight(&old, NOW), NOW));
    }
    let waiting = HostSyncState { pending: old.acked.clone(), ..stored(NOW - 30) };
    assert!(!unchanged(Some(&inv_old), &waiting, &inventory(NOW), &preflight(&waiting, NOW), NOW));
    let no_plan = HostSyncState { plan: None, ..stored(NOW - 30) };
    assert!(!unchanged(Some(&inv_old), &no_plan, &inventory(NOW), &preflight(&no_plan, NOW), NOW));
    let stale = stored(NOW - MAX_AGE_SECS);
    assert!(!unchanged(Some(&inv_old), &stale, &inventory(NOW), &preflight(&stale, NOW), NOW), "old preflight");
    assert!(!unchanged(Some(&inventory(NOW - MAX_AGE_SECS)), &old, &inventory(NOW), &new, NOW), "old last seen");
}

#[test]
fn the_table_is_bounded_and_drops_abandoned_records_first() {
    let table = Deferred::default();
    let record = |id: usize, seen: i64| Record {
        inventory: HostInventory { machine_id: format!("m{id}"), ..inventory(seen) },
        state: stored(seen),
    };
    for id in 0..MAX_DEFERRED {
        assert!(table.put(record(id, NOW)).is_ok());
    }
    assert!(table.put(record(MAX_DEFERRED, NOW + 1)).is_err(), "full of recent records");
    assert!(table.put(record(0, NOW + 1)).is_ok(), "a host already in the table is replaced");
    assert!(table.put(record(MAX_DEFERRED, NOW + MAX_AGE_SECS)).is_ok(), "older records dropped");
    assert!(table.take("m1").is_none(), "dropped");
    assert_eq!(table.take("m0").unwrap().inventory.last_seen_unix, NOW + 1);
    assert!(table.take("m0").is_none(), "taken once");
}

#[test]
fn merge_brings_the_preflight_times_and_decision() {
    let mut state = stored(NOW - 30);
    state.pending = state.acked.clone();
    let pre = preflight(&stored(NOW - 30), NOW);
    merge(&mut state, &pre);
    assert_eq!(state.last_preflight_unix, NOW);
    assert_eq!(state.plan.as_ref().unwrap().started_unix, NOW);
    assert_eq!(state.decided.as_ref().unwrap().decided_unix, NOW);
    assert!(state.pending.is_some(), "the download's pending ack is kept");
}
