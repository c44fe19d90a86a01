//! Carried-forward counts against the full scan over random rule histories.

use super::*;
use crate::policy::plugin_host_rule_set;
use dasher_sdk::domain::{GLOBAL_RULE_SET, host_rule_set};
use dasher_sdk::version::SantaVersion;
use dasher_sdk::wire::{Policy, RuleType};
use dasher_store::{RuleChange, StoreSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Client versions without `rulesHash`: no SIGNINGID/CDHASH-era features, pre-CEL, CEL.
const VERSIONS: [&str; 3] = ["2023.10", "2025.5", "2025.6"];

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = dasher_store::open(&StoreSpec::Redb(dir.path().join("db.redb"))).unwrap();
    (dir, store)
}

fn sets() -> Vec<String> {
    vec![host_rule_set("m1"), plugin_host_rule_set("m1"), "team-a".into(), GLOBAL_RULE_SET.into()]
}

/// A random rule on a small key space, so the same identifier lands in several sets, with
/// several types and with policies some clients adapt or skip.
fn random_rule(rng: &mut StdRng) -> Rule {
    let rule_type = [RuleType::Binary, RuleType::Certificate, RuleType::TeamId, RuleType::SigningId, RuleType::CdHash]
        [rng.random_range(0..5)];
    let policy = [
        Policy::Allowlist,
        Policy::Blocklist,
        Policy::SilentBlocklist,
        Policy::SilentGuiBlocklist,
        Policy::AllowlistCompiler,
        Policy::Cel,
    ][rng.random_range(0..6)];
    Rule {
        identifier: format!("ID{}", rng.random_range(0..12)),
        rule_type,
        policy,
        custom_msg: None,
        custom_url: None,
        cel_expr: (policy == Policy::Cel).then(|| "euid == 0".into()),
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    }
}

/// One commit of 1–6 random upserts and removals over the sets (and one unselected set).
async fn random_commit(store: &dyn Store, rng: &mut StdRng) -> u64 {
    let mut all = sets();
    all.push("unselected".into());
    let mut changes: Vec<RuleChange> = Vec::new();
    for _ in 0..rng.random_range(1..=6) {
        let set = all[rng.random_range(0..all.len())].clone();
        let rule = random_rule(rng);
        if changes.iter().any(|c| c.rule_set == set && c.key == rule.key()) {
            continue;
        }
        let remove = rng.random_bool(0.35);
        changes.push(RuleChange { rule_set: set, key: rule.key(), rule: (!remove).then_some(rule) });
    }
    store.commit_rules(&changes).await.unwrap()
}

fn ack(version: u64, counts: RuleCounts, santa: &str) -> RuleAck {
    RuleAck { version, rule_sets: sets(), counts, counts_for: Some(santa.into()), sync_type: None }
}

#[tokio::test]
async fn carried_forward_counts_equal_a_full_scan_over_random_histories() {
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (_dir, store) = store();
        let store = store.as_ref();
        let sets = sets();
        // Per client version: the counts as carried forward sync after sync (never
        // re-based on a full scan), and the version they are at.
        let mut chains: Vec<(RuleCounts, u64)> = vec![(RuleCounts::default(), 0); VERSIONS.len()];
        for step in 0..25 {
            let head = random_commit(store, &mut rng).await;
            for (i, santa) in VERSIONS.iter().enumerate() {
                let caps = ClientCaps::from_version_str(santa);
                let want = full_scan(store, caps, &sets, head).await.unwrap();
                // Some hosts sync every commit, some skip a few.
                if rng.random_bool(0.6) || step == 24 {
                    let (base, at) = chains[i];
                    let (got, method) = expected(store, caps, Some(&ack(at, base, santa)), &sets, head).await.unwrap();
                    assert_eq!(method, Method::CarriedForward, "seed {seed} step {step} {santa}");
                    assert_eq!(got, want, "seed {seed} step {step} {santa}: carried from {at} to {head}");
                    chains[i] = (got, head);
                }
            }
        }
    }
}

