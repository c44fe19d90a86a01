//! Hosts: four independent records per machine (inventory, tags, clean-sync flag, sync
//! state) plus a registry key, so writers of different parts never overwrite each other, and
//! the search index `hq term machine` (terms of the machine id, hostname, serial number and
//! primary user; an inventory write replaces the entries of values that changed).
//! Must never read-modify-write a record it does not own (only inventory merges
//! `first_seen_unix`, inside the writer thread).

use super::keys::{self, HOST_CLEAN, HOST_INVENTORY, HOST_REGISTRY, HOST_SYNC, HOST_TAGS, META_HOST_COUNT};
use super::keys::{HOST_TERM, META_HOST_TERMS_BUILT};
use super::writer::Txn;
use crate::derive::{host_terms, pick_match, search_prefix};
use crate::kv::{Direction, KvEngine, WriteBatch};
use crate::{Host, HostInventory, HostMatch, HostSearchCursor, HostSyncState, Result, StoreError, search_term};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ops::Bound;

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialise to JSON")
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| keys::corrupt(key, e.to_string()))
}

/// `hq term machine`: one host search index entry.
pub(super) fn term_key(term: &str, machine_id: &str) -> Vec<u8> {
    let mut k = HOST_TERM.to_vec();
    keys::push_str(&mut k, term);
    k.extend_from_slice(machine_id.as_bytes());
    k
}

/// Makes the host known (registry key and its machine-id search term) if it is not yet.
fn register<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str) -> Result<()> {
    let k = keys::key(HOST_REGISTRY, machine_id.as_bytes());
    if txn.get(&k)?.is_none() {
        txn.put(k, Vec::new());
        txn.put(term_key(&search_term(machine_id), machine_id), Vec::new());
    }
    Ok(())
}

pub(super) fn put_inventory<E: KvEngine>(txn: &mut Txn<'_, E>, inv: &HostInventory) -> Result<()> {
    let k = keys::key(HOST_INVENTORY, inv.machine_id.as_bytes());
    let mut inv = inv.clone();
    let old: Option<HostInventory> = txn.get(&k)?.map(|v| decode(&k, &v)).transpose()?;
    match &old {
        Some(old) => {
            if old.first_seen_unix != 0 {
                inv.first_seen_unix = old.first_seen_unix;
            }
        }
        None => {
            let n = txn.get_u64(META_HOST_COUNT)?;
            txn.put_u64(META_HOST_COUNT, n + 1);
        }
    }
    if inv.first_seen_unix == 0 {
        inv.first_seen_unix = inv.last_seen_unix;
    }
    // Search terms: drop the entries of values that changed, add the new ones.
    let id = inv.machine_id.as_str();
    let (before, after) = (host_terms(id, old.as_ref()), host_terms(id, Some(&inv)));
    for t in before.difference(&after) {
        txn.delete(term_key(t, id));
    }
    for t in after.difference(&before) {
        txn.put(term_key(t, id), Vec::new());
    }
    txn.put(k, json(&inv));
    register(txn, id)
}

pub(super) fn set_tags<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, tags: &[String]) -> Result<()> {
    let k = keys::key(HOST_TAGS, machine_id.as_bytes());
    if tags.is_empty() {
        txn.delete(k);
        Ok(())
    } else {
        txn.put(k, json(&tags));
        register(txn, machine_id)
    }
}

pub(super) fn set_clean<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, requested: bool) -> Result<()> {
    let k = keys::key(HOST_CLEAN, machine_id.as_bytes());
    if requested {
        txn.put(k, Vec::new());
        register(txn, machine_id)
    } else {
        txn.delete(k);
        Ok(())
    }
}

pub(super) fn put_sync<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, state: &HostSyncState) -> Result<()> {
    txn.put(keys::key(HOST_SYNC, machine_id.as_bytes()), json(state));
    register(txn, machine_id)
}

