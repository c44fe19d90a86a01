//! The contract every [`Store`] engine must meet, as reusable async checks.
//!
//! Owns: behavioural assertions over the public [`Store`] interface only (no engine
//! internals), so the embedded engines, a future PostgreSQL engine and the server's tests can
//! all run them. Each check takes a fresh, empty store (or, for reopen, a factory that opens
//! the same location again) and panics with a message naming the broken rule.
//!
//! Must never: depend on timing, on a particular engine, or on state left by another check.

use crate::{
    ChangePos, EventFilter, EventKind, HostInventory, HostSyncState, NewEvent, ProposalDecision, ProposalStatus,
    RuleAck, RuleChange, Store, StoreError, SyncOutcome,
};
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_sdk::plugin::Action;
use dasher_sdk::wire::{Policy, RuleType};
use std::future::Future;
use std::sync::Arc;

mod console;
mod kv;
mod review;
pub use console::{activity_counters, audit_log, binary_summaries, host_search, proposal_requests};
pub use kv::{kv_atomic, kv_put_if_absent, lease_race, leases, plugin_kv};
pub use review::{event_triage, proposals};
use review::{proposal, triage};

fn rule(rule_type: RuleType, identifier: &str, policy: Policy) -> Rule {
    Rule {
        identifier: identifier.to_owned(),
        rule_type,
        policy,
        custom_msg: None,
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    }
}

fn upsert(set: &str, r: &Rule) -> RuleChange {
    RuleChange { rule_set: set.to_owned(), key: r.key(), rule: Some(r.clone()) }
}

fn remove(set: &str, key: &RuleKey) -> RuleChange {
    RuleChange { rule_set: set.to_owned(), key: key.clone(), rule: None }
}

fn key(rule_type: RuleType, identifier: &str) -> RuleKey {
    RuleKey { rule_type, identifier: identifier.to_owned() }
}

fn inventory(machine_id: &str, seen: i64) -> HostInventory {
    HostInventory {
        machine_id: machine_id.to_owned(),
        hostname: format!("{machine_id}.example"),
        first_seen_unix: seen,
        last_seen_unix: seen,
        ..HostInventory::default()
    }
}

fn event(n: u32, sha: &str, decision: &str, received: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Execution,
        dedupe_key: format!("d{n}"),
        decision: decision.to_owned(),
        file_sha256: sha.to_owned(),
        file_bundle_hash: if n.is_multiple_of(2) { "bundle-even".to_owned() } else { String::new() },
        occurred_at_unix: f64::from(n) + 0.5,
        received_at_unix: received,
        body: serde_json::json!({ "n": n, "file_path": "/bin/x" }),
    }
}

/// Host parts (inventory, tags, clean flag, sync state) are independent; upsert keeps
/// `first_seen_unix`; a host known only by tags is listed; `host_count` counts inventories.
pub async fn hosts(store: &dyn Store) {
    assert_eq!(store.get_host("m1").await.unwrap(), None, "unknown host");
    store.put_host_inventory(&inventory("m1", 100)).await.unwrap();
    store.set_host_tags("m1", &["eng".into(), "lab".into()]).await.unwrap();
    store.set_clean_requested("m1", true).await.unwrap();
    let sync = HostSyncState {
        acked: Some(RuleAck { version: 3, rule_sets: vec!["global".into()], ..RuleAck::default() }),
        last_outcome: SyncOutcome::Ok,
        ..HostSyncState::default()
    };
    store.put_sync_state("m1", &sync).await.unwrap();
    let mut later = inventory("m1", 200);
    later.first_seen_unix = 200;
    later.hostname = "renamed".into();
    later.truncated.insert("primary_user_groups".into(), 300);
    store.put_host_inventory(&later).await.unwrap();

    let h = store.get_host("m1").await.unwrap().expect("m1 stored");
    let inv = h.inventory.expect("inventory kept");
    assert_eq!(inv.first_seen_unix, 100, "upsert keeps first_seen_unix");
    assert_eq!(inv.last_seen_unix, 200);
    assert_eq!(inv.hostname, "renamed");
    assert_eq!(inv.truncated, later.truncated, "the record of a cut list is kept");
    assert_eq!(h.tags, vec!["eng".to_string(), "lab".to_string()], "inventory upsert must not clobber tags");
    assert!(h.clean_requested, "inventory upsert must not clobber the clean flag");
    assert_eq!(h.sync, sync, "inventory upsert must not clobber sync state");

    store.set_clean_requested("m1", false).await.unwrap();
    store.set_host_tags("m1", &["ops".into()]).await.unwrap();
    let h = store.get_host("m1").await.unwrap().unwrap();
    assert!(!h.clean_requested);
    assert_eq!(h.tags, vec!["ops".to_string()]);
    assert_eq!(h.sync, sync, "tags/clean writes must not clobber sync state");

    // Known only by tags / only by the clean flag.
    store.set_host_tags("tagged-only", &["x".into()]).await.unwrap();
    store.set_clean_requested("clean-only", true).await.unwrap();
    let t = store.get_host("tagged-only").await.unwrap().expect("host known by tags");
    assert_eq!(t.inventory, None);
    assert_eq!(t.tags, vec!["x".to_string()]);
    assert!(store.get_host("clean-only").await.unwrap().expect("host known by clean flag").clean_requested);
    let ids: Vec<String> = store.list_hosts(None, 100).await.unwrap().into_iter().map(|h| h.machine_id).collect();
    assert_eq!(ids, vec!["clean-only", "m1", "tagged-only"]);
    assert_eq!(store.host_count().await.unwrap(), 1, "host_count counts inventories");
}

