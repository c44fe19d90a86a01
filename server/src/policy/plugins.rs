//! The WebAssembly plugin chain as a [`PolicyEngine`]: plugin decisions first, the config
//! file's policy fills every field the plugins have no opinion on. Faults are handled
//! fail-static inside `dasher_policy` (last good decision or configured fallback); this
//! adapter never turns them into errors.

use super::{ConfigPolicy, PolicyEngine, Triaged, normalize_selection};
use async_trait::async_trait;
use dasher_policy::{KvBackend, KvError, PluginManager, Source};
use dasher_sdk::domain::{ConfigDecision, HostFacts};
use dasher_store::{EventRecord, PluginRef, ProposalScope, Store};
use std::sync::Arc;

/// Plugins, then the config policy.
pub struct PluginPolicy {
    /// The plugin manager (status, reload, rollback for the admin API).
    pub manager: Arc<PluginManager>,
    fallback: ConfigPolicy,
}

impl PluginPolicy {
    /// Chains `manager`'s plugins in front of `fallback`.
    pub fn new(manager: Arc<PluginManager>, fallback: ConfigPolicy) -> Self {
        PluginPolicy { manager, fallback }
    }
}

#[async_trait]
impl PolicyEngine for PluginPolicy {
    async fn configure(&self, host: &HostFacts) -> ConfigDecision {
        let decided = self.manager.configure(host).await;
        let mut decision = decided.value;
        decision.fill_from(&self.fallback.configure(host).await);
        decision
    }

    async fn select_rule_sets(&self, host: &HostFacts) -> Vec<String> {
        let decided = self.manager.select_rules(host).await;
        match decided.value.rule_sets {
            Some(sets) => normalize_selection(&host.machine_id, sets),
            None => self.fallback.select_rule_sets(host).await,
        }
    }

    async fn triage(&self, host: &HostFacts, events: &[EventRecord]) -> Triaged {
        let decided = self.manager.triage(host, events).await;
        tracing::debug!(machine_id = %host.machine_id, verdicts = decided.value.verdicts.len(), "triage");
        // A plugin that failed (no opinion) did not judge the batch.
        let made_by = decided
            .made_by
            .iter()
            .filter(|c| c.source != Source::NoOpinion)
            .map(|c| PluginRef { plugin: c.plugin.clone(), generation: c.generation.clone() })
            .collect();
        Triaged { verdicts: decided.value, made_by }
    }

    fn auto_apply_proposals(&self) -> Vec<ProposalScope> {
        self.manager.config().auto_apply_proposals.clone()
    }
}

/// Plugin key/value state persisted in the server's store. Called from plugin worker
/// threads (never tokio workers), so blocking on the async store is fine.
pub struct StoreKv {
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
}

impl StoreKv {
    /// KV over `store`, driving its futures on `runtime`.
    pub fn new(store: Arc<dyn Store>, runtime: tokio::runtime::Handle) -> Self {
        StoreKv { store, runtime }
    }
}

impl KvBackend for StoreKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.runtime.block_on(self.store.kv_get(namespace, key)).map_err(|e| KvError(e.to_string()))
    }
    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.runtime.block_on(self.store.kv_put(namespace, key, value)).map_err(|e| KvError(e.to_string()))
    }
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.runtime.block_on(self.store.kv_delete(namespace, key)).map_err(|e| KvError(e.to_string()))
    }
}
