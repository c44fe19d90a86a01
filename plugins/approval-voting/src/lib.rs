//! Approval by votes, in the spirit of Upvote: end users ask for a blocked binary to be
//! allowed (the block page's request form); once `host_votes` distinct users asked, the
//! binary is allowed on the hosts they asked from (each host's own rule set); once
//! `global_votes` distinct users asked, its signer's Team ID is allowed fleet-wide (the
//! binary itself when it has no Team ID). Never over an admin's block rule: if a
//! `BLOCKLIST` rule an admin wrote (not one an approved proposal committed) covers the binary
//! on the requesting hosts or fleet-wide, the proposal is left for an admin.
//!
//! Only `BINARY` allow proposals are voted on; everything else is left for an admin.
//!
//! ```toml
//! [plugins.plugin.approval-voting.settings]
//! host_votes = 3      # N: distinct users to allow the binary on their hosts
//! global_votes = 10   # M: distinct users to allow its Team ID everywhere
//! ```

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Voting {
    /// Distinct requesting users that allow the binary on their hosts (N).
    pub host_votes: u32,
    /// Distinct requesting users that allow its Team ID fleet-wide (M).
    pub global_votes: u32,
}

impl Default for Voting {
    fn default() -> Self {
        Voting { host_votes: 3, global_votes: 10 }
    }
}

/// Most votes a setting may ask for (the server keeps the first 200 requests per proposal).
pub const MAX_VOTES: u32 = 200;

impl Validate for Voting {
    fn validate(&self) -> Result<()> {
        if self.host_votes == 0 || self.host_votes > MAX_VOTES {
            return Err(PluginError::new(format!("host_votes must be between 1 and {MAX_VOTES}")));
        }
        if self.global_votes < self.host_votes || self.global_votes > MAX_VOTES {
            return Err(PluginError::new(format!(
                "global_votes must be between host_votes ({}) and {MAX_VOTES}",
                self.host_votes
            )));
        }
        Ok(())
    }
}

impl Review for Voting {
    fn review(&self, input: &ReviewInput) -> Result<ReviewDecision> {
        let rule = &input.proposal.rule;
        if rule.rule_type != RuleType::Binary || rule.policy != Policy::Allowlist {
            return Ok(ReviewDecision::leave());
        }
        if input.blocked_by_admin() {
            let blocks = input.blocking_rules.iter().filter(|b| b.by_proposal.is_none()).count();
            log::info(&format!(
                "proposal {}: {blocks} admin block rule(s) cover {}; left for an admin",
                input.proposal.id, rule.identifier
            ));
            return Ok(ReviewDecision::leave());
        }
        let votes = input.users().len() as u32;
        if votes >= self.global_votes {
            let reason = format!("{votes} users asked (global threshold {})", self.global_votes);
            let team = input.signer.as_ref().map(|s| s.team_id.as_str()).unwrap_or_default();
            if team.is_empty() {
                return Ok(ReviewDecision::approve(ApprovalScope::Global, reason));
            }
            let team_rule = RuleSpec {
                identifier: team.to_owned(),
                rule_type: RuleType::TeamId,
                policy: Policy::Allowlist,
                custom_msg: None,
                custom_url: None,
                cel_expr: None,
                notification_app_name: None,
                event_detail_button_label: None,
                comment: None,
            };
            return Ok(ReviewDecision::approve(ApprovalScope::Global, reason).with_rule(team_rule));
        }
        if votes >= self.host_votes {
            let reason = format!("{votes} users asked (host threshold {})", self.host_votes);
            return Ok(ReviewDecision::approve(ApprovalScope::Hosts, reason));
        }
        Ok(ReviewDecision::leave())
    }
}