/// `record_preflight` writes inventory and sync state together, each as its own `put_*` call
/// would: a new host is counted once (also one known before only by tags), an existing one
/// keeps `first_seen_unix`, tags and clean flag, and its sync state is replaced.
pub async fn preflight_writes(store: &dyn Store) {
    let state = |outcome: &str, at: i64| HostSyncState {
        last_outcome: SyncOutcome::parse(outcome),
        last_preflight_unix: at,
        ..HostSyncState::default()
    };
    store.record_preflight(&inventory("p1", 100), &state("in_progress", 100)).await.unwrap();
    let h = store.get_host("p1").await.unwrap().expect("new host stored");
    assert_eq!(h.inventory.as_ref().map(|i| (i.first_seen_unix, i.last_seen_unix)), Some((100, 100)));
    assert_eq!(h.sync, state("in_progress", 100), "sync state written with the inventory");
    assert_eq!(store.host_count().await.unwrap(), 1, "a new host is counted");

    store.set_host_tags("p1", &["eng".into()]).await.unwrap();
    store.set_clean_requested("p1", true).await.unwrap();
    let mut later = inventory("p1", 200);
    later.hostname = "renamed".into();
    store.record_preflight(&later, &state("policy_rejected", 200)).await.unwrap();
    let h = store.get_host("p1").await.unwrap().unwrap();
    let inv = h.inventory.expect("inventory kept");
    assert_eq!((inv.first_seen_unix, inv.last_seen_unix), (100, 200), "an existing host keeps first_seen_unix");
    assert_eq!(inv.hostname, "renamed");
    assert_eq!(h.sync, state("policy_rejected", 200), "sync state replaced");
    assert_eq!(h.tags, vec!["eng".to_string()], "tags untouched");
    assert!(h.clean_requested, "clean flag untouched");
    assert_eq!(store.host_count().await.unwrap(), 1, "an existing host is not counted again");

    // Known by tags only, then its first preflight (with no first_seen of its own).
    store.set_host_tags("p2", &["lab".into()]).await.unwrap();
    assert_eq!(store.host_count().await.unwrap(), 1, "tags alone do not count a host");
    let mut first = inventory("p2", 300);
    first.first_seen_unix = 0;
    store.record_preflight(&first, &state("in_progress", 300)).await.unwrap();
    let h = store.get_host("p2").await.unwrap().unwrap();
    assert_eq!(h.inventory.map(|i| i.first_seen_unix), Some(300), "first_seen_unix defaults to last_seen_unix");
    assert_eq!(h.tags, vec!["lab".to_string()]);
    assert_eq!(h.sync, state("in_progress", 300));
    assert_eq!(store.host_count().await.unwrap(), 2, "its first inventory counts it");
    let ids: Vec<String> = store.list_hosts(None, 10).await.unwrap().into_iter().map(|h| h.machine_id).collect();
    assert_eq!(ids, vec!["p1", "p2"]);
}

/// `list_hosts` pages in machine-id order with `after` and `limit`.
pub async fn host_paging(store: &dyn Store) {
    let mut ids: Vec<String> = (0..25).map(|i| format!("host-{:02}", (i * 7) % 25)).collect();
    for id in &ids {
        store.put_host_inventory(&inventory(id, 1)).await.unwrap();
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_hosts(after.as_deref(), 10).await.unwrap();
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().machine_id.clone());
        seen.extend(page.into_iter().map(|h| h.machine_id));
    }
    assert_eq!(seen, ids);
    assert_eq!(store.host_count().await.unwrap(), 25);
    assert!(store.list_hosts(None, 0).await.unwrap().is_empty());
}

