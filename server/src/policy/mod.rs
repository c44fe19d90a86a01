//! Policy decisions: client settings per host and which rule sets it gets.
//!
//! Every decision goes through [`PolicyEngine`], the one seam the WebAssembly plugin host
//! implements. [`ConfigPolicy`] is the built-in engine: fleet defaults plus per-tag
//! overrides from the config file. A policy never touches the wire format.
//!
//! Decisions carry their provenance ([`Configured::settings`], [`Selection::rule_sets_by`]):
//! which plugin generation, or the config file, decided each part, and what shadow plugins
//! would have decided instead. The sync stores it with the host's sync state.

use crate::config::{Config, LiveConfig};
pub mod plugins;
pub mod shadow;

use async_trait::async_trait;
use dasher_sdk::domain::{ConfigDecision, GLOBAL_RULE_SET, HostFacts, Rule, RuleSpec, host_rule_set};
use dasher_sdk::names::RuleSetName;
use dasher_sdk::plugin::{Hook, ReviewDecision, ReviewInput, Verdicts};
use dasher_store::{
    AppliedSetting, ChainPart, Decider, EventRecord, PluginRef, ProposalScope, ShadowDecision, ShadowVerdict,
};
use shadow::ShadowCounts;
use std::collections::{BTreeMap, HashSet};

/// Prefix of the per-host rule sets holding plugin-supplied host rules. Reserved
/// ([`dasher_sdk::names`]): the admin API refuses it in rule writes and tags, and selections
/// drop it, so a plugin host set is only ever written by the preflight and only ever selected
/// for its own host.
pub use dasher_sdk::names::PLUGIN_HOST_SET_PREFIX;

/// Most plugin host rules kept for one host; a decision with more is not applied.
pub const MAX_PLUGIN_HOST_RULES: usize = 10_000;

/// The rule set holding the plugin-supplied rules of one host.
pub fn plugin_host_rule_set(machine_id: &str) -> String {
    format!("{PLUGIN_HOST_SET_PREFIX}{machine_id}")
}

/// Makes the policy decisions of a sync.
#[async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Settings for the host (fields left `None` are not sent) and who decided each.
    async fn configure(&self, host: &HostFacts) -> Result<Configured, PolicyRejected>;
    /// Rule sets for the host in precedence order (see [`normalize_selection`]), the host
    /// rules plugins want for it, and who decided them.
    async fn select_rule_sets(&self, host: &HostFacts) -> Result<Selection, PolicyRejected>;
    /// Judges events after they were durably stored (labels, noise, rule proposals). The
    /// default has no opinion.
    async fn triage(&self, _host: &HostFacts, _events: &[EventRecord]) -> Triaged {
        Triaged::default()
    }
    /// Scopes whose rule proposals are applied without review (default: none).
    fn auto_apply_proposals(&self) -> Vec<ProposalScope> {
        Vec::new()
    }
    /// Per shadow plugin, its shadow counters since the server started ([`shadow`]).
    fn shadow_counts(&self) -> BTreeMap<String, ShadowCounts> {
        BTreeMap::new()
    }
    /// Decides a rule proposal (the `review` hook). `None`: no engine can review (no
    /// plugin declares the hook), the proposal stays for an admin.
    async fn review(&self, _input: &ReviewInput) -> Option<Reviewed> {
        None
    }
}

/// A review plugin chain's decision on a proposal and the enforcing generation that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reviewed {
    /// The merged decision.
    pub decision: ReviewDecision,
    /// The enforcing generations that answered (in chain order); recorded as the approver.
    pub by: Vec<PluginRef>,
}

/// A decision refused because a plugin configured with `on_failure = "reject"` failed: the
/// stage answers 503 and the client keeps its current state and retries at its next sync.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "policy plugin {plugins} failed in {hook} and is configured to reject on failure ({message}); the client keeps its current state and retries at its next sync"
)]
pub struct PolicyRejected {
    /// `configure` or `select-rules`.
    pub hook: Hook,
    /// The failed plugins, comma-separated.
    pub plugins: String,
    /// What went wrong.
    pub message: String,
}

/// Settings for a host and their provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Configured {
    /// The merged settings (fields left `None` are not sent).
    pub decision: ConfigDecision,
    /// Every setting decided, by field name, with who decided it.
    pub settings: BTreeMap<String, AppliedSetting>,
    /// Enforcing plugins that ran, in chain order.
    pub chain: Vec<ChainPart>,
    /// What shadow plugins would have decided.
    pub shadow: Vec<ShadowDecision>,
}

