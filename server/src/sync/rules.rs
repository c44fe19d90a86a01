//! A host's effective rules and the pages of a rule download.
//!
//! Effective rules = the union of the selected rule sets; for a key held by several sets
//! the first set in precedence order wins. Rules a client's version cannot understand are
//! adapted (silent GUI/TTY blocks become silent blocks) or skipped, so what is sent is
//! exactly what the client will keep (`rules_processed == rules_received`).
//!
//! Pages are computed from the store at the cursor's snapshot version, never materialised:
//! a full download walks each set in key order; a delta download walks the change log
//! after the acknowledged version and sends each touched key's effective value (or
//! `REMOVE`). Both compute the winner with the same `Resolver::resolve`, a page of keys at a
//! time.

use super::cursor::{Cursor, Position};
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_sdk::version::{ClientCaps, Feature};
use dasher_sdk::wire::{self, Policy, RuleType};
use dasher_store::{Result, Store};
use std::collections::HashSet;

/// The rule as this client should get it, or `None` if it cannot use it at all.
pub fn adapt_for_client(rule: &Rule, caps: ClientCaps) -> Option<Rule> {
    let type_ok = match rule.rule_type {
        RuleType::SigningId => caps.supports(Feature::SigningIdRules),
        RuleType::CdHash => caps.supports(Feature::CdHashRules),
        RuleType::Unknown => false,
        _ => true,
    };
    if !type_ok {
        return None;
    }
    match rule.policy {
        Policy::Cel if !caps.supports(Feature::CelRules) => None,
        Policy::SilentGuiBlocklist | Policy::SilentTtyBlocklist if !caps.supports(Feature::SilentGuiTtyPolicies) => {
            Some(Rule { policy: Policy::SilentBlocklist, ..rule.clone() })
        }
        _ => Some(rule.clone()),
    }
}

/// A REMOVE of a hash no binary has. Sent when a clean sync would otherwise carry no rule:
/// clients only wipe their rules if a clean download delivers at least one (§5.2).
pub fn clean_sync_sentinel() -> wire::Rule {
    Rule::removal_to_wire(&RuleKey { rule_type: RuleType::Binary, identifier: "0".repeat(64) })
}

/// Resolves rules for one client.
pub struct Resolver<'a> {
    store: &'a dyn Store,
    caps: ClientCaps,
}

impl<'a> Resolver<'a> {
    /// A resolver for a client with `caps`.
    pub fn new(store: &'a dyn Store, caps: ClientCaps) -> Self {
        Resolver { store, caps }
    }

    /// The effective rule of each of `keys` over `sets[..upto]` at version `at`, in `keys`
    /// order: the first set in precedence order holding a rule this client can use wins.
    /// One batched store read per occupied set (empty sets, most hosts' own ones, are
    /// skipped), never one per key.
    async fn resolve(
        &self,
        sets: &[String],
        occupied: &[bool],
        upto: usize,
        keys: &[RuleKey],
        at: u64,
    ) -> Result<Vec<Option<Rule>>> {
        let mut out: Vec<Option<Rule>> = vec![None; keys.len()];
        let mut open: Vec<usize> = (0..keys.len()).collect();
        for (set, _) in sets[..upto].iter().zip(occupied).filter(|(_, o)| **o) {
            if open.is_empty() {
                break;
            }
            let wanted: Vec<RuleKey> = open.iter().map(|&i| keys[i].clone()).collect();
            let found = self.store.get_rules(set, &wanted, at).await?;
            let mut still = Vec::with_capacity(open.len());
            for (i, rule) in open.into_iter().zip(found) {
                match rule.and_then(|r| adapt_for_client(&r, self.caps)) {
                    Some(r) => out[i] = Some(r),
                    None => still.push(i),
                }
            }
            open = still;
        }
        Ok(out)
    }