/// Versions increase by one per effective commit; no-op commits create no version.
pub async fn rule_versions(store: &dyn Store) {
    assert_eq!(store.head_version().await.unwrap(), 0);
    assert_eq!(store.history_floor().await.unwrap(), 0);
    let a = rule(RuleType::Binary, "aa", Policy::Allowlist);
    assert_eq!(store.commit_rules(&[]).await.unwrap(), 0, "empty commit");
    assert_eq!(store.commit_rules(&[remove("global", &a.key())]).await.unwrap(), 0, "removing an absent rule");
    assert_eq!(store.commit_rules(&[upsert("global", &a)]).await.unwrap(), 1);
    assert_eq!(store.commit_rules(&[upsert("global", &a)]).await.unwrap(), 1, "identical upsert is a no-op");
    let a2 = rule(RuleType::Binary, "aa", Policy::Blocklist);
    assert_eq!(store.commit_rules(&[upsert("global", &a2), upsert("global", &a2)]).await.unwrap(), 2);
    assert_eq!(store.commit_rules(&[remove("global", &a.key())]).await.unwrap(), 3);
    assert_eq!(store.commit_rules(&[remove("global", &a.key())]).await.unwrap(), 3, "removing twice");
    assert_eq!(store.head_version().await.unwrap(), 3);
    let changes = store.scan_changes(ChangePos::default(), 3, 100).await.unwrap();
    let versions: Vec<u64> = changes.iter().map(|c| c.pos.version).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "change log in order: {versions:?}");
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(versions.last(), Some(&3));
}

/// A rule's comment is stored and read back; changing only the comment is a change (a new
/// version); [`Store::commit_rules_at`] commits only on the expected head and writes nothing
/// otherwise.
pub async fn rule_comments_and_expected_head(store: &dyn Store) {
    let mut a = rule(RuleType::TeamId, "EQHXZ8M8AV", Policy::Allowlist);
    a.comment = Some("why this rule exists".into());
    assert_eq!(store.commit_rules_at(0, &[upsert("eng", &a)]).await.unwrap(), Ok(1));
    let read = store.get_rule("eng", &a.key(), 1).await.unwrap().expect("stored");
    assert_eq!(read.comment.as_deref(), Some("why this rule exists"), "the comment is kept");
    let scanned = store.scan_rules("eng", 1, None, 10).await.unwrap();
    assert_eq!(scanned, vec![a.clone()], "scans return the comment");
    let mut b = a.clone();
    b.comment = Some("reviewed".into());
    let moved = store.commit_rules_at(0, &[upsert("eng", &b)]).await.unwrap();
    assert_eq!(moved, Err(crate::HeadMoved { expected: 0, head: 1 }), "a stale head refuses");
    assert_eq!(store.head_version().await.unwrap(), 1, "a refused commit writes nothing");
    assert_eq!(store.get_rule("eng", &a.key(), 1).await.unwrap(), Some(a.clone()));
    assert_eq!(store.commit_rules_at(1, &[upsert("eng", &b)]).await.unwrap(), Ok(2), "a comment change is a change");
    assert_eq!(store.get_rule("eng", &a.key(), 2).await.unwrap().unwrap().comment.as_deref(), Some("reviewed"));
    assert_eq!(store.commit_rules_at(2, &[upsert("eng", &b)]).await.unwrap(), Ok(2), "no-op keeps the head");
    assert_eq!(store.commit_rules_at(2, &[]).await.unwrap(), Ok(2), "empty commit on the head");
}

