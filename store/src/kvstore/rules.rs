//! Rule sets as application-level MVCC plus a change log.
//!
//! Owns: history entries `rh set type identifier (MAX - version)` → rule JSON (empty value =
//! tombstone), so the first entry at or after `prefix ++ (MAX - v)` is the value as of `v`;
//! the change log `rl version seq` → `set type identifier`; the head version (`m:head`), the
//! history floor (`m:floor`) and per-set live counts (`rs set`).
//!
//! Must never: create a version for a commit that changes nothing, leave a gap between
//! versions, or write history, log and head in separate batches (all happen in one job of
//! the single writer, so commits are serialised and atomic).

use super::hosts::decode;
use super::keys::{self, META_HEAD, RULE_LOG, RULE_SET_COUNT};
use super::writer::Txn;
use crate::kv::{Direction, KvEngine};
use crate::{ChangeEntry, ChangePos, Result, RuleChange, RuleSetInfo, StoreError};
use dasher_sdk::domain::{Rule, RuleKey};
use std::collections::HashMap;
use std::ops::Bound;

/// Oldest readable version (0 until history is compacted).
pub const META_FLOOR: &[u8] = b"m:floor";

fn read_u64<E: KvEngine>(engine: &E, key: &[u8]) -> Result<u64> {
    match engine.get(key)? {
        Some(v) => keys::read_u64(key, &v),
        None => Ok(0),
    }
}

pub(super) fn head<E: KvEngine>(engine: &E) -> Result<u64> {
    read_u64(engine, META_HEAD)
}

pub(super) fn floor<E: KvEngine>(engine: &E) -> Result<u64> {
    read_u64(engine, META_FLOOR)
}

fn check_version<E: KvEngine>(engine: &E, at: u64) -> Result<()> {
    let head = head(engine)?;
    if at > head {
        return Err(StoreError::VersionInFuture { requested: at, head });
    }
    let floor = floor(engine)?;
    if at < floor {
        return Err(StoreError::VersionCompacted { requested: at, floor });
    }
    Ok(())
}

fn decode_rule(key: &[u8], v: &[u8]) -> Result<Option<Rule>> {
    if v.is_empty() { Ok(None) } else { decode(key, v).map(Some) }
}

/// The newest value of a rule including pending writes (for the writer).
fn current<E: KvEngine>(txn: &Txn<'_, E>, prefix: &[u8]) -> Result<Option<Rule>> {
    let end = keys::prefix_end(prefix).expect("rule prefix ends with a terminator");
    match txn.first_in(prefix, &end)? {
        Some((k, v)) => decode_rule(&k, &v),
        None => Ok(None),
    }
}

pub(super) fn commit<E: KvEngine>(txn: &mut Txn<'_, E>, changes: &[RuleChange]) -> Result<u64> {
    let head = txn.get_u64(META_HEAD)?;
    let version = head + 1;
    let mut seq: u32 = 0;
    let mut deltas: HashMap<&str, i64> = HashMap::new();
    for change in changes {
        if let Some(rule) = &change.rule
            && rule.key() != change.key
        {
            return Err(StoreError::Engine(format!(
                "rule change for {:?} carries a rule for {:?}",
                change.key,
                rule.key()
            )));
        }
        let prefix = keys::rule_prefix(&change.rule_set, &change.key);
        let before = current(txn, &prefix)?;
        if before == change.rule {
            continue;
        }
        let delta = i64::from(change.rule.is_some()) - i64::from(before.is_some());
        *deltas.entry(change.rule_set.as_str()).or_default() += delta;
        let value = match &change.rule {
            Some(r) => serde_json::to_vec(r).expect("rules serialise to JSON"),
            None => Vec::new(),
        };
        let mut hk = prefix.clone();
        hk.extend_from_slice(&keys::version_suffix(version));
        txn.put(hk, value);
        txn.put(keys::log_key(version, seq), prefix[keys::RULE_HISTORY.len()..].to_vec());
        seq = seq.checked_add(1).ok_or_else(|| StoreError::Engine("more than 2^32 changes in one commit".into()))?;
    }
    if seq == 0 {
        return Ok(head);
    }
    for (set, delta) in deltas {
        let k = keys::key(RULE_SET_COUNT, set.as_bytes());
        let n = txn.get_u64(&k)?;
        let n = n.checked_add_signed(delta).ok_or_else(|| keys::corrupt(&k, "live rule count below zero"))?;
        txn.put_u64(&k, n);
    }
    txn.put_u64(META_HEAD, version);
    Ok(version)
}

