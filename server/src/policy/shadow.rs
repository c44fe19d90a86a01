//! Shadow mode's one definition of "differs", and its counters.
//!
//! A shadow decision differs when it has an opinion the applied decision does not share:
//! - `configure`: a field it sets (non-null) has another value in the applied settings
//!   (after the config file filled the plugins' gaps);
//! - `select-rules`: the selection it would produce on its own (its sets added to or
//!   replacing the host's default selection, normalised) is not the applied one, or the host
//!   rules it gives (when it gives any) are not the applied ones;
//! - `triage`: for some event of the batch, an action, severity, label or proposal it gives
//!   is not in the applied verdict.
//!
//! The same boolean goes into the host's record (`ShadowDecision::differs`), the event's
//! shadow verdict, the log and the counters. A host differs for a shadow plugin while its
//! latest decision by it, in any hook, differs; [`ShadowTracker`] counts hosts, not calls:
//! `shadow_hosts_differing` is the number of hosts differing now, `shadow_disagreements`
//! the number of times a host went from agreeing (or unseen) to differing, and each such
//! transition is logged once. Both are per plugin generation: a new generation starts at 0.

use dasher_policy::PluginManager;
use dasher_sdk::plugin::{Hook, Verdict};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Hosts remembered per shadow plugin; beyond this new hosts are not tracked (counted as
/// agreeing), which bounds the memory an attacker with many machine ids can make us use.
pub const SHADOW_HOSTS_TRACKED: usize = 1_000_000;

/// True if a shadow `configure` decision sets a field to a value the applied settings do not have.
pub fn config_differs(shadow: &serde_json::Value, applied: &serde_json::Value) -> bool {
    match (shadow, applied) {
        (serde_json::Value::Object(s), serde_json::Value::Object(a)) => {
            s.iter().any(|(k, v)| !v.is_null() && a.get(k) != Some(v))
        }
        _ => shadow != applied,
    }
}

/// True if a shadow triage verdict has an opinion the applied verdict (if any) lacks.
pub fn verdict_differs(shadow: &Verdict, applied: Option<&Verdict>) -> bool {
    let empty = Verdict::on(shadow.event_id);
    let a = applied.unwrap_or(&empty);
    shadow.action.is_some_and(|x| a.action != Some(x))
        || shadow.severity.is_some_and(|x| a.severity != Some(x))
        || shadow.labels.iter().any(|l| !a.labels.contains(l))
        || shadow.proposals.iter().any(|p| !a.proposals.contains(p))
}

/// One shadow plugin generation's hosts: which hooks currently differ per host.
#[derive(Default)]
struct PluginHosts {
    generation: String,
    /// machine id → bit per hook whose latest decision differs (never 0: such hosts are removed).
    differing: HashMap<String, u8>,
    disagreements: u64,
}

/// Per shadow plugin, the hosts it currently disagrees on. See the module docs.
#[derive(Default)]
pub struct ShadowTracker {
    plugins: Mutex<HashMap<String, PluginHosts>>,
}

/// A plugin's shadow counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowCounts {
    /// Hosts whose latest decision differs now.
    pub hosts_differing: u64,
    /// Agreeing-to-differing transitions of hosts.
    pub disagreements: u64,
}

fn bit(hook: Hook) -> u8 {
    match hook {
        Hook::Init => 1,
        Hook::Configure => 2,
        Hook::SelectRules => 4,
        Hook::Triage => 8,
        Hook::Review => 16,
    }
}

impl ShadowTracker {
    /// Records the latest `hook` decision of shadow plugin `plugin` (`generation`) for
    /// `machine_id`. A host that starts to differ is counted, logged once, and reported to
    /// `manager` (its status and metrics show the same number).
    #[allow(clippy::too_many_arguments)]
    pub fn note(
        &self,
        manager: &PluginManager,
        plugin: &str,
        generation: &str,
        hook: Hook,
        machine_id: &str,
        differs: bool,
        decision: Option<&serde_json::Value>,
    ) {
        let started = {
            let mut map = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(plugin.to_owned()).or_default();
            if entry.generation != generation {
                *entry = PluginHosts { generation: generation.to_owned(), ..PluginHosts::default() };
            }
            let before = entry.differing.get(machine_id).copied().unwrap_or(0);
            let after = if differs { before | bit(hook) } else { before & !bit(hook) };
            if after == 0 {
                entry.differing.remove(machine_id);
            } else if before != 0 || entry.differing.len() < SHADOW_HOSTS_TRACKED {
                entry.differing.insert(machine_id.to_owned(), after);
            } else {
                return;
            }
            let started = before == 0 && after != 0;
            if started {
                entry.disagreements += 1;
            }
            started
        };
        if started {
            manager.note_shadow_disagreement(plugin, generation);
            let decision = decision.map(|d| d.to_string()).unwrap_or_default();
            tracing::info!(plugin, hook = %hook, machine_id, "shadow plugin would decide differently for this host: {decision}");
        }
    }

    /// Counters per plugin (its current generation).
    pub fn counts(&self) -> BTreeMap<String, ShadowCounts> {
        let map = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(p, h)| {
                (p.clone(), ShadowCounts { hosts_differing: h.differing.len() as u64, disagreements: h.disagreements })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::{Action, Severity};

    #[test]
    fn config_differs_only_on_set_fields_with_other_values() {
        let applied = serde_json::json!({"client_mode": "MONITOR", "batch_size": 50});
        assert!(!config_differs(&serde_json::json!({"client_mode": "MONITOR", "batch_size": null}), &applied));
        assert!(config_differs(&serde_json::json!({"batch_size": 7}), &applied));
        assert!(config_differs(&serde_json::json!({"block_usb_mount": true}), &applied));
    }

    #[test]
    fn verdicts_differ_only_on_opinions_not_applied() {
        let applied = Verdict {
            action: Some(Action::Keep),
            labels: vec!["a".into(), "b".into()],
            severity: Some(Severity::High),
            ..Verdict::on(1)
        };
        let same = Verdict { labels: vec!["b".into()], ..Verdict::on(1) };
        assert!(!verdict_differs(&same, Some(&applied)));
        assert!(!verdict_differs(&Verdict::on(1), None), "no opinion never differs");
        assert!(verdict_differs(&Verdict { action: Some(Action::Drop), ..Verdict::on(1) }, Some(&applied)));
        assert!(verdict_differs(&Verdict { labels: vec!["c".into()], ..Verdict::on(1) }, Some(&applied)));
        assert!(verdict_differs(&same, None), "an opinion on an event nobody else judged");
    }
}