#[tokio::test]
async fn an_unusable_base_falls_back_to_the_full_scan() {
    let mut rng = StdRng::seed_from_u64(99);
    let (_dir, store) = store();
    let store = store.as_ref();
    let sets = sets();
    let old = ClientCaps(Some(SantaVersion::new(2023, 10)));
    let mut first = 0;
    for i in 0..6 {
        let v = random_commit(store, &mut rng).await;
        if i == 0 {
            first = v;
        }
    }
    let head = store.head_version().await.unwrap();
    let base_counts = full_scan(store, old, &sets, first).await.unwrap();
    let want = full_scan(store, old, &sets, head).await.unwrap();
    let good = ack(first, base_counts, "2023.10");
    assert_eq!(expected(store, old, Some(&good), &sets, head).await.unwrap(), (want, Method::CarriedForward));

    let cases = [
        ("no base", None),
        ("other sets", Some(RuleAck { rule_sets: vec![GLOBAL_RULE_SET.into()], ..good.clone() })),
        ("counted for another version", Some(RuleAck { counts_for: Some("2025.6".into()), ..good.clone() })),
        ("never counted", Some(RuleAck { counts_for: None, ..good.clone() })),
        ("base newer than the snapshot", Some(RuleAck { version: head + 1, ..good.clone() })),
    ];
    for (what, base) in cases {
        let got = expected(store, old, base.as_ref(), &sets, head).await.unwrap();
        assert_eq!(got, (want, Method::FullScan), "{what}");
    }

    // History compacted past the base: counted by a full scan.
    store.compact_history(head).await.unwrap();
    let got = expected(store, old, Some(&good), &sets, head).await.unwrap();
    assert_eq!(got, (want, Method::FullScan));
}

#[tokio::test]
async fn an_inconsistent_base_is_detected_not_saturated() {
    let (_dir, store) = store();
    let store = store.as_ref();
    let sets = sets();
    let old = ClientCaps(Some(SantaVersion::new(2023, 10)));
    let mut rng = StdRng::seed_from_u64(7);
    let mut rule = random_rule(&mut rng);
    rule.rule_type = RuleType::Binary;
    rule.policy = Policy::Blocklist;
    let change = |rule: Option<Rule>, key| RuleChange { rule_set: GLOBAL_RULE_SET.into(), key, rule };
    let v1 = store.commit_rules(&[change(Some(rule.clone()), rule.key())]).await.unwrap();
    let head = store.commit_rules(&[change(None, rule.key())]).await.unwrap();
    // The base claims no rules at v1, yet the key held one and is gone now.
    let wrong = ack(v1, RuleCounts::default(), "2023.10");
    let got = expected(store, old, Some(&wrong), &sets, head).await.unwrap();
    assert_eq!(got, (RuleCounts::default(), Method::FullScan));
}

/// Both computations agree at several sizes, and their cost per NORMAL sync is printed.
/// CI runs 8 and 1,000 rules; the BENCHMARKS.md figures (up to 100,000) come from
/// `DASHER_COUNTS_COST_SIZES=8,1000,10000,100000 cargo test -p dasher-server --lib
/// sync::counts::tests::cost -- --nocapture`. Timing is printed, never asserted.
#[tokio::test]
async fn cost_of_counts_per_normal_sync() {
    let caps = ClientCaps::from_version_str("2025.6");
    let sizes: Vec<usize> = std::env::var("DASHER_COUNTS_COST_SIZES")
        .map(|v| {
            v.split(',').map(|n| n.trim().parse().expect("DASHER_COUNTS_COST_SIZES: comma-separated counts")).collect()
        })
        .unwrap_or_else(|_| vec![8, 1_000]);
    for n in sizes {
        let (_dir, store) = store();
        let store = store.as_ref();
        let sets = vec![host_rule_set("m1"), GLOBAL_RULE_SET.to_owned()];
        let mut at = 0;
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let changes: Vec<RuleChange> = chunk
                .iter()
                .map(|i| {
                    let mut rule = random_rule(&mut StdRng::seed_from_u64(*i as u64));
                    rule.identifier = format!("{i:064x}");
                    rule.rule_type = RuleType::Binary;
                    rule.policy = Policy::Blocklist;
                    rule.cel_expr = None;
                    RuleChange { rule_set: GLOBAL_RULE_SET.into(), key: rule.key(), rule: Some(rule) }
                })
                .collect();
            at = store.commit_rules(&changes).await.unwrap();
        }
        let counts = full_scan(store, caps, &sets, at).await.unwrap();
        let base = RuleAck { rule_sets: sets.clone(), ..ack(at, counts, "2025.6") };
        let rounds = if n >= 10_000 { 5 } else { 50 };
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            assert_eq!(full_scan(store, caps, &sets, at).await.unwrap(), counts);
        }
        let old = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            assert_eq!(expected(store, caps, Some(&base), &sets, at).await.unwrap(), (counts, Method::CarriedForward));
        }
        let new = t.elapsed() / rounds;
        println!("{n:>7} rules: full scan {old:>12.2?} per sync, carried forward {new:>10.2?} per sync");
    }
}