/// Readers at older versions see old values and tombstones; scans follow `RuleKey` order and
/// page with `after`; reading above the head is `VersionInFuture`.
pub async fn rule_history(store: &dyn Store) {
    let bin = rule(RuleType::Binary, "ff", Policy::Allowlist);
    let cert = rule(RuleType::Certificate, "00", Policy::Blocklist);
    let team = rule(RuleType::TeamId, "AAAAAAAAAA", Policy::Allowlist);
    let sid = rule(RuleType::SigningId, "platform:com.apple.a", Policy::Allowlist);
    let sid_nul = rule(RuleType::SigningId, "platform:com.apple.a\0x", Policy::Allowlist);
    let sid2 = rule(RuleType::SigningId, "platform:com.apple.b", Policy::Allowlist);
    let bin_short = rule(RuleType::Binary, "f", Policy::Allowlist);
    let v1 = store
        .commit_rules(&[
            upsert("global", &sid2),
            upsert("global", &bin),
            upsert("global", &team),
            upsert("global", &cert),
            upsert("global", &sid),
            upsert("global", &sid_nul),
            upsert("global", &bin_short),
            upsert("other", &bin),
        ])
        .await
        .unwrap();
    let blocked = rule(RuleType::Binary, "ff", Policy::Blocklist);
    let v2 = store.commit_rules(&[upsert("global", &blocked), remove("global", &team.key())]).await.unwrap();
    let v3 = store.commit_rules(&[remove("global", &cert.key())]).await.unwrap();
    assert_eq!((v1, v2, v3), (1, 2, 3));

    let get = |at: u64, r: &Rule| {
        let k = r.key();
        async move { store.get_rule("global", &k, at).await.unwrap() }
    };
    assert_eq!(get(0, &bin).await, None, "nothing at version 0");
    assert_eq!(get(1, &bin).await, Some(bin.clone()), "old value at v1");
    assert_eq!(get(2, &bin).await, Some(blocked.clone()), "new value at v2");
    assert_eq!(get(3, &bin).await, Some(blocked.clone()));
    assert_eq!(get(1, &team).await, Some(team.clone()));
    assert_eq!(get(2, &team).await, None, "tombstone at v2");
    assert_eq!(get(2, &cert).await, Some(cert.clone()));
    assert_eq!(get(3, &cert).await, None);
    assert_eq!(store.get_rule("nope", &bin.key(), 3).await.unwrap(), None);
    assert_eq!(store.get_rule("other", &bin.key(), 3).await.unwrap(), Some(bin.clone()), "sets are separate");
    assert!(matches!(
        store.get_rule("global", &bin.key(), 4).await,
        Err(StoreError::VersionInFuture { requested: 4, head: 3 })
    ));
    // The batch read answers like one get_rule per key, in order (missing and removed too).
    let keys = [bin.key(), team.key(), cert.key(), rule(RuleType::Binary, "00", Policy::Allowlist).key(), bin.key()];
    for at in 1..=3 {
        let mut one_by_one = Vec::new();
        for k in &keys {
            one_by_one.push(store.get_rule("global", k, at).await.unwrap());
        }
        assert_eq!(store.get_rules("global", &keys, at).await.unwrap(), one_by_one, "at v{at}");
    }
    assert_eq!(store.get_rules("global", &[], 3).await.unwrap(), vec![]);
    assert!(matches!(store.get_rules("global", &keys, 4).await, Err(StoreError::VersionInFuture { .. })));
    assert!(matches!(store.scan_rules("global", 9, None, 10).await, Err(StoreError::VersionInFuture { .. })));

    let mut expect_v1 = vec![bin.clone(), cert.clone(), team.clone(), sid.clone(), sid_nul.clone(), sid2.clone()];
    expect_v1.push(bin_short.clone());
    expect_v1.sort_by_key(Rule::key);
    let all_v1 = store.scan_rules("global", 1, None, 100).await.unwrap();
    assert_eq!(all_v1, expect_v1, "scan at v1 in RuleKey order");
    let keys_v3: Vec<RuleKey> = store.scan_rules("global", 3, None, 100).await.unwrap().iter().map(Rule::key).collect();
    let mut expect_v3 = vec![bin.key(), bin_short.key(), sid.key(), sid_nul.key(), sid2.key()];
    expect_v3.sort();
    assert_eq!(keys_v3, expect_v3, "scan at v3 skips tombstones");
    let at3_bin = store.scan_rules("global", 3, None, 100).await.unwrap();
    assert!(at3_bin.contains(&blocked), "scan sees the newest value");

    // Paging with `after`, at an old version, page size 2.
    let mut paged = Vec::new();
    let mut after: Option<RuleKey> = None;
    loop {
        let page = store.scan_rules("global", 1, after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.key());
        paged.extend(page);
    }
    assert_eq!(paged, expect_v1, "paging at v1 yields the same rules");
    // `after` a key that is not stored.
    let after_missing = store.scan_rules("global", 1, Some(&key(RuleType::Binary, "fa")), 100).await.unwrap();
    assert_eq!(
        after_missing,
        expect_v1.iter().filter(|r| r.key() > key(RuleType::Binary, "fa")).cloned().collect::<Vec<_>>()
    );
    assert!(store.scan_rules("global", 1, None, 0).await.unwrap().is_empty());
    assert!(store.scan_rules("missing", 3, None, 10).await.unwrap().is_empty());
}