/// Hosts matching `prefix` (see `Store::search_hosts`), from the `hq` index.
pub(super) fn search<E: KvEngine>(
    engine: &E,
    prefix: &str,
    after: Option<&HostSearchCursor>,
    limit: usize,
) -> Result<Vec<HostMatch>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let (lower, term) = search_prefix(prefix);
    let mut start = HOST_TERM.to_vec();
    keys::push_escaped(&mut start, &term);
    let end = keys::prefix_end(&start).expect("the prefix starts with a non-0xFF byte");
    let after_key = after.map(|a| term_key(&a.term, &a.machine_id));
    let lower_bound = match &after_key {
        Some(a) if *a >= start => Bound::Excluded(a.as_slice()),
        _ => Bound::Included(start.as_slice()),
    };
    let mut error = None;
    engine.scan((lower_bound, Bound::Excluded(&end)), Direction::Forward, &mut |k, _| {
        let parsed = keys::take_str(&k[HOST_TERM.len()..])
            .and_then(|(t, rest)| Some((t, String::from_utf8(rest.to_vec()).ok()?)));
        let Some((t, id)) = parsed else {
            error = Some(keys::corrupt(k, "bad host search key"));
            return false;
        };
        match get(engine, &id) {
            Ok(Some(host)) => {
                if let Some(m) = pick_match(host, &t, &lower) {
                    out.push(m);
                }
            }
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

/// Adds the search terms of every host (stores written before the index existed); run once,
/// before the writer starts, then marked done.
pub(super) fn build_terms<E: KvEngine>(engine: &E) -> Result<()> {
    if engine.get(META_HOST_TERMS_BUILT)?.is_some() {
        return Ok(());
    }
    let end = keys::prefix_end(HOST_REGISTRY).expect("prefix has a successor");
    let mut after: Option<Vec<u8>> = None;
    loop {
        let lower = match &after {
            Some(a) => Bound::Excluded(a.as_slice()),
            None => Bound::Included(HOST_REGISTRY),
        };
        let page = engine.scan_collect((lower, Bound::Excluded(&end)), Direction::Forward, 5_000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let mut batch = WriteBatch::new();
        for (k, _) in &page {
            let id =
                String::from_utf8(k[HOST_REGISTRY.len()..].to_vec()).map_err(|e| keys::corrupt(k, e.to_string()))?;
            let ik = keys::key(HOST_INVENTORY, id.as_bytes());
            let inv: Option<HostInventory> = engine.get(&ik)?.map(|v| decode(&ik, &v)).transpose()?;
            for t in host_terms(&id, inv.as_ref()) {
                batch.put(term_key(&t, &id), Vec::new());
            }
        }
        engine.write(&batch)?;
    }
    let mut done = WriteBatch::new();
    done.put(META_HOST_TERMS_BUILT.to_vec(), Vec::new());
    engine.write(&done)
}

pub(super) fn get<E: KvEngine>(engine: &E, machine_id: &str) -> Result<Option<Host>> {
    let id = machine_id.as_bytes();
    let ks = [HOST_REGISTRY, HOST_INVENTORY, HOST_TAGS, HOST_CLEAN, HOST_SYNC].map(|p| keys::key(p, id));
    let [registry, inventory, tags, clean, sync]: [Option<Vec<u8>>; 5] = engine
        .multi_get(&ks.each_ref().map(Vec::as_slice))?
        .try_into()
        .map_err(|_| StoreError::Engine("multi_get returned the wrong number of values".into()))?;
    if registry.is_none() {
        return Ok(None);
    }
    let mut host = Host { machine_id: machine_id.to_owned(), ..Host::default() };
    if let Some(v) = inventory {
        host.inventory = Some(decode(&ks[1], &v)?);
    }
    if let Some(v) = tags {
        host.tags = decode(&ks[2], &v)?;
    }
    host.clean_requested = clean.is_some();
    if let Some(v) = sync {
        host.sync = decode(&ks[4], &v)?;
    }
    Ok(Some(host))
}

pub(super) fn list<E: KvEngine>(engine: &E, after: Option<&str>, limit: usize) -> Result<Vec<Host>> {
    let start = match after {
        Some(a) => Bound::Excluded(keys::key(HOST_REGISTRY, a.as_bytes())),
        None => Bound::Included(HOST_REGISTRY.to_vec()),
    };
    let end = keys::prefix_end(HOST_REGISTRY).expect("prefix has a successor");
    let range = (start.as_ref().map(Vec::as_slice), Bound::Excluded(end.as_slice()));
    let ids = engine.scan_collect(range, Direction::Forward, limit)?;
    let mut hosts = Vec::with_capacity(ids.len());
    for (k, _) in ids {
        let id = String::from_utf8(k[HOST_REGISTRY.len()..].to_vec()).map_err(|e| keys::corrupt(&k, e.to_string()))?;
        if let Some(h) = get(engine, &id)? {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

pub(super) fn count<E: KvEngine>(engine: &E) -> Result<u64> {
    match engine.get(META_HOST_COUNT)? {
        Some(v) => keys::read_u64(META_HOST_COUNT, &v),
        None => Ok(0),
    }
}
