//! Rule proposals from triage: intake (resolve the scope to a rule set, validate, store
//! de-duplicated, auto-apply where the config allows) and review (approve, reject).
//!
//! An approval validates the rule with `RuleSpec::validate` and commits it through the
//! store's rule commit (a new rule version in the change log), so hosts receive it by their
//! next delta sync like any admin rule. The reviewer may choose where an approval goes
//! ([`ApproveScope`]): the proposal's own rule set, or one host's set, a tag's set or
//! `global` instead; the proposal records the set it was applied to. Must never: apply a
//! proposal whose scope is not in `auto_apply_proposals` without an admin, or decide a
//! proposal twice.

use crate::policy::PolicyEngine;
use dasher_sdk::domain::{GLOBAL_RULE_SET, RuleError, host_rule_set};
use dasher_sdk::names::{NameError, RuleSetName};
use dasher_sdk::plugin::{self, RuleProposal};
use dasher_store::{
    DecideOutcome, NewProposal, PluginRef, Proposal, ProposalDecision, ProposalScope, ProposalStatus, RuleChange,
    Store, StoreError,
};
use serde::{Deserialize, Serialize};

/// Who auto-applied proposals are recorded as decided by.
pub const AUTO_APPLY_BY: &str = "auto-apply";

/// Why a review decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No proposal with that id.
    #[error("no proposal {0}")]
    NotFound(u64),
    /// The proposal was approved or rejected before.
    #[error("proposal {id} was already {status} by {by}; a decided proposal cannot be {verb}")]
    AlreadyDecided {
        /// Proposal id.
        id: u64,
        /// Its status (`approved` / `rejected`).
        status: &'static str,
        /// Who decided it.
        by: String,
        /// What was attempted (`approved` / `rejected`).
        verb: &'static str,
    },
    /// The proposed rule (or its rule set) does not validate.
    #[error("proposal {id} cannot be applied: {message}")]
    InvalidRule {
        /// Proposal id.
        id: u64,
        /// The offending field of the rule.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The scope chosen for an approval names no valid rule set.
    #[error("{message}")]
    BadScope {
        /// The offending field (`scope`).
        field: String,
        /// What is wrong and what to use instead.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an approval commits a proposal's rule. JSON (the admin API's `"scope"`):
/// `"proposed"` (the default), `"global"`, `{"host": "<machine id>"}` or
/// `{"rule_set": "<name>"}` (a set tags select; never a host's own set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApproveScope {
    /// The proposal's own rule set (what triage proposed).
    #[default]
    Proposed,
    /// One host's own set, `host:<machine id>`.
    Host(String),
    /// A named rule set, selected by the tag of the same name.
    RuleSet(String),
    /// The `global` set every host gets.
    Global,
}

impl ApproveScope {
    /// The rule set this scope writes for proposal `p`, checked: a host scope must name a
    /// valid machine id, a rule-set scope a selectable set.
    pub fn target(&self, p: &Proposal) -> Result<String, ReviewError> {
        let bad = |message: String| ReviewError::BadScope { field: "scope".into(), message };
        match self {
            ApproveScope::Proposed => {
                check_target(p.scope, &p.rule_set).map_err(|e| ReviewError::InvalidRule {
                    id: p.id,
                    field: "rule_set".into(),
                    message: e.to_string(),
                })?;
                Ok(p.rule_set.clone())
            }
            ApproveScope::Host(machine_id) => {
                let set = host_rule_set(machine_id);
                check_target(ProposalScope::Host, &set).map_err(|e| bad(format!("host scope: {e}")))?;
                Ok(set)
            }
            ApproveScope::RuleSet(name) => {
                check_target(ProposalScope::RuleSet, name).map_err(|e| bad(format!("rule_set scope: {e}")))?;
                Ok(name.clone())
            }
            ApproveScope::Global => Ok(GLOBAL_RULE_SET.to_owned()),
        }
    }
}

fn status_name(s: ProposalStatus) -> &'static str {
    match s {
        ProposalStatus::Pending => "pending",
        ProposalStatus::Approved => "approved",
        ProposalStatus::Rejected => "rejected",
    }
}

/// Checks the target set of a proposal for its scope: a host scope writes that host's own
/// set, a rule-set scope names a set that tags and selections may select (never a host's).
pub fn check_target(scope: ProposalScope, rule_set: &str) -> Result<(), NameError> {
    match scope {
        ProposalScope::Host => RuleSetName::writable(rule_set).map(|_| ()),
        ProposalScope::RuleSet | ProposalScope::Global => RuleSetName::selectable(rule_set).map(|_| ()),
    }
}

