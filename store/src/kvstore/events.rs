//! Events: the body once under `ep id` (compressed, see [`EventCodec`]), small index keys
//! pointing at the id.
//!
//! Owns: the event id sequence (`m:eseq`), the event counter (`m:ecnt`), the dedupe index
//! `ed machine dedupe_key` → id, and the secondary indexes `em`/`es`/`eb`/`ex` (machine,
//! file SHA-256, bundle hash, decision; `value id` → empty) and `er received id` (time).
//! Triage lives beside the body: `et id` → [`EventTriage`] JSON and the label index
//! `el label id`, written by [`put_triage`] after the event is stored. Queries walk the most
//! selective index newest-first and fetch body and triage by id.
//!
//! The same job updates the activity counters and binary summaries of the newly stored
//! events (`kvstore/console.rs`), grouped per batch.
//!
//! Must never: store an event body twice, rewrite a body, let an index or a triage record
//! outlive its event, or scan every event when a machine / hash / label / decision filter is
//! given.

use super::console;
use super::event_codec::{EventCodec, Trained};
use super::hosts::decode;
use super::keys::{self, EVENT, EVENT_BY_BUNDLE, EVENT_BY_DECISION, EVENT_BY_MACHINE, EVENT_BY_RECEIVED};
use super::keys::{EVENT_BY_LABEL, EVENT_BY_SHA256, EVENT_DEDUPE, META_EVENT_COUNT, META_EVENT_SEQ};
use super::writer::Txn;
use crate::derive::{EventBatch, EventFacts, event_facts};
use crate::kv::{Direction, KvEngine};
use crate::{EventFilter, EventRecord, EventTriage, InsertOutcome, NewEvent, Result, StoreError};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;

/// Keys deleted per commit while pruning.
pub(super) const PRUNE_STEP_EVENTS: usize = 5_000;

#[derive(Serialize)]
struct StoredRef<'a> {
    machine_id: &'a str,
    #[serde(flatten)]
    event: &'a NewEvent,
}

#[derive(Deserialize)]
struct Stored {
    machine_id: String,
    #[serde(flatten)]
    event: NewEvent,
}

fn dedupe_key(machine_id: &str, dedupe: &str) -> Vec<u8> {
    let mut k = keys::event_index_prefix(EVENT_DEDUPE, machine_id);
    k.extend_from_slice(dedupe.as_bytes());
    k
}

