//! The rule counts a client without `rulesHash` should report after a download: the counts of
//! its effective rules (after [`adapt_for_client`](super::rules::adapt_for_client)) over the
//! download's sets at the download's snapshot version.
//!
//! Carried forward, not recounted: the counts at the acknowledged version plus, for every key
//! the change log touched in a selected set since then, its effective rule now minus its
//! effective rule then. Keys not touched keep their effective rule (precedence, overlaps
//! between sets and plugin host rules included), so this equals a full count exactly while
//! costing O(changes), not O(rules). A full scan remains only where the base is unusable:
//! no acknowledged counts for these sets and this client version (first sync, a changed
//! selection, counts written before they were carried forward), history compacted past the
//! acknowledged version, or an arithmetic inconsistency (logged; never expected).

use super::rules::Resolver;
use dasher_sdk::domain::{Rule, RuleCounts, RuleKey};
use dasher_sdk::version::ClientCaps;
use dasher_store::{ChangePos, Result, RuleAck, Store, StoreError};
use std::collections::HashSet;

/// Change-log entries and keys handled per store read.
const PAGE: usize = 4096;

/// How the counts were obtained (for tests and tracing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// From the acknowledged counts and the changes since.
    CarriedForward,
    /// By walking every effective rule.
    FullScan,
}

/// The counts of the effective rules over `sets` at `at` for a client with `caps`, carried
/// forward from `base` when it is usable.
pub async fn expected(
    store: &dyn Store,
    caps: ClientCaps,
    base: Option<&RuleAck>,
    sets: &[String],
    at: u64,
) -> Result<(RuleCounts, Method)> {
    if let Some(base) = base.filter(|b| usable(b, caps, sets, at))
        && let Some(counts) = carried_forward(store, caps, base, sets, at).await?
    {
        return Ok((counts, Method::CarriedForward));
    }
    Ok((full_scan(store, caps, sets, at).await?, Method::FullScan))
}

/// The counts by a walk of every effective rule (the reference computation).
pub async fn full_scan(store: &dyn Store, caps: ClientCaps, sets: &[String], at: u64) -> Result<RuleCounts> {
    let mut counts = RuleCounts::default();
    for rule in Resolver::new(store, caps).all_effective(sets, at).await? {
        counts.add(&rule);
    }
    Ok(counts)
}

fn usable(base: &RuleAck, caps: ClientCaps, sets: &[String], at: u64) -> bool {
    base.rule_sets == sets
        && base.version <= at
        && base.counts_for.as_deref().is_some_and(|v| ClientCaps::from_version_str(v) == caps)
}

/// `None` when the history since `base` is no longer readable (or the result would be
/// negative, which only an inconsistent base can cause).
async fn carried_forward(
    store: &dyn Store,
    caps: ClientCaps,
    base: &RuleAck,
    sets: &[String],
    at: u64,
) -> Result<Option<RuleCounts>> {
    let wanted: HashSet<&str> = sets.iter().map(String::as_str).collect();
    let mut seen: HashSet<RuleKey> = HashSet::new();
    let mut keys: Vec<RuleKey> = Vec::new();
    let mut after = ChangePos { version: base.version, seq: u32::MAX };
    loop {
        let changes = match store.scan_changes(after, at, PAGE).await {
            Err(StoreError::VersionCompacted { .. }) => return Ok(None),
            other => other?,
        };
        for change in &changes {
            after = change.pos;
            if wanted.contains(change.rule_set.as_str()) && seen.insert(change.key.clone()) {
                keys.push(change.key.clone());
            }
        }
        if changes.len() < PAGE {
            break;
        }
    }
    if keys.is_empty() {
        return Ok(Some(base.counts));
    }
    let resolver = Resolver::new(store, caps);
    let (mut plus, mut minus) = (RuleCounts::default(), RuleCounts::default());
    for chunk in keys.chunks(PAGE) {
        let before = match resolver.effective(sets, chunk, base.version).await {
            Err(StoreError::VersionCompacted { .. }) => return Ok(None),
            other => other?,
        };
        let now = resolver.effective(sets, chunk, at).await?;
        before.iter().flatten().for_each(|r: &Rule| minus.add(r));
        now.iter().flatten().for_each(|r: &Rule| plus.add(r));
    }
    let counts = apply(base.counts, plus, minus);
    if counts.is_none() {
        tracing::warn!(
            base_version = base.version,
            at,
            "acknowledged rule counts are inconsistent with the change log; counting with a full scan"
        );
    }
    Ok(counts)
}

/// `base + plus - minus` per field, `None` if a field would go negative or overflow.
fn apply(base: RuleCounts, plus: RuleCounts, minus: RuleCounts) -> Option<RuleCounts> {
    let f = |b: u32, p: u32, m: u32| b.checked_add(p)?.checked_sub(m);
    Some(RuleCounts {
        binary: f(base.binary, plus.binary, minus.binary)?,
        certificate: f(base.certificate, plus.certificate, minus.certificate)?,
        compiler: f(base.compiler, plus.compiler, minus.compiler)?,
        transitive: f(base.transitive, plus.transitive, minus.transitive)?,
        teamid: f(base.teamid, plus.teamid, minus.teamid)?,
        signingid: f(base.signingid, plus.signingid, minus.signingid)?,
        cdhash: f(base.cdhash, plus.cdhash, minus.cdhash)?,
    })
}

#[cfg(test)]
#[path = "counts_tests.rs"]
mod tests;