/// The stored scope and target rule set of a plugin's proposal from `machine_id`'s events.
pub fn resolve_scope(scope: &plugin::ProposalScope, machine_id: &str) -> (ProposalScope, String) {
    match scope {
        plugin::ProposalScope::Host => (ProposalScope::Host, host_rule_set(machine_id)),
        plugin::ProposalScope::RuleSet { name } => (ProposalScope::RuleSet, name.clone()),
        plugin::ProposalScope::Global => (ProposalScope::Global, GLOBAL_RULE_SET.to_owned()),
    }
}

/// Stores one proposal occurrence; applies it at once if it is pending and its scope is in
/// `auto_apply`, else hands it to the `review` hook ([`crate::review`]). A proposal with an
/// invalid rule or rule-set name is logged and dropped (it could never be approved).
pub async fn intake(
    store: &dyn Store,
    policy: &dyn PolicyEngine,
    machine_id: &str,
    p: &RuleProposal,
    made_by: &[PluginRef],
    auto_apply: &[ProposalScope],
    now: i64,
) -> Result<(), StoreError> {
    let (scope, rule_set) = resolve_scope(&p.scope, machine_id);
    if let Err(e) = check_target(scope, &rule_set) {
        tracing::warn!(machine_id, error = %e, "proposal for an invalid rule set ignored");
        return Ok(());
    }
    let key = match p.rule.validate() {
        Ok((key, _)) => key,
        Err(e) => {
            tracing::warn!(machine_id, error = %e, "proposal with an invalid rule ignored");
            return Ok(());
        }
    };
    let new = NewProposal {
        scope,
        rule_set,
        key,
        rule: p.rule.clone(),
        reason: p.reason.clone(),
        machine_id: machine_id.to_owned(),
        proposed_by: made_by.to_vec(),
        at_unix: now,
    };
    let (stored, created) = store.record_proposal(&new).await?;
    if created {
        tracing::info!(id = stored.id, rule_set = %stored.rule_set, identifier = %stored.key.identifier, "rule proposed");
    }
    if stored.status == ProposalStatus::Pending && auto_apply.contains(&stored.scope) {
        match approve(store, stored.id, AUTO_APPLY_BY, &ApproveScope::Proposed, now).await {
            Ok(p) => tracing::info!(id = p.id, version = ?p.applied_version, "proposal auto-applied"),
            Err(ReviewError::Store(e)) => return Err(e),
            Err(e) => tracing::warn!(id = stored.id, error = %e, "proposal not auto-applied"),
        }
    } else if stored.status == ProposalStatus::Pending {
        crate::review::review(store, policy, stored.id, now).await?;
    }
    Ok(())
}

/// Records an end user's request to allow the binary `sha256` blocked on `machine_id`: it
/// raises the binary's global allow proposal (one proposal per binary collects every
/// request, whichever host it came from; the approval chooses the scope), then the `review`
/// hook decides it if it is pending. The caller validated the inputs.
pub async fn user_request(
    store: &dyn Store,
    policy: &dyn PolicyEngine,
    machine_id: &str,
    sha256: &str,
    user: Option<&str>,
    justification: &str,
    now: i64,
) -> Result<Proposal, StoreError> {
    let rule = dasher_sdk::domain::RuleSpec::allow(dasher_sdk::wire::RuleType::Binary, sha256);
    let key = dasher_sdk::domain::RuleKey {
        rule_type: dasher_sdk::wire::RuleType::Binary,
        identifier: sha256.to_ascii_lowercase(),
    };
    let new = NewProposal {
        scope: ProposalScope::Global,
        rule_set: GLOBAL_RULE_SET.to_owned(),
        key,
        rule,
        reason: "requested by a user".into(),
        machine_id: machine_id.to_owned(),
        proposed_by: vec![],
        at_unix: now,
    };
    let (stored, created) = store.record_user_request(&new, user, justification).await?;
    if created {
        tracing::info!(id = stored.id, machine_id, "approval requested by a user");
    }
    if stored.status == ProposalStatus::Pending {
        crate::review::review(store, policy, stored.id, now).await?;
    }
    Ok(store.get_proposal(stored.id).await?.unwrap_or(stored))
}

fn already(p: &Proposal, verb: &'static str) -> ReviewError {
    ReviewError::AlreadyDecided {
        id: p.id,
        status: status_name(p.status),
        by: p.decided_by.clone().unwrap_or_default(),
        verb,
    }
}

