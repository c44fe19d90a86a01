//! Event triage with prevalence: drops known noise (allowed platform binaries and allowed
//! binaries from `noise_team_ids`), labels every block with its vendor Team ID, and — for a
//! binary signed by an approved Team ID — proposes an allow rule once it has been blocked on
//! `propose_after_hosts` distinct hosts. Prevalence lives in the plugin's kv namespace, so it
//! survives reloads and restarts; it is counted with the atomic kv operations
//! (`kv::compare_and_swap`, `kv::increment`), so concurrent syncs never lose a host.
//!
//! ```toml
//! [plugins.plugin.event-triage.settings]
//! approved_team_ids = ["EQHXZ8M8AV", "UBF8T346G9"]
//! propose_after_hosts = 3
//! proposal_rule_set = "approved-vendors"   # omit for the global set
//! ```

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventTriage {
    /// Team IDs whose blocked binaries may be proposed for allowing.
    pub approved_team_ids: Vec<String>,
    /// Distinct hosts a binary must be blocked on before the proposal (K).
    pub propose_after_hosts: u32,
    /// Rule set for proposals; `None` = global.
    pub proposal_rule_set: Option<String>,
    /// Allowed executions from these Team IDs are noise too.
    pub noise_team_ids: Vec<String>,
}

impl Default for EventTriage {
    fn default() -> Self {
        EventTriage {
            approved_team_ids: vec![],
            propose_after_hosts: 3,
            proposal_rule_set: None,
            noise_team_ids: vec![],
        }
    }
}

impl Validate for EventTriage {
    fn validate(&self) -> Result<()> {
        if self.propose_after_hosts == 0 || self.propose_after_hosts > 1000 {
            return Err(PluginError::new("propose_after_hosts must be between 1 and 1000"));
        }
        match self.approved_team_ids.iter().find(|t| t.len() != 10 || !t.chars().all(|c| c.is_ascii_alphanumeric())) {
            Some(bad) => Err(PluginError::new(format!("{bad:?} is not a Team ID"))),
            None => Ok(()),
        }
    }
}

impl EventTriage {
    fn judge(&self, host: &HostFacts, e: &EventFacts) -> Result<Option<Verdict>> {
        if !e.is_block() {
            let noise = e.is_platform() || (!e.team_id.is_empty() && self.noise_team_ids.contains(&e.team_id));
            return Ok(noise.then(|| Verdict { action: Some(Action::Drop), ..Verdict::on(e.id) }));
        }
        let mut v = Verdict { action: Some(Action::Keep), ..Verdict::on(e.id) };
        if e.team_id.is_empty() {
            v.labels.push("unsigned".into());
            v.severity = Some(Severity::High);
            return Ok(Some(v));
        }
        v.labels.push(format!("team:{}", e.team_id));
        v.severity = Some(Severity::Medium);
        if self.approved_team_ids.contains(&e.team_id) {
            v.labels.push("approved-vendor".into());
            if let Some(p) = self.count_and_maybe_propose(host, e)? {
                v.proposals.push(p);
            }
        }
        Ok(Some(v))
    }

    /// Counts this host once among the binary's blocking hosts; proposes once at K hosts.
    ///
    /// Two hosts' syncs triage at the same time, so the count uses the atomic kv operations:
    /// `seen:<id>:<machine>` is created with compare-and-swap (only the first call for a host
    /// creates it) and only that call increments `hosts:<id>`. Each atomic operation is a
    /// durable store write, so they are spent once per new host, not per event. Both are kept if the call later
    /// fails, so a retried batch does not count its host twice. The `proposed:<id>` marker is
    /// a buffered `set` on purpose: if the call fails, the proposal it carried is lost, and so
    /// is the marker, so a later event proposes again.
    fn count_and_maybe_propose(&self, host: &HostFacts, e: &EventFacts) -> Result<Option<RuleProposal>> {
        let (rule_type, identifier) = if !e.signing_id.is_empty() {
            (RuleType::SigningId, e.signing_id.clone())
        } else if !e.file_sha256.is_empty() {
            (RuleType::Binary, e.file_sha256.clone())
        } else {
            return Ok(None);
        };
        let proposed_key = format!("proposed:{identifier}");
        if kv::get(&proposed_key).is_some() {
            return Ok(None);
        }
        let count_key = format!("hosts:{identifier}");
        let seen_key = format!("seen:{identifier}:{}", host.machine_id);
        // A plain read first: a host blocked again (the common case) costs no store write.
        let first_time = kv::get(&seen_key).is_none() && kv::compare_and_swap(&seen_key, None, Some(b"1"))?;
        let hosts = if first_time { kv::increment(&count_key, 1)? } else { kv::get_counter(&count_key)? };
        if hosts < i64::from(self.propose_after_hosts) {
            return Ok(None);
        }
        kv::set(&proposed_key, b"1")?;
        log::info(&format!("proposing allow rule for {identifier} after {hosts} hosts"));
        let scope = match &self.proposal_rule_set {
            Some(name) => ProposalScope::RuleSet { name: name.clone() },
            None => ProposalScope::Global,
        };
        Ok(Some(RuleProposal {
            scope,
            rule: RuleSpec::allow(rule_type, identifier),
            reason: format!("blocked on {hosts} hosts; signed by approved Team ID {}", e.team_id),
        }))
    }
}

