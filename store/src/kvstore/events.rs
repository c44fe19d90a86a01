//! Events: the body once under `ep id` (compressed, see [`EventCodec`]), small index keys
//! pointing at the id.
//!
//! Owns: the event id sequence (`m:eseq`), the event counter (`m:ecnt`), the dedupe index
//! `ed machine dedupe_key` → id, and the secondary indexes `em`/`es`/`eb`/`ex` (machine,
//! file SHA-256, bundle hash, decision; `value id` → empty), `ey machine sha256 id` (a
//! machine's events of one file, from `m:eyfrom` on) and `er received id` (time).
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
use super::event_time;
use super::hosts::decode;
use super::keys::{self, EVENT, EVENT_BY_BUNDLE, EVENT_BY_DECISION, EVENT_BY_MACHINE, EVENT_BY_RECEIVED};
use super::keys::{EVENT_BY_LABEL, EVENT_BY_SHA256, EVENT_DEDUPE, META_EVENT_COUNT, META_EVENT_SEQ};
use super::keys::{EVENT_BY_MACHINE_SHA256, META_EVENT_MACHINE_SHA256_FROM};
use super::writer::Txn;
use crate::derive::{EventBatch, EventFacts, event_facts};
use crate::kv::{Direction, KvEngine, WriteBatch};
use crate::{EventFilter, EventRecord, EventTriage, InsertOutcome, NewEvent, Result, StoreError};
use serde::{Deserialize, Serialize};
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

/// `ey machine sha256`: the prefix of a machine's events of one file.
fn machine_sha256_prefix(machine_id: &str, sha256: &str) -> Vec<u8> {
    let mut k = keys::event_index_prefix(EVENT_BY_MACHINE_SHA256, machine_id);
    keys::push_str(&mut k, sha256);
    k
}

/// Records, at the first open of a store by a version with the `ey` index, the first event id
/// it covers: the next one. Events stored before are found through the machine index.
pub(super) fn start_machine_sha256_index<E: KvEngine>(engine: &E) -> Result<()> {
    if engine.get(META_EVENT_MACHINE_SHA256_FROM)?.is_some() {
        return Ok(());
    }
    let seq = match engine.get(META_EVENT_SEQ)? {
        Some(v) => keys::read_u64(META_EVENT_SEQ, &v)?,
        None => 0,
    };
    let mut batch = WriteBatch::new();
    batch.put(META_EVENT_MACHINE_SHA256_FROM.to_vec(), keys::u64_value(seq + 1));
    engine.write(&batch)
}

