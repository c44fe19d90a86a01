//! The key/value store behind the plugins' `kv` import. The server implements [`KvBackend`]
//! over its store; [`MemoryKv`] is for tests and the `plugin test` tool.

pub use dasher_sdk::plugin::kv::CounterError;
use dasher_sdk::plugin::kv::{encode_counter, next_counter};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Longest key a plugin may use.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a plugin may store.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// A backend failure, shown to the plugin in the `kv-*` imports' error strings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("kv backend: {0}")]
pub struct KvError(pub String);

/// Synchronous namespaced key/value storage. Calls come from plugin worker threads (never a
/// tokio worker), so blocking is fine; keep each call short, it counts against the plugin's
/// deadline. Namespaces look like `plugin:<name>`, `shadow:<name>`, `dasher-last-good:<name>:<hook>`.
pub trait KvBackend: Send + Sync {
    /// Reads a value.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Writes a value.
    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Deletes a value (missing is fine).
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError>;
    /// Adds `delta` to the ASCII-decimal integer under `key` (absent = 0) and returns the sum;
    /// `Ok(Err(_))` (nothing written) when the value is not such an integer or the sum
    /// overflows. Must be atomic against every other `increment`/`compare_and_swap` on the key
    /// by any thread (and, for a shared store, any replica): no default, a get-then-put would
    /// lose updates.
    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<Result<i64, CounterError>, KvError>;
    /// Sets `key` to `new` (`None` deletes) if its value equals `expected` (`None` = absent);
    /// returns whether it did. Atomic like [`increment`](Self::increment).
    fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError>;
    /// Applies one call's writes (`None` deletes), in key order. The host buffers a plugin
    /// call's writes and applies them here when the call returns, so a backend should make
    /// them durable together (one commit) rather than one by one; this default does not.
    fn apply(&self, namespace: &str, writes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<(), KvError> {
        for (key, value) in writes {
            match value {
                Some(v) => self.put(namespace, key, v)?,
                None => self.delete(namespace, key)?,
            }
        }
        Ok(())
    }
}

/// Most bytes (keys + values) one plugin call may write before `kv-set` refuses.
pub const MAX_WRITE_BYTES_PER_CALL: usize = 16 << 20;

/// In-memory [`KvBackend`].
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryKv {
    /// Empty.
    pub fn new() -> Self {
        MemoryKv::default()
    }

    /// Every key of a namespace with its value.
    pub fn dump(&self, namespace: &str) -> BTreeMap<String, Vec<u8>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().filter(|((ns, _), _)| ns == namespace).map(|((_, k), v)| (k.clone(), v.clone())).collect()
    }
}

impl KvBackend for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&(namespace.to_owned(), key.to_owned())).cloned())
    }

    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((namespace.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(namespace.to_owned(), key.to_owned()));
        Ok(())
    }

    /// Atomic: read and write under one hold of the map's lock.
    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<Result<i64, CounterError>, KvError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = (namespace.to_owned(), key.to_owned());
        let next = next_counter(map.get(&k).map(Vec::as_slice), delta);
        if let Ok(n) = next {
            map.insert(k, encode_counter(n));
        }
        Ok(next)
    }

    fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = (namespace.to_owned(), key.to_owned());
        if map.get(&k).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(v) => map.insert(k, v.to_vec()),
            None => map.remove(&k),
        };
        Ok(true)
    }
}
