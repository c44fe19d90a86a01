//! Plugin generations kept in the store (through the [`KvBackend`]), so rollback and recovery
//! survive restarts:
//! - `dasher-plugin-component` / `<sha256>`: the component bytes of recent generations
//!   (content-addressed; the last [`COMPONENTS_KEPT`] distinct generations per plugin);
//! - `dasher-plugin-history` / `<plugin>`: the activations of the plugin, oldest first, at most
//!   [`HISTORY_KEPT`] ([`GenerationRecord`]);
//! - `dasher-plugin-pin` / `<plugin>`: after a rollback, the generation to serve and the hash of
//!   the file on disk to ignore until it changes ([`Pin`]).
//!
//! A failed write is logged and never fails a load: the plugin serves, only its persistence is
//! missing.

use crate::kv::KvBackend;
use dasher_sdk::plugin::Hook;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Namespace of stored component bytes, keyed by SHA-256.
pub const COMPONENTS_NS: &str = "dasher-plugin-component";
/// Namespace of each plugin's activation history, keyed by plugin name.
pub const HISTORY_NS: &str = "dasher-plugin-history";
/// Namespace of rollback pins, keyed by plugin name.
pub const PIN_NS: &str = "dasher-plugin-pin";
/// Activations kept per plugin (older ones are dropped).
pub const HISTORY_KEPT: usize = 50;
/// Distinct generations per plugin whose component bytes stay in the store (the rollback
/// targets that survive a restart; each is at most `limits.max_component_bytes`).
pub const COMPONENTS_KEPT: usize = 5;

/// What made a generation active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Loaded from the plugin directory when the server started.
    Startup,
    /// The directory watcher saw the file change.
    FileChange,
    /// `POST /api/v1/plugins/reload`.
    ReloadApi,
    /// A configuration reload (`POST /api/v1/config/reload` or SIGHUP).
    ConfigReload,
    /// `POST /api/v1/plugins/{name}/rollback`.
    Rollback,
    /// At start the component file was missing or unusable; the generation was loaded from
    /// the store (the last active one, or the one a rollback pinned).
    StoreRestore,
}

/// One activation of a plugin generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// Per plugin, the generation's number: 1 for the first content ever loaded, the next
    /// number for each new content (a generation activated again keeps its number).
    pub number: u64,
    /// SHA-256 of the component (the generation id).
    pub sha256: String,
    /// Plugin version from its metadata.
    pub version: String,
    /// Declared hooks.
    pub hooks: Vec<Hook>,
    /// When it became active (Unix seconds).
    pub activated_at_unix: u64,
    /// What activated it.
    pub trigger: Trigger,
    /// Who, when known (the admin token's name for API calls, `SIGHUP`, …).
    pub by: Option<String>,
}

/// A rollback that outlives restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The generation to serve.
    pub generation: String,
    /// Hash of the file on disk when the rollback happened: ignored until the file changes.
    pub file_hash: String,
}

/// Reads and writes the persisted generations.
pub(crate) struct Generations {
    pub(crate) kv: Arc<dyn KvBackend>,
}

