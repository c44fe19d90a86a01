//! [`KvEngine`] on sled 0.34: the default tree, batches through `apply_batch` then `flush`
//! so an `Ok` write is on disk. Owns the sled `Db`; must never return before the flush.

use super::{Direction, KeyRange, KvEngine, WriteBatch, is_inverted};
use crate::{Result, StoreError};
use std::ops::Bound;
use std::path::Path;

fn err(context: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::Engine(format!("sled: {context}: {e}"))
}

/// The sled engine.
pub struct SledEngine {
    db: sled::Db,
}

impl SledEngine {
    /// Opens or creates the database directory at `path` (its parent must exist).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None)
    }

    /// [`SledEngine::open`] with a page cache of `cache_bytes` (`None`: sled's default, 1 GiB).
    pub fn open_with(path: &Path, cache_bytes: Option<usize>) -> Result<Self> {
        let mut config = sled::Config::new().path(path);
        if let Some(bytes) = cache_bytes {
            config = config.cache_capacity(bytes as u64);
        }
        let db = config.open().map_err(|e| StoreError::Engine(format!("sled: cannot open {}: {e}", path.display())))?;
        Ok(SledEngine { db })
    }
}

fn owned(b: Bound<&[u8]>) -> Bound<sled::IVec> {
    match b {
        Bound::Included(k) => Bound::Included(k.into()),
        Bound::Excluded(k) => Bound::Excluded(k.into()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl KvEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(err("get"))?.map(|v| v.to_vec()))
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
        let iter = self.db.range::<sled::IVec, _>((owned(range.0), owned(range.1)));
        let mut step = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let (k, v) = item.map_err(err("scan"))?;
            Ok(visit(&k, &v))
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
        let mut b = sled::Batch::default();
        for (key, value) in batch.ops() {
            match value {
                Some(v) => b.insert(key.as_slice(), v.as_slice()),
                None => b.remove(key.as_slice()),
            }
        }
        self.db.apply_batch(b).map_err(err("apply batch"))?;
        self.db.flush().map_err(err("flush"))?;
        Ok(())
    }
}