/// Approves a pending proposal: validates its rule and commits it into the rule set `scope`
/// names (its own by default) in the same write that marks it approved.
pub async fn approve(
    store: &dyn Store,
    id: u64,
    by: &str,
    scope: &ApproveScope,
    now: i64,
) -> Result<Proposal, ReviewError> {
    let p = store.get_proposal(id).await?.ok_or(ReviewError::NotFound(id))?;
    if p.status != ProposalStatus::Pending {
        return Err(already(&p, "approved"));
    }
    let rule_set = scope.target(&p)?;
    let (key, rule) = p.rule.validate().map_err(|e: RuleError| ReviewError::InvalidRule {
        id,
        field: format!("rule.{}", e.field()),
        message: e.to_string(),
    })?;
    let change = RuleChange { rule_set, key, rule };
    let decision = ProposalDecision::Approve { by: by.to_owned(), at_unix: now, change: Box::new(change) };
    match store.decide_proposal(id, &decision).await? {
        DecideOutcome::Decided(p) => Ok(p),
        DecideOutcome::NotFound => Err(ReviewError::NotFound(id)),
        DecideOutcome::AlreadyDecided(p) => Err(already(&p, "approved")),
    }
}

/// Rejects a pending proposal; nothing is committed.
pub async fn reject(store: &dyn Store, id: u64, by: &str, now: i64) -> Result<Proposal, ReviewError> {
    let decision = ProposalDecision::Reject { by: by.to_owned(), at_unix: now };
    match store.decide_proposal(id, &decision).await? {
        DecideOutcome::Decided(p) => Ok(p),
        DecideOutcome::NotFound => Err(ReviewError::NotFound(id)),
        DecideOutcome::AlreadyDecided(p) => Err(already(&p, "rejected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::domain::{RuleKey, RuleSpec};
    use dasher_sdk::wire::{Policy, RuleType};
    use std::sync::Arc;

    fn policy() -> crate::policy::ConfigPolicy {
        crate::policy::ConfigPolicy::new(crate::config::Config::default())
    }

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("redb:{}", dir.path().join("db").display()).parse().unwrap();
        (dir, dasher_store::open(&spec).unwrap())
    }

    fn proposal(scope: plugin::ProposalScope, identifier: &str) -> RuleProposal {
        RuleProposal { scope, rule: RuleSpec::allow(RuleType::SigningId, identifier), reason: "test".into() }
    }

    #[tokio::test]
    async fn host_scope_resolves_to_the_hosts_set_and_auto_applies_only_when_allowed() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let host = plugin::ProposalScope::Host;
        intake(s, &policy(), "m1", &proposal(host.clone(), "EQHXZ8M8AV:com.a"), &[], &[ProposalScope::Host], 10)
            .await
            .unwrap();
        intake(s, &policy(), "m1", &proposal(host.clone(), "EQHXZ8M8AV:com.b"), &[], &[ProposalScope::Global], 10)
            .await
            .unwrap();
        let all = s.list_proposals(None, None, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        let (b, a) = (&all[0], &all[1]);
        assert_eq!((a.scope, a.rule_set.as_str()), (ProposalScope::Host, "host:m1"));
        assert_eq!((a.status, a.decided_by.as_deref()), (ProposalStatus::Approved, Some(AUTO_APPLY_BY)));
        let head = s.head_version().await.unwrap();
        assert!(s.get_rule("host:m1", &a.key, head).await.unwrap().is_some(), "auto-applied into the host's set");
        assert_eq!(b.status, ProposalStatus::Pending, "host scope not allowed by that config");
        assert!(s.get_rule("host:m1", &b.key, head).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn invalid_proposals_are_ignored_and_review_errors_are_typed() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let bad_set = plugin::ProposalScope::RuleSet { name: "../etc".into() };
        intake(s, &policy(), "m1", &proposal(bad_set, "EQHXZ8M8AV:com.a"), &[], &[], 1).await.unwrap();
        intake(s, &policy(), "m1", &proposal(plugin::ProposalScope::Global, "not a signing id"), &[], &[], 1)
            .await
            .unwrap();
        assert!(s.list_proposals(None, None, 10).await.unwrap().is_empty(), "nothing stored");
        assert!(matches!(approve(s, 7, "a", &ApproveScope::Proposed, 1).await, Err(ReviewError::NotFound(7))));
        intake(s, &policy(), "m1", &proposal(plugin::ProposalScope::Global, "EQHXZ8M8AV:com.a"), &[], &[], 1)
            .await
            .unwrap();
        let id = s.list_proposals(None, None, 1).await.unwrap()[0].id;
        reject(s, id, "bob", 2).await.unwrap();
        let err = approve(s, id, "alice", &ApproveScope::Global, 3).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("proposal {id} was already rejected by bob; a decided proposal cannot be approved")
        );
    }

    #[tokio::test]
    async fn an_approval_goes_where_the_reviewer_chose_and_bad_scopes_are_refused() {
        let (_dir, store) = store();
        let s = store.as_ref();
        for (i, id) in ["EQHXZ8M8AV:com.a", "EQHXZ8M8AV:com.b", "EQHXZ8M8AV:com.c"].iter().enumerate() {
            intake(s, &policy(), "m1", &proposal(plugin::ProposalScope::Host, id), &[], &[], i as i64).await.unwrap();
        }
        let ids: Vec<u64> = s.list_proposals(None, None, 10).await.unwrap().iter().rev().map(|p| p.id).collect();
        for (bad, field_text) in [
            (ApproveScope::RuleSet("host:m2".into()), "selected for that host only"),
            (ApproveScope::RuleSet("plugin-host:m1".into()), "reserved"),
            (ApproveScope::Host("global".into()), "valid machine id"),
            (ApproveScope::RuleSet("a b".into()), "' '"),
        ] {
            match approve(s, ids[0], "alice", &bad, 5).await {
                Err(e @ ReviewError::BadScope { .. }) => assert!(e.to_string().contains(field_text), "{bad:?}: {e}"),
                other => panic!("{bad:?}: expected BadScope, got {other:?}"),
            }
        }
        assert_eq!(s.head_version().await.unwrap(), 0, "refused scopes commit nothing");
        let targets = [
            (ApproveScope::Host("m7".into()), "host:m7"),
            (ApproveScope::RuleSet("eng".into()), "eng"),
            (ApproveScope::Global, GLOBAL_RULE_SET),
        ];
        for (id, (scope, set)) in ids.iter().zip(targets) {
            let p = approve(s, *id, "alice", &scope, 6).await.unwrap();
            assert_eq!((p.rule_set.as_str(), p.applied_rule_set.as_deref()), ("host:m1", Some(set)));
            let at = p.applied_version.unwrap();
            assert!(s.get_rule(set, &p.key, at).await.unwrap().is_some(), "{set} holds the rule");
            assert!(s.get_rule("host:m1", &p.key, at).await.unwrap().is_none(), "not the proposed set");
        }
    }

    #[tokio::test]
    async fn a_proposal_whose_cel_does_not_compile_is_never_stored_or_applied() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let cel = |expr: &str| {
            let mut p = proposal(plugin::ProposalScope::Global, "EQHXZ8M8AV:com.a");
            p.rule.policy = Policy::Cel;
            p.rule.cel_expr = Some(expr.into());
            p
        };
        intake(s, &policy(), "m1", &cel("this is ((( not cel"), &[], &[ProposalScope::Global], 1).await.unwrap();
        intake(s, &policy(), "m1", &cel("uid == 0"), &[], &[ProposalScope::Global], 1).await.unwrap();
        assert!(s.list_proposals(None, None, 10).await.unwrap().is_empty(), "nothing stored");
        assert_eq!(s.head_version().await.unwrap(), 0, "nothing applied");

        // One stored before the check existed is refused at approval, naming the field.
        let stored = NewProposal {
            scope: ProposalScope::Global,
            rule_set: GLOBAL_RULE_SET.into(),
            key: RuleKey { rule_type: RuleType::SigningId, identifier: "EQHXZ8M8AV:com.a".into() },
            rule: cel("euid == 'root'").rule,
            reason: "old".into(),
            machine_id: "m1".into(),
            proposed_by: vec![],
            at_unix: 1,
        };
        let (p, _) = s.record_proposal(&stored).await.unwrap();
        match approve(s, p.id, "alice", &ApproveScope::Proposed, 2).await {
            Err(ReviewError::InvalidRule { field, message, .. }) => {
                assert_eq!(field, "rule.cel_expr");
                assert!(message.contains("line 1, column 6"), "{message}");
            }
            other => panic!("expected InvalidRule, got {other:?}"),
        }
        assert_eq!(s.head_version().await.unwrap(), 0);
    }
}