/// `scan_changes` returns entries strictly after a position and at most `upto`, in order.
pub async fn rule_changes(store: &dyn Store) {
    let r = |i: u32| rule(RuleType::Binary, &format!("{i:04}"), Policy::Allowlist);
    store.commit_rules(&[upsert("global", &r(1)), upsert("global", &r(2)), upsert("s", &r(3))]).await.unwrap();
    store.commit_rules(&[remove("global", &r(1).key())]).await.unwrap();
    store.commit_rules(&[upsert("global", &r(4)), upsert("global", &r(5))]).await.unwrap();

    let all = store.scan_changes(ChangePos::default(), 3, 100).await.unwrap();
    let pos: Vec<(u64, u32)> = all.iter().map(|c| (c.pos.version, c.pos.seq)).collect();
    assert_eq!(pos, vec![(1, 0), (1, 1), (1, 2), (2, 0), (3, 0), (3, 1)]);
    assert_eq!(all[0].rule_set, "global");
    assert_eq!(all[0].key, r(1).key());
    assert_eq!(all[2].rule_set, "s");
    assert_eq!(all[3].key, r(1).key(), "removal is logged");

    let upto2 = store.scan_changes(ChangePos::default(), 2, 100).await.unwrap();
    assert_eq!(upto2.len(), 4, "upto bounds the version");
    let after = store.scan_changes(ChangePos { version: 1, seq: 1 }, 3, 100).await.unwrap();
    assert_eq!(after.first().map(|c| c.pos), Some(ChangePos { version: 1, seq: 2 }), "strictly after");
    let after_v = store.scan_changes(ChangePos { version: 1, seq: u32::MAX }, 3, 100).await.unwrap();
    assert_eq!(after_v.first().map(|c| c.pos), Some(ChangePos { version: 2, seq: 0 }));
    let limited = store.scan_changes(ChangePos::default(), 3, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert!(store.scan_changes(ChangePos { version: 3, seq: 1 }, 3, 10).await.unwrap().is_empty());
    assert!(store.scan_changes(ChangePos { version: 2, seq: 0 }, 1, 10).await.unwrap().is_empty());
}

/// `rule_sets` lists every set that held a rule with its live count at the head.
pub async fn rule_sets(store: &dyn Store) {
    assert!(store.rule_sets().await.unwrap().is_empty());
    let r = |i: u32| rule(RuleType::Binary, &format!("{i:04}"), Policy::Allowlist);
    store.commit_rules(&[upsert("global", &r(1)), upsert("global", &r(2)), upsert("lab", &r(1))]).await.unwrap();
    // Changing a rule keeps the count; removing lowers it; a set emptied stays listed.
    let changed = rule(RuleType::Binary, "0001", Policy::Blocklist);
    store.commit_rules(&[upsert("global", &changed), remove("lab", &r(1).key())]).await.unwrap();
    let sets: Vec<(String, u64)> = store.rule_sets().await.unwrap().into_iter().map(|s| (s.name, s.rules)).collect();
    assert_eq!(sets, vec![("global".to_string(), 2), ("lab".to_string(), 0)]);
    // Pages in name order, strictly after the key.
    store.commit_rules(&[upsert("host:m1", &r(1)), upsert("eng", &r(1))]).await.unwrap();
    let page = |after: Option<&'static str>, limit| async move {
        store.rule_sets_after(after, limit).await.unwrap().into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, ["eng", "global"]);
    assert_eq!(page(Some("global"), 2).await, ["host:m1", "lab"]);
    assert_eq!(page(Some("gl"), 1).await, ["global"]);
    assert!(page(Some("lab"), 5).await.is_empty());
}

/// Many concurrent `commit_rules` produce versions exactly `1..=N`, each reported once.
pub async fn concurrent_commits(store: Arc<dyn Store>) {
    const N: u32 = 64;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let r = rule(RuleType::Binary, &format!("{i:04}"), Policy::Allowlist);
            store.commit_rules(&[upsert("global", &r)]).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=u64::from(N)).collect::<Vec<_>>(), "gap-free, each version once");
    assert_eq!(store.head_version().await.unwrap(), u64::from(N));
    // The rule committed at version v is visible at v and not before.
    for entry in store.scan_changes(ChangePos::default(), u64::from(N), 1000).await.unwrap() {
        let v = entry.pos.version;
        assert!(store.get_rule("global", &entry.key, v).await.unwrap().is_some());
        assert!(store.get_rule("global", &entry.key, v - 1).await.unwrap().is_none());
    }
}