/// A host's rule-set selection and plugin host rules, with their provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Rule sets in precedence order (normalised; the plugin host set is added by the sync).
    pub rule_sets: Vec<String>,
    /// Who chose `rule_sets`.
    pub rule_sets_by: Vec<Decider>,
    /// What the host's plugin host set should hold.
    pub host_rules: HostRules,
    /// Enforcing plugins that ran, in chain order.
    pub chain: Vec<ChainPart>,
    /// What shadow plugins would have decided.
    pub shadow: Vec<ShadowDecision>,
}

/// What a host's plugin host set (`plugin-host:<machine id>`) should hold.
#[derive(Clone, Debug, PartialEq)]
pub enum HostRules {
    /// This engine supplies no host rules (plugins are not configured).
    Unsupported,
    /// A plugin failed (fail-static): keep the set exactly as it is.
    Keep,
    /// Exactly these rules (validated, one per key), from these plugins.
    Desired {
        /// The rules.
        rules: Vec<Rule>,
        /// Plugins that had an opinion on host rules.
        by: Vec<Decider>,
        /// Rules that failed validation and were skipped.
        skipped: Vec<String>,
    },
}

/// The settings of `decision` as applied settings, each attributed by `by`.
pub fn applied_settings(decision: &ConfigDecision, by: impl Fn(&str) -> Decider) -> BTreeMap<String, AppliedSetting> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(decision) else { return BTreeMap::new() };
    fields
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, value)| {
            let by = by(&k);
            (k, AppliedSetting { value, by })
        })
        .collect()
}

/// Validates plugin-supplied host rules: invalid ones and `REMOVE`s are left out (a plugin
/// removes a host rule by no longer returning it), the first rule per key wins, at most
/// [`MAX_PLUGIN_HOST_RULES`]. Returns the rules and a description of each skipped one.
pub fn validate_host_rules(specs: &[RuleSpec]) -> (Vec<Rule>, Vec<String>) {
    let mut rules = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        match spec.validate() {
            Ok((_, None)) => {}
            Ok((key, Some(rule))) => {
                if seen.insert(key) {
                    rules.push(rule);
                }
            }
            Err(e) => skipped.push(format!(
                "host_rules[{i}] ({:?} {:?}): {}: {e}",
                spec.rule_type,
                spec.identifier.chars().take(80).collect::<String>(),
                e.field()
            )),
        }
    }
    (rules, skipped)
}

/// A batch's triage: merged verdicts and the plugin generations that judged it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triaged {
    /// At most one verdict per event of the batch.
    pub verdicts: Verdicts,
    /// Enforcing plugin generations that answered for the batch, in chain order.
    pub made_by: Vec<PluginRef>,
    /// Shadow plugins' verdicts by event id (not applied; stored beside the applied ones).
    pub shadow: BTreeMap<u64, Vec<ShadowVerdict>>,
}

/// The built-in policy: `[defaults]` and `[tags.*]` of the config file.
pub struct ConfigPolicy {
    config: LiveConfig,
}

impl ConfigPolicy {
    /// A policy reading `config`.
    pub fn new(config: Config) -> Self {
        ConfigPolicy { config: LiveConfig::new(config) }
    }

    /// A policy reading the running configuration (a reload changes its decisions).
    pub fn live(config: LiveConfig) -> Self {
        ConfigPolicy { config }
    }

    /// The settings the config file gives `host`.
    pub fn decide(&self, host: &HostFacts) -> ConfigDecision {
        let config = self.config.get();
        let mut decision = ConfigDecision::default();
        for tag in &host.tags {
            if let Some(p) = config.tags.get(tag) {
                decision.fill_from(&p.config);
            }
        }
        decision.fill_from(&config.defaults);
        decision
    }

    /// The rule sets the config file gives `host`, normalised: the default selection.
    pub fn selection(&self, host: &HostFacts) -> Vec<String> {
        normalize_selection(&host.machine_id, self.default_sets(host))
    }

    /// The default selection before normalisation: each tag, then its `[tags.X].rule_sets`.
    pub fn default_sets(&self, host: &HostFacts) -> Vec<String> {
        let config = self.config.get();
        let mut sets = Vec::new();
        for tag in &host.tags {
            sets.push(tag.clone());
            if let Some(p) = config.tags.get(tag) {
                sets.extend(p.rule_sets.iter().cloned());
            }
        }
        sets
    }
}