pub(super) fn get<E: KvEngine>(engine: &E, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>> {
    check_version(engine, at)?;
    let prefix = keys::rule_prefix(rule_set, key);
    let start = keys::key(&prefix, &keys::version_suffix(at));
    let end = keys::prefix_end(&prefix).expect("rule prefix ends with a terminator");
    let found = engine.scan_collect((Bound::Included(&start), Bound::Excluded(&end)), Direction::Forward, 1)?;
    match found.first() {
        Some((k, v)) => decode_rule(k, v),
        None => Ok(None),
    }
}

pub(super) fn scan<E: KvEngine>(
    engine: &E,
    rule_set: &str,
    at: u64,
    after: Option<&RuleKey>,
    limit: usize,
) -> Result<Vec<Rule>> {
    check_version(engine, at)?;
    let set_prefix = keys::rule_set_prefix(rule_set);
    let start = match after {
        Some(k) => keys::prefix_end(&keys::rule_prefix(rule_set, k)).expect("rule prefix has a successor"),
        None => set_prefix.clone(),
    };
    let end = keys::prefix_end(&set_prefix).expect("set prefix ends with a terminator");
    let mut out = Vec::new();
    let mut done_key: Option<Vec<u8>> = None; // prefix of the last key resolved as of `at`
    let mut error = None;
    if limit == 0 {
        return Ok(out);
    }
    engine.scan((Bound::Included(&start), Bound::Excluded(&end)), Direction::Forward, &mut |k, v| {
        let Some(split) = k.len().checked_sub(8) else {
            error = Some(keys::corrupt(k, "history key too short"));
            return false;
        };
        let (prefix, suffix) = k.split_at(split);
        if done_key.as_deref() == Some(prefix) {
            return true;
        }
        let version = keys::version_from_suffix(suffix).expect("8-byte suffix");
        if version > at {
            return true;
        }
        done_key = Some(prefix.to_vec());
        match decode_rule(k, v) {
            Ok(Some(rule)) => out.push(rule),
            Ok(None) => {}
            Err(e) => {
                error = Some(e);
                return false;
            }
        }
        out.len() < limit
    })?;
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub(super) fn changes<E: KvEngine>(engine: &E, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
    let floor = floor(engine)?;
    if floor > 0 && after.version.saturating_add(1) < floor {
        return Err(StoreError::VersionCompacted { requested: after.version, floor });
    }
    let start = keys::log_key(after.version, after.seq);
    let end = keys::log_key(upto, u32::MAX);
    let entries = engine.scan_collect((Bound::Excluded(&start), Bound::Included(&end)), Direction::Forward, limit)?;
    entries
        .into_iter()
        .map(|(k, v)| {
            let body = &k[RULE_LOG.len()..];
            let bad = || keys::corrupt(&k, "malformed change-log entry");
            let version = u64::from_be_bytes(body.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
            let seq = u32::from_be_bytes(body.get(8..12).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
            let (rule_set, rest) = keys::take_str(&v).ok_or_else(bad)?;
            let (key, rest) = keys::take_rule_key(rest).ok_or_else(bad)?;
            if !rest.is_empty() {
                return Err(bad());
            }
            Ok(ChangeEntry { pos: ChangePos { version, seq }, rule_set, key })
        })
        .collect()
}

/// Rule sets in name order, strictly after `after`, at most `limit`.
pub(super) fn sets<E: KvEngine>(engine: &E, after: Option<&str>, limit: usize) -> Result<Vec<RuleSetInfo>> {
    let end = keys::prefix_end(RULE_SET_COUNT).expect("prefix has a successor");
    let start = after.map(|a| [RULE_SET_COUNT, a.as_bytes()].concat());
    let from = match &start {
        Some(k) => Bound::Excluded(k.as_slice()),
        None => Bound::Included(RULE_SET_COUNT),
    };
    let entries = engine.scan_collect((from, Bound::Excluded(&end)), Direction::Forward, limit)?;
    entries
        .into_iter()
        .map(|(k, v)| {
            let name =
                String::from_utf8(k[RULE_SET_COUNT.len()..].to_vec()).map_err(|e| keys::corrupt(&k, e.to_string()))?;
            Ok(RuleSetInfo { name, rules: keys::read_u64(&k, &v)? })
        })
        .collect()
}

/// Removes history no reader at `keep_from` or later needs: change-log entries below
/// `keep_from`, and per rule every entry older than its value as of `keep_from` (that value
/// too if it is a tombstone). Runs as an exclusive writer job, committing in steps.
pub(super) fn compact<E: KvEngine>(txn: &mut Txn<'_, E>, keep_from: u64) -> Result<u64> {
    const STEP_KEYS: usize = 10_000;
    let head = txn.get_u64(META_HEAD)?;
    if keep_from > head {
        return Err(StoreError::VersionInFuture { requested: keep_from, head });
    }
    let old_floor = txn.get_u64(META_FLOOR)?;
    if keep_from <= old_floor {
        return Ok(0);
    }
    // Raise the floor first so no reader starts below it while entries disappear.
    txn.put_u64(META_FLOOR, keep_from);
    txn.commit_now()?;
    let mut removed = 0u64;
    // Change log below keep_from.
    loop {
        let end = keys::log_key(keep_from, 0);
        let batch = txn.engine().scan_collect(
            (Bound::Included(RULE_LOG), Bound::Excluded(&end)),
            Direction::Forward,
            STEP_KEYS,
        )?;
        if batch.is_empty() {
            break;
        }
        for (k, _) in batch {
            txn.delete(k);
            removed += 1;
        }
        txn.commit_now()?;
    }
    // History: walk every key; drop entries superseded as of keep_from.
    let hist_end = keys::prefix_end(keys::RULE_HISTORY).expect("prefix has a successor");
    let mut lower: Option<Vec<u8>> = None; // resume strictly after this key
    let mut prev_prefix: Option<Vec<u8>> = None; // rule whose entries we are in
    let mut resolved = false; // its value as of keep_from was seen
    let mut tombstones = Vec::new(); // values as of keep_from that read as absence
    loop {
        let start = match &lower {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Included(keys::RULE_HISTORY),
        };
        let batch = txn.engine().scan_collect((start, Bound::Excluded(&hist_end)), Direction::Forward, STEP_KEYS)?;
        let Some((last, _)) = batch.last() else { break };
        lower = Some(last.clone());
        let full = batch.len() == STEP_KEYS;
        for (k, v) in batch {
            let split = k.len().checked_sub(8).ok_or_else(|| keys::corrupt(&k, "history key too short"))?;
            let (prefix, suffix) = k.split_at(split);
            if prev_prefix.as_deref() != Some(prefix) {
                prev_prefix = Some(prefix.to_vec());
                resolved = false;
            }
            let version = keys::version_from_suffix(suffix).expect("8-byte suffix");
            if version > keep_from {
                continue;
            }
            // Older than the value as of keep_from, or that value itself when it is a
            // tombstone (absence reads the same).
            if resolved {
                txn.delete(k.clone());
                removed += 1;
            } else if v.is_empty() {
                // Deleted last, after every older entry of its rule is gone, so a reader
                // at keep_from never sees an older value show through.
                tombstones.push(k.clone());
            }
            resolved = true;
        }
        txn.commit_now()?;
        if !full {
            break;
        }
    }
    for chunk in tombstones.chunks(STEP_KEYS) {
        for k in chunk {
            txn.delete(k.clone());
            removed += 1;
        }
        txn.commit_now()?;
    }
    Ok(removed)
}