/// Inserting stores durably, skips duplicates (within a call and across calls, per machine),
/// assigns increasing ids and counts.
pub async fn events_insert(store: &dyn Store) {
    let batch: Vec<NewEvent> = (0..5).map(|n| event(n, "sha-a", "BLOCK_BINARY", 1000)).collect();
    let out = store.insert_events("m1", &batch).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (5, 0));
    let again = store.insert_events("m1", &batch[3..]).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 2), "duplicates skipped");
    let dup_in_call = vec![event(9, "sha-a", "ALLOW_BINARY", 1000), event(9, "sha-a", "ALLOW_BINARY", 1000)];
    let out = store.insert_events("m1", &dup_in_call).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (1, 1), "duplicate within one call");
    let other = store.insert_events("m2", &batch[..1]).await.unwrap();
    assert_eq!(other.stored, 1, "dedupe keys are per machine");
    assert_eq!(store.event_count().await.unwrap(), 7);

    let all = store.query_events(&EventFilter { limit: 100, ..EventFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first, unique ids");
    assert_eq!(all[0].machine_id, "m2");
    assert_eq!(all[0].event, batch[0], "event round-trips");
    assert_eq!(store.insert_events("m3", &[]).await.unwrap().stored, 0);
}

/// Every filter, ANDed, with `before_id` paging and `limit`.
pub async fn events_query(store: &dyn Store) {
    for m in ["m1", "m2"] {
        let evs: Vec<NewEvent> = (0..10)
            .map(|n| {
                let sha = if n % 3 == 0 { "sha-x" } else { "sha-y" };
                let decision = if n % 2 == 0 { "BLOCK_BINARY" } else { "ALLOW_UNKNOWN" };
                event(n, sha, decision, 1000 + i64::from(n))
            })
            .collect();
        store.insert_events(m, &evs).await.unwrap();
    }
    let q = |f: EventFilter| async move { store.query_events(&f).await.unwrap() };
    let base = EventFilter { limit: 1000, ..EventFilter::default() };
    let all = q(base.clone()).await;
    assert_eq!(all.len(), 20);

    let check = |name: &str, got: &[crate::EventRecord], pred: &dyn Fn(&crate::EventRecord) -> bool| {
        let want: Vec<u64> = all.iter().filter(|r| pred(r)).map(|r| r.id).collect();
        let got: Vec<u64> = got.iter().map(|r| r.id).collect();
        assert!(!want.is_empty(), "{name}: fixture selects something");
        assert_eq!(got, want, "{name}");
    };
    let f = EventFilter { machine_id: Some("m2".into()), ..base.clone() };
    check("machine", &q(f).await, &|r| r.machine_id == "m2");
    let f = EventFilter { file_sha256: Some("sha-x".into()), ..base.clone() };
    check("sha256", &q(f).await, &|r| r.event.file_sha256 == "sha-x");
    let f = EventFilter { file_bundle_hash: Some("bundle-even".into()), ..base.clone() };
    check("bundle", &q(f).await, &|r| r.event.file_bundle_hash == "bundle-even");
    let f = EventFilter { decision: Some("ALLOW_UNKNOWN".into()), ..base.clone() };
    check("decision", &q(f).await, &|r| r.event.decision == "ALLOW_UNKNOWN");
    let f = EventFilter { since_unix: Some(1007), ..base.clone() };
    check("since", &q(f).await, &|r| r.event.received_at_unix >= 1007);
    let f = EventFilter {
        machine_id: Some("m1".into()),
        file_sha256: Some("sha-y".into()),
        decision: Some("BLOCK_BINARY".into()),
        since_unix: Some(1003),
        ..base.clone()
    };
    check("combined", &q(f).await, &|r| {
        r.machine_id == "m1"
            && r.event.file_sha256 == "sha-y"
            && r.event.decision == "BLOCK_BINARY"
            && r.event.received_at_unix >= 1003
    });
    let f = EventFilter { machine_id: Some("m2".into()), file_sha256: Some("sha-x".into()), ..base.clone() };
    check("machine + sha256", &q(f).await, &|r| r.machine_id == "m2" && r.event.file_sha256 == "sha-x");
    let f = EventFilter { file_sha256: Some("none".into()), ..base.clone() };
    assert!(q(f).await.is_empty());
    let f = EventFilter { machine_id: Some("m1".into()), file_sha256: Some("none".into()), ..base.clone() };
    assert!(q(f).await.is_empty());

    // Paging with before_id, for the unfiltered walk and for an index walk.
    for filter in [
        base.clone(),
        EventFilter { machine_id: Some("m1".into()), ..base.clone() },
        EventFilter { since_unix: Some(1003), ..base.clone() },
        EventFilter { machine_id: Some("m1".into()), file_sha256: Some("sha-y".into()), ..base.clone() },
    ] {
        let full: Vec<u64> = q(filter.clone()).await.iter().map(|r| r.id).collect();
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = q(EventFilter { before_id: before, limit: 3, ..filter.clone() }).await;
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            paged.extend(page.iter().map(|r| r.id));
        }
        assert!(full.len() > 3, "several pages");
        assert_eq!(paged, full, "before_id paging covers everything once");
    }
    assert!(q(EventFilter { limit: 0, ..EventFilter::default() }).await.is_empty());
}

