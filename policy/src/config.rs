//! Plugin configuration: what the server's TOML `[plugins]` table deserializes into.

use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::SelectionDecision;
use dasher_store::ProposalScope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The plugin system's configuration.
///
/// ```toml
/// [plugins]
/// dir = "/var/lib/dasher/plugins"
/// order = ["staged-rollout", "ruleset-targeting"]
///
/// [plugins.plugin.staged-rollout]
/// mode = "shadow"
/// settings = { monitor_days = 14 }
///
/// [plugins.fallback.configure]
/// client_mode = "LOCKDOWN"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory holding `*.wasm` components; every component in it is loaded. Files whose
    /// name starts with `.` are ignored (temp files of `install`).
    pub dir: PathBuf,
    /// Watch `dir` and reload on change.
    pub watch: bool,
    /// Plugin names in chain order; plugins not listed run after these, by name.
    pub order: Vec<String>,
    /// Per-plugin settings, mode and limits, by plugin name (the crate name in its metadata).
    pub plugin: BTreeMap<String, PluginConfig>,
    /// Default limits for every plugin.
    pub limits: Limits,
    /// Decisions used when a plugin fails for a host it has no last good decision for.
    pub fallback: Fallback,
    /// Threads running plugin calls (not tokio workers); 0 = number of CPUs, at most 8.
    pub workers: usize,
    /// Calls that may wait for a worker; beyond this a call fails fast (fail-static applies).
    pub queue_capacity: usize,
    /// Debounce window of the directory watcher. A file missing for less than twice this
    /// (a build tool's remove-then-create) keeps its plugin loaded.
    pub debounce_ms: u64,
    /// Circuit breaker of every plugin's hooks (per plugin: `[plugins.plugin.NAME.breaker]`).
    pub breaker: BreakerConfig,
    /// Scopes of triage rule proposals the server applies without review (`"host"`,
    /// `"rule_set"`, `"global"`). Default: none, every proposal waits for an admin.
    pub auto_apply_proposals: Vec<ProposalScope>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::from("plugins"),
            watch: true,
            order: Vec::new(),
            plugin: BTreeMap::new(),
            limits: Limits::default(),
            fallback: Fallback::default(),
            workers: 0,
            queue_capacity: 1024,
            debounce_ms: 200,
            breaker: BreakerConfig::default(),
            auto_apply_proposals: Vec::new(),
        }
    }
}

impl PluginsConfig {
    /// Config for plugins in `dir`, everything else default.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Self {
        PluginsConfig { dir: dir.into(), ..PluginsConfig::default() }
    }

    /// The settings JSON given to a plugin's `init` (`{}` if none configured).
    pub fn settings_json(&self, name: &str) -> String {
        match self.plugin.get(name).map(|p| &p.settings) {
            None | Some(serde_json::Value::Null) => "{}".to_owned(),
            Some(s) => s.to_string(),
        }
    }

    /// The limits for a plugin: its own if configured, else the defaults.
    pub fn limits_for(&self, name: &str) -> Limits {
        self.plugin.get(name).and_then(|p| p.limits.clone()).unwrap_or_else(|| self.limits.clone())
    }

    /// The plugin's mode.
    pub fn mode_for(&self, name: &str) -> Mode {
        self.plugin.get(name).map(|p| p.mode).unwrap_or_default()
    }

    /// The circuit-breaker settings for a plugin: its own if configured, else the defaults.
    pub fn breaker_for(&self, name: &str) -> BreakerConfig {
        self.plugin.get(name).and_then(|p| p.breaker).unwrap_or(self.breaker)
    }

    /// The plugin's failure policy.
    pub fn on_failure_for(&self, name: &str) -> OnFailure {
        self.plugin.get(name).map(|p| p.on_failure).unwrap_or_default()
    }

    /// What hosts get while the plugin is configured but not loaded.
    pub fn on_unavailable_for(&self, name: &str) -> OnUnavailable {
        self.plugin.get(name).map(|p| p.on_unavailable).unwrap_or_default()
    }

    /// Plugins the configuration expects to be loaded: every name with a
    /// `[plugins.plugin.NAME]` table or listed in `order`. One that is not loaded is
    /// *unavailable* (see [`OnUnavailable`]); other components in `dir` load as they come.
    pub fn expected(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugin.keys().cloned().collect();
        for n in &self.order {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }

    pub(crate) fn worker_count(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) }
    }
}

/// One plugin's configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Settings passed to `init` as JSON.
    pub settings: serde_json::Value,
    /// Enforce or shadow.
    pub mode: Mode,
    /// Limits replacing the defaults for this plugin.
    pub limits: Option<Limits>,
    /// `configure` fallback for this plugin (else the global one).
    pub fallback_configure: Option<ConfigDecision>,
    /// What a fault of this plugin does to a `configure`/`select-rules` answer.
    pub on_failure: OnFailure,
    /// Circuit-breaker settings replacing the defaults for this plugin.
    pub breaker: Option<BreakerConfig>,
    /// What hosts get while this configured plugin is not loaded (file missing, load or
    /// init failure at start).
    pub on_unavailable: OnUnavailable,
}

/// What the chain does for a configured plugin that is not loaded. In every case the host's
/// plugin host set is kept as it is: an unavailable plugin never removes a rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Each host gets the plugin's persisted last good decision (settings and selection);
    /// a host it never decided for gets the fallback (`fallback_configure`, then
    /// `[plugins.fallback]`).
    #[default]
    LastGood,
    /// `configure` and `select-rules` answer 503: the client keeps its state and retries.
    Reject,
    /// Settings come from the config file as if the plugin were not configured (a host may
    /// get a weaker mode). Rule-set selection still uses the last good decision, so no rule
    /// set is dropped.
    Config,
}

