//! Rule proposals: one record per `(rule set, rule key)` under `pp id`, the de-duplication
//! index `pk set type identifier` → id, the status index `pq status id` (newest-first
//! listing by status), and the kept requests `pr id seq` → request JSON (the first
//! [`MAX_PROPOSAL_REQUESTS`]). Ids come from `m:pseq`.
//!
//! Must never: create a second record for a `(rule set, key)` that has one, leave a status
//! index entry that disagrees with the record, or mark a proposal approved without its rule
//! change committed in the same job (the change goes through `rules::commit`, the path every
//! rule commit takes).

use super::hosts::decode;
use super::keys::{self, META_PROPOSAL_SEQ, PROPOSAL, PROPOSAL_BY_STATUS, PROPOSAL_KEY, PROPOSAL_REQUEST};
use super::rules;
use super::writer::Txn;
use crate::kv::{Direction, KvEngine};
use crate::{
    DecideOutcome, MAX_PROPOSAL_HOSTS, MAX_PROPOSAL_REQUESTS, NewProposal, Proposal, ProposalDecision, ProposalRequest,
    ProposalStatus, Result, StoreError,
};
use dasher_sdk::domain::RuleKey;
use std::ops::Bound;

fn status_byte(s: ProposalStatus) -> u8 {
    match s {
        ProposalStatus::Pending => b'p',
        ProposalStatus::Approved => b'a',
        ProposalStatus::Rejected => b'r',
    }
}

