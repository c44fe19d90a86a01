//! How the outputs of several plugins combine, hook by hook. Plugins run in configured order
//! (`PluginsConfig::order`, then by name); **a later plugin refines an earlier one**.
//!
//! - `configure`: field by field, a later plugin's set field wins; unset fields never erase
//!   an earlier plugin's opinion (`ConfigDecision::fill_from`).
//! - `select-rules`: rule sets are unioned; a later plugin's sets come first (take
//!   precedence), then earlier plugins' sets not already listed. The merged `mode` is
//!   `replace` if any plugin that named rule sets replaces, else `add`. Host rules are unioned by
//!   rule key; for the same key the later plugin's rule wins. `None` from every plugin stays
//!   `None` (no opinion: the server's default selection applies).
//! - `review`: any `reject` wins, else any `approve` (the last approving plugin's scope and
//!   rule), else `leave`.
//! - `triage`, per event: `keep` if any plugin says keep, else `drop` if any says drop (one
//!   plugin's interest is enough to keep an event visible); labels are unioned in order;
//!   severity is the highest; proposals are concatenated without duplicates.
//!
//! Shadow plugins never take part in a merge.

use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::{Action, SelectionDecision, SelectionMode, Verdict, Verdicts};

/// Merges `later` over `acc`.
pub fn merge_config(acc: &ConfigDecision, later: &ConfigDecision) -> ConfigDecision {
    let mut out = later.clone();
    out.fill_from(acc);
    out
}

/// Merges `later` over `acc`.
pub fn merge_selection(acc: &SelectionDecision, later: &SelectionDecision) -> SelectionDecision {
    let rule_sets = match (&acc.rule_sets, &later.rule_sets) {
        (None, None) => None,
        (a, l) => {
            let mut out: Vec<String> = Vec::new();
            for s in l.iter().flatten().chain(a.iter().flatten()) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            Some(out)
        }
    };
    let host_rules = match (&acc.host_rules, &later.host_rules) {
        (None, None) => None,
        (a, l) => {
            let mut out = l.clone().unwrap_or_default();
            for r in a.iter().flatten() {
                if !out.iter().any(|o| o.rule_type == r.rule_type && o.identifier == r.identifier) {
                    out.push(r.clone());
                }
            }
            Some(out)
        }
    };
    // Replacing wins: once one plugin with rule sets drops the default selection, the others'
    // sets are added to its list, not to the default.
    let with_sets = |d: &SelectionDecision| d.rule_sets.is_some().then(|| d.selection_mode());
    let mode = match (with_sets(acc), with_sets(later)) {
        (Some(SelectionMode::Replace), _) | (_, Some(SelectionMode::Replace)) => Some(SelectionMode::Replace),
        (None, None) => None,
        _ => Some(SelectionMode::Add),
    };
    SelectionDecision { rule_sets, mode, host_rules }
}

/// Merges `later` into `acc`.
pub fn merge_verdicts(acc: &mut Verdicts, later: &Verdicts) {
    for v in &later.verdicts {
        let Some(cur) = acc.verdicts.iter_mut().find(|c| c.event_id == v.event_id) else {
            acc.verdicts.push(v.clone());
            continue;
        };
        merge_verdict(cur, v);
    }
}

fn merge_verdict(cur: &mut Verdict, v: &Verdict) {
    cur.action = match (cur.action, v.action) {
        (Some(Action::Keep), _) | (_, Some(Action::Keep)) => Some(Action::Keep),
        (Some(Action::Drop), _) | (_, Some(Action::Drop)) => Some(Action::Drop),
        _ => None,
    };
    for l in &v.labels {
        if !cur.labels.contains(l) {
            cur.labels.push(l.clone());
        }
    }
    cur.severity = cur.severity.max(v.severity);
    for p in &v.proposals {
        if !cur.proposals.contains(p) {
            cur.proposals.push(p.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::Severity;
    use dasher_sdk::wire::ClientMode;

    #[test]
    fn configure_later_set_fields_win_and_unset_fields_keep_earlier() {
        let a = ConfigDecision { client_mode: Some(ClientMode::Monitor), batch_size: Some(10), ..Default::default() };
        let b = ConfigDecision { client_mode: Some(ClientMode::Lockdown), ..Default::default() };
        let m = merge_config(&a, &b);
        assert_eq!(m.client_mode, Some(ClientMode::Lockdown));
        assert_eq!(m.batch_size, Some(10));
    }

    #[test]
    fn selection_unions_with_later_first() {
        let a = SelectionDecision { rule_sets: Some(vec!["a".into(), "shared".into()]), ..Default::default() };
        let b = SelectionDecision::adding(["shared", "b"]);
        let m = merge_selection(&a, &b);
        assert_eq!(m.rule_sets.unwrap(), vec!["shared", "b", "a"]);
        assert_eq!(m.mode, Some(SelectionMode::Add), "absent mode is add");
        let none = SelectionDecision::default();
        assert_eq!(merge_selection(&none, &none), none);
        assert_eq!(merge_selection(&a, &none).rule_sets, a.rule_sets);
    }

    #[test]
    fn one_replacing_plugin_makes_the_merged_selection_replace() {
        let add = SelectionDecision::adding(["a"]);
        let replace = SelectionDecision::replacing(["r"]);
        for (x, y) in [(&add, &replace), (&replace, &add)] {
            assert_eq!(merge_selection(x, y).mode, Some(SelectionMode::Replace));
        }
        // A replace without rule sets has no opinion and changes nothing.
        let empty_replace = SelectionDecision { mode: Some(SelectionMode::Replace), ..Default::default() };
        assert_eq!(merge_selection(&add, &empty_replace).mode, Some(SelectionMode::Add));
    }

    #[test]
    fn triage_keep_beats_drop_and_severity_is_max() {
        let mut acc = Verdicts {
            verdicts: vec![Verdict {
                event_id: 1,
                action: Some(Action::Drop),
                labels: vec!["x".into()],
                severity: Some(Severity::Low),
                proposals: vec![],
            }],
        };
        let later = Verdicts {
            verdicts: vec![
                Verdict {
                    event_id: 1,
                    action: Some(Action::Keep),
                    labels: vec!["y".into(), "x".into()],
                    severity: Some(Severity::High),
                    proposals: vec![],
                },
                Verdict { event_id: 2, action: Some(Action::Drop), ..Default::default() },
            ],
        };
        merge_verdicts(&mut acc, &later);
        assert_eq!(acc.verdicts[0].action, Some(Action::Keep));
        assert_eq!(acc.verdicts[0].labels, vec!["x", "y"]);
        assert_eq!(acc.verdicts[0].severity, Some(Severity::High));
        assert_eq!(acc.verdicts[1].action, Some(Action::Drop));
    }
}