fn received_key(received_at_unix: i64, id: u64) -> Vec<u8> {
    let mut k = EVENT_BY_RECEIVED.to_vec();
    k.extend_from_slice(&keys::i64_sortable(received_at_unix));
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Every index key of an event (empty hashes are not indexed).
fn index_keys(id: u64, machine_id: &str, sha256: &str, bundle: &str, decision: &str, received: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(6);
    let mut idx = |prefix: &[u8], value: &str| {
        let mut k = keys::event_index_prefix(prefix, value);
        k.extend_from_slice(&id.to_be_bytes());
        out.push(k);
    };
    idx(EVENT_BY_MACHINE, machine_id);
    if !sha256.is_empty() {
        idx(EVENT_BY_SHA256, sha256);
    }
    if !bundle.is_empty() {
        idx(EVENT_BY_BUNDLE, bundle);
    }
    idx(EVENT_BY_DECISION, decision);
    out.push(received_key(received, id));
    out
}

/// An event encoded by the caller, so the writer thread only assigns ids and writes keys.
pub(super) struct Prepared {
    facts: EventFacts,
    dedupe_key: String,
    decision: String,
    file_sha256: String,
    file_bundle_hash: String,
    received_at_unix: i64,
    body: Vec<u8>,
}

/// Encodes a batch for [`insert`] (compressed with `trained` if given, see [`EventCodec`]).
pub(super) fn prepare(
    codec: &EventCodec,
    machine_id: &str,
    events: &[NewEvent],
    trained: Option<&Trained>,
) -> Vec<Prepared> {
    let json = events
        .iter()
        .map(|event| serde_json::to_vec(&StoredRef { machine_id, event }).expect("events serialise to JSON"));
    codec
        .encode_all(json, trained)
        .into_iter()
        .zip(events)
        .map(|(body, e)| Prepared {
            facts: event_facts(e),
            dedupe_key: e.dedupe_key.clone(),
            decision: e.decision.clone(),
            file_sha256: e.file_sha256.clone(),
            file_bundle_hash: e.file_bundle_hash.clone(),
            received_at_unix: e.received_at_unix,
            body,
        })
        .collect()
}

pub(super) fn insert<E: KvEngine>(
    txn: &mut Txn<'_, E>,
    machine_id: &str,
    events: &[Prepared],
) -> Result<InsertOutcome> {
    let mut outcome = InsertOutcome::default();
    let mut batch = EventBatch::default();
    let mut seq = txn.get_u64(META_EVENT_SEQ)?;
    let count = txn.get_u64(META_EVENT_COUNT)?;
    for e in events {
        let dk = dedupe_key(machine_id, &e.dedupe_key);
        if txn.get(&dk)?.is_some() {
            outcome.duplicates += 1;
            outcome.ids.push(None);
            continue;
        }
        seq += 1;
        txn.put(keys::event_key(seq), e.body.clone());
        txn.put(dk, seq.to_be_bytes().to_vec());
        for k in index_keys(seq, machine_id, &e.file_sha256, &e.file_bundle_hash, &e.decision, e.received_at_unix) {
            txn.put(k, Vec::new());
        }
        outcome.stored += 1;
        outcome.ids.push(Some(seq));
        batch.add(e.facts.clone());
    }
    if outcome.stored > 0 {
        txn.put_u64(META_EVENT_SEQ, seq);
        txn.put_u64(META_EVENT_COUNT, count + u64::from(outcome.stored));
        console::apply_event_batch(txn, machine_id, &batch)?;
    }
    Ok(outcome)
}

/// Label index key `el label id`.
fn label_key(label: &str, id: u64) -> Vec<u8> {
    let mut k = keys::event_index_prefix(EVENT_BY_LABEL, label);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// An event with its triage, read from one view where the engine has one.
fn load<E: KvEngine>(engine: &E, codec: &EventCodec, id: u64) -> Result<Option<EventRecord>> {
    let (k, tk) = (keys::event_key(id), keys::event_triage_key(id));
    let [body, triage]: [Option<Vec<u8>>; 2] = engine
        .multi_get(&[&k, &tk])?
        .try_into()
        .map_err(|_| StoreError::Engine("multi_get returned the wrong number of values".into()))?;
    let Some(v) = body else { return Ok(None) };
    let s: Stored = decode(&k, &codec.decode(&k, &v)?)?;
    let triage = match triage {
        Some(t) => Some(decode(&tk, &t)?),
        None => None,
    };
    Ok(Some(EventRecord { id, machine_id: s.machine_id, event: s.event, triage }))
}

/// Records triage for events that are still stored, replacing (and un-indexing) an
/// earlier triage of the same event.
pub(super) fn put_triage<E: KvEngine>(txn: &mut Txn<'_, E>, triage: &[(u64, EventTriage)]) -> Result<u64> {
    let mut recorded = 0;
    for (id, t) in triage {
        if txn.get(&keys::event_key(*id))?.is_none() {
            continue; // pruned meanwhile: nothing to attach to
        }
        let tk = keys::event_triage_key(*id);
        if let Some(old) = txn.get(&tk)? {
            let old: EventTriage = decode(&tk, &old)?;
            for l in &old.labels {
                txn.delete(label_key(l, *id));
            }
        }
        txn.put(tk, serde_json::to_vec(t).expect("triage serialises to JSON"));
        for l in &t.labels {
            txn.put(label_key(l, *id), Vec::new());
        }
        recorded += 1;
    }
    Ok(recorded)
}

fn matches(f: &EventFilter, r: &EventRecord) -> bool {
    f.machine_id.as_ref().is_none_or(|m| *m == r.machine_id)
        && f.file_sha256.as_ref().is_none_or(|h| *h == r.event.file_sha256)
        && f.file_bundle_hash.as_ref().is_none_or(|h| *h == r.event.file_bundle_hash)
        && f.decision.as_ref().is_none_or(|d| *d == r.event.decision)
        && f.since_unix.is_none_or(|s| r.event.received_at_unix >= s)
        && f.before_id.is_none_or(|b| r.id < b)
        && f.label.as_ref().is_none_or(|l| r.triage.as_ref().is_some_and(|t| t.labels.contains(l)))
        && f.dropped.is_none_or(|d| r.triage.as_ref().is_some_and(EventTriage::is_dropped) == d)
}

pub(super) fn query<E: KvEngine>(engine: &E, codec: &EventCodec, f: &EventFilter) -> Result<Vec<EventRecord>> {
    let mut out = Vec::new();
    if f.limit == 0 || f.before_id == Some(0) {
        return Ok(out);
    }
    // Most selective first.
    let index = [
        (EVENT_BY_SHA256, &f.file_sha256),
        (EVENT_BY_BUNDLE, &f.file_bundle_hash),
        (EVENT_BY_LABEL, &f.label),
        (EVENT_BY_MACHINE, &f.machine_id),
        (EVENT_BY_DECISION, &f.decision),
    ]
    .into_iter()
    .find_map(|(p, v)| v.as_ref().map(|v| keys::event_index_prefix(p, v)));
    let mut error = None;
    let mut visit_id = |id: u64, out: &mut Vec<EventRecord>| -> bool {
        match load(engine, codec, id) {
            Ok(Some(r)) if matches(f, &r) => out.push(r),
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                return false;
            }
        }
        out.len() < f.limit
    };
    if let Some(prefix) = index {
        let end = match f.before_id {
            Some(b) => keys::key(&prefix, &b.to_be_bytes()),
            None => keys::prefix_end(&prefix).expect("escaped prefix has a successor"),
        };
        engine.scan((Bound::Included(&prefix), Bound::Excluded(&end)), Direction::Reverse, &mut |k, _| {
            let id = keys::trailing_u64(k).unwrap_or(0);
            visit_id(id, &mut out)
        })?;
    } else if let Some(since) = f.since_unix {
        // Only a time filter: the ids received since then, newest id first.
        let start = received_key(since, 0);
        let end = keys::prefix_end(EVENT_BY_RECEIVED).expect("prefix has a successor");
        // Keep only the `limit` largest ids (memory O(limit), time O(matches)).
        let mut top: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(f.limit.min(4096) + 1);
        engine.scan((Bound::Included(&start), Bound::Excluded(&end)), Direction::Forward, &mut |k, _| {
            if let Some(id) = keys::trailing_u64(k)
                && f.before_id.is_none_or(|b| id < b)
            {
                top.push(Reverse(id));
                if top.len() > f.limit {
                    top.pop();
                }
            }
            true
        })?;
        let mut ids: Vec<u64> = top.into_iter().map(|Reverse(id)| id).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            if !visit_id(id, &mut out) {
                break;
            }
        }
    } else {
        let end = match f.before_id {
            Some(b) => keys::event_key(b),
            None => keys::prefix_end(EVENT).expect("prefix has a successor"),
        };
        engine.scan((Bound::Included(EVENT), Bound::Excluded(&end)), Direction::Reverse, &mut |k, _| {
            let id = keys::trailing_u64(k).unwrap_or(0);
            visit_id(id, &mut out)
        })?;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn delete_event<E: KvEngine>(txn: &mut Txn<'_, E>, codec: &EventCodec, id: u64) -> Result<bool> {
    let Some(r) = load(txn.engine(), codec, id)? else { return Ok(false) };
    txn.delete(keys::event_key(id));
    txn.delete(dedupe_key(&r.machine_id, &r.event.dedupe_key));
    let e = &r.event;
    for k in index_keys(id, &r.machine_id, &e.file_sha256, &e.file_bundle_hash, &e.decision, e.received_at_unix) {
        txn.delete(k);
    }
    if let Some(t) = &r.triage {
        for l in &t.labels {
            txn.delete(label_key(l, id));
        }
    }
    txn.delete(keys::event_triage_key(id));
    let n = txn.get_u64(META_EVENT_COUNT)?;
    txn.put_u64(META_EVENT_COUNT, n.saturating_sub(1));
    Ok(true)
}

/// One step of pruning, as an exclusive writer job (it reads the engine directly, so it must
/// not share a group): deletes up to [`PRUNE_STEP_EVENTS`] events received before `before`,
/// or, once there are none, up to that many of the oldest beyond `keep_max`. Returns how many
/// it deleted and whether another step may find more. Callers loop, so queued writes are
/// committed between steps instead of waiting for a whole large prune.
pub(super) fn prune_step<E: KvEngine>(
    txn: &mut Txn<'_, E>,
    codec: &EventCodec,
    before: Option<i64>,
    keep_max: Option<u64>,
) -> Result<(u64, bool)> {
    let mut deleted = 0u64;
    if let Some(before) = before {
        let end = received_key(before, 0);
        let batch = txn.engine().scan_collect(
            (Bound::Included(EVENT_BY_RECEIVED), Bound::Excluded(&end)),
            Direction::Forward,
            PRUNE_STEP_EVENTS,
        )?;
        if !batch.is_empty() {
            for (k, _) in batch {
                let id = keys::trailing_u64(&k).ok_or_else(|| keys::corrupt(&k, "short time index key"))?;
                if delete_event(txn, codec, id)? {
                    deleted += 1;
                } else {
                    txn.delete(k); // dangling index entry
                }
            }
            return Ok((deleted, true));
        }
    }
    if let Some(keep) = keep_max {
        let excess = txn.get_u64(META_EVENT_COUNT)?.saturating_sub(keep);
        if excess > 0 {
            let step = excess.min(PRUNE_STEP_EVENTS as u64) as usize;
            let end = keys::prefix_end(EVENT).expect("prefix has a successor");
            let batch =
                txn.engine().scan_collect((Bound::Included(EVENT), Bound::Excluded(&end)), Direction::Forward, step)?;
            for (k, _) in &batch {
                let id = keys::trailing_u64(k).ok_or_else(|| keys::corrupt(k, "short event key"))?;
                if delete_event(txn, codec, id)? {
                    deleted += 1;
                }
            }
            return Ok((deleted, !batch.is_empty()));
        }
    }
    Ok((deleted, false))
}

pub(super) fn count<E: KvEngine>(engine: &E) -> Result<u64> {
    match engine.get(META_EVENT_COUNT)? {
        Some(v) => keys::read_u64(META_EVENT_COUNT, &v),
        None => Ok(0),
    }
}
