//! A host's local rule DB (Santa's `rules.db`, reference §5.2, §5.3, §5.5) with storage shared
//! across the fleet.
//!
//! Thousands of hosts converge to the same few rule sets, so a DB is an `Arc` to an immutable,
//! *interned* [`RuleSet`]: applying a sync builds the new set, and if an identical set already
//! exists anywhere in the process, the host points at that one. Individual rules are interned
//! too (`Arc<Rule>`). 10,000 hosts holding the same 5,000 rules therefore cost one set, not
//! 10,000. Locally created transitive rules live beside the shared set, per host.

use dasher_sdk::domain::{Rule, RuleCounts, RuleKey, validate_identifier};
use dasher_sdk::wire::{self, Policy, RuleType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// An immutable set of synced rules, keyed by `(rule_type, identifier)`.
#[derive(Debug)]
pub struct RuleSet {
    rules: HashMap<RuleKey, Arc<Rule>>,
    digest: u128,
    counts: RuleCounts,
}

impl RuleSet {
    fn build(rules: HashMap<RuleKey, Arc<Rule>>) -> RuleSet {
        let mut sorted: Vec<&Arc<Rule>> = rules.values().collect();
        sorted.sort_by(|a, b| (a.rule_type, &a.identifier).cmp(&(b.rule_type, &b.identifier)));
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut counts = RuleCounts::default();
        for r in sorted {
            counts.add(r);
            // Santa hashes (identifier, cel_expr, state, type) of execution rules (§4.1 #22).
            for part in [r.identifier.as_str(), r.cel_expr.as_deref().unwrap_or("")] {
                h.update(part.as_bytes());
                h.update(&[0]);
            }
            h.update(&(r.policy as i32).to_le_bytes());
            h.update(&(r.rule_type as i32).to_le_bytes());
            // Fields Santa does not hash still make sets distinct for interning.
            for part in [&r.custom_msg, &r.custom_url, &r.notification_app_name, &r.event_detail_button_label] {
                h.update(part.as_deref().unwrap_or("\u{1}").as_bytes());
                h.update(&[0]);
            }
        }
        RuleSet { digest: h.digest128(), rules, counts }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn same_rules(a: &RuleSet, b: &RuleSet) -> bool {
    a.rules.len() == b.rules.len() && a.rules.iter().all(|(k, r)| b.rules.get(k).is_some_and(|o| **o == **r))
}

/// Process-wide interners for rules and rule sets.
struct Interner {
    sets: Mutex<HashMap<u128, Vec<Weak<RuleSet>>>>,
    rules: Mutex<HashMap<Rule, Weak<Rule>>>,
}

fn interner() -> &'static Interner {
    static I: OnceLock<Interner> = OnceLock::new();
    I.get_or_init(|| Interner { sets: Mutex::new(HashMap::new()), rules: Mutex::new(HashMap::new()) })
}

/// Returns the shared `Arc` for `rule`.
pub fn intern_rule(rule: Rule) -> Arc<Rule> {
    let mut map = interner().rules.lock().expect("interner lock");
    if let Some(r) = map.get(&rule).and_then(Weak::upgrade) {
        return r;
    }
    if map.len() > 4096 && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let a = Arc::new(rule.clone());
    map.insert(rule, Arc::downgrade(&a));
    a
}

fn intern_set(set: RuleSet) -> Arc<RuleSet> {
    let mut map = interner().sets.lock().expect("interner lock");
    let bucket = map.entry(set.digest).or_default();
    bucket.retain(|w| w.strong_count() > 0);
    for w in bucket.iter() {
        if let Some(existing) = w.upgrade()
            && same_rules(&existing, &set)
        {
            return existing;
        }
    }
    let a = Arc::new(set);
    bucket.push(Arc::downgrade(&a));
    a
}

fn empty_set() -> Arc<RuleSet> {
    intern_set(RuleSet::build(HashMap::new()))
}

/// How downloaded rules are applied (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Apply on top.
    Normal,
    /// Delete every non-transitive rule first.
    Clean,
    /// Delete every rule first, transitive ones included.
    CleanAll,
}

/// One downloaded rule after client-side validation: an upsert or a removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleOp {
    /// Insert or replace.
    Upsert(Arc<Rule>),
    /// `REMOVE`: delete `(identifier, type)` whatever its policy.
    Remove(RuleKey),
}

