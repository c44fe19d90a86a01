//! Time bounds of event id blocks: `eg block` → the latest `received_at_unix` of any event
//! whose id is in the block (ids `block × BLOCK ..`, [`BLOCK`] ids each). A query with a
//! `since` filter starts its walks at the first block whose latest time reaches `since`
//! ([`floor`]), so "events since T" reads only the ids received around and after T instead of
//! every index entry or body before them.
//!
//! Owns the `eg` keys and `m:egbuilt` (set once every stored event is covered; stores written
//! before this index get it built at open by [`build`]). A block's time is an upper bound: it
//! never decreases, so pruned events leave it valid; [`forget_below`] drops the keys of blocks
//! with no event left. Must never: let a block's time fall below one of its events' times.

use super::keys::{self, EVENT, EVENT_BY_RECEIVED, EVENT_TIME_BLOCK, META_EVENT_TIMES_BUILT};
use super::writer::Txn;
use crate::Result;
use crate::kv::{Direction, KvEngine, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Event ids per block.
pub const BLOCK: u64 = 1024;

fn block_key(block: u64) -> Vec<u8> {
    keys::key(EVENT_TIME_BLOCK, &block.to_be_bytes())
}

fn read_time(k: &[u8], v: &[u8]) -> Result<i64> {
    let arr: [u8; 8] = v.try_into().map_err(|_| keys::corrupt(k, "expected 8 bytes"))?;
    Ok(i64::from_be_bytes(arr))
}

/// Raises the blocks' times for newly stored `(id, received)` pairs (one write per block).
pub(super) fn record<E: KvEngine>(txn: &mut Txn<'_, E>, stored: &[(u64, i64)]) -> Result<()> {
    let mut latest: BTreeMap<u64, i64> = BTreeMap::new();
    for &(id, received) in stored {
        let t = latest.entry(id / BLOCK).or_insert(i64::MIN);
        *t = (*t).max(received);
    }
    for (block, t) in latest {
        let k = block_key(block);
        let old = match txn.get(&k)? {
            Some(v) => read_time(&k, &v)?,
            None => i64::MIN,
        };
        if t > old {
            txn.put(k, t.to_be_bytes().to_vec());
        }
    }
    Ok(())
}

/// The smallest event id that may have been received at or after `since`: the first id of
/// the first block whose latest time reaches it. `None` if no stored event was.
pub(super) fn floor<E: KvEngine>(engine: &E, since: i64) -> Result<Option<u64>> {
    let end = keys::prefix_end(EVENT_TIME_BLOCK).expect("prefix has a successor");
    let mut found = None;
    let mut error = None;
    engine.scan((Bound::Included(EVENT_TIME_BLOCK), Bound::Excluded(&end)), Direction::Forward, &mut |k, v| {
        match read_time(k, v) {
            Ok(t) if t >= since => {
                found = keys::trailing_u64(k).map(|b| b * BLOCK);
                false
            }
            Ok(_) => true,
            Err(e) => {
                error = Some(e);
                false
            }
        }
    })?;
    error.map_or(Ok(found), Err)
}

/// Drops the keys of blocks entirely below the oldest stored event (all of it, when no event
/// is left), after pruning.
pub(super) fn forget_below<E: KvEngine>(txn: &mut Txn<'_, E>) -> Result<()> {
    let end = keys::prefix_end(EVENT).expect("prefix has a successor");
    let oldest = txn.engine().scan_collect((Bound::Included(EVENT), Bound::Excluded(&end)), Direction::Forward, 1)?;
    let below = match oldest.first() {
        Some((k, _)) => keys::trailing_u64(k).unwrap_or(0) / BLOCK,
        None => u64::MAX,
    };
    let end = match below {
        u64::MAX => keys::prefix_end(EVENT_TIME_BLOCK).expect("prefix has a successor"),
        b => block_key(b),
    };
    let range = (Bound::Included(EVENT_TIME_BLOCK), Bound::Excluded(end.as_slice()));
    let stale = txn.engine().scan_collect(range, Direction::Forward, usize::MAX)?;
    for (k, _) in stale {
        txn.delete(k);
    }
    Ok(())
}

/// Covers the events of a store written before the `eg` keys existed (one pass over the time
/// index at open; nothing to do once `m:egbuilt` is set).
pub(super) fn build<E: KvEngine>(engine: &E) -> Result<()> {
    if engine.get(META_EVENT_TIMES_BUILT)?.is_some() {
        return Ok(());
    }
    let end = keys::prefix_end(EVENT_BY_RECEIVED).expect("prefix has a successor");
    let mut latest: BTreeMap<u64, i64> = BTreeMap::new();
    engine.scan((Bound::Included(EVENT_BY_RECEIVED), Bound::Excluded(&end)), Direction::Forward, &mut |k, _| {
        // `er` + sortable received (8) + id (8).
        if let (Some(id), Some(t)) =
            (keys::trailing_u64(k), k.get(EVENT_BY_RECEIVED.len()..EVENT_BY_RECEIVED.len() + 8))
        {
            let t = (u64::from_be_bytes(t.try_into().unwrap_or([0; 8])) ^ (1 << 63)) as i64;
            let e = latest.entry(id / BLOCK).or_insert(i64::MIN);
            *e = (*e).max(t);
        }
        true
    })?;
    let mut batch = WriteBatch::new();
    for (block, t) in latest {
        batch.put(block_key(block), t.to_be_bytes().to_vec());
    }
    batch.put(META_EVENT_TIMES_BUILT.to_vec(), Vec::new());
    engine.write(&batch)
}
