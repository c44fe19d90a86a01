//! Fail-static memory: the last good decision per plugin, hook and host, cached in memory
//! and persisted in the plugin kv backend so it survives restarts.

use crate::kv::KvBackend;
use dasher_sdk::plugin::Hook;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Hosts remembered in memory per plugin and hook (the kv backend keeps all).
const LAST_GOOD_CACHE_HOSTS: usize = 100_000;

/// Last good decision per plugin, hook and host: in memory, written through to the kv
/// backend (namespace `dasher-last-good:<plugin>:<hook>`) when it changes, so fail-static
/// survives restarts and reloads.
pub(crate) struct LastGood {
    pub(crate) kv: Arc<dyn KvBackend>,
    pub(crate) cache: Mutex<HashMap<(String, Hook), HashMap<String, String>>>,
}

impl LastGood {
    fn namespace(plugin: &str, hook: Hook) -> String {
        format!("dasher-last-good:{plugin}:{hook}")
    }

    pub(crate) fn remember(&self, plugin: &str, hook: Hook, machine_id: &str, json: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let map = cache.entry((plugin.to_owned(), hook)).or_default();
        if map.get(machine_id) == Some(&json) {
            return;
        }
        if map.len() >= LAST_GOOD_CACHE_HOSTS {
            map.clear();
        }
        map.insert(machine_id.to_owned(), json.clone());
        drop(cache);
        if let Err(e) = self.kv.put(&Self::namespace(plugin, hook), machine_id, json.as_bytes()) {
            tracing::warn!(plugin, "cannot persist last good decision: {e}");
        }
    }

    pub(crate) fn get(&self, plugin: &str, hook: Hook, machine_id: &str) -> Option<String> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(plugin.to_owned(), hook))
            .and_then(|m| m.get(machine_id).cloned());
        cached.or_else(|| {
            let v = self.kv.get(&Self::namespace(plugin, hook), machine_id).ok().flatten()?;
            String::from_utf8(v).ok()
        })
    }
}