/// Converts a wire rule like `RuleFromProtoRule` + `SNTRule` do (§5.5); `None` = dropped.
pub fn validate_wire_rule(w: &wire::Rule) -> Option<RuleOp> {
    let rule_type = RuleType::try_from(w.rule_type).ok().filter(|t| *t != RuleType::Unknown)?;
    let policy = Policy::try_from(w.policy).ok().filter(|p| *p != Policy::Unknown)?;
    let raw_id = if w.identifier.is_empty() { w.sha256.as_deref().unwrap_or("") } else { &w.identifier };
    let identifier = validate_identifier(rule_type, raw_id).ok()?;
    if policy == Policy::Remove {
        return Some(RuleOp::Remove(RuleKey { rule_type, identifier }));
    }
    let text = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).cloned();
    let cel_expr = text(&w.cel_expr);
    if policy == Policy::Cel && cel_expr.is_none() {
        return None;
    }
    let rule = Rule {
        identifier,
        rule_type,
        policy,
        custom_msg: text(&w.custom_msg),
        custom_url: text(&w.custom_url),
        cel_expr: if policy == Policy::Cel { cel_expr } else { None },
        notification_app_name: text(&w.notification_app_name),
        event_detail_button_label: text(&w.event_detail_button_label)
            .map(|l| l.chars().take(dasher_sdk::domain::MAX_BUTTON_LABEL_CHARS).collect()),
        comment: None,
    };
    Some(RuleOp::Upsert(intern_rule(rule)))
}

/// A host's rule DB.
#[derive(Clone, Debug)]
pub struct RuleDb {
    synced: Arc<RuleSet>,
    /// Locally created transitive (compiler-output) allow rules.
    transitive: Vec<Arc<Rule>>,
}

impl Default for RuleDb {
    fn default() -> Self {
        RuleDb { synced: empty_set(), transitive: Vec::new() }
    }
}

impl RuleDb {
    /// Applies one sync's rules in order in one transaction (§5.2, §5.3). With zero rules the DB
    /// is not touched at all, even for CLEAN/CLEAN_ALL.
    pub fn apply(&mut self, ops: &[RuleOp], cleanup: Cleanup) {
        if ops.is_empty() {
            return;
        }
        let mut map = match cleanup {
            Cleanup::Normal => self.synced.rules.clone(),
            Cleanup::Clean | Cleanup::CleanAll => HashMap::with_capacity(ops.len()),
        };
        if cleanup == Cleanup::CleanAll {
            self.transitive.clear();
        }
        for op in ops {
            match op {
                RuleOp::Upsert(r) => {
                    map.insert(r.key(), r.clone());
                }
                RuleOp::Remove(k) => {
                    map.remove(k);
                    self.transitive.retain(|t| t.key() != *k);
                }
            }
        }
        self.synced = intern_set(RuleSet::build(map));
    }

    /// Adds a locally created transitive rule.
    pub fn add_transitive(&mut self, rule: Rule) {
        self.transitive.push(intern_rule(rule));
    }

    /// Looks up a rule by key (synced rules win over transitive ones).
    pub fn get(&self, key: &RuleKey) -> Option<&Arc<Rule>> {
        self.synced.rules.get(key).or_else(|| self.transitive.iter().find(|t| t.key() == *key))
    }

