//! Hosts: four independent records per machine (inventory, tags, clean-sync flag, sync
//! state) plus a registry key, so writers of different parts never overwrite each other.
//! Must never read-modify-write a record it does not own (only inventory merges
//! `first_seen_unix`, inside the writer thread).

use super::keys::{self, HOST_CLEAN, HOST_INVENTORY, HOST_REGISTRY, HOST_SYNC, HOST_TAGS, META_HOST_COUNT};
use super::writer::Txn;
use crate::kv::{Direction, KvEngine};
use crate::{Host, HostInventory, HostSyncState, Result, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ops::Bound;

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialise to JSON")
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| keys::corrupt(key, e.to_string()))
}

fn register<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str) {
    txn.put(keys::key(HOST_REGISTRY, machine_id.as_bytes()), Vec::new());
}

pub(super) fn put_inventory<E: KvEngine>(txn: &mut Txn<'_, E>, inv: &HostInventory) -> Result<()> {
    let k = keys::key(HOST_INVENTORY, inv.machine_id.as_bytes());
    let mut inv = inv.clone();
    match txn.get(&k)? {
        Some(old) => {
            let old: HostInventory = decode(&k, &old)?;
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
    txn.put(k, json(&inv));
    register(txn, &inv.machine_id);
    Ok(())
}

pub(super) fn set_tags<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, tags: &[String]) {
    let k = keys::key(HOST_TAGS, machine_id.as_bytes());
    if tags.is_empty() {
        txn.delete(k);
    } else {
        txn.put(k, json(&tags));
        register(txn, machine_id);
    }
}

pub(super) fn set_clean<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, requested: bool) {
    let k = keys::key(HOST_CLEAN, machine_id.as_bytes());
    if requested {
        txn.put(k, Vec::new());
        register(txn, machine_id);
    } else {
        txn.delete(k);
    }
}

pub(super) fn put_sync<E: KvEngine>(txn: &mut Txn<'_, E>, machine_id: &str, state: &HostSyncState) {
    txn.put(keys::key(HOST_SYNC, machine_id.as_bytes()), json(state));
    register(txn, machine_id);
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
