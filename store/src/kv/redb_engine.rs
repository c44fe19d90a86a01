//! [`KvEngine`] on redb 2: one table of byte keys, every batch one write transaction with
//! `Durability::Immediate`. Owns the redb `Database`; must never hold a read transaction
//! across calls (readers see the latest commit at the start of each call).

use super::{Direction, KeyRange, KvEngine, WriteBatch, is_inverted};
use crate::{Result, StoreError};
use redb::{Database, Durability, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dasher");

/// One item of a redb range iterator.
type RangeItem<'a> = std::result::Result<
    (redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>),
    redb::StorageError,
>;

fn err(context: &str) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |e| StoreError::Engine(format!("redb: {context}: {e}"))
}

/// The redb engine.
pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Opens or creates the database file at `path` (its directory must exist).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None)
    }

    /// [`RedbEngine::open`] with a page cache of `cache_bytes` (`None`: redb's default, 1 GiB).
    pub fn open_with(path: &Path, cache_bytes: Option<usize>) -> Result<Self> {
        let mut builder = redb::Builder::new();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        let db = builder
            .create(path)
            .map_err(|e| StoreError::Engine(format!("redb: cannot open {}: {e}", path.display())))?;
        // Create the table once so read transactions never see it missing.
        let txn = db.begin_write().map_err(|e| err("begin write")(e.into()))?;
        txn.open_table(TABLE).map_err(|e| err("create table")(e.into()))?;
        txn.commit().map_err(|e| err("commit")(e.into()))?;
        Ok(RedbEngine { db })
    }
}

impl KvEngine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(|e| err("begin read")(e.into()))?;
        let table = txn.open_table(TABLE).map_err(|e| err("open table")(e.into()))?;
        let value = table.get(key).map_err(|e| err("get")(e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let txn = self.db.begin_read().map_err(|e| err("begin read")(e.into()))?;
        let table = txn.open_table(TABLE).map_err(|e| err("open table")(e.into()))?;
        keys.iter().map(|k| Ok(table.get(*k).map_err(|e| err("get")(e.into()))?.map(|v| v.value().to_vec()))).collect()
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if is_inverted(&range) {
            return Ok(());
        }
        let txn = self.db.begin_read().map_err(|e| err("begin read")(e.into()))?;
        let table = txn.open_table(TABLE).map_err(|e| err("open table")(e.into()))?;
        let iter = table.range::<&[u8]>(range).map_err(|e| err("range")(e.into()))?;
        let mut step = |item: RangeItem<'_>| -> Result<bool> {
            let (k, v) = item.map_err(|e| err("scan")(e.into()))?;
            Ok(visit(k.value(), v.value()))
        };
        match direction {
            Direction::Forward => {
                for item in iter {
                    if !step(item)? {
                        break;
                    }
                }
            }
            Direction::Reverse => {
                for item in iter.rev() {
                    if !step(item)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|e| err("begin write")(e.into()))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(TABLE).map_err(|e| err("open table")(e.into()))?;
            for (key, value) in batch.ops() {
                match value {
                    Some(v) => {
                        table.insert(key.as_slice(), v.as_slice()).map_err(|e| err("insert")(e.into()))?;
                    }
                    None => {
                        table.remove(key.as_slice()).map_err(|e| err("remove")(e.into()))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| err("commit")(e.into()))?;
        Ok(())
    }
}