dasher_sdk::export_plugin!(Voting, hooks: [Review, Validate]);

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::testing::Harness;
    use dasher_sdk::plugin::{BlockingRule, ProposalFacts, ProposalRequest, SignerFacts};

    const SHA: &str = "5f1a8fb9b0f7c1f4f3f1b2a6c0d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7";

    fn input(users: &[(&str, &str)]) -> ReviewInput {
        let mut proposal = ProposalFacts { id: 7, rule_set: "global".into(), ..Default::default() };
        proposal.rule.identifier = SHA.into();
        proposal.rule.rule_type = RuleType::Binary;
        proposal.rule.policy = Policy::Allowlist;
        ReviewInput {
            proposal,
            requests: users
                .iter()
                .map(|(user, host)| ProposalRequest {
                    source: RequestSource::User,
                    machine_id: (*host).into(),
                    user: (*user).into(),
                    ..Default::default()
                })
                .collect(),
            signer: Some(SignerFacts { file_sha256: SHA.into(), team_id: "EQHXZ8M8AV".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    fn plugin() -> Harness<Voting> {
        Harness::with_validated_settings(r#"{"host_votes": 2, "global_votes": 3}"#).unwrap()
    }

    #[test]
    fn below_n_distinct_users_is_left_for_an_admin() {
        let d = plugin().review(&input(&[("alice", "m1"), ("alice", "m2")])).unwrap();
        assert_eq!(d, ReviewDecision::leave(), "one user asking twice is one vote");
    }

    #[test]
    fn n_users_approve_the_binary_on_their_hosts() {
        let d = plugin().review(&input(&[("alice", "m1"), ("bob", "m2")])).unwrap();
        assert_eq!(d.decision, ReviewVerdict::Approve);
        assert_eq!(d.scope, Some(ApprovalScope::Hosts));
        assert_eq!(d.rule, None, "the binary as proposed");
    }

    #[test]
    fn m_users_approve_the_team_id_fleet_wide() {
        let d = plugin().review(&input(&[("alice", "m1"), ("bob", "m2"), ("carol", "m2")])).unwrap();
        assert_eq!(d.scope, Some(ApprovalScope::Global));
        let rule = d.rule.expect("a Team ID rule");
        assert_eq!((rule.rule_type, rule.identifier.as_str()), (RuleType::TeamId, "EQHXZ8M8AV"));
        let mut unsigned = input(&[("alice", "m1"), ("bob", "m2"), ("carol", "m2")]);
        unsigned.signer = None;
        let d = plugin().review(&unsigned).unwrap();
        assert_eq!((d.scope, d.rule), (Some(ApprovalScope::Global), None), "the binary itself when unsigned");
    }

    #[test]
    fn an_admin_block_rule_is_never_overridden_but_a_proposals_is_not_an_admins() {
        let mut blocked = input(&[("alice", "m1"), ("bob", "m2"), ("carol", "m3")]);
        let rule = BlockingRule {
            rule_set: "global".into(),
            rule_type: "TEAMID".into(),
            identifier: "EQHXZ8M8AV".into(),
            by_proposal: None,
        };
        blocked.blocking_rules = vec![rule.clone()];
        assert_eq!(plugin().review(&blocked).unwrap(), ReviewDecision::leave());
        blocked.blocking_rules = vec![BlockingRule { by_proposal: Some(3), ..rule }];
        assert_eq!(plugin().review(&blocked).unwrap().decision, ReviewVerdict::Approve);
    }

    #[test]
    fn only_binary_allow_proposals_are_voted_on() {
        let mut other = input(&[("alice", "m1"), ("bob", "m2"), ("carol", "m3")]);
        other.proposal.rule.policy = Policy::Blocklist;
        assert_eq!(plugin().review(&other).unwrap(), ReviewDecision::leave());
    }

    #[test]
    fn thresholds_are_validated_and_default_to_3_and_10() {
        let d = Harness::<Voting>::with_validated_settings("{}").unwrap();
        assert_eq!((d.plugin().host_votes, d.plugin().global_votes), (3, 10));
        for bad in [r#"{"host_votes": 0}"#, r#"{"host_votes": 5, "global_votes": 4}"#, r#"{"global_votes": 999}"#] {
            assert!(Harness::<Voting>::with_validated_settings(bad).is_err(), "{bad}");
        }
    }
}