/// Every index key of an event (empty hashes are not indexed).
fn index_keys(id: u64, machine_id: &str, sha256: &str, bundle: &str, decision: &str, received: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(7);
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
    if !sha256.is_empty() {
        let mut k = machine_sha256_prefix(machine_id, sha256);
        k.extend_from_slice(&id.to_be_bytes());
        out.push(k);
    }
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
    let mut times = Vec::with_capacity(events.len());
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
        times.push((seq, e.received_at_unix));
        batch.add(e.facts.clone());
    }
    if outcome.stored > 0 {
        txn.put_u64(META_EVENT_SEQ, seq);
        txn.put_u64(META_EVENT_COUNT, count + u64::from(outcome.stored));
        console::apply_event_batch(txn, machine_id, &batch)?;
        event_time::record(txn, &times)?;
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
    // With a time filter, no id below the first block that reaches it can match.
    let floor = match f.since_unix {
        Some(since) => match event_time::floor(engine, since)? {
            Some(floor) => floor,
            None => return Ok(out),
        },
        None => 0,
    };
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
    // A machine's events of one file: the `ey` index for the ids it covers, then the machine
    // index below them (events stored before the index existed).
    let both = match (&f.machine_id, &f.file_sha256) {
        (Some(m), Some(h)) if !h.is_empty() => Some((m.as_str(), h.as_str())),
        _ => None,
    };
    if let Some((machine, sha)) = both {
        let from = match engine.get(META_EVENT_MACHINE_SHA256_FROM)? {
            Some(v) => keys::read_u64(META_EVENT_MACHINE_SHA256_FROM, &v)?,
            None => 1,
        };
        walk_index(engine, codec, f, &machine_sha256_prefix(machine, sha), floor, f.before_id, &mut out)?;
        let below = f.before_id.map_or(from, |b| b.min(from));
        if out.len() < f.limit && below > floor.max(1) {
            let prefix = keys::event_index_prefix(EVENT_BY_MACHINE, machine);
            walk_index(engine, codec, f, &prefix, floor, Some(below), &mut out)?;
        }
        return Ok(out);
    }
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
        let start = keys::key(&prefix, &floor.to_be_bytes());
        engine.scan((Bound::Included(&start), Bound::Excluded(&end)), Direction::Reverse, &mut |k, _| {
            let id = keys::trailing_u64(k).unwrap_or(0);
            visit_id(id, &mut out)
        })?;
    } else {
        // Every event (newest first), down to the time filter's floor.
        let end = match f.before_id {
            Some(b) => keys::event_key(b),
            None => keys::prefix_end(EVENT).expect("prefix has a successor"),
        };
        let start = keys::event_key(floor);
        engine.scan((Bound::Included(&start), Bound::Excluded(&end)), Direction::Reverse, &mut |k, _| {
            let id = keys::trailing_u64(k).unwrap_or(0);
            visit_id(id, &mut out)
        })?;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Appends to `out` the events matching `f` among the ids of index `prefix` in
/// `[floor, before)`, newest first, until `out` holds `f.limit`.
fn walk_index<E: KvEngine>(
    engine: &E,
    codec: &EventCodec,
    f: &EventFilter,
    prefix: &[u8],
    floor: u64,
    before: Option<u64>,
    out: &mut Vec<EventRecord>,
) -> Result<()> {
    if out.len() >= f.limit || before == Some(0) {
        return Ok(());
    }
    let end = match before {
        Some(b) => keys::key(prefix, &b.to_be_bytes()),
        None => keys::prefix_end(prefix).expect("escaped prefix has a successor"),
    };
    let start = keys::key(prefix, &floor.to_be_bytes());
    let mut error = None;
    engine.scan((Bound::Included(&start), Bound::Excluded(&end)), Direction::Reverse, &mut |k, _| {
        let id = keys::trailing_u64(k).unwrap_or(0);
        match load(engine, codec, id) {
            Ok(Some(r)) if matches(f, &r) => out.push(r),
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                return false;
            }
        }
        out.len() < f.limit
    })?;
    error.map_or(Ok(()), Err)
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
    let (deleted, more) = prune_some(txn, codec, before, keep_max)?;
    event_time::forget_below(txn)?;
    Ok((deleted, more))
}

