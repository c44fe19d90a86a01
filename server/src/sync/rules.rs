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
//! time. A `REMOVE` goes only to a client that could hold the key: never for a rule type its
//! version does not know (it would drop it as invalid), and to a client older than CEL only
//! if some value of the key in the delta's window was a rule it could use (`could_hold`), so
//! the delta leaves the client with what a full download would.

use super::cursor::{Cursor, Position};
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_sdk::version::{ClientCaps, Feature};
use dasher_sdk::wire::{self, Policy, RuleType};
use dasher_store::{ChangeEntry, Result, Store, StoreError};
use std::collections::{BTreeMap, HashSet};

/// Whether a client with `caps` accepts rules (and `REMOVE`s) of `rule_type` at all.
pub fn knows_rule_type(rule_type: RuleType, caps: ClientCaps) -> bool {
    match rule_type {
        RuleType::SigningId => caps.supports(Feature::SigningIdRules),
        RuleType::CdHash => caps.supports(Feature::CdHashRules),
        RuleType::Unknown => false,
        RuleType::Binary | RuleType::Certificate | RuleType::TeamId => true,
    }
}

/// The rule as this client should get it, or `None` if it cannot use it at all.
pub fn adapt_for_client(rule: &Rule, caps: ClientCaps) -> Option<Rule> {
    if !knows_rule_type(rule.rule_type, caps) {
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

    /// The effective rule of each of `keys` over all of `sets` at version `at` (`None`: no
    /// rule this client can use), in `keys` order.
    pub async fn effective(&self, sets: &[String], keys: &[RuleKey], at: u64) -> Result<Vec<Option<Rule>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let occupied = self.occupied(sets, at).await?;
        self.resolve(sets, &occupied, sets.len(), keys, at).await
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
        // Which sets hold rules: read once, and only for a page with keys to resolve (a delta
        // without changes, a NORMAL sync's usual case, needs no read at all).
        let mut occupied: Option<Vec<bool>> = None;
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
                if occupied.is_none() && *set > 0 && !keys.is_empty() {
                    occupied = Some(self.occupied(&cursor.sets, cursor.at).await?);
                }
                let occ = occupied.as_deref().unwrap_or_default();
                let shadowing = self.resolve(&cursor.sets, occ, *set, &keys, cursor.at).await?;
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
                    let mut window = Vec::new();
                    for change in &changes {
                        *after = change.pos;
                        if cursor.sets.contains(&change.rule_set) {
                            window.push(change);
                            if seen.insert(change.key.clone()) {
                                keys.push(change.key.clone());
                            }
                        }
                    }
                    let n = cursor.sets.len();
                    if occupied.is_none() && !keys.is_empty() {
                        occupied = Some(self.occupied(&cursor.sets, cursor.at).await?);
                    }
                    let occ = occupied.as_deref().unwrap_or_default();
                    let effective = self.resolve(&cursor.sets, occ, n, &keys, cursor.at).await?;
                    let gone: Vec<&RuleKey> =
                        keys.iter().zip(&effective).filter(|(_, r)| r.is_none()).map(|(k, _)| k).collect();
                    let held = self.could_hold(&gone, &window).await?;
                    for (key, rule) in keys.iter().zip(effective) {
                        match rule {
                            Some(rule) => out.push(rule.to_wire()),
                            None if held.contains(key) => out.push(Rule::removal_to_wire(key)),
                            // Not sent: a later change of the key on this page is judged anew.
                            None => {
                                seen.remove(key);
                            }
                        }
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

    /// Which of `gone` (keys without an effective rule at the snapshot, changed in `window`)
    /// this client could hold, so needs a `REMOVE` for. Not a key of a type it does not know.
    /// For a client that knows CEL, every other key: each change touched a rule it could use.
    /// For an older one, a key only if one of its values just before or just after a change in
    /// `window` was a rule it could use (not CEL): an incomplete earlier download may have
    /// delivered any of them. If that history was compacted meanwhile, the key is removed.
    async fn could_hold(&self, gone: &[&RuleKey], window: &[&ChangeEntry]) -> Result<HashSet<RuleKey>> {
        let mut held = HashSet::new();
        let mut ask: HashSet<&RuleKey> = HashSet::new();
        for &key in gone {
            if !knows_rule_type(key.rule_type, self.caps) {
                continue;
            }
            if self.caps.supports(Feature::CelRules) {
                held.insert(key.clone());
            } else {
                ask.insert(key);
            }
        }
        if ask.is_empty() {
            return Ok(held);
        }
        let mut reads: BTreeMap<(&str, u64), Vec<RuleKey>> = BTreeMap::new();
        for change in window.iter().filter(|c| ask.contains(&c.key)) {
            let version = change.pos.version;
            for at in [version.saturating_sub(1), version] {
                let keys = reads.entry((change.rule_set.as_str(), at)).or_default();
                if !keys.contains(&change.key) {
                    keys.push(change.key.clone());
                }
            }
        }
        for ((set, at), keys) in reads {
            match self.store.get_rules(set, &keys, at).await {
                Ok(values) => {
                    for (key, value) in keys.into_iter().zip(values) {
                        if value.is_some_and(|r| adapt_for_client(&r, self.caps).is_some()) {
                            held.insert(key);
                        }
                    }
                }
                Err(StoreError::VersionCompacted { .. }) => held.extend(keys),
                Err(e) => return Err(e),
            }
        }
        Ok(held)
    }

    /// Every effective rule over `sets` at `at`, in set-then-key order.
    pub async fn all_effective(&self, sets: &[String], at: u64) -> Result<Vec<Rule>> {
        Ok(self.first_effective(sets, at, usize::MAX).await?.0)
    }

    /// The first `limit` effective rules over `sets` at `at` (set-then-key order), and whether
    /// there are more: reads about `limit` rules, not the whole selection.
    pub async fn first_effective(&self, sets: &[String], at: u64, limit: usize) -> Result<(Vec<Rule>, bool)> {
        let occupied = self.occupied(sets, at).await?;
        let mut rules = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let mut after: Option<RuleKey> = None;
            loop {
                let want = limit.saturating_sub(rules.len()).saturating_add(1).min(4096);
                let batch = self.store.scan_rules(set, at, after.as_ref(), want).await?;
                let keys: Vec<RuleKey> = batch.iter().map(Rule::key).collect();
                for (rule, shadowed) in batch.iter().zip(self.resolve(sets, &occupied, i, &keys, at).await?) {
                    if shadowed.is_none()
                        && let Some(r) = adapt_for_client(rule, self.caps)
                    {
                        if rules.len() == limit {
                            return Ok((rules, true));
                        }
                        rules.push(r);
                    }
                }
                after = keys.last().cloned();
                if batch.len() < want {
                    break;
                }
            }
        }
        Ok((rules, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::domain::GLOBAL_RULE_SET;
    use dasher_sdk::version::SantaVersion;
    use dasher_store::{ChangePos, RuleChange, StoreSpec};
    use std::collections::BTreeMap;
    use std::sync::Arc;

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
            comment: None,
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

    const OLD_2023_10: ClientCaps = ClientCaps(Some(SantaVersion::new(2023, 10)));
    const PRE_CEL_2025_5: ClientCaps = ClientCaps(Some(SantaVersion::new(2025, 5)));
    const CURRENT_2026_7: ClientCaps = ClientCaps(Some(SantaVersion::new(2026, 7)));

    fn key(t: RuleType, id: &str) -> RuleKey {
        RuleKey { rule_type: t, identifier: id.into() }
    }

    fn cel(t: RuleType, id: &str) -> Rule {
        Rule { cel_expr: Some("euid == 0".into()), ..rule(t, id, Policy::Cel) }
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = dasher_store::open(&StoreSpec::Redb(dir.path().join("db.redb"))).unwrap();
        (dir, store)
    }

    /// Commits `rules` (upserts) and `removed` keys into `global`; returns the version.
    async fn commit(store: &dyn Store, rules: &[Rule], removed: &[RuleKey]) -> u64 {
        let mut changes: Vec<RuleChange> = rules
            .iter()
            .map(|r| RuleChange { rule_set: GLOBAL_RULE_SET.into(), key: r.key(), rule: Some(r.clone()) })
            .collect();
        changes.extend(removed.iter().map(|k| RuleChange {
            rule_set: GLOBAL_RULE_SET.into(),
            key: k.clone(),
            rule: None,
        }));
        store.commit_rules(&changes).await.unwrap()
    }

    /// Every rule of a download (all pages, 2 rules a page) as the client receives them.
    async fn download(store: &dyn Store, caps: ClientCaps, at: u64, pos: Position) -> Vec<wire::Rule> {
        let mut cursor =
            Cursor { v: Cursor::VERSION, machine: "m1".into(), at, sets: vec![GLOBAL_RULE_SET.into()], pos, sent: 0 };
        let mut rules = Vec::new();
        for _ in 0..100 {
            let (page, next) = Resolver::new(store, caps).page(cursor, 2).await.unwrap();
            rules.extend(page);
            match next {
                Some(next) => cursor = next,
                None => return rules,
            }
        }
        panic!("the download did not end within 100 pages");
    }

    fn full() -> Position {
        Position::Full { set: 0, after: None }
    }

    fn delta_from(acked: u64) -> Position {
        Position::Delta { after: ChangePos { version: acked, seq: u32::MAX } }
    }

    /// Whether the client would process `r` (reference §5.5: a known rule type, and a policy
    /// its version knows; CEL only from 2025.6).
    fn processes(r: &wire::Rule, caps: ClientCaps) -> bool {
        let Ok(t) = RuleType::try_from(r.rule_type) else { return false };
        knows_rule_type(t, caps) && (r.policy != Policy::Cel as i32 || caps.supports(Feature::CelRules))
    }

    /// The client's rule table after applying `rules` in order.
    fn apply(db: &mut BTreeMap<(i32, String), wire::Rule>, rules: &[wire::Rule]) {
        for r in rules {
            let k = (r.rule_type, r.identifier.clone());
            if r.policy == Policy::Remove as i32 {
                db.remove(&k);
            } else {
                db.insert(k, r.clone());
            }
        }
    }

    /// The identifiers removed, sorted (a key changed on two pages is sent on both).
    fn removals(rules: &[wire::Rule]) -> Vec<String> {
        let mut ids: Vec<String> =
            rules.iter().filter(|r| r.policy == Policy::Remove as i32).map(|r| r.identifier.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    #[tokio::test]
    async fn first_effective_stops_at_the_limit_and_says_if_there_are_more() {
        let (_dir, store) = store();
        let store = store.as_ref();
        let host_set = "host:m1".to_owned();
        let team = |n: u32| rule(RuleType::TeamId, &format!("TEAM{n:06}"), Policy::Allowlist);
        commit(store, &(0..10).map(team).collect::<Vec<_>>(), &[]).await;
        // The host's set overrides one global rule: it is shown once, from the host set.
        let mut blocked = team(3);
        blocked.policy = Policy::Blocklist;
        let at = store
            .commit_rules(&[RuleChange { rule_set: host_set.clone(), key: blocked.key(), rule: Some(blocked.clone()) }])
            .await
            .unwrap();
        let sets = [host_set, GLOBAL_RULE_SET.to_owned()];
        let resolver = Resolver::new(store, ClientCaps::EVERY_FEATURE);
        let all = resolver.all_effective(&sets, at).await.unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], blocked);
        for limit in [0, 1, 5, 9] {
            let (first, more) = resolver.first_effective(&sets, at, limit).await.unwrap();
            assert_eq!((first.as_slice(), more), (&all[..limit], true), "limit {limit}");
        }
        for limit in [10, 11, usize::MAX] {
            assert_eq!(resolver.first_effective(&sets, at, limit).await.unwrap(), (all.clone(), false));
        }
    }

    #[tokio::test]
    async fn remove_only_reaches_clients_that_could_hold_the_rule() {
        let (_dir, store) = store();
        let store = store.as_ref();
        let (b, c) = ("b".repeat(64), "c".repeat(40));
        let binary = rule(RuleType::Binary, &b, Policy::Blocklist);
        let cdhash = rule(RuleType::CdHash, &c, Policy::Blocklist);
        let signing = rule(RuleType::SigningId, "EQHXZ8M8AV:com.example", Policy::Allowlist);
        let team = rule(RuleType::TeamId, "TEAMAAAAAA", Policy::Allowlist);
        let team_cel = cel(RuleType::TeamId, "TEAMCCCCCC");
        let acked =
            commit(store, &[binary.clone(), cdhash.clone(), signing.clone(), team.clone(), team_cel.clone()], &[])
                .await;
        // Added as CEL and removed again within the window: only CEL clients could have it.
        let brief_cel = cel(RuleType::TeamId, "TEAMDDDDDD");
        // Allow, then CEL: an old client may hold the allow (e.g. from an unacknowledged sync).
        let turned_cel = rule(RuleType::TeamId, "TEAMEEEEEE", Policy::Allowlist);
        commit(store, &[brief_cel.clone(), turned_cel.clone()], &[]).await;
        commit(store, &[cel(RuleType::TeamId, "TEAMEEEEEE")], &[brief_cel.key()]).await;
        let all = [&binary, &cdhash, &signing, &team, &team_cel].map(Rule::key);
        let head = commit(store, &[], &all).await;

        let got = download(store, OLD_2023_10, head, delta_from(acked)).await;
        assert_eq!(removals(&got), ["EQHXZ8M8AV:com.example", "TEAMAAAAAA", "TEAMEEEEEE", b.as_str()]);
        assert!(got.iter().all(|r| processes(r, OLD_2023_10)), "{got:?}");

        let got = download(store, PRE_CEL_2025_5, head, delta_from(acked)).await;
        assert_eq!(removals(&got), ["EQHXZ8M8AV:com.example", "TEAMAAAAAA", "TEAMEEEEEE", b.as_str(), c.as_str()]);
        assert!(got.iter().all(|r| processes(r, PRE_CEL_2025_5)), "{got:?}");

        let got = download(store, CURRENT_2026_7, head, delta_from(acked)).await;
        let all_removed = ["EQHXZ8M8AV:com.example", "TEAMAAAAAA", "TEAMCCCCCC", "TEAMDDDDDD", b.as_str(), c.as_str()];
        assert_eq!(removals(&got), all_removed);
        assert!(got.iter().any(|r| r.identifier == "TEAMEEEEEE" && r.policy == Policy::Cel as i32));
    }

    #[tokio::test]
    async fn delta_and_full_downloads_agree_for_every_client_generation() {
        let (_dir, store) = store();
        let store = store.as_ref();
        let hash = |c: char| c.to_string().repeat(64);
        let cd = |c: char| c.to_string().repeat(40);
        let mut versions = vec![
            commit(
                store,
                &[
                    rule(RuleType::Binary, &hash('a'), Policy::Blocklist),
                    rule(RuleType::CdHash, &cd('a'), Policy::Allowlist),
                    cel(RuleType::TeamId, "TEAMAAAAAA"),
                    rule(RuleType::Binary, &hash('b'), Policy::SilentGuiBlocklist),
                ],
                &[],
            )
            .await,
        ];
        let steps: Vec<(Vec<Rule>, Vec<RuleKey>)> = vec![
            (vec![cel(RuleType::Binary, &hash('a')), rule(RuleType::CdHash, &cd('b'), Policy::Blocklist)], vec![]),
            (vec![rule(RuleType::TeamId, "TEAMAAAAAA", Policy::Blocklist)], vec![key(RuleType::CdHash, &cd('a'))]),
            (vec![cel(RuleType::CdHash, &cd('c'))], vec![key(RuleType::Binary, &hash('b'))]),
            (vec![], vec![key(RuleType::Binary, &hash('a')), key(RuleType::CdHash, &cd('c'))]),
            (vec![cel(RuleType::TeamId, "TEAMAAAAAA")], vec![key(RuleType::CdHash, &cd('b'))]),
        ];
        for (rules, removed) in &steps {
            versions.push(commit(store, rules, removed).await);
        }
        let head = *versions.last().unwrap();
        for caps in [OLD_2023_10, PRE_CEL_2025_5, CURRENT_2026_7] {
            let want = {
                let mut db = BTreeMap::new();
                apply(&mut db, &download(store, caps, head, full()).await);
                db
            };
            for &acked in &versions {
                let mut db = BTreeMap::new();
                apply(&mut db, &download(store, caps, acked, full()).await);
                let delta = download(store, caps, head, delta_from(acked)).await;
                let processed = delta.iter().filter(|r| processes(r, caps)).count();
                assert_eq!(
                    processed,
                    delta.len(),
                    "{caps:?} from {acked}: rules_processed < rules_received: {delta:?}"
                );
                apply(&mut db, &delta);
                assert_eq!(db, want, "{caps:?}: delta from {acked} differs from a full download");
            }
        }
    }

    #[tokio::test]
    async fn an_empty_clean_download_still_carries_the_sentinel_for_old_clients() {
        let (_dir, store) = store();
        let store = store.as_ref();
        let cd = rule(RuleType::CdHash, &"c".repeat(40), Policy::Blocklist);
        let head = commit(store, &[cd, cel(RuleType::TeamId, "TEAMAAAAAA")], &[]).await;
        // Everything in the set is something a 2023.10 client cannot hold.
        let got = download(store, OLD_2023_10, head, full()).await;
        assert_eq!(got, vec![clean_sync_sentinel()]);
        assert!(processes(&got[0], OLD_2023_10));
    }
}