/// Pruning by age, then by count, keeps the newest and keeps indexes consistent.
pub async fn events_prune(store: &dyn Store) {
    let evs: Vec<NewEvent> = (0..20).map(|n| event(n, "sha-p", "BLOCK_BINARY", 100 + i64::from(n))).collect();
    store.insert_events("m1", &evs).await.unwrap();
    assert_eq!(store.prune_events(None, None).await.unwrap(), 0);
    assert_eq!(store.prune_events(Some(105), None).await.unwrap(), 5, "received before 105");
    assert_eq!(store.event_count().await.unwrap(), 15);
    assert_eq!(store.prune_events(Some(50), Some(10)).await.unwrap(), 5, "oldest beyond keep_max");
    assert_eq!(store.event_count().await.unwrap(), 10);
    let left = store
        .query_events(&EventFilter { file_sha256: Some("sha-p".into()), limit: 100, ..EventFilter::default() })
        .await
        .unwrap();
    let received: Vec<i64> = left.iter().map(|r| r.event.received_at_unix).collect();
    assert_eq!(received, (110..120).rev().collect::<Vec<_>>(), "newest kept, index consistent");
    let by_machine = store
        .query_events(&EventFilter { machine_id: Some("m1".into()), limit: 100, ..EventFilter::default() })
        .await
        .unwrap();
    assert_eq!(by_machine.len(), 10);
    assert_eq!(store.prune_events(None, Some(0)).await.unwrap(), 10);
    assert_eq!(store.event_count().await.unwrap(), 0);
    assert!(store.query_events(&EventFilter { limit: 10, ..EventFilter::default() }).await.unwrap().is_empty());
    // Ids keep increasing after a prune.
    store.insert_events("m1", &evs[..1]).await.unwrap();
    let one = store.query_events(&EventFilter { limit: 10, ..EventFilter::default() }).await.unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].id > 20, "ids are never reused");
}

/// Concurrent uploads (group commit) store every event exactly once.
pub async fn concurrent_events(store: Arc<dyn Store>) {
    const TASKS: u32 = 32;
    const PER: u32 = 20;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let evs: Vec<NewEvent> = (0..PER).map(|n| event(n, "sha-c", "BLOCK_BINARY", 1)).collect();
            store.insert_events(&format!("m{t}"), &evs).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().stored, PER);
    }
    assert_eq!(store.event_count().await.unwrap(), u64::from(TASKS * PER));
    let all = store.query_events(&EventFilter { limit: 10_000, ..EventFilter::default() }).await.unwrap();
    assert_eq!(all.len(), (TASKS * PER) as usize);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "unique ids");
}

/// Compaction keeps every read at or above the floor identical and rejects reads below it.
pub async fn compaction(store: &dyn Store) {
    let a = |p: Policy| rule(RuleType::Binary, "aa", p);
    let b = rule(RuleType::Binary, "bb", Policy::Allowlist);
    store.commit_rules(&[upsert("global", &a(Policy::Allowlist)), upsert("global", &b)]).await.unwrap(); // 1
    store.commit_rules(&[upsert("global", &a(Policy::Blocklist))]).await.unwrap(); // 2
    store.commit_rules(&[remove("global", &b.key())]).await.unwrap(); // 3
    store.commit_rules(&[upsert("global", &a(Policy::SilentBlocklist))]).await.unwrap(); // 4
    let mut before = Vec::new();
    for v in 3..=4 {
        before.push(store.scan_rules("global", v, None, 100).await.unwrap());
    }
    assert!(matches!(store.compact_history(5).await, Err(StoreError::VersionInFuture { .. })));
    let removed = store.compact_history(3).await.unwrap();
    assert!(removed > 0, "something was superseded");
    assert_eq!(store.history_floor().await.unwrap(), 3);
    for (i, v) in (3..=4).enumerate() {
        assert_eq!(store.scan_rules("global", v, None, 100).await.unwrap(), before[i], "scan at v{v} unchanged");
    }
    assert_eq!(store.get_rule("global", &b.key(), 3).await.unwrap(), None);
    assert_eq!(store.get_rule("global", &a(Policy::Allowlist).key(), 3).await.unwrap(), Some(a(Policy::Blocklist)));
    assert!(matches!(
        store.get_rule("global", &b.key(), 2).await,
        Err(StoreError::VersionCompacted { requested: 2, floor: 3 })
    ));
    assert!(matches!(store.scan_rules("global", 1, None, 10).await, Err(StoreError::VersionCompacted { .. })));
    assert!(matches!(
        store.scan_changes(ChangePos { version: 1, seq: 0 }, 4, 10).await,
        Err(StoreError::VersionCompacted { .. })
    ));
    let tail = store.scan_changes(ChangePos { version: 2, seq: u32::MAX }, 4, 10).await.unwrap();
    let versions: Vec<u64> = tail.iter().map(|c| c.pos.version).collect();
    assert_eq!(versions, vec![3, 4], "log from the floor on is kept");
    assert_eq!(store.compact_history(2).await.unwrap(), 0, "lower floor is a no-op");
    assert_eq!(store.history_floor().await.unwrap(), 3);
    assert_eq!(store.commit_rules(&[upsert("global", &b)]).await.unwrap(), 5, "versions continue");
}

