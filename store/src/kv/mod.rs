//! The ordered key/value adapter every embedded engine implements.
//!
//! Owns: the small contract [`KvEngine`] (sorted byte keys, point get, bounded forward/reverse
//! range scans, one atomic durable write batch) and its implementations for redb
//! ([`RedbEngine`], the default) and sled ([`SledEngine`]).
//!
//! Must never: know about hosts, rules or events (that is [`crate::kvstore`]), or return `Ok`
//! from [`KvEngine::write`] before the batch is durable (survives `kill -9`).

mod redb_engine;
mod sled_engine;

pub use redb_engine::RedbEngine;
pub use sled_engine::SledEngine;

use crate::Result;
use std::ops::Bound;

/// Scan direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// A byte-key range: `(start, end)` bounds, like `RangeBounds<[u8]>`.
pub type KeyRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// An atomic group of puts and deletes, applied in order.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key` (absent keys are fine).
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Puts (`Some`) and deletes (`None`), in order.
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// An ordered key/value engine. Keys sort bytewise. All methods block on disk I/O: call them
/// from a blocking thread, never from an async task directly.
pub trait KvEngine: Send + Sync + 'static {
    /// Short engine name for logs and errors (`"redb"`, `"sled"`).
    fn name(&self) -> &'static str;

    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys`, read from one consistent view where the engine has one (redb:
    /// one read transaction; sled: one point read each, each atomic w.r.t. batches).
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Visits the entries in `range` in `direction` until `visit` returns `false`. An empty or
    /// inverted range visits nothing.
    fn scan(
        &self,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;

    /// Applies `batch` atomically; returns once it is durable.
    fn write(&self, batch: &WriteBatch) -> Result<()>;

    /// At most `limit` entries of `range` in `direction`.
    fn scan_collect(&self, range: KeyRange<'_>, direction: Direction, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(range, direction, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }
}

/// True if `range` is empty because its start lies after its end (engines differ on whether
/// such a range panics, so callers check first).
pub(crate) fn is_inverted(range: &KeyRange<'_>) -> bool {
    match (range.0, range.1) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}
