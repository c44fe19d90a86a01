//! How the outputs of several plugins combine, hook by hook. Plugins run in configured order
//! (`PluginsConfig::order`, then by name); **a later plugin refines an earlier one**.
//!
//! - `configure`: field by field, a later plugin's set field wins; unset fields never erase
//!   an earlier plugin's opinion (`ConfigDecision::fill_from`).
//! - `select-rules`: rule sets are unioned; a later plugin's sets come first (take
//!   precedence), then earlier plugins' sets not already listed. Host rules are unioned by
//!   rule key; for the same key the later plugin's rule wins. `None` from every plugin stays
//!   `None` (no opinion: the server's default selection applies).
//! - `triage`, per event: `keep` if any plugin says keep, else `drop` if any says drop (one
//!   plugin's interest is enough to keep an event visible); labels are unioned in order;
//!   severity is the highest; proposals are concatenated without duplicates.
//!
//! Shadow plugins never take part in a merge.

use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::{Action, SelectionDecision, Verdict, Verdicts};

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
    SelectionDecision { rule_sets, host_rules }
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
        let a = SelectionDecision { rule_sets: Some(vec!["a".into(), "shared".into()]), host_rules: None };
        let b = SelectionDecision { rule_sets: Some(vec!["shared".into(), "b".into()]), host_rules: None };
        assert_eq!(merge_selection(&a, &b).rule_sets.unwrap(), vec!["shared", "b", "a"]);
        let none = SelectionDecision::default();
        assert_eq!(merge_selection(&none, &none), none);
        assert_eq!(merge_selection(&a, &none).rule_sets, a.rule_sets);
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