    /// Which of `sets` hold at least one rule at version `at`.
    async fn occupied(&self, sets: &[String], at: u64) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(sets.len());
        for set in sets {
            out.push(!self.store.scan_rules(set, at, None, 1).await?.is_empty());
        }
        Ok(out)
    }

    /// The next page of at most `page_size` rules, and the cursor for the page after it
    /// (`None` on the last page).
    pub async fn page(&self, mut cursor: Cursor, page_size: usize) -> Result<(Vec<wire::Rule>, Option<Cursor>)> {
        let mut out = Vec::with_capacity(page_size.min(4096));
        let occupied = self.occupied(&cursor.sets, cursor.at).await?;
        let done = match &mut cursor.pos {
            Position::Full { set, after } => loop {
                if out.len() >= page_size {
                    break false;
                }
                let Some(set_name) = cursor.sets.get(*set) else { break true };
                let want = page_size - out.len();
                let rules = self.store.scan_rules(set_name, cursor.at, after.as_ref(), want).await?;
                let keys: Vec<RuleKey> = rules.iter().map(Rule::key).collect();
                // Keys a set before this one supplies are sent with that set.
                let shadowing = self.resolve(&cursor.sets, &occupied, *set, &keys, cursor.at).await?;
                for (rule, shadowed) in rules.iter().zip(shadowing) {
                    if shadowed.is_none()
                        && let Some(r) = adapt_for_client(rule, self.caps)
                    {
                        out.push(r.to_wire());
                    }
                }
                if let Some(last) = keys.last() {
                    *after = Some(last.clone());
                }
                if rules.len() < want {
                    *set += 1;
                    *after = None;
                }
            },
            Position::Delta { after } => {
                let mut seen = HashSet::new();
                loop {
                    if out.len() >= page_size {
                        break false;
                    }
                    let want = page_size - out.len();
                    let changes = self.store.scan_changes(*after, cursor.at, want).await?;
                    let mut keys = Vec::new();
                    for change in &changes {
                        *after = change.pos;
                        if cursor.sets.contains(&change.rule_set) && seen.insert(change.key.clone()) {
                            keys.push(change.key.clone());
                        }
                    }
                    let n = cursor.sets.len();
                    for (key, rule) in
                        keys.iter().zip(self.resolve(&cursor.sets, &occupied, n, &keys, cursor.at).await?)
                    {
                        out.push(match rule {
                            Some(rule) => rule.to_wire(),
                            None => Rule::removal_to_wire(key),
                        });
                    }
                    if changes.len() < want {
                        break true;
                    }
                }
            }
        };
        let is_full = matches!(cursor.pos, Position::Full { .. });
        cursor.sent += out.len() as u64;
        if done {
            if is_full && cursor.sent == 0 {
                out.push(clean_sync_sentinel());
            }
            Ok((out, None))
        } else {
            Ok((out, Some(cursor)))
        }
    }

    /// Every effective rule over `sets` at `at`, in set-then-key order.
    pub async fn all_effective(&self, sets: &[String], at: u64) -> Result<Vec<Rule>> {
        let occupied = self.occupied(sets, at).await?;
        let mut rules = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let mut after: Option<RuleKey> = None;
            loop {
                let batch = self.store.scan_rules(set, at, after.as_ref(), 4096).await?;
                let keys: Vec<RuleKey> = batch.iter().map(Rule::key).collect();
                for (rule, shadowed) in batch.iter().zip(self.resolve(sets, &occupied, i, &keys, at).await?) {
                    if shadowed.is_none()
                        && let Some(r) = adapt_for_client(rule, self.caps)
                    {
                        rules.push(r);
                    }
                }
                after = keys.last().cloned();
                if batch.len() < 4096 {
                    break;
                }
            }
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::version::SantaVersion;

    fn rule(t: RuleType, id: &str, p: Policy) -> Rule {
        Rule {
            identifier: id.into(),
            rule_type: t,
            policy: p,
            custom_msg: None,
            custom_url: None,
            cel_expr: None,
            notification_app_name: None,
            event_detail_button_label: None,
        }
    }

    #[test]
    fn adapts_rules_to_old_clients() {
        let old = ClientCaps(Some(SantaVersion::new(2023, 10)));
        assert!(adapt_for_client(&rule(RuleType::CdHash, "a", Policy::Blocklist), old).is_none());
        assert!(adapt_for_client(&rule(RuleType::SigningId, "a", Policy::Blocklist), old).is_some());
        let silent = adapt_for_client(&rule(RuleType::Binary, "a", Policy::SilentGuiBlocklist), old).unwrap();
        assert_eq!(silent.policy, Policy::SilentBlocklist);
        let new = ClientCaps(Some(SantaVersion::new(2026, 7)));
        let kept = adapt_for_client(&rule(RuleType::Binary, "a", Policy::SilentGuiBlocklist), new).unwrap();
        assert_eq!(kept.policy, Policy::SilentGuiBlocklist);
    }
}