/// Circuit breaker of a plugin's hook: a hook that keeps faulting is skipped for a cool-down.
///
/// Each hook (`configure`, `select-rules`, `triage`) of each plugin generation has its own
/// breaker. It **opens** when, within the last `window_secs`, at least `open_after_faults`
/// calls faulted and they were at least `min_fault_percent` of the calls. While open, calls
/// never enter the guest and fail static as a fault does (last good decision, fallback;
/// `on_failure = "reject"` still rejects). After the cool-down the next call is a **trial**
/// (other calls keep being skipped while it runs): a live answer closes the breaker, a fault
/// opens it again for twice the previous cool-down, up to `max_cool_down_ms`. A new
/// generation of the plugin (file change, settings change, rollback) starts closed. Changes
/// of these settings apply to running plugins at their next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Faults within the window that open the breaker; 0 turns the breaker off.
    pub open_after_faults: u32,
    /// Least share of the window's calls those faults must be, in percent (0–100), so that a
    /// few hosts a plugin faults for do not take its live answers from the whole fleet.
    pub min_fault_percent: u8,
    /// Length of the sliding window faults and calls are counted in (at least 1).
    pub window_secs: u64,
    /// First cool-down after opening.
    pub cool_down_ms: u64,
    /// Longest cool-down (it doubles after each failed trial call).
    pub max_cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            open_after_faults: 5,
            min_fault_percent: 10,
            window_secs: 60,
            cool_down_ms: 1_000,
            max_cool_down_ms: 60_000,
        }
    }
}

/// Failure policy of a plugin for the synchronous hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Fail static: the host's last good decision from this plugin, else the fallback.
    #[default]
    Static,
    /// Set [`Decided::reject`](crate::Decided::reject): the server answers the stage with 503
    /// so the client keeps its current state and retries at its next sync.
    Reject,
}

/// Whether a plugin's decisions are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Decisions are merged into the result.
    #[default]
    Enforce,
    /// Runs on live traffic with the same limits; decisions are recorded beside the applied
    /// ones, never applied; its kv writes go to a separate `shadow:` namespace.
    Shadow,
}

/// Per-plugin limits. Units are in the names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deadline of one `configure` or `select-rules` call (typical calls take microseconds).
    pub deadline_ms: u64,
    /// Deadline of one `triage` call (one batch).
    pub triage_deadline_ms: u64,
    /// Deadline of `init` and of each load-time smoke call.
    pub init_deadline_ms: u64,
    /// Linear memory of one instance (all its memories together).
    pub memory_bytes: usize,
    /// Largest accepted output document.
    pub max_output_bytes: usize,
    /// Largest accepted component file.
    pub max_component_bytes: usize,
    /// Log bytes per call; the rest is truncated.
    pub max_log_bytes_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline_ms: 10,
            triage_deadline_ms: 50,
            init_deadline_ms: 1000,
            memory_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
            max_component_bytes: 8 << 20,
            max_log_bytes_per_call: 4096,
        }
    }
}

/// Admin-written decisions for fail-static when there is no last good decision for a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fallback {
    /// Used in place of a failed plugin's `configure` output.
    pub configure: Option<ConfigDecision>,
    /// Used in place of a failed plugin's `select-rules` output.
    pub select_rules: Option<SelectionDecision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_in_toml() {
        let c: PluginsConfig = toml::from_str(
            r#"
            dir = "/var/lib/dasher/plugins"
            order = ["staged-rollout"]
            auto_apply_proposals = ["host", "rule_set"]
            [plugin.staged-rollout]
            mode = "shadow"
            settings = { lockdown_after_days = 14, lockdown_groups = ["it"] }
            [plugin.staged-rollout.limits]
            deadline_ms = 20
            [plugin.staged-rollout.breaker]
            cool_down_ms = 5000
            [fallback.configure]
            client_mode = "LOCKDOWN"
            [breaker]
            open_after_faults = 3
            "#,
        )
        .unwrap();
        assert_eq!(c.mode_for("staged-rollout"), Mode::Shadow);
        assert_eq!(c.settings_json("staged-rollout"), r#"{"lockdown_after_days":14,"lockdown_groups":["it"]}"#);
        assert_eq!(c.settings_json("other"), "{}");
        assert_eq!(c.limits_for("staged-rollout").deadline_ms, 20);
        assert_eq!(c.limits_for("other"), Limits::default());
        assert_eq!(c.breaker_for("other").open_after_faults, 3);
        let own = c.breaker_for("staged-rollout");
        assert_eq!((own.cool_down_ms, own.open_after_faults), (5000, 5), "a plugin's own table replaces the defaults");
        assert!(c.fallback.configure.unwrap().client_mode.is_some());
        assert_eq!(c.auto_apply_proposals, vec![ProposalScope::Host, ProposalScope::RuleSet]);
        assert!(PluginsConfig::default().auto_apply_proposals.is_empty(), "nothing applies without review by default");
        assert!(toml::from_str::<PluginsConfig>(r#"auto_apply_proposals = ["everything"]"#).is_err());
        assert!(toml::from_str::<PluginsConfig>("dirr = 1").is_err(), "typos are errors");
    }
}
