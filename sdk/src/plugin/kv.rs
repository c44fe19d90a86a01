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