fn prune_some<E: KvEngine>(
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

#[cfg(test)]
mod tests {
    use super::super::KvStore;
    use super::*;
    use crate::kv::RedbEngine;
    use crate::{EventKind, NewEvent, Store};

    fn event(n: u32, sha: &str) -> NewEvent {
        NewEvent {
            kind: EventKind::Execution,
            dedupe_key: format!("k{n}"),
            decision: "BLOCK_BINARY".into(),
            file_sha256: sha.into(),
            file_bundle_hash: String::new(),
            occurred_at_unix: f64::from(n),
            received_at_unix: i64::from(n),
            body: serde_json::json!({ "n": n }),
        }
    }

    /// Events stored before the machine + SHA-256 index existed are still found (through the
    /// machine index, below the first indexed id), newest first, across pages.
    #[tokio::test]
    async fn machine_and_sha256_queries_cover_events_from_before_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
            let evs: Vec<NewEvent> = (0..30).map(|n| event(n, if n % 3 == 0 { "x" } else { "y" })).collect();
            store.insert_events("m", &evs).await.unwrap();
            store.insert_events("other", &[event(100, "x")]).await.unwrap();
        }
        {
            // Back to the layout of a store before the index: no `ey` keys, no marker.
            let engine = RedbEngine::open(&path).unwrap();
            let end = keys::prefix_end(EVENT_BY_MACHINE_SHA256).unwrap();
            let range = (Bound::Included(EVENT_BY_MACHINE_SHA256), Bound::Excluded(end.as_slice()));
            let mut batch = WriteBatch::new();
            for (k, _) in engine.scan_collect(range, Direction::Forward, 100).unwrap() {
                batch.delete(k);
            }
            assert_eq!(batch.len(), 31, "every event was indexed");
            batch.delete(META_EVENT_MACHINE_SHA256_FROM.to_vec());
            engine.write(&batch).unwrap();
        }
        let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
        let evs: Vec<NewEvent> = (30..45).map(|n| event(n, if n % 3 == 0 { "x" } else { "y" })).collect();
        store.insert_events("m", &evs).await.unwrap();
        let want: Vec<u32> = (0..45).rev().filter(|n| n % 3 == 0).collect();
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let f = EventFilter {
                machine_id: Some("m".into()),
                file_sha256: Some("x".into()),
                before_id: before,
                limit: 4,
                ..Default::default()
            };
            let page = store.query_events(&f).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            got.extend(page.iter().map(|r| r.event.body["n"].as_u64().unwrap() as u32));
        }
        assert_eq!(got, want, "old and new events of the file, newest first, each once");
    }

    /// Every event received since `since`, through pages of 500.
    async fn since_all(store: &KvStore<RedbEngine>, since: i64) -> Vec<u32> {
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let f = EventFilter { since_unix: Some(since), before_id: before, limit: 500, ..Default::default() };
            let page = store.query_events(&f).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            got.extend(page.iter().map(|r| r.event.body["n"].as_u64().unwrap() as u32));
        }
        got
    }

    /// "Since" queries start at the first id block whose latest time reaches the bound, give
    /// exactly the events received since then (also when times are out of id order), and the
    /// block times are rebuilt at open for a store written before they existed.
    #[tokio::test]
    async fn since_queries_use_block_times_and_survive_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let n = 3 * super::event_time::BLOCK as u32 + 10;
        // Received times rise with the id, except every 100th event arrives late-stamped early.
        let received = |i: u32| if i % 100 == 7 { 5 } else { 1_000 + i64::from(i) };
        let want = |since: i64| -> Vec<u32> { (0..n).rev().filter(|&i| received(i) >= since).collect() };
        {
            let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
            for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
                let evs: Vec<NewEvent> =
                    chunk.iter().map(|&i| NewEvent { received_at_unix: received(i), ..event(i, "x") }).collect();
                store.insert_events("m", &evs).await.unwrap();
            }
            for since in [0, 6, 1_000, 2_500, 1_000 + i64::from(n) - 1, 1_000 + i64::from(n)] {
                assert_eq!(since_all(&store, since).await, want(since), "since {since}");
            }
        }
        {
            // Back to the layout of a store before the block times: no `eg` keys, no marker.
            let engine = RedbEngine::open(&path).unwrap();
            let end = keys::prefix_end(keys::EVENT_TIME_BLOCK).unwrap();
            let range = (Bound::Included(keys::EVENT_TIME_BLOCK), Bound::Excluded(end.as_slice()));
            let mut batch = WriteBatch::new();
            for (k, _) in engine.scan_collect(range, Direction::Forward, 100).unwrap() {
                batch.delete(k);
            }
            assert_eq!(batch.len(), 4, "one key per block of 1,024 ids");
            batch.delete(keys::META_EVENT_TIMES_BUILT.to_vec());
            engine.write(&batch).unwrap();
        }
        let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
        for since in [0, 6, 2_500, 1_000 + i64::from(n)] {
            assert_eq!(since_all(&store, since).await, want(since), "since {since} after the rebuild");
        }
    }
}
