//! A host's plugin host set (`plugin-host:<machine id>`): the host rules plugins return from
//! `select-rules`. Written only here, at preflight, as the difference between what the
//! plugins want and what the set holds (upserts and removals in one `commit_rules`), so
//! hosts receive the rules, and the `REMOVE` of rules plugins stop returning, by the
//! normal delta or full sync. Must never change the set for a fail-static decision
//! ([`HostRules::Keep`]): a plugin fault never removes a host's rules.
//!
//! The set is selected right after the host's own set once it holds rules, and stays
//! selected while the host's acknowledged selection contains it, so emptying it later
//! reaches the host as `REMOVE`s in a normal sync rather than as a clean sync.

use crate::policy::{HostRules, plugin_host_rule_set};
use dasher_sdk::domain::{Rule, RuleKey, host_rule_set};
use dasher_store::{Result, RuleAck, RuleChange, Store};
use std::collections::{BTreeMap, HashSet};

/// Rules read per store scan.
const SCAN_PAGE_RULES: usize = 4096;

/// Brings the host's plugin host set to `host_rules` (nothing for `Keep`/`Unsupported`).
/// Returns the set's size afterwards, `None` if it was left alone.
pub async fn apply(store: &dyn Store, machine_id: &str, host_rules: &HostRules) -> Result<Option<u32>> {
    let HostRules::Desired { rules, by, .. } = host_rules else { return Ok(None) };
    let set = plugin_host_rule_set(machine_id);
    let head = store.head_version().await?;
    let mut current: BTreeMap<RuleKey, Rule> = BTreeMap::new();
    let mut after: Option<RuleKey> = None;
    loop {
        let batch = store.scan_rules(&set, head, after.as_ref(), SCAN_PAGE_RULES).await?;
        for rule in &batch {
            after = Some(rule.key());
            current.insert(rule.key(), rule.clone());
        }
        if batch.len() < SCAN_PAGE_RULES {
            break;
        }
    }
    let wanted: HashSet<RuleKey> = rules.iter().map(Rule::key).collect();
    debug_assert_eq!(wanted.len(), rules.len(), "desired host rules are one per key");
    let mut changes: Vec<RuleChange> = rules
        .iter()
        .filter(|r| current.get(&r.key()) != Some(*r))
        .map(|r| RuleChange { rule_set: set.clone(), key: r.key(), rule: Some(r.clone()) })
        .collect();
    let upserts = changes.len();
    changes.extend(current.keys().filter(|k| !wanted.contains(*k)).map(|k| RuleChange {
        rule_set: set.clone(),
        key: k.clone(),
        rule: None,
    }));
    if !changes.is_empty() {
        let version = store.commit_rules(&changes).await?;
        let plugins = by.iter().map(|d| d.by.as_str()).collect::<Vec<_>>().join(", ");
        tracing::info!(machine_id, %plugins, upserts, removals = changes.len() - upserts, version, "plugin host rules changed");
    }
    Ok(Some(rules.len() as u32))
}

/// `sets` with the host's plugin host set placed right after the host's own set, when
/// plugins are configured and the set holds rules at `at` or the host's acknowledged
/// selection already contains it.
pub async fn place(
    store: &dyn Store,
    machine_id: &str,
    host_rules: &HostRules,
    acked: Option<&RuleAck>,
    mut sets: Vec<String>,
    at: u64,
) -> Result<Vec<String>> {
    if *host_rules == HostRules::Unsupported {
        return Ok(sets);
    }
    let set = plugin_host_rule_set(machine_id);
    if sets.contains(&set) {
        return Ok(sets);
    }
    let include =
        acked.is_some_and(|a| a.rule_sets.contains(&set)) || !store.scan_rules(&set, at, None, 1).await?.is_empty();
    if include {
        let own = host_rule_set(machine_id);
        let at = sets.iter().position(|s| *s == own).map_or(0, |i| i + 1);
        sets.insert(at, set);
    }
    Ok(sets)
}
