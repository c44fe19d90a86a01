use super::{PluginError, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
thread_local! {
    static NATIVE: std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Reads a key.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        crate::guest::dasher::plugin::host::kv_get(key)
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    {
        NATIVE.with(|m| m.borrow().get(key).cloned())
    }
}

/// Writes a key.
pub fn set(key: &str, value: &[u8]) -> Result<()> {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        crate::guest::dasher::plugin::host::kv_set(key, value).map_err(PluginError::new)
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    {
        if key.len() > 256 || value.len() > 64 * 1024 {
            return Err(PluginError::new("kv key or value too large"));
        }
        NATIVE.with(|m| m.borrow_mut().insert(key.to_owned(), value.to_vec()));
        Ok(())
    }
}

/// Deletes a key.
pub fn delete(key: &str) -> Result<()> {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        crate::guest::dasher::plugin::host::kv_delete(key).map_err(PluginError::new)
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    {
        NATIVE.with(|m| m.borrow_mut().remove(key));
        Ok(())
    }
}

/// Atomically adds `delta` to the counter under `key` and returns the new value (an absent
/// key counts as 0).
///
/// Guarantee: applied to the server's store at once (not buffered like [`set`]), durable when
/// it returns and kept even if this call later fails or traps; linearizable against every
/// other atomic operation on the key by concurrent calls of this plugin, in this server and
/// in every replica sharing its PostgreSQL store. Two hosts' syncs incrementing the same
/// counter never lose an update. The value is stored as ASCII decimal ([`encode_counter`]),
/// so [`get`] returns e.g. `b"42"` and [`get_counter`] reads it back.
///
/// Errors (nothing changes): the existing value is not a decimal `i64` (the message names the
/// key), the sum overflows `i64` (never wraps), the key is over 256 bytes, or this call
/// already has a buffered [`set`]/[`delete`] of the key — do not mix buffered and atomic
/// writes on one key (and do not [`set`] a key after changing it atomically in the same call).
///
/// Cost: each atomic operation is a durable store write. Its wait does not count against the
/// call's deadline, but a call may make at most 1024: spend them per new fact (a new host),
/// not per event — read with [`get`] first when the write is usually unnecessary.
pub fn increment(key: &str, delta: i64) -> Result<i64> {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        crate::guest::dasher::plugin::host::kv_increment(key, delta).map_err(PluginError::new)
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    {
        check_bounds(key, None)?;
        NATIVE.with(|m| {
            let mut m = m.borrow_mut();
            let next = add_to_counter(key, m.get(key).map(Vec::as_slice), delta).map_err(PluginError::new)?;
            m.insert(key.to_owned(), encode_counter(next));
            Ok(next)
        })
    }
}

/// Atomically replaces the value under `key` with `new` if it equals `expected`, and returns
/// whether it did. `expected: None` = the key must be absent (create once); `new: None` =
/// delete it. On `false` nothing changed: re-read and retry, or give up.
///
/// Same guarantee as [`increment`]: immediate, durable, kept on a later trap, linearizable
/// across concurrent calls and replicas; same rule about not mixing with [`set`]/[`delete`]
/// on one key in one call. Keys ≤ 256 bytes, `new` ≤ 64 KiB.
///
/// ```
/// use dasher_sdk::plugin::kv;
/// # kv::native_clear();
/// assert!(kv::compare_and_swap("owner", None, Some(b"host-1")).unwrap(), "created");
/// assert!(!kv::compare_and_swap("owner", None, Some(b"host-2")).unwrap(), "already there");
/// assert!(kv::compare_and_swap("owner", Some(b"host-1"), None).unwrap(), "deleted");
/// assert_eq!(kv::get("owner"), None);
/// ```
pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool> {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        crate::guest::dasher::plugin::host::kv_compare_and_swap(key, expected, new).map_err(PluginError::new)
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    {
        check_bounds(key, new)?;
        NATIVE.with(|m| {
            let mut m = m.borrow_mut();
            if m.get(key).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            match new {
                Some(v) => m.insert(key.to_owned(), v.to_vec()),
                None => m.remove(key),
            };
            Ok(true)
        })
    }
}

/// Reads a counter written by [`increment`]: 0 if absent, an error naming the key if the value
/// is not a decimal `i64`.
pub fn get_counter(key: &str) -> Result<i64> {
    match get(key) {
        None => Ok(0),
        Some(v) => decode_counter(&v).ok_or_else(|| PluginError::new(CounterError::NotAnInteger.describe(key))),
    }
}

/// The stored form of a counter: ASCII decimal, e.g. `b"-3"`, `b"42"`.
pub fn encode_counter(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Reads a stored counter: ASCII decimal as Rust's `i64` parser reads it (optional sign, then
/// digits; no spaces). `None` if the bytes are not such a number.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Why an increment could not be applied (the stored value is left as it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterError {
    /// The existing value is not a decimal `i64`.
    NotAnInteger,
    /// The sum is outside the `i64` range.
    Overflow {
        /// The stored value.
        current: i64,
        /// The delta asked for.
        delta: i64,
    },
}

impl CounterError {
    /// A sentence naming `key`, as plugins see it.
    pub fn describe(&self, key: &str) -> String {
        match self {
            CounterError::NotAnInteger => format!(
                "kv key {key:?} holds a value that is not a decimal 64-bit integer; \
                 only keys written by kv increment (or as decimal text) can be incremented"
            ),
            CounterError::Overflow { current, delta } => {
                format!(
                    "kv key {key:?}: {current} + {delta} is outside the signed 64-bit range; the value is unchanged"
                )
            }
        }
    }
}

/// The increment rule shared by every implementation: `current` (absent = 0) plus `delta`.
pub fn next_counter(current: Option<&[u8]>, delta: i64) -> std::result::Result<i64, CounterError> {
    let current = match current {
        None => 0,
        Some(bytes) => decode_counter(bytes).ok_or(CounterError::NotAnInteger)?,
    };
    current.checked_add(delta).ok_or(CounterError::Overflow { current, delta })
}

#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
fn add_to_counter(key: &str, current: Option<&[u8]>, delta: i64) -> std::result::Result<i64, String> {
    next_counter(current, delta).map_err(|e| e.describe(key))
}

#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
fn check_bounds(key: &str, value: Option<&[u8]>) -> Result<()> {
    if key.len() > 256 {
        return Err(PluginError::new("kv key longer than 256 bytes"));
    }
    if value.is_some_and(|v| v.len() > 64 * 1024) {
        return Err(PluginError::new("kv value larger than 65536 bytes"));
    }
    Ok(())
}

/// Reads a JSON value; a missing or unparseable value is `None`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Option<T> {
    get(key).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Writes a JSON value.
pub fn set_json<T: Serialize>(key: &str, value: &T) -> Result<()> {
    set(key, &serde_json::to_vec(value)?)
}

/// Native only: empties this thread's map.
#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
pub fn native_clear() {
    NATIVE.with(|m| m.borrow_mut().clear());
}

/// Native only: this thread's map.
#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
pub fn native_snapshot() -> std::collections::BTreeMap<String, Vec<u8>> {
    NATIVE.with(|m| m.borrow().clone())
}