#[async_trait]
impl PolicyEngine for ConfigPolicy {
    async fn configure(&self, host: &HostFacts) -> Result<Configured, PolicyRejected> {
        let decision = self.decide(host);
        let settings = applied_settings(&decision, |_| Decider::config());
        Ok(Configured { decision, settings, chain: vec![], shadow: vec![] })
    }

    async fn select_rule_sets(&self, host: &HostFacts) -> Result<Selection, PolicyRejected> {
        Ok(Selection {
            rule_sets: self.selection(host),
            rule_sets_by: vec![Decider::config()],
            host_rules: HostRules::Unsupported,
            chain: vec![],
            shadow: vec![],
        })
    }
}

/// Orders a selection: the host's own set first, then the given sets in order (duplicates
/// and names that may not be selected — any host's or plugin host set, malformed names —
/// dropped), then `global` unless it was listed explicitly. First set wins on conflicts.
pub fn normalize_selection(machine_id: &str, sets: Vec<String>) -> Vec<String> {
    let mut out = vec![host_rule_set(machine_id)];
    for s in sets {
        if let Err(e) = RuleSetName::selectable(&s) {
            tracing::warn!(machine_id, "rule set dropped from a selection: {e}");
            continue;
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if !out.iter().any(|s| s == GLOBAL_RULE_SET) {
        out.push(GLOBAL_RULE_SET.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::wire::{ClientMode, Policy, RuleType};

    #[tokio::test]
    async fn tags_override_defaults_in_tag_order() {
        let config = Config::from_toml(
            r#"
            [defaults]
            client_mode = "MONITOR"
            batch_size = 50
            [tags.lab.config]
            client_mode = "LOCKDOWN"
            [tags.eng]
            rule_sets = ["dev-tools"]
            [tags.eng.config]
            client_mode = "MONITOR"
            batch_size = 10
            "#,
        )
        .unwrap();
        let policy = ConfigPolicy::new(config);
        let host = HostFacts { machine_id: "m1".into(), tags: vec!["lab".into(), "eng".into()], ..Default::default() };
        let d = policy.configure(&host).await.unwrap();
        assert_eq!(d.decision.client_mode, Some(ClientMode::Lockdown));
        assert_eq!(d.decision.batch_size, Some(10));
        assert_eq!(d.settings["client_mode"].by, Decider::config());
        assert_eq!(d.settings["batch_size"].value, 10);
        assert!(!d.settings.contains_key("block_usb_mount"), "unset fields are not attributed");
        let selection = policy.select_rule_sets(&host).await.unwrap();
        assert_eq!(selection.rule_sets, vec!["host:m1", "lab", "eng", "dev-tools", "global"]);
        assert_eq!(selection.host_rules, HostRules::Unsupported);
    }

    #[test]
    fn selections_never_name_a_plugin_host_set() {
        let sets = normalize_selection("m1", vec!["plugin-host:m2".into(), "eng".into(), "plugin-host:m1".into()]);
        assert_eq!(sets, vec!["host:m1", "eng", "global"]);
    }

    #[test]
    fn selections_never_name_another_hosts_set() {
        let sets = normalize_selection("m1", vec!["host:m2".into(), "eng".into(), "host:m1".into(), "a b".into()]);
        assert_eq!(sets, vec!["host:m1", "eng", "global"]);
    }

    #[test]
    fn host_rules_skip_invalid_and_removals_and_keep_first_per_key() {
        let spec = |id: &str, policy: Policy| RuleSpec::new(RuleType::TeamId, id, policy);
        let (rules, skipped) = validate_host_rules(&[
            spec("EQHXZ8M8AV", Policy::Allowlist),
            spec("not a team id", Policy::Allowlist),
            spec("EQHXZ8M8AV", Policy::Blocklist),
            spec("ABCDE12345", Policy::Remove),
            RuleSpec { cel_expr: Some("this is ((( not cel".into()), ..spec("ABCDE12345", Policy::Cel) },
        ]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].policy, Policy::Allowlist);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].starts_with("host_rules[1]"), "{skipped:?}");
        assert!(skipped[1].starts_with("host_rules[4]") && skipped[1].contains("cel_expr"), "{skipped:?}");
    }
}