impl Generations {
    /// The activations of `plugin`, oldest first (empty if none or unreadable).
    pub(crate) fn history(&self, plugin: &str) -> Vec<GenerationRecord> {
        match self.kv.get(HISTORY_NS, plugin) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(plugin, "unreadable plugin history in the store, starting a new one: {e}");
                vec![]
            }),
            Ok(None) => vec![],
            Err(e) => {
                tracing::warn!(plugin, "cannot read plugin history: {e}");
                vec![]
            }
        }
    }

    /// Records that `sha256` became active, storing its bytes; a no-op if it is already the
    /// latest activation (a restart or a settings change is not a new generation).
    pub(crate) fn activated(
        &self,
        plugin: &str,
        meta: (&str, &[Hook]),
        sha256: &str,
        bytes: Option<&[u8]>,
        trigger: Trigger,
        by: Option<&str>,
    ) {
        let mut history = self.history(plugin);
        if history.last().is_some_and(|r| r.sha256 == sha256) {
            return;
        }
        if let Some(bytes) = bytes
            && !matches!(self.kv.get(COMPONENTS_NS, sha256), Ok(Some(_)))
            && let Err(e) = self.kv.put(COMPONENTS_NS, sha256, bytes)
        {
            tracing::warn!(plugin, generation = %short(sha256), "cannot store the plugin component: {e}");
        }
        let number = history
            .iter()
            .find(|r| r.sha256 == sha256)
            .map(|r| r.number)
            .unwrap_or_else(|| history.iter().map(|r| r.number).max().unwrap_or(0) + 1);
        history.push(GenerationRecord {
            number,
            sha256: sha256.to_owned(),
            version: meta.0.to_owned(),
            hooks: meta.1.to_vec(),
            activated_at_unix: crate::manager::now_unix(),
            trigger,
            by: by.map(str::to_owned),
        });
        let dropped: Vec<GenerationRecord> =
            history.drain(..history.len().saturating_sub(HISTORY_KEPT)).collect::<Vec<_>>();
        // Component bytes stay for the newest distinct generations only.
        let mut keep: Vec<&str> = vec![];
        for r in history.iter().rev() {
            if keep.len() < COMPONENTS_KEPT && !keep.contains(&r.sha256.as_str()) {
                keep.push(&r.sha256);
            }
        }
        let mut gone: Vec<&str> =
            dropped.iter().chain(history.iter()).map(|r| r.sha256.as_str()).filter(|s| !keep.contains(s)).collect();
        gone.sort_unstable();
        gone.dedup();
        for sha in gone {
            let _ = self.kv.delete(COMPONENTS_NS, sha);
        }
        match serde_json::to_vec(&history) {
            Ok(json) => {
                if let Err(e) = self.kv.put(HISTORY_NS, plugin, &json) {
                    tracing::warn!(plugin, "cannot persist plugin history: {e}");
                }
            }
            Err(e) => tracing::warn!(plugin, "cannot encode plugin history: {e}"),
        }
    }

    /// The stored bytes of a generation.
    pub(crate) fn component(&self, sha256: &str) -> Option<Vec<u8>> {
        self.kv.get(COMPONENTS_NS, sha256).ok().flatten()
    }

    pub(crate) fn pin(&self, plugin: &str) -> Option<Pin> {
        let bytes = self.kv.get(PIN_NS, plugin).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn set_pin(&self, plugin: &str, pin: Option<&Pin>) {
        let result = match pin {
            Some(p) => self.kv.put(PIN_NS, plugin, &serde_json::to_vec(p).unwrap_or_default()),
            None => self.kv.delete(PIN_NS, plugin),
        };
        if let Err(e) = result {
            tracing::warn!(plugin, "cannot persist the rollback pin: {e}");
        }
    }
}

/// The first 12 hex digits of a generation (as logged).
pub(crate) fn short(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    #[test]
    fn numbers_history_and_keeps_only_recent_components() {
        let kv = Arc::new(MemoryKv::new());
        let g = Generations { kv: kv.clone() };
        let hooks = [Hook::Configure];
        for i in 0..(COMPONENTS_KEPT + 2) {
            let sha = format!("{i:064x}");
            g.activated("p", ("1.0", &hooks), &sha, Some(b"bytes"), Trigger::FileChange, None);
            g.activated("p", ("1.0", &hooks), &sha, Some(b"bytes"), Trigger::Startup, None);
        }
        let h = g.history("p");
        assert_eq!(h.len(), COMPONENTS_KEPT + 2, "repeated activations of the latest are not recorded");
        assert_eq!(h.last().unwrap().number, (COMPONENTS_KEPT + 2) as u64);
        assert!(g.component(&format!("{:064x}", 0)).is_none(), "old components are deleted");
        assert!(g.component(&format!("{:064x}", COMPONENTS_KEPT + 1)).is_some());
        let first = format!("{:064x}", 1);
        g.activated("p", ("1.0", &hooks), &first, None, Trigger::Rollback, Some("ops"));
        let last = g.history("p").pop().unwrap();
        assert_eq!((last.number, last.trigger, last.by.as_deref()), (2, Trigger::Rollback, Some("ops")));
    }
}
