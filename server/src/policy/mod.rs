//! Policy decisions: client settings per host and which rule sets it gets.
//!
//! Every decision goes through [`PolicyEngine`], the one seam the WebAssembly plugin host
//! implements. [`ConfigPolicy`] is the built-in engine: fleet defaults plus per-tag
//! overrides from the config file. A policy never touches the wire format.

use crate::config::Config;
pub mod plugins;

use async_trait::async_trait;
use dasher_sdk::domain::{ConfigDecision, GLOBAL_RULE_SET, HostFacts, host_rule_set};
use dasher_sdk::plugin::Verdicts;
use dasher_store::{EventRecord, PluginRef, ProposalScope};

/// Makes the policy decisions of a sync.
#[async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Settings for the host; fields left `None` are not sent.
    async fn configure(&self, host: &HostFacts) -> ConfigDecision;
    /// Rule sets for the host in precedence order (see [`normalize_selection`]).
    async fn select_rule_sets(&self, host: &HostFacts) -> Vec<String>;
    /// Judges events after they were durably stored (labels, noise, rule proposals). The
    /// default has no opinion.
    async fn triage(&self, _host: &HostFacts, _events: &[EventRecord]) -> Triaged {
        Triaged::default()
    }
    /// Scopes whose rule proposals are applied without review (default: none).
    fn auto_apply_proposals(&self) -> Vec<ProposalScope> {
        Vec::new()
    }
}

/// A batch's triage: merged verdicts and the plugin generations that judged it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triaged {
    /// At most one verdict per event of the batch.
    pub verdicts: Verdicts,
    /// Enforcing plugin generations that answered for the batch, in chain order.
    pub made_by: Vec<PluginRef>,
}

/// The built-in policy: `[defaults]` and `[tags.*]` of the config file.
pub struct ConfigPolicy {
    config: Config,
}

impl ConfigPolicy {
    /// A policy reading `config`.
    pub fn new(config: Config) -> Self {
        ConfigPolicy { config }
    }
}

#[async_trait]
impl PolicyEngine for ConfigPolicy {
    async fn configure(&self, host: &HostFacts) -> ConfigDecision {
        let mut decision = ConfigDecision::default();
        for tag in &host.tags {
            if let Some(p) = self.config.tags.get(tag) {
                decision.fill_from(&p.config);
            }
        }
        decision.fill_from(&self.config.defaults);
        decision
    }

    async fn select_rule_sets(&self, host: &HostFacts) -> Vec<String> {
        let mut sets = Vec::new();
        for tag in &host.tags {
            sets.push(tag.clone());
            if let Some(p) = self.config.tags.get(tag) {
                sets.extend(p.rule_sets.iter().cloned());
            }
        }
        normalize_selection(&host.machine_id, sets)
    }
}

/// Orders a selection: the host's own set first, then the given sets in order (duplicates
/// dropped), then `global` unless it was listed explicitly. First set wins on conflicts.
pub fn normalize_selection(machine_id: &str, sets: Vec<String>) -> Vec<String> {
    let mut out = vec![host_rule_set(machine_id)];
    for s in sets {
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
    use dasher_sdk::wire::ClientMode;

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
        let d = policy.configure(&host).await;
        assert_eq!(d.client_mode, Some(ClientMode::Lockdown));
        assert_eq!(d.batch_size, Some(10));
        assert_eq!(policy.select_rule_sets(&host).await, vec!["host:m1", "lab", "eng", "dev-tools", "global"]);
    }
}
