//! What the console reads, on the key/value engines: activity counters (`ad day series`,
//! `ah hour` → u64), the audit log (`au id` → JSON, `at target id` index, ids from
//! `m:aseq`) and binary summaries (`bs sha` → JSON, `bh sha machine` host markers,
//! `bl last_seen sha` recency index, `bd sha day series` → u64).
//!
//! Owns the write-side updates, run inside the writer job of the write they derive from
//! (an event batch, a preflight), so a counter can never disagree with what was committed.
//! Must never: update a counter or summary once per event (a batch is grouped first, see
//! [`EventBatch`]), or scan beyond the requested range.

use super::hosts::decode;
use super::keys::{self, ACTIVITY_EVENTS, ACTIVITY_SYNCS, AUDIT, AUDIT_BY_TARGET, META_AUDIT_SEQ};
use super::keys::{BINARY, BINARY_BY_LAST_SEEN, BINARY_DECISIONS, BINARY_HOST};
use super::writer::Txn;
use crate::derive::{EventBatch, merge_summary};
use crate::kv::{Direction, KvEngine};
use crate::{
    ActivityBucket, ActivitySeries, AuditEntry, BinaryCursor, BinarySummary, DAY_SECS, HOUR_SECS, MAX_ACTIVITY_BUCKETS,
    NewAuditEntry, Result, bucket_start,
};
use std::ops::Bound;

fn day_key(prefix: &[u8], day: i64, series: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&keys::i64_sortable(day));
    keys::push_str(&mut k, series);
    k
}

fn sha_prefix(prefix: &[u8], sha: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    keys::push_str(&mut k, sha);
    k
}

fn binary_key(sha: &str) -> Vec<u8> {
    keys::key(BINARY, sha.as_bytes())
}

fn recency_key(last_seen: i64, sha: &str) -> Vec<u8> {
    let mut k = BINARY_BY_LAST_SEEN.to_vec();
    k.extend_from_slice(&keys::i64_sortable(last_seen));
    k.extend_from_slice(sha.as_bytes());
    k
}

fn add<E: KvEngine>(txn: &mut Txn<'_, E>, key: Vec<u8>, n: u64) -> Result<()> {
    let v = txn.get_u64(&key)?;
    txn.put_u64(&key, v.saturating_add(n));
    Ok(())
}

/// Counts one preflight at `at_unix`.
pub(super) fn count_sync<E: KvEngine>(txn: &mut Txn<'_, E>, at_unix: i64) -> Result<()> {
    let mut k = ACTIVITY_SYNCS.to_vec();
    k.extend_from_slice(&keys::i64_sortable(bucket_start(at_unix, HOUR_SECS)));
    add(txn, k, 1)
}

/// Applies a batch of newly stored events from `machine_id`: one update per counter bucket,
/// and per binary one summary read-modify-write, one host-marker read and one update per
/// (day, decision).
pub(super) fn apply_event_batch<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, batch: &EventBatch) -> Result<()> {
    for ((day, series), n) in &batch.per_day {
        add(txn, day_key(ACTIVITY_EVENTS, *day, series), *n)?;
    }
    for (sha, delta) in &batch.binaries {
        let mut marker = sha_prefix(BINARY_HOST, sha);
        marker.extend_from_slice(machine_id.as_bytes());
        let new_host = txn.get(&marker)?.is_none();
        if new_host {
            txn.put(marker, Vec::new());
        }
        let bk = binary_key(sha);
        let old: Option<BinarySummary> = txn.get(&bk)?.map(|v| decode(&bk, &v)).transpose()?;
        let old_seen = old.as_ref().map(|s| s.last_seen_unix);
        let summary = merge_summary(sha, old, delta, new_host);
        if old_seen != Some(summary.last_seen_unix) {
            if let Some(seen) = old_seen {
                txn.delete(recency_key(seen, sha));
            }
            txn.put(recency_key(summary.last_seen_unix, sha), Vec::new());
        }
        txn.put(bk, serde_json::to_vec(&summary).expect("summaries serialise to JSON"));
        let prefix = sha_prefix(BINARY_DECISIONS, sha);
        for ((day, series), n) in &delta.decisions {
            add(txn, day_key(&prefix, *day, series), *n)?;
        }
    }
    Ok(())
}