    /// Synced (non-transitive) rules.
    pub fn synced_rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.synced.rules.values()
    }

    /// Number of synced rules.
    pub fn synced_len(&self) -> usize {
        self.synced.len()
    }

    /// Counts as reported in preflight (transitive rules count as BINARY and transitive).
    pub fn counts(&self) -> RuleCounts {
        let mut c = self.synced.counts;
        c.transitive = self.transitive.len() as u32;
        c.binary += self.transitive.len() as u32;
        c
    }

    /// `rulesHash`: 32 hex over the non-transitive rules (opaque; equality only, §4.1 #22).
    pub fn rules_hash(&self) -> String {
        format!("{:032x}", self.synced.digest)
    }

    /// True if `self` and `other` share the same interned set (a cheap equality check).
    pub fn shares_storage_with(&self, other: &RuleDb) -> bool {
        Arc::ptr_eq(&self.synced, &other.synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, t: RuleType, p: Policy) -> wire::Rule {
        wire::Rule { identifier: id.into(), rule_type: t as i32, policy: p as i32, ..Default::default() }
    }
    fn ops(rules: &[wire::Rule]) -> Vec<RuleOp> {
        rules.iter().filter_map(validate_wire_rule).collect()
    }
    const TEAM: &str = "EQHXZ8M8AV";
    const SID: &str = "platform:com.apple.yes";

    fn transitive() -> Rule {
        Rule {
            identifier: "a".repeat(64),
            rule_type: RuleType::Binary,
            policy: Policy::Allowlist,
            custom_msg: None,
            custom_url: None,
            cel_expr: None,
            notification_app_name: None,
            event_detail_button_label: None,
            comment: None,
        }
    }

    #[test]
    fn normal_apply_remove_and_replace() {
        let mut db = RuleDb::default();
        db.apply(
            &ops(&[w(TEAM, RuleType::TeamId, Policy::Allowlist), w(SID, RuleType::SigningId, Policy::Blocklist)]),
            Cleanup::Normal,
        );
        assert_eq!(db.synced_len(), 2);
        assert_eq!(db.counts().teamid, 1);
        // REMOVE deletes whatever the policy; later rule with the same key replaces.
        db.apply(
            &ops(&[w(TEAM, RuleType::TeamId, Policy::Remove), w(SID, RuleType::SigningId, Policy::Allowlist)]),
            Cleanup::Normal,
        );
        assert_eq!(db.synced_len(), 1);
        let key = RuleKey { rule_type: RuleType::SigningId, identifier: SID.into() };
        assert_eq!(db.get(&key).unwrap().policy, Policy::Allowlist);
        // Removing a missing rule is a no-op success.
        db.apply(&ops(&[w("ABCDEFGHIJ", RuleType::TeamId, Policy::Remove)]), Cleanup::Normal);
        assert_eq!(db.synced_len(), 1);
    }

    #[test]
    fn clean_keeps_transitive_clean_all_drops_everything() {
        let mut db = RuleDb::default();
        db.apply(&ops(&[w(TEAM, RuleType::TeamId, Policy::Allowlist)]), Cleanup::Normal);
        db.add_transitive(transitive());
        let new = ops(&[w(SID, RuleType::SigningId, Policy::Allowlist)]);
        let mut clean = db.clone();
        clean.apply(&new, Cleanup::Clean);
        assert_eq!(clean.synced_len(), 1);
        assert_eq!(clean.counts().transitive, 1);
        let mut all = db.clone();
        all.apply(&new, Cleanup::CleanAll);
        assert_eq!(all.synced_len(), 1);
        assert_eq!(all.counts().transitive, 0);
    }

    #[test]
    fn a_clean_sync_with_zero_valid_rules_deletes_nothing() {
        let mut db = RuleDb::default();
        db.apply(&ops(&[w(TEAM, RuleType::TeamId, Policy::Allowlist)]), Cleanup::Normal);
        let before = db.rules_hash();
        // Every rule invalid → nothing to apply.
        let invalid =
            ops(&[w("short", RuleType::Binary, Policy::Allowlist), w("x", RuleType::TeamId, Policy::Blocklist)]);
        assert!(invalid.is_empty());
        db.apply(&invalid, Cleanup::CleanAll);
        assert_eq!(db.synced_len(), 1);
        assert_eq!(db.rules_hash(), before);
    }

    #[test]
    fn validation_normalises_and_drops_bad_rules() {
        let v = |id: &str, t, p| validate_wire_rule(&w(id, t, p));
        assert!(v(&"A".repeat(64), RuleType::Binary, Policy::Allowlist).is_some());
        assert!(v(&"A".repeat(63), RuleType::Binary, Policy::Allowlist).is_none());
        assert!(v("eqhxz8m8av", RuleType::TeamId, Policy::Allowlist).is_some());
        assert!(v("PLATFORM:com.apple.yes", RuleType::SigningId, Policy::Allowlist).is_some());
        assert!(v("nope:com.x", RuleType::SigningId, Policy::Allowlist).is_none());
        assert!(v(TEAM, RuleType::Unknown, Policy::Allowlist).is_none());
        assert!(v(TEAM, RuleType::TeamId, Policy::Unknown).is_none());
        assert!(v(TEAM, RuleType::TeamId, Policy::Cel).is_none(), "CEL needs cel_expr");
        let Some(RuleOp::Upsert(r)) = v(&"AB".repeat(32), RuleType::Binary, Policy::Allowlist) else { panic!() };
        assert_eq!(r.identifier, "ab".repeat(32));
        // Deprecated sha256 alias.
        let old = wire::Rule { sha256: Some("c".repeat(64)), rule_type: 1, policy: 3, ..Default::default() };
        assert!(validate_wire_rule(&old).is_some());
    }

    #[test]
    fn identical_dbs_share_one_interned_set_and_hash() {
        let rules: Vec<_> = (0..100).map(|i| w(&format!("{i:064x}"), RuleType::Binary, Policy::Blocklist)).collect();
        let mut a = RuleDb::default();
        let mut b = RuleDb::default();
        a.apply(&ops(&rules), Cleanup::Clean);
        b.apply(&ops(&rules[..50]), Cleanup::Normal);
        b.apply(&ops(&rules[50..]), Cleanup::Normal);
        assert!(a.shares_storage_with(&b));
        assert_eq!(a.rules_hash(), b.rules_hash());
        assert_eq!(a.rules_hash().len(), 32);
        let mut c = a.clone();
        c.apply(&ops(&[w(TEAM, RuleType::TeamId, Policy::Allowlist)]), Cleanup::Normal);
        assert_ne!(a.rules_hash(), c.rules_hash());
    }
}