/// Everything acknowledged survives dropping the store and opening it again.
pub async fn reopen<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let r = rule(RuleType::TeamId, "EQHXZ8M8AV", Policy::Allowlist);
    {
        let store = open().await;
        store.put_host_inventory(&inventory("m1", 5)).await.unwrap();
        store.set_host_tags("m1", &["t".into()]).await.unwrap();
        store.set_clean_requested("m1", true).await.unwrap();
        store
            .put_sync_state("m1", &HostSyncState { last_outcome: SyncOutcome::Ok, ..HostSyncState::default() })
            .await
            .unwrap();
        store.commit_rules(&[upsert("global", &r)]).await.unwrap();
        store.commit_rules(&[remove("global", &r.key())]).await.unwrap();
        store.insert_events("m1", &[event(1, "s", "BLOCK_BINARY", 7)]).await.unwrap();
        store.kv_put("p", "k", b"v").await.unwrap();
        let (p, _) = store.record_proposal(&proposal("global", "EQHXZ8M8AV:com.x", "m1", 1)).await.unwrap();
        let reject = ProposalDecision::Reject { by: "a".into(), at_unix: 2 };
        store.decide_proposal(p.id, &reject).await.unwrap();
        let ids = store.insert_events("m1", &[event(2, "s", "BLOCK_BINARY", 8)]).await.unwrap().ids;
        let audit = crate::NewAuditEntry {
            at_unix: 9,
            actor: "alice".into(),
            role: "admin".into(),
            action: "plugin.reload".into(),
            target: "plugin:p".into(),
            detail: serde_json::json!({}),
            via: crate::AuditVia::Api,
        };
        store.record_audit(&audit).await.unwrap();
        store.put_event_triage(&[(ids[0].unwrap(), triage(Some(Action::Drop), &["l"]))]).await.unwrap();
    }
    let store = open().await;
    let h = store.get_host("m1").await.unwrap().expect("host survives");
    assert_eq!(h.inventory.map(|i| i.first_seen_unix), Some(5));
    assert_eq!(h.tags, vec!["t".to_string()]);
    assert!(h.clean_requested);
    assert_eq!(h.sync.last_outcome, SyncOutcome::Ok);
    assert_eq!(store.host_count().await.unwrap(), 1);
    assert_eq!(store.head_version().await.unwrap(), 2);
    assert_eq!(store.get_rule("global", &r.key(), 1).await.unwrap(), Some(r.clone()));
    assert_eq!(store.get_rule("global", &r.key(), 2).await.unwrap(), None);
    assert_eq!(store.rule_sets().await.unwrap().len(), 1);
    assert_eq!(store.event_count().await.unwrap(), 2);
    assert_eq!(store.insert_events("m1", &[event(1, "s", "BLOCK_BINARY", 7)]).await.unwrap().duplicates, 1);
    let dropped = store
        .query_events(&EventFilter { label: Some("l".into()), dropped: Some(true), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(dropped.len(), 1, "triage survives");
    let rejected = store.list_proposals(Some(ProposalStatus::Rejected), None, 10).await.unwrap();
    assert_eq!(rejected.len(), 1, "proposals survive");
    let (next, created) = store.record_proposal(&proposal("global", "EQHXZ8M8AV:com.y", "m1", 3)).await.unwrap();
    assert!(created && next.id > rejected[0].id, "proposal ids continue after reopen");
    assert_eq!(store.kv_get("p", "k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(store.search_hosts("M1.EX", None, 10).await.unwrap().len(), 1, "search index survives");
    assert_eq!(store.get_binary("s").await.unwrap().map(|b| (b.events, b.hosts)), Some((2, 1)), "summaries survive");
    assert_eq!(store.list_audit(Some("plugin:p"), None, 10).await.unwrap().len(), 1, "audit survives");
    assert_eq!(store.proposal_requests(rejected[0].id).await.unwrap().len(), 1, "requests survive");
    assert_eq!(store.commit_rules(&[upsert("global", &r)]).await.unwrap(), 3, "versions continue after reopen");
}