impl Triage for EventTriage {
    fn triage(&self, batch: &EventBatch) -> Result<Verdicts> {
        let mut verdicts = vec![];
        for e in &batch.events {
            if let Some(v) = self.judge(&batch.host, e)? {
                verdicts.push(v);
            }
        }
        Ok(Verdicts { verdicts })
    }
}

dasher_sdk::export_plugin!(EventTriage, hooks: [Triage, Validate]);

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::testing::Harness;

    fn event(id: u64, decision: &str, team: &str, signing_id: &str) -> EventFacts {
        EventFacts {
            id,
            decision: decision.into(),
            team_id: team.into(),
            signing_id: signing_id.into(),
            file_sha256: "ab".repeat(32),
            ..Default::default()
        }
    }

    fn batch(machine: &str, events: Vec<EventFacts>) -> EventBatch {
        EventBatch { host: HostFacts { machine_id: machine.into(), ..Default::default() }, events }
    }

    fn harness() -> Harness<EventTriage> {
        Harness::with_validated_settings(r#"{"approved_team_ids":["EQHXZ8M8AV"],"propose_after_hosts":2}"#).unwrap()
    }

    #[test]
    fn platform_noise_is_dropped_and_blocks_labelled() {
        let v = harness()
            .triage(&batch(
                "m1",
                vec![
                    event(1, "ALLOW_BINARY", "", "platform:com.apple.ls"),
                    event(2, "BLOCK_UNKNOWN", "ZMCG7MLDV9", "ZMCG7MLDV9:com.x"),
                    event(3, "BLOCK_UNKNOWN", "", ""),
                    event(4, "ALLOW_UNKNOWN", "ZMCG7MLDV9", "ZMCG7MLDV9:com.x"),
                ],
            ))
            .unwrap();
        assert_eq!(v.get(1).unwrap().action, Some(Action::Drop));
        assert_eq!(v.get(2).unwrap().labels, vec!["team:ZMCG7MLDV9"]);
        assert_eq!(v.get(3).unwrap().severity, Some(Severity::High));
        assert!(v.get(4).is_none(), "no opinion on ordinary allowed executions");
    }

    #[test]
    fn proposes_after_k_distinct_hosts_once() {
        kv::native_clear();
        let h = harness();
        let e = || vec![event(7, "BLOCK_UNKNOWN", "EQHXZ8M8AV", "EQHXZ8M8AV:com.vendor.app")];
        assert!(h.triage(&batch("m1", e())).unwrap().verdicts[0].proposals.is_empty());
        assert!(h.triage(&batch("m1", e())).unwrap().verdicts[0].proposals.is_empty(), "same host twice counts once");
        let v = h.triage(&batch("m2", e())).unwrap();
        let p = &v.verdicts[0].proposals[0];
        assert_eq!(p.rule.identifier, "EQHXZ8M8AV:com.vendor.app");
        assert_eq!(p.scope, ProposalScope::Global);
        assert!(h.triage(&batch("m3", e())).unwrap().verdicts[0].proposals.is_empty(), "proposed only once");
    }

    #[test]
    fn bad_team_id_rejected() {
        assert!(Harness::<EventTriage>::with_validated_settings(r#"{"approved_team_ids":["nope"]}"#).is_err());
    }
}
