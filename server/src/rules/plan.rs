//! Diffing declared sets against the store, and applying the diff as one rule version.

use super::{DesiredSet, RulesError};
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_sdk::names::RuleSetName;
use dasher_sdk::wire::RuleType;
use dasher_store::{RuleChange, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Rules read per store scan while diffing.
const SCAN_PAGE: usize = 20_000;

/// Rules listed per kind and set in a plan (the counts are always exact).
pub const MAX_LISTED: usize = 1000;

/// How often [`apply`] recomputes a plan whose version another writer moved meanwhile.
const APPLY_ATTEMPTS: usize = 5;

/// A rule named by its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// Rule type.
    pub rule_type: RuleType,
    /// Identifier.
    pub identifier: String,
}

impl From<&RuleKey> for RuleRef {
    fn from(k: &RuleKey) -> Self {
        RuleRef { rule_type: k.rule_type, identifier: k.identifier.clone() }
    }
}

/// A rule whose content changes: which fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Rule type.
    pub rule_type: RuleType,
    /// Identifier.
    pub identifier: String,
    /// The fields that differ (`policy`, `custom_msg`, `comment`…).
    pub fields: Vec<String>,
}

/// What applying does to one set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SetPlan {
    /// The file that declares it (`None` for a pruned set).
    pub source: Option<String>,
    /// Rules to add.
    pub add: usize,
    /// Rules whose content changes.
    pub change: usize,
    /// Rules to remove.
    pub remove: usize,
    /// The first [`MAX_LISTED`] rules added.
    pub added: Vec<RuleRef>,
    /// The first [`MAX_LISTED`] rules changed, with their fields.
    pub changed: Vec<FieldChange>,
    /// The first [`MAX_LISTED`] rules removed.
    pub removed: Vec<RuleRef>,
    /// Set is not declared and `prune` empties it.
    pub pruned: bool,
}

/// A diff at one rule version.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// The rule version the diff was computed at.
    pub version: u64,
    /// Rules added, in all sets.
    pub add: usize,
    /// Rules changed.
    pub change: usize,
    /// Rules removed.
    pub remove: usize,
    /// Per set, only sets with something to do.
    pub sets: BTreeMap<String, SetPlan>,
    /// The store changes that apply it.
    #[serde(skip)]
    pub changes: Vec<RuleChange>,
}

impl Plan {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The fields of two rules (same key) that differ, by their JSON names.
fn differing_fields(a: &Rule, b: &Rule) -> Vec<String> {
    let (serde_json::Value::Object(a), serde_json::Value::Object(b)) =
        (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default())
    else {
        return vec!["rule".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// Every live rule of `set` at `at`, by key.
async fn current(store: &dyn Store, set: &str, at: u64) -> Result<HashMap<RuleKey, Rule>, RulesError> {
    let mut out = HashMap::new();
    let mut after: Option<RuleKey> = None;
    loop {
        let page = store.scan_rules(set, at, after.as_ref(), SCAN_PAGE).await?;
        let done = page.len() < SCAN_PAGE;
        after = page.last().map(Rule::key);
        out.extend(page.into_iter().map(|r| (r.key(), r)));
        if done {
            return Ok(out);
        }
    }
}

/// Diffs `desired` against the store at version `at`. With `prune`, every other set holding
/// rules whose name is writable and for which `keep` is false is emptied.
pub async fn plan(
    store: &dyn Store,
    desired: &[DesiredSet],
    prune: bool,
    at: u64,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Plan, RulesError> {
    let mut plan = Plan { version: at, ..Default::default() };
    for set in desired {
        let mut have = current(store, &set.name, at).await?;
        let mut sp = SetPlan { source: set.source.clone(), ..Default::default() };
        for (key, rule) in &set.rules {
            match have.remove(key) {
                None => {
                    sp.add += 1;
                    if sp.added.len() < MAX_LISTED {
                        sp.added.push(key.into());
                    }
                }
                Some(old) if old == *rule => continue,
                Some(old) => {
                    sp.change += 1;
                    if sp.changed.len() < MAX_LISTED {
                        sp.changed.push(FieldChange {
                            rule_type: key.rule_type,
                            identifier: key.identifier.clone(),
                            fields: differing_fields(&old, rule),
                        });
                    }
                }
            }
            plan.changes.push(RuleChange { rule_set: set.name.clone(), key: key.clone(), rule: Some(rule.clone()) });
        }
        push_removals(&mut plan, &mut sp, &set.name, have);
        if sp.add + sp.change + sp.remove > 0 {
            plan.sets.insert(set.name.clone(), sp);
        }
    }
    if prune {
        let declared: std::collections::HashSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
        for info in store.rule_sets().await? {
            if info.rules == 0
                || declared.contains(info.name.as_str())
                || RuleSetName::writable(&info.name).is_err()
                || keep(&info.name)
            {
                continue;
            }
            let have = current(store, &info.name, at).await?;
            let mut sp = SetPlan { pruned: true, ..Default::default() };
            push_removals(&mut plan, &mut sp, &info.name, have);
            if sp.remove > 0 {
                plan.sets.insert(info.name.clone(), sp);
            }
        }
    }
    for sp in plan.sets.values() {
        plan.add += sp.add;
        plan.change += sp.change;
        plan.remove += sp.remove;
    }
    Ok(plan)
}

fn push_removals(plan: &mut Plan, sp: &mut SetPlan, set: &str, left: HashMap<RuleKey, Rule>) {
    let mut keys: Vec<RuleKey> = left.into_keys().collect();
    keys.sort();
    for key in keys {
        sp.remove += 1;
        if sp.removed.len() < MAX_LISTED {
            sp.removed.push((&key).into());
        }
        plan.changes.push(RuleChange { rule_set: set.to_owned(), key, rule: None });
    }
}

/// Plans at the head and commits the plan as one rule version on exactly that version
/// ([`Store::commit_rules_at`]). With `expect_version`, a head other than it is a
/// [`RulesError::Conflict`] (nothing written); without, a head moved by another writer between
/// plan and commit makes it plan again (a few times). Returns the plan and the version after.
pub async fn apply(
    store: &dyn Store,
    desired: &[DesiredSet],
    prune: bool,
    expect_version: Option<u64>,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(Plan, u64), RulesError> {
    let mut last_head = 0;
    for _ in 0..APPLY_ATTEMPTS {
        let head = store.head_version().await?;
        if let Some(v) = expect_version
            && v != head
        {
            return Err(conflict(v, head));
        }
        let plan = plan(store, desired, prune, head, keep).await?;
        if plan.is_empty() {
            return Ok((plan, head));
        }
        match store.commit_rules_at(head, &plan.changes).await? {
            Ok(version) => return Ok((plan, version)),
            Err(moved) if expect_version.is_some() => return Err(conflict(head, moved.head)),
            Err(moved) => last_head = moved.head,
        }
    }
    Err(RulesError::Conflict(format!(
        "the rules changed under {APPLY_ATTEMPTS} attempts to apply (head now {last_head}); try again"
    )))
}

fn conflict(expected: u64, head: u64) -> RulesError {
    RulesError::Conflict(format!(
        "the rule head is version {head}, not {expected} as expected: rules changed since the plan; plan again"
    ))
}
