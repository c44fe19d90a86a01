//! The configuration as it changes at run time: [`LiveConfig`] is read on every request
//! (an `ArcSwap` load: no lock, no allocation) and replaced whole by a reload;
//! [`split_reload`] decides which changed keys apply live and which need a restart.

use super::Config;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Keys (dotted paths) whose changes apply without a restart; everything else changed in a
/// reloaded file is reported as needing one and keeps its running value.
pub const LIVE_KEYS: &[&str] = &[
    "defaults",
    "tags",
    "sync.page_size_rules",
    "limits.max_body_bytes",
    "limits.max_inflated_bytes",
    "limits.max_preflight_bytes",
    "limits.max_ruledownload_bytes",
    "limits.max_postflight_bytes",
    "limits.max_inventory_string_bytes",
    "limits.max_user_groups",
    "limits.max_events_per_upload",
    "limits.max_machine_id_bytes",
    "limits.max_rules_per_request",
    "limits.body_read_timeout_secs",
    "limits.max_rule_sets_per_host",
    "limits.sync_request_timeout_secs",
    "plugins.order",
    "plugins.plugin",
    "plugins.limits",
    "plugins.fallback",
    "plugins.breaker",
    "plugins.auto_apply_proposals",
];

/// The running configuration, shared by everything that reads it per request.
#[derive(Clone)]
pub struct LiveConfig(Arc<ArcSwap<Config>>);

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The current configuration (cheap; hold it for one request, not longer).
    pub fn get(&self) -> arc_swap::Guard<Arc<Config>> {
        self.0.load()
    }

    /// The current configuration as an owned `Arc`.
    pub fn snapshot(&self) -> Arc<Config> {
        self.0.load_full()
    }

    /// Replaces the configuration (only the reloader does this).
    pub(crate) fn store(&self, config: Config) {
        self.0.store(Arc::new(config));
    }
}

/// What a reload would change: the configuration to run with (`new` with every key that
/// cannot change live kept at its running value), the live keys that changed, and the keys
/// that changed but need a restart.
pub struct Split {
    /// The configuration to apply.
    pub apply: Config,
    /// Changed keys applied now.
    pub applied: Vec<String>,
    /// Changed keys kept at their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// Compares the running and the reloaded configuration key by key (see [`LIVE_KEYS`]).
pub fn split_reload(running: &Config, new: &Config) -> Result<Split, String> {
    let old = serde_json::to_value(running).map_err(|e| e.to_string())?;
    let mut merged = serde_json::to_value(new).map_err(|e| e.to_string())?;
    let mut applied = vec![];
    let mut needs_restart = vec![];
    diff(&old, &mut merged, String::new(), &mut applied, &mut needs_restart);
    let apply: Config = serde_json::from_value(merged).map_err(|e| e.to_string())?;
    Ok(Split { apply, applied, needs_restart })
}

fn is_live(path: &str) -> bool {
    LIVE_KEYS.iter().any(|k| path == *k || path.strip_prefix(k).is_some_and(|rest| rest.starts_with('.')))
}

/// Walks both trees: a differing live key is kept from `new`; a differing restart-only leaf
/// (or a table that appeared or vanished) is set back to the running value.
fn diff(
    old: &serde_json::Value,
    new: &mut serde_json::Value,
    path: String,
    applied: &mut Vec<String>,
    restart: &mut Vec<String>,
) {
    if old == new {
        return;
    }
    if !path.is_empty() && is_live(&path) {
        applied.push(path);
        return;
    }
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            let keys: Vec<String> = o.keys().chain(n.keys()).cloned().collect();
            let mut seen = std::collections::BTreeSet::new();
            for k in keys {
                if !seen.insert(k.clone()) {
                    continue;
                }
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                let null = serde_json::Value::Null;
                let o_child = o.get(&k).unwrap_or(&null).clone();
                let n_child = n.entry(k.clone()).or_insert(serde_json::Value::Null);
                diff(&o_child, n_child, child, applied, restart);
            }
        }
        (o, n) => {
            *n = o.clone();
            restart.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_apply_and_the_rest_waits_for_a_restart() {
        let running = Config::from_toml("listen = \"127.0.0.1:9000\"\n[defaults]\nclient_mode = \"MONITOR\"").unwrap();
        let new = Config::from_toml(
            "listen = \"127.0.0.1:9001\"\n[defaults]\nclient_mode = \"LOCKDOWN\"\n[limits]\nmax_connections = 7\nmax_events_per_upload = 5",
        )
        .unwrap();
        let split = split_reload(&running, &new).unwrap();
        assert_eq!(split.applied, vec!["defaults", "limits.max_events_per_upload"]);
        assert_eq!(split.needs_restart, vec!["limits.max_connections", "listen"]);
        assert_eq!(split.apply.listen, running.listen, "the listen address keeps its running value");
        assert_eq!(split.apply.limits.max_connections, running.limits.max_connections);
        assert_eq!(split.apply.limits.max_events_per_upload, 5);
        assert_eq!(split.apply.defaults.client_mode, new.defaults.client_mode);
    }

    #[test]
    fn turning_plugins_on_needs_a_restart() {
        let running = Config::from_toml("").unwrap();
        let new = Config::from_toml("[plugins]\ndir = \"/tmp/p\"").unwrap();
        let split = split_reload(&running, &new).unwrap();
        assert_eq!(split.needs_restart, vec!["plugins"]);
        assert!(split.apply.plugins.is_none());
    }
}
