//! The WebAssembly plugin chain as a [`PolicyEngine`]: plugin decisions first, the config
//! file's policy fills every field the plugins have no opinion on. Faults are handled
//! fail-static inside `dasher_policy` (last good decision or configured fallback); this
//! adapter turns them into an error only for a plugin configured with `on_failure =
//! "reject"` ([`PolicyRejected`]), and keeps a host's plugin host rules unchanged whenever
//! a `select-rules` part was not a live answer. It also attributes each part of a decision
//! to the plugin generation (or the config file) that made it.

use super::shadow::{ShadowCounts, ShadowTracker, config_differs, verdict_differs};
use super::{
    ConfigPolicy, Configured, HostRules, MAX_PLUGIN_HOST_RULES, PolicyEngine, PolicyRejected, Reviewed, Selection,
    Triaged, applied_settings, normalize_selection, validate_host_rules,
};
use async_trait::async_trait;
use dasher_policy::{Contribution, Decided, KvBackend, KvError, PluginManager, ShadowRecord, Source};
use dasher_sdk::domain::{HostFacts, Rule};
use dasher_sdk::plugin::{Hook, ReviewInput, SelectionDecision, SelectionMode, Verdicts};
use dasher_store::{ChainPart, Decider, EventRecord, PluginRef, ProposalScope, ShadowDecision, ShadowVerdict, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Plugins, then the config policy.
pub struct PluginPolicy {
    /// The plugin manager (status, reload, rollback for the admin API).
    pub manager: Arc<PluginManager>,
    fallback: ConfigPolicy,
    /// Hosts each shadow plugin currently disagrees on ([`super::shadow`]).
    shadow: ShadowTracker,
}

impl PluginPolicy {
    /// Chains `manager`'s plugins in front of `fallback`.
    pub fn new(manager: Arc<PluginManager>, fallback: ConfigPolicy) -> Self {
        PluginPolicy { manager, fallback, shadow: ShadowTracker::default() }
    }

    fn track_shadow(&self, machine_id: &str, shadow: &[ShadowDecision]) {
        for s in shadow {
            let (plugin, generation) = (&s.plugin, &s.generation);
            self.shadow.note(&self.manager, plugin, generation, s.hook, machine_id, s.differs, s.decision.as_ref());
        }
    }

    /// The selection `d` makes on its own: its sets added to or replacing the host's default
    /// selection, normalised; `None` without an opinion on rule sets.
    fn selection_of(&self, host: &HostFacts, d: &SelectionDecision) -> Option<Vec<String>> {
        let sets = d.rule_sets.clone()?;
        Some(match d.selection_mode() {
            SelectionMode::Replace => normalize_selection(&host.machine_id, sets),
            SelectionMode::Add => normalize_selection(
                &host.machine_id,
                self.fallback.default_sets(host).into_iter().chain(sets).collect(),
            ),
        })
    }
}

fn decider(c: &Contribution) -> Decider {
    Decider { by: c.plugin.clone(), generation: c.generation.clone(), source: Some(c.source) }
}

fn chain(hook: Hook, made_by: &[Contribution]) -> Vec<ChainPart> {
    made_by.iter().map(|c| ChainPart { hook, plugin: decider(c), fields: c.fields.clone() }).collect()
}

/// `Err` when a plugin with `on_failure = "reject"` failed.
fn check_reject<T>(hook: Hook, decided: &Decided<T>) -> Result<(), PolicyRejected> {
    if !decided.reject {
        return Ok(());
    }
    // Enforcing plugins that did not answer (shadow plugins' faults never reject).
    let failed: Vec<&str> =
        decided.made_by.iter().filter(|c| c.source != Source::Live).map(|c| c.plugin.as_str()).collect();
    let message = decided
        .faults
        .iter()
        .filter(|f| failed.contains(&f.plugin.as_str()))
        .map(|f| format!("{}: {}", f.kind, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    Err(PolicyRejected { hook, plugins: failed.join(", "), message })
}

fn shadow_decisions(
    hook: Hook,
    records: &[ShadowRecord],
    differs: impl Fn(&serde_json::Value) -> bool,
) -> Vec<ShadowDecision> {
    records
        .iter()
        .map(|r| ShadowDecision {
            hook,
            plugin: r.plugin.clone(),
            generation: r.generation.clone(),
            differs: r.decision.as_ref().is_some_and(&differs),
            decision: r.decision.clone(),
        })
        .collect()
}

fn sorted(mut rules: Vec<Rule>) -> Vec<Rule> {
    rules.sort_by_key(Rule::key);
    rules
}

#[async_trait]
impl PolicyEngine for PluginPolicy {
    async fn configure(&self, host: &HostFacts) -> Result<Configured, PolicyRejected> {
        let decided = self.manager.configure(host).await;
        check_reject(Hook::Configure, &decided)?;
        let mut decision = decided.value.clone();
        decision.fill_from(&self.fallback.decide(host));
        // A later plugin's set field wins the merge, so the last one naming a field made it.
        let settings = applied_settings(&decision, |field| {
            decided
                .made_by
                .iter()
                .rev()
                .find(|c| c.fields.iter().any(|f| f == field))
                .map_or_else(Decider::config, decider)
        });
        let applied = serde_json::to_value(&decision).unwrap_or_default();
        let shadow = shadow_decisions(Hook::Configure, &decided.shadow, |d| config_differs(d, &applied));
        self.track_shadow(&host.machine_id, &shadow);
        Ok(Configured { decision, settings, chain: chain(Hook::Configure, &decided.made_by), shadow })
    }

    async fn select_rule_sets(&self, host: &HostFacts) -> Result<Selection, PolicyRejected> {
        let decided = self.manager.select_rules(host).await;
        check_reject(Hook::SelectRules, &decided)?;
        let opinions = |field: &str| -> Vec<Decider> {
            decided.made_by.iter().filter(|c| c.fields.iter().any(|f| f == field)).map(decider).collect()
        };
        // `add` (the default): the config file's tag sets stay and are credited too.
        let (rule_sets, rule_sets_by) = match self.selection_of(host, &decided.value) {
            Some(sets) => {
                let mut by = opinions("rule_sets");
                if decided.value.selection_mode() == SelectionMode::Add {
                    by.insert(0, Decider::config());
                }
                (sets, by)
            }
            None => (self.fallback.selection(host), vec![Decider::config()]),
        };
        // A plugin fault must never remove a host's rules: any part that is not a live
        // answer (last good, fallback, nothing) keeps the plugin host set as it is.
        let host_rules = if decided.degraded {
            HostRules::Keep
        } else {
            let by = opinions("host_rules");
            let (rules, skipped) = validate_host_rules(decided.value.host_rules.as_deref().unwrap_or_default());
            let names = || by.iter().map(|d| d.by.as_str()).collect::<Vec<_>>().join(", ");
            for s in &skipped {
                tracing::warn!(machine_id = %host.machine_id, plugins = %names(), "invalid host rule from a plugin skipped: {s}");
            }
            if rules.len() > MAX_PLUGIN_HOST_RULES {
                tracing::warn!(machine_id = %host.machine_id, plugins = %names(), rules = rules.len(), "more than {MAX_PLUGIN_HOST_RULES} host rules; the plugin host set is kept unchanged");
                HostRules::Keep
            } else {
                HostRules::Desired { rules, by, skipped }
            }
        };
        let applied_rules = match &host_rules {
            HostRules::Desired { rules, .. } => sorted(rules.clone()),
            _ => vec![],
        };
        let shadow = shadow_decisions(Hook::SelectRules, &decided.shadow, |d| {
            let Ok(s) = serde_json::from_value::<SelectionDecision>(d.clone()) else { return true };
            let sets_differ = self.selection_of(host, &s).is_some_and(|sets| sets != rule_sets);
            let rules_differ = s.host_rules.is_some_and(|h| sorted(validate_host_rules(&h).0) != applied_rules);
            sets_differ || rules_differ
        });
        self.track_shadow(&host.machine_id, &shadow);
        Ok(Selection { rule_sets, rule_sets_by, host_rules, chain: chain(Hook::SelectRules, &decided.made_by), shadow })
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
        let shadow = self.shadow_verdicts(&host.machine_id, &decided.value, &decided.shadow);
        Triaged { verdicts: decided.value, made_by, shadow }
    }

    fn auto_apply_proposals(&self) -> Vec<ProposalScope> {
        self.manager.config().auto_apply_proposals.clone()
    }

    fn shadow_counts(&self) -> BTreeMap<String, ShadowCounts> {
        self.shadow.counts()
    }

    async fn review(&self, input: &ReviewInput) -> Option<Reviewed> {
        let decided = self.manager.review(input).await;
        for s in &decided.shadow {
            let decision = s.decision.as_ref().map(|d| d.to_string()).unwrap_or_default();
            tracing::info!(plugin = %s.plugin, proposal = input.proposal.id, "shadow review plugin would decide: {decision}");
        }
        for f in &decided.faults {
            tracing::warn!(plugin = %f.plugin, proposal = input.proposal.id, "review failed ({}): {}; the proposal stays for an admin", f.kind, f.message);
        }
        let by: Vec<PluginRef> = decided
            .made_by
            .iter()
            .filter(|c| c.source == Source::Live)
            .map(|c| PluginRef { plugin: c.plugin.clone(), generation: c.generation.clone() })
            .collect();
        if by.is_empty() {
            return None;
        }
        Some(Reviewed { decision: decided.value, by })
    }
}

impl PluginPolicy {
    /// Shadow triage verdicts per event, each judged against the applied verdict; every shadow
    /// plugin's host is noted as differing if any of its verdicts in the batch does.
    fn shadow_verdicts(
        &self,
        machine_id: &str,
        applied: &Verdicts,
        records: &[ShadowRecord],
    ) -> BTreeMap<u64, Vec<ShadowVerdict>> {
        let mut out: BTreeMap<u64, Vec<ShadowVerdict>> = BTreeMap::new();
        for r in records {
            let verdicts: Verdicts =
                r.decision.as_ref().and_then(|d| serde_json::from_value(d.clone()).ok()).unwrap_or_default();
            let mut any = false;
            for v in verdicts.verdicts {
                let differs = verdict_differs(&v, applied.get(v.event_id));
                any |= differs;
                out.entry(v.event_id).or_default().push(ShadowVerdict {
                    plugin: r.plugin.clone(),
                    generation: r.generation.clone(),
                    action: v.action,
                    labels: v.labels,
                    severity: v.severity,
                    proposals: v.proposals,
                    differs,
                });
            }
            self.shadow.note(
                &self.manager,
                &r.plugin,
                &r.generation,
                Hook::Triage,
                machine_id,
                any,
                r.decision.as_ref(),
            );
        }
        out
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

/// Plugin namespaces are formed by the plugin host and never equal the server's own; refusing
/// it here as well keeps the server's secrets out of reach even if that ever changed.
fn plugin_namespace(namespace: &str) -> Result<&str, KvError> {
    if namespace == dasher_store::SERVER_KV_NAMESPACE {
        return Err(KvError(format!("kv namespace {namespace:?} is reserved for the server")));
    }
    Ok(namespace)
}

impl KvBackend for StoreKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime.block_on(self.store.kv_get(namespace, key)).map_err(|e| KvError(e.to_string()))
    }
    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime.block_on(self.store.kv_put(namespace, key, value)).map_err(|e| KvError(e.to_string()))
    }
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime.block_on(self.store.kv_delete(namespace, key)).map_err(|e| KvError(e.to_string()))
    }
    fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<Result<i64, dasher_policy::CounterError>, KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime.block_on(self.store.kv_increment(namespace, key, delta)).map_err(|e| KvError(e.to_string()))
    }
    fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime
            .block_on(self.store.kv_compare_and_swap(namespace, key, expected, new))
            .map_err(|e| KvError(e.to_string()))
    }
    /// Submits every write at once, so the store's group-committing writer usually takes them
    /// in one group: one durable wait per call instead of one per key (not one transaction:
    /// a crash may keep some of a call's writes).
    fn apply(&self, namespace: &str, writes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<(), KvError> {
        let namespace = plugin_namespace(namespace)?;
        self.runtime.block_on(async {
            let mut pending = tokio::task::JoinSet::new();
            for (key, value) in writes {
                let (store, ns, key, value) = (self.store.clone(), namespace.to_owned(), key.clone(), value.clone());
                pending.spawn(async move {
                    match value {
                        Some(v) => store.kv_put(&ns, &key, &v).await,
                        None => store.kv_delete(&ns, &key).await,
                    }
                });
            }
            let mut first_error = None;
            while let Some(done) = pending.join_next().await {
                let failed = match done {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("kv write task failed: {e}"),
                };
                first_error.get_or_insert(KvError(failed));
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}