/// Reads `prefix (i64 bucket) [series]` counters for buckets in `[from, to)`.
fn buckets<E: KvEngine>(engine: &E, prefix: &[u8], width: i64, from: i64, to: i64) -> Result<Vec<ActivityBucket>> {
    let from = bucket_start(from, width);
    if from >= to {
        return Ok(Vec::new());
    }
    let start = keys::key(prefix, &keys::i64_sortable(from));
    let end = keys::key(prefix, &keys::i64_sortable(to));
    let rows = engine.scan_collect(
        (Bound::Included(&start), Bound::Excluded(&end)),
        Direction::Forward,
        MAX_ACTIVITY_BUCKETS,
    )?;
    rows.into_iter()
        .map(|(k, v)| {
            let rest = &k[prefix.len()..];
            let b: [u8; 8] = rest.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| keys::corrupt(&k, "short"))?;
            let start_unix = (u64::from_be_bytes(b) ^ (1 << 63)) as i64;
            let series = if rest.len() > 8 {
                keys::take_str(&rest[8..]).ok_or_else(|| keys::corrupt(&k, "bad series"))?.0
            } else {
                String::new()
            };
            Ok(ActivityBucket { start_unix, series, count: keys::read_u64(&k, &v)? })
        })
        .collect()
}

pub(super) fn activity<E: KvEngine>(
    engine: &E,
    series: ActivitySeries,
    from: i64,
    to: i64,
) -> Result<Vec<ActivityBucket>> {
    match series {
        ActivitySeries::EventsPerDay => buckets(engine, ACTIVITY_EVENTS, DAY_SECS, from, to),
        ActivitySeries::SyncsPerHour => buckets(engine, ACTIVITY_SYNCS, HOUR_SECS, from, to),
    }
}

pub(super) fn binary_activity<E: KvEngine>(engine: &E, sha: &str, from: i64, to: i64) -> Result<Vec<ActivityBucket>> {
    buckets(engine, &sha_prefix(BINARY_DECISIONS, sha), DAY_SECS, from, to)
}

pub(super) fn get_binary<E: KvEngine>(engine: &E, sha: &str) -> Result<Option<BinarySummary>> {
    let k = binary_key(sha);
    engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

pub(super) fn list_binaries<E: KvEngine>(
    engine: &E,
    before: Option<&BinaryCursor>,
    limit: usize,
) -> Result<Vec<BinarySummary>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let end = match before {
        Some(c) => recency_key(c.last_seen_unix, &c.sha256),
        None => keys::prefix_end(BINARY_BY_LAST_SEEN).expect("prefix has a successor"),
    };
    let rows = engine.scan_collect(
        (Bound::Included(BINARY_BY_LAST_SEEN), Bound::Excluded(&end)),
        Direction::Reverse,
        limit,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, _) in rows {
        let sha = k.get(BINARY_BY_LAST_SEEN.len() + 8..).ok_or_else(|| keys::corrupt(&k, "short"))?;
        let sha = std::str::from_utf8(sha).map_err(|e| keys::corrupt(&k, e.to_string()))?;
        if let Some(s) = get_binary(engine, sha)? {
            out.push(s);
        }
    }
    Ok(out)
}

fn audit_target_key(target: &str, id: u64) -> Vec<u8> {
    let mut k = sha_prefix(AUDIT_BY_TARGET, target);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn record_audit<E: KvEngine>(txn: &mut Txn<'_, E>, entry: &NewAuditEntry) -> Result<u64> {
    let id = txn.get_u64(META_AUDIT_SEQ)? + 1;
    txn.put_u64(META_AUDIT_SEQ, id);
    let entry = entry.bounded().with_id(id);
    txn.put(audit_target_key(&entry.target, id), Vec::new());
    txn.put(keys::key(AUDIT, &id.to_be_bytes()), serde_json::to_vec(&entry).expect("audit entries serialise"));
    Ok(id)
}

pub(super) fn list_audit<E: KvEngine>(
    engine: &E,
    target: Option<&str>,
    before_id: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    if limit == 0 || before_id == Some(0) {
        return Ok(Vec::new());
    }
    let prefix = match target {
        Some(t) => sha_prefix(AUDIT_BY_TARGET, t),
        None => AUDIT.to_vec(),
    };
    let end = match before_id {
        Some(b) => keys::key(&prefix, &b.to_be_bytes()),
        None => keys::prefix_end(&prefix).expect("prefix has a successor"),
    };
    let rows = engine.scan_collect((Bound::Included(&prefix), Bound::Excluded(&end)), Direction::Reverse, limit)?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        if target.is_none() {
            out.push(decode(&k, &v)?);
            continue;
        }
        let id = keys::trailing_u64(&k).ok_or_else(|| keys::corrupt(&k, "short audit index key"))?;
        let ek = keys::key(AUDIT, &id.to_be_bytes());
        if let Some(v) = engine.get(&ek)? {
            out.push(decode(&ek, &v)?);
        }
    }
    Ok(out)
}