fn status_key(s: ProposalStatus, id: u64) -> Vec<u8> {
    let mut k = PROPOSAL_BY_STATUS.to_vec();
    k.push(status_byte(s));
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn dedupe_key(rule_set: &str, key: &RuleKey) -> Vec<u8> {
    let mut k = PROPOSAL_KEY.to_vec();
    keys::push_str(&mut k, rule_set);
    keys::push_rule_key(&mut k, key);
    k
}

fn json(p: &Proposal) -> Vec<u8> {
    serde_json::to_vec(p).expect("proposals serialise to JSON")
}

fn load_txn<E: KvEngine>(txn: &Txn<'_, E>, id: u64) -> Result<Option<Proposal>> {
    let k = keys::proposal_key(id);
    txn.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

/// `pr id seq`: one kept request of a proposal.
fn request_key(id: u64, seq: u64) -> Vec<u8> {
    let mut k = keys::key(PROPOSAL_REQUEST, &id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Records an occurrence (see [`raise`]) and keeps `request` if fewer than
/// [`MAX_PROPOSAL_REQUESTS`] are kept; `requests` counts it either way.
pub(super) fn record<E: KvEngine>(
    txn: &mut Txn<'_, E>,
    p: &NewProposal,
    request: &ProposalRequest,
) -> Result<(Proposal, bool)> {
    let (mut stored, created) = raise(txn, p)?;
    if stored.requests < MAX_PROPOSAL_REQUESTS as u64 {
        txn.put(request_key(stored.id, stored.requests), serde_json::to_vec(request).expect("requests serialise"));
    }
    stored.requests += 1;
    txn.put(keys::proposal_key(stored.id), json(&stored));
    Ok((stored, created))
}

pub(super) fn requests<E: KvEngine>(engine: &E, id: u64) -> Result<Vec<ProposalRequest>> {
    let start = keys::key(PROPOSAL_REQUEST, &id.to_be_bytes());
    let end = keys::prefix_end(&start).expect("prefix has a successor");
    let rows = engine.scan_collect(
        (Bound::Included(&start), Bound::Excluded(&end)),
        Direction::Forward,
        MAX_PROPOSAL_REQUESTS,
    )?;
    rows.iter().map(|(k, v)| decode(k, v)).collect()
}

/// Creates or bumps the proposal of `(p.rule_set, p.key)`; the caller writes the record.
fn raise<E: KvEngine>(txn: &mut Txn<'_, E>, p: &NewProposal) -> Result<(Proposal, bool)> {
    let dk = dedupe_key(&p.rule_set, &p.key);
    if let Some(v) = txn.get(&dk)? {
        let id = keys::read_u64(&dk, &v)?;
        let mut stored = load_txn(txn, id)?.ok_or_else(|| keys::corrupt(&dk, "points at a missing proposal"))?;
        stored.count += 1;
        stored.last_seen_unix = stored.last_seen_unix.max(p.at_unix);
        if !p.reason.is_empty() {
            stored.reason = p.reason.clone();
        }
        if !p.machine_id.is_empty() && stored.hosts.len() < MAX_PROPOSAL_HOSTS && !stored.hosts.contains(&p.machine_id)
        {
            stored.hosts.push(p.machine_id.clone());
        }
        for by in &p.proposed_by {
            if !stored.proposed_by.contains(by) {
                stored.proposed_by.push(by.clone());
            }
        }
        return Ok((stored, false));
    }
    let id = txn.get_u64(META_PROPOSAL_SEQ)? + 1;
    let created = Proposal {
        id,
        scope: p.scope,
        rule_set: p.rule_set.clone(),
        key: p.key.clone(),
        rule: p.rule.clone(),
        reason: p.reason.clone(),
        status: ProposalStatus::Pending,
        count: 1,
        hosts: if p.machine_id.is_empty() { vec![] } else { vec![p.machine_id.clone()] },
        proposed_by: p.proposed_by.clone(),
        first_seen_unix: p.at_unix,
        last_seen_unix: p.at_unix,
        decided_by: None,
        decided_at_unix: None,
        applied_version: None,
        applied_rule_set: None,
        requests: 0,
    };
    txn.put_u64(META_PROPOSAL_SEQ, id);
    txn.put(dk, keys::u64_value(id));
    txn.put(status_key(ProposalStatus::Pending, id), Vec::new());
    Ok((created, true))
}

pub(super) fn get<E: KvEngine>(engine: &E, id: u64) -> Result<Option<Proposal>> {
    let k = keys::proposal_key(id);
    engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

pub(super) fn list<E: KvEngine>(
    engine: &E,
    status: Option<ProposalStatus>,
    before_id: Option<u64>,
    limit: usize,
) -> Result<Vec<Proposal>> {
    if limit == 0 || before_id == Some(0) {
        return Ok(Vec::new());
    }
    let prefix = match status {
        Some(s) => {
            let mut p = PROPOSAL_BY_STATUS.to_vec();
            p.push(status_byte(s));
            p
        }
        None => PROPOSAL.to_vec(),
    };
    let end = match before_id {
        Some(b) => keys::key(&prefix, &b.to_be_bytes()),
        None => keys::prefix_end(&prefix).expect("prefix has a successor"),
    };
    let ids = engine.scan_collect((Bound::Included(&prefix), Bound::Excluded(&end)), Direction::Reverse, limit)?;
    let mut out = Vec::with_capacity(ids.len());
    for (k, _) in ids {
        let id = keys::trailing_u64(&k).ok_or_else(|| keys::corrupt(&k, "short proposal key"))?;
        // A status entry whose record moved on (read between two commits cannot happen:
        // both change in one batch) would be a bug; skip rather than mislabel.
        match get(engine, id)? {
            Some(p) if status.is_none_or(|s| s == p.status) => out.push(p),
            _ => {}
        }
    }
    Ok(out)
}

pub(super) fn decide<E: KvEngine>(txn: &mut Txn<'_, E>, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome> {
    let Some(mut p) = load_txn(txn, id)? else { return Ok(DecideOutcome::NotFound) };
    if p.status != ProposalStatus::Pending {
        return Ok(DecideOutcome::AlreadyDecided(p));
    }
    let (status, by, at) = match decision {
        ProposalDecision::Approve { by, at_unix, change } => {
            if change.key != p.key {
                return Err(StoreError::Engine(format!(
                    "approval of proposal {id} carries a change for {:?}, not {:?}",
                    change.key, p.key
                )));
            }
            p.applied_version = Some(rules::commit(txn, std::slice::from_ref(change.as_ref()))?);
            p.applied_rule_set = Some(change.rule_set.clone());
            (ProposalStatus::Approved, by, at_unix)
        }
        ProposalDecision::Reject { by, at_unix } => (ProposalStatus::Rejected, by, at_unix),
    };
    txn.delete(status_key(ProposalStatus::Pending, id));
    txn.put(status_key(status, id), Vec::new());
    p.status = status;
    p.decided_by = Some(by.clone());
    p.decided_at_unix = Some(*at);
    txn.put(keys::proposal_key(id), json(&p));
    Ok(DecideOutcome::Decided(p))
}
