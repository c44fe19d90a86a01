//! The `review` hook: whenever a rule proposal is created or raised (a triage proposal, a
//! user's approval request), the review plugins decide it — approve with a scope, reject, or
//! leave it for an admin.
//!
//! The input ([`ReviewInput`]) is built here from the store: the proposal, every request kept
//! for it, prevalence, the binary's signer and the block rules already covering it. A
//! decision is carried out by the same approval code as the admin API
//! ([`crate::proposals::approve`] / [`crate::proposals::reject`]) and recorded with the
//! plugin generations as approver (`plugin:NAME@GENERATION`). An approval into another scope
//! or of another rule than proposed (say, a `TEAMID` rule fleet-wide, or the requesting hosts'
//! own sets) is recorded as a proposal per target, created and approved at once; the original
//! stays pending unless it is one of the targets.
//!
//! Must never: approve a proposal an admin decided (decided proposals are not reviewed, and
//! a target proposal already decided is left alone), or fail the triage or request that
//! raised the proposal because a plugin failed (a failed review is no decision).

use crate::policy::{PolicyEngine, Reviewed};
use crate::proposals::{self, ReviewError, check_target};
use dasher_sdk::domain::{GLOBAL_RULE_SET, RuleKey, RuleSpec, host_rule_set};
use dasher_sdk::plugin::{
    self, ApprovalScope, BlockingRule, Prevalence, ProposalFacts, ProposalRequest, RequestSource, ReviewInput,
    ReviewVerdict, SignerFacts,
};
use dasher_sdk::wire::{Policy, RuleType};
use dasher_store::{NewProposal, PluginRef, Proposal, ProposalScope, ProposalStatus, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// Requesting hosts whose selected rule sets are searched for block rules, and most host sets
/// one approval with the `hosts` scope writes.
pub const MAX_REVIEW_HOSTS: usize = 100;
/// Rule sets searched for block rules per review.
const MAX_BLOCK_SETS: usize = 256;
/// Approved proposals looked through to tell an admin's block rule from a proposal's.
const MAX_APPROVED_SCANNED: usize = 1000;

/// Who a plugin decision is recorded as decided by.
pub fn approver(by: &[PluginRef]) -> String {
    by.iter().map(|r| format!("plugin:{}@{}", r.plugin, r.generation)).collect::<Vec<_>>().join(", ")
}

/// Reviews pending proposal `id` with the policy's review plugins and carries out their
/// decision. No plugin reviewing, a failed plugin or `leave`: nothing happens.
pub async fn review(store: &dyn Store, policy: &dyn PolicyEngine, id: u64, now: i64) -> Result<(), StoreError> {
    let Some(p) = store.get_proposal(id).await? else { return Ok(()) };
    if p.status != ProposalStatus::Pending {
        return Ok(());
    }
    let input = review_input(store, &p, now).await?;
    let Some(reviewed) = policy.review(&input).await else { return Ok(()) };
    match carry_out(store, &p, &input, &reviewed, now).await {
        Ok(()) => Ok(()),
        Err(ReviewError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(id, by = %approver(&reviewed.by), error = %e, "review decision not carried out");
            Ok(())
        }
    }
}

/// What the review plugins see.
pub async fn review_input(store: &dyn Store, p: &Proposal, now: i64) -> Result<ReviewInput, StoreError> {
    let requests: Vec<ProposalRequest> = store
        .proposal_requests(p.id)
        .await?
        .into_iter()
        .map(|r| ProposalRequest {
            source: match r.source {
                dasher_store::RequestSource::Triage => RequestSource::Triage,
                dasher_store::RequestSource::User => RequestSource::User,
            },
            machine_id: r.machine_id,
            user: r.user.unwrap_or_default(),
            reason: r.justification,
            at_unix: r.at_unix,
        })
        .collect();
    let mut input = ReviewInput { proposal: facts(p), requests, now_unix: now, ..ReviewInput::default() };
    let hosts: BTreeSet<&str> =
        p.hosts.iter().map(String::as_str).chain(input.requests.iter().map(|r| r.machine_id.as_str())).collect();
    let mut prevalence =
        Prevalence { hosts: hosts.len() as u64, users: input.users().len() as u64, ..Default::default() };
    if p.key.rule_type == RuleType::Binary
        && let Some(b) = store.get_binary(&p.key.identifier).await?
    {
        prevalence.binary_events = b.events;
        prevalence.binary_hosts = b.hosts;
        let leaf = b.signer.as_ref().and_then(|s| s.chain.first());
        input.signer = Some(SignerFacts {
            file_sha256: b.sha256.clone(),
            file_name: b.names.first().map(|n| n.file_name.clone()).unwrap_or_default(),
            file_bundle_id: String::new(),
            team_id: b.signer.as_ref().map(|s| s.team_id.clone()).unwrap_or_default(),
            signing_id: b.signer.as_ref().map(|s| s.signing_id.clone()).unwrap_or_default(),
            cdhash: b.signer.as_ref().map(|s| s.cdhash.clone()).unwrap_or_default(),
            certificate_sha256: leaf.map(|c| c.sha256.clone()).unwrap_or_default(),
            certificate_cn: leaf.map(|c| c.cn.clone()).unwrap_or_default(),
        });
    }
    input.prevalence = prevalence;
    input.blocking_rules = blocking_rules(store, p, &input).await?;
    Ok(input)
}

fn facts(p: &Proposal) -> ProposalFacts {
    ProposalFacts {
        id: p.id,
        scope: match p.scope {
            ProposalScope::Host => plugin::ProposalScope::Host,
            ProposalScope::RuleSet => plugin::ProposalScope::RuleSet { name: p.rule_set.clone() },
            ProposalScope::Global => plugin::ProposalScope::Global,
        },
        rule_set: p.rule_set.clone(),
        rule: p.rule.clone(),
        reason: p.reason.clone(),
        count: p.count,
        hosts: p.hosts.clone(),
        first_seen_unix: p.first_seen_unix,
        last_seen_unix: p.last_seen_unix,
    }
}

/// Identities a rule could match the binary by: the proposal's own key and the signer's.
fn candidate_keys(p: &Proposal, signer: Option<&SignerFacts>) -> Vec<RuleKey> {
    let mut keys = vec![p.key.clone()];
    if let Some(s) = signer {
        for (rule_type, id) in [
            (RuleType::Binary, &s.file_sha256),
            (RuleType::TeamId, &s.team_id),
            (RuleType::SigningId, &s.signing_id),
            (RuleType::Certificate, &s.certificate_sha256),
            (RuleType::CdHash, &s.cdhash),
        ] {
            if let Ok(identifier) = dasher_sdk::domain::validate_identifier(rule_type, id) {
                let key = RuleKey { rule_type, identifier };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// Block rules covering the binary in `global`, the proposal's set and every requesting
/// host's own set and last acknowledged selection (bounded), each marked with the approved
/// proposal that committed it, if one did.
async fn blocking_rules(store: &dyn Store, p: &Proposal, input: &ReviewInput) -> Result<Vec<BlockingRule>, StoreError> {
    let mut sets: Vec<String> = vec![GLOBAL_RULE_SET.to_owned(), p.rule_set.clone()];
    let hosts: BTreeSet<&str> =
        p.hosts.iter().map(String::as_str).chain(input.requests.iter().map(|r| r.machine_id.as_str())).collect();
    for machine_id in hosts.into_iter().take(MAX_REVIEW_HOSTS) {
        sets.push(host_rule_set(machine_id));
        if let Some(host) = store.get_host(machine_id).await?
            && let Some(acked) = host.sync.acked
        {
            sets.extend(acked.rule_sets);
        }
    }
    let mut seen = BTreeSet::new();
    sets.retain(|s| seen.insert(s.clone()));
    sets.truncate(MAX_BLOCK_SETS);
    let keys = candidate_keys(p, input.signer.as_ref());
    let head = store.head_version().await?;
    let mut found = vec![];
    for set in &sets {
        for rule in store.get_rules(set, &keys, head).await?.into_iter().flatten() {
            if matches!(
                rule.policy,
                Policy::Blocklist | Policy::SilentBlocklist | Policy::SilentGuiBlocklist | Policy::SilentTtyBlocklist
            ) {
                found.push((set.clone(), rule.key()));
            }
        }
    }
    if found.is_empty() {
        return Ok(vec![]);
    }
    let mut by_proposal: BTreeMap<(String, RuleKey), u64> = BTreeMap::new();
    let mut before = None;
    while by_proposal.len() < MAX_APPROVED_SCANNED {
        let page = store.list_proposals(Some(ProposalStatus::Approved), before, 200).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for a in &page {
            if matches!(
                a.rule.policy,
                Policy::Blocklist | Policy::SilentBlocklist | Policy::SilentGuiBlocklist | Policy::SilentTtyBlocklist
            ) {
                by_proposal.insert((a.rule_set.clone(), a.key.clone()), a.id);
            }
        }
        if page.len() < 200 {
            break;
        }
    }
    Ok(found
        .into_iter()
        .map(|(rule_set, key)| BlockingRule {
            by_proposal: by_proposal.get(&(rule_set.clone(), key.clone())).copied(),
            rule_set,
            rule_type: key.rule_type.to_string(),
            identifier: key.identifier,
        })
        .collect())
}

/// Carries out a review decision through the admin API's approval code.
async fn carry_out(
    store: &dyn Store,
    p: &Proposal,
    input: &ReviewInput,
    reviewed: &Reviewed,
    now: i64,
) -> Result<(), ReviewError> {
    let by = approver(&reviewed.by);
    let d = &reviewed.decision;
    match d.decision {
        ReviewVerdict::Leave => Ok(()),
        ReviewVerdict::Reject => {
            proposals::reject(store, p.id, &by, now).await?;
            tracing::info!(id = p.id, by = %by, reason = %d.reason, "proposal rejected by a review plugin");
            Ok(())
        }
        ReviewVerdict::Approve => {
            let rule = d.rule.clone().unwrap_or_else(|| p.rule.clone());
            let (key, _) = rule.validate().map_err(|e| ReviewError::InvalidRule {
                id: p.id,
                field: format!("rule.{}", e.field()),
                message: e.to_string(),
            })?;
            for (scope, rule_set, machine_id) in targets(p, input, d.scope.clone().unwrap_or_default()) {
                check_target(scope, &rule_set).map_err(|e| ReviewError::InvalidRule {
                    id: p.id,
                    field: "scope".into(),
                    message: e.to_string(),
                })?;
                let target = if rule_set == p.rule_set && key == p.key {
                    p.id
                } else {
                    derived(store, p, &rule, &key, scope, &rule_set, &machine_id, &reviewed.by, &d.reason, now).await?
                };
                match proposals::approve(store, target, &by, &proposals::ApproveScope::Proposed, now).await {
                    Ok(a) => {
                        tracing::info!(id = a.id, from = p.id, rule_set = %a.rule_set, by = %by, reason = %d.reason, "proposal approved by a review plugin")
                    }
                    // Already decided (an earlier review, or an admin): left as it is.
                    Err(ReviewError::AlreadyDecided { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

/// The `(scope, rule set, machine id)` targets of an approval.
fn targets(p: &Proposal, input: &ReviewInput, scope: ApprovalScope) -> Vec<(ProposalScope, String, String)> {
    let first_host = p.hosts.first().cloned().unwrap_or_default();
    match scope {
        ApprovalScope::AsProposed => vec![(p.scope, p.rule_set.clone(), first_host)],
        ApprovalScope::Global => vec![(ProposalScope::Global, GLOBAL_RULE_SET.to_owned(), first_host)],
        ApprovalScope::RuleSet { name } => vec![(ProposalScope::RuleSet, name, first_host)],
        ApprovalScope::Hosts => {
            let users = input.requesting_hosts();
            let hosts: Vec<&str> = if users.is_empty() { p.hosts.iter().map(String::as_str).collect() } else { users };
            hosts
                .into_iter()
                .take(MAX_REVIEW_HOSTS)
                .map(|h| (ProposalScope::Host, host_rule_set(h), h.to_owned()))
                .collect()
        }
    }
}

/// Records (or finds) the proposal for `rule` in `rule_set`, raised by the review of `p`.
#[allow(clippy::too_many_arguments)]
async fn derived(
    store: &dyn Store,
    p: &Proposal,
    rule: &RuleSpec,
    key: &RuleKey,
    scope: ProposalScope,
    rule_set: &str,
    machine_id: &str,
    by: &[PluginRef],
    reason: &str,
    now: i64,
) -> Result<u64, ReviewError> {
    let new = NewProposal {
        scope,
        rule_set: rule_set.to_owned(),
        key: key.clone(),
        rule: rule.clone(),
        reason: format!("review of proposal {}: {reason}", p.id),
        machine_id: machine_id.to_owned(),
        proposed_by: by.to_vec(),
        at_unix: now,
    };
    let (stored, _) = store.record_proposal(&new).await?;
    Ok(stored.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approver_names_every_generation() {
        let by = [PluginRef { plugin: "approval-voting".into(), generation: "abc".into() }];
        assert_eq!(approver(&by), "plugin:approval-voting@abc");
    }
}
