//! Rule proposals on PostgreSQL: one row per `(rule set, rule key)` (unique), with the
//! counters, hosts and review state as columns and an index on `(status, id)` for listing.
//!
//! Owns the proposal lifecycle across replicas: a repeat locks the row (`FOR UPDATE`) before
//! bumping it, so concurrent repeats all count; a decision locks the row, so a second
//! concurrent decision waits and then sees the first; an approval commits its rule change
//! through [`rules::commit_in`] in the same transaction as the status change.
//!
//! Requests are rows of `dasher_proposal_requests` `(proposal id, seq)`, written under the
//! same row lock as the counters (the first [`MAX_PROPOSAL_REQUESTS`]; `requests` counts all).
//!
//! Must never: create a second row for a `(rule set, key)`, mark a proposal approved in a
//! transaction that did not commit its rule change, or allocate a rule version outside the
//! `head` row lock.

use super::{Client, limit, pg_err, rules, to_i64, to_u64, utf8};
use crate::{
    DecideOutcome, MAX_PROPOSAL_HOSTS, MAX_PROPOSAL_REQUESTS, NewProposal, PluginRef, Proposal, ProposalDecision,
    ProposalRequest, ProposalScope, ProposalStatus, Result, StoreError,
};
use dasher_sdk::domain::RuleKey;
use dasher_sdk::wire::{RuleType, WireEnum};
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

const COLUMNS: &str = "id, rule_set, rule_type, identifier, scope, rule, reason, status, count, hosts, proposed_by,
     first_seen_unix, last_seen_unix, decided_by, decided_at_unix, applied_version, requests, applied_rule_set";

fn status_name(s: ProposalStatus) -> &'static str {
    match s {
        ProposalStatus::Pending => "pending",
        ProposalStatus::Approved => "approved",
        ProposalStatus::Rejected => "rejected",
    }
}

fn scope_name(s: ProposalScope) -> &'static str {
    match s {
        ProposalScope::Host => "host",
        ProposalScope::RuleSet => "rule_set",
        ProposalScope::Global => "global",
    }
}

fn corrupt(id: i64, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { key: format!("dasher_proposals id {id}"), detail: detail.into() }
}

fn from_row(row: &Row) -> Result<Proposal> {
    let id: i64 = row.get("id");
    let status = match row.get::<_, &str>("status") {
        "pending" => ProposalStatus::Pending,
        "approved" => ProposalStatus::Approved,
        "rejected" => ProposalStatus::Rejected,
        other => return Err(corrupt(id, format!("unknown status {other:?}"))),
    };
    let scope = match row.get::<_, &str>("scope") {
        "host" => ProposalScope::Host,
        "rule_set" => ProposalScope::RuleSet,
        "global" => ProposalScope::Global,
        other => return Err(corrupt(id, format!("unknown scope {other:?}"))),
    };
    let rule_type = row.get::<_, i32>("rule_type");
    let rule_type =
        RuleType::from_number(rule_type).ok_or_else(|| corrupt(id, format!("unknown rule type {rule_type}")))?;
    let Json(rule) = row.try_get("rule").map_err(|e| corrupt(id, e.to_string()))?;
    let Json(proposed_by) =
        row.try_get::<_, Json<Vec<PluginRef>>>("proposed_by").map_err(|e| corrupt(id, e.to_string()))?;
    let hosts = row
        .get::<_, Vec<Vec<u8>>>("hosts")
        .into_iter()
        .map(|h| utf8("dasher_proposals.hosts", h))
        .collect::<Result<Vec<String>>>()?;
    Ok(Proposal {
        id: to_u64("dasher_proposals.id", id)?,
        scope,
        rule_set: utf8("dasher_proposals.rule_set", row.get("rule_set"))?,
        key: RuleKey { rule_type, identifier: utf8("dasher_proposals.identifier", row.get("identifier"))? },
        rule,
        reason: utf8("dasher_proposals.reason", row.get("reason"))?,
        status,
        count: to_u64("dasher_proposals.count", row.get("count"))?,
        hosts,
        proposed_by,
        first_seen_unix: row.get("first_seen_unix"),
        last_seen_unix: row.get("last_seen_unix"),
        decided_by: row
            .get::<_, Option<Vec<u8>>>("decided_by")
            .map(|b| utf8("dasher_proposals.decided_by", b))
            .transpose()?,
        decided_at_unix: row.get("decided_at_unix"),
        applied_version: row
            .get::<_, Option<i64>>("applied_version")
            .map(|v| to_u64("dasher_proposals.applied_version", v))
            .transpose()?,
        applied_rule_set: row
            .get::<_, Option<Vec<u8>>>("applied_rule_set")
            .map(|b| utf8("dasher_proposals.applied_rule_set", b))
            .transpose()?,
        requests: to_u64("dasher_proposals.requests", row.get("requests"))?,
    })
}

/// The row of `(rule_set, key)`, locked for update.
async fn lock_by_key(tx: &deadpool_postgres::Transaction<'_>, p: &NewProposal) -> Result<Option<Proposal>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM dasher_proposals
             WHERE rule_set = $1 AND rule_type = $2 AND identifier = $3 FOR UPDATE"
        ))
        .await
        .map_err(pg_err)?;
    let row = tx
        .query_opt(&stmt, &[&p.rule_set.as_bytes(), &p.key.rule_type.number(), &p.key.identifier.as_bytes()])
        .await
        .map_err(pg_err)?;
    row.as_ref().map(from_row).transpose()
}

/// Keeps `request` as the proposal's next request if fewer than [`MAX_PROPOSAL_REQUESTS`]
/// are kept (the caller stores the bumped `requests` count).
async fn keep_request(tx: &deadpool_postgres::Transaction<'_>, p: &Proposal, request: &ProposalRequest) -> Result<()> {
    if p.requests >= MAX_PROPOSAL_REQUESTS as u64 {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached("INSERT INTO dasher_proposal_requests (proposal_id, seq, request) VALUES ($1, $2, $3)")
        .await
        .map_err(pg_err)?;
    let seq = p.requests as i32;
    tx.execute(&stmt, &[&to_i64("proposal id", p.id)?, &seq, &Json(request)]).await.map_err(pg_err)?;
    Ok(())
}

pub(super) async fn requests(client: &Client, id: u64) -> Result<Vec<ProposalRequest>> {
    let Ok(id) = i64::try_from(id) else { return Ok(Vec::new()) };
    let stmt = client
        .prepare_cached("SELECT request FROM dasher_proposal_requests WHERE proposal_id = $1 ORDER BY seq LIMIT $2")
        .await
        .map_err(pg_err)?;
    let rows = client.query(&stmt, &[&id, &limit(MAX_PROPOSAL_REQUESTS)]).await.map_err(pg_err)?;
    rows.iter()
        .map(|r| r.try_get::<_, Json<ProposalRequest>>(0).map(|Json(q)| q).map_err(|e| corrupt(id, e.to_string())))
        .collect()
}

pub(super) async fn record(
    client: &mut Client,
    p: &NewProposal,
    request: &ProposalRequest,
) -> Result<(Proposal, bool)> {
    let tx = client.transaction().await.map_err(pg_err)?;
    // A repeat is the common case: look first, so repeats do not burn ids.
    let existing = match lock_by_key(&tx, p).await? {
        Some(stored) => Some(stored),
        None => {
            let hosts: Vec<&[u8]> = if p.machine_id.is_empty() { Vec::new() } else { vec![p.machine_id.as_bytes()] };
            let insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO dasher_proposals (rule_set, rule_type, identifier, scope, rule, reason, status,
                         count, hosts, proposed_by, first_seen_unix, last_seen_unix)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 1, $7, $8, $9, $9)
                     ON CONFLICT (rule_set, rule_type, identifier) DO NOTHING
                     RETURNING {COLUMNS}"
                ))
                .await
                .map_err(pg_err)?;
            let params: [&(dyn ToSql + Sync); 9] = [
                &p.rule_set.as_bytes(),
                &p.key.rule_type.number(),
                &p.key.identifier.as_bytes(),
                &scope_name(p.scope),
                &Json(&p.rule),
                &p.reason.as_bytes(),
                &hosts,
                &Json(&p.proposed_by),
                &p.at_unix,
            ];
            if let Some(row) = tx.query_opt(&insert, &params).await.map_err(pg_err)? {
                let mut created = from_row(&row)?;
                keep_request(&tx, &created, request).await?;
                created.requests += 1;
                let bump = tx
                    .prepare_cached("UPDATE dasher_proposals SET requests = $2 WHERE id = $1")
                    .await
                    .map_err(pg_err)?;
                tx.execute(&bump, &[&to_i64("proposal id", created.id)?, &to_i64("requests", created.requests)?])
                    .await
                    .map_err(pg_err)?;
                tx.commit().await.map_err(pg_err)?;
                return Ok((created, true));
            }
            // Another replica created it after our look (the insert waited for it): a repeat.
            Some(lock_by_key(&tx, p).await?.ok_or_else(|| {
                StoreError::Engine(format!("proposal for {} {:?} conflicted but is not there", p.rule_set, p.key))
            })?)
        }
    };
    let mut stored = existing.expect("set above");
    stored.count += 1;
    stored.last_seen_unix = stored.last_seen_unix.max(p.at_unix);
    if !p.reason.is_empty() {
        stored.reason = p.reason.clone();
    }
    if !p.machine_id.is_empty() && stored.hosts.len() < MAX_PROPOSAL_HOSTS && !stored.hosts.contains(&p.machine_id) {
        stored.hosts.push(p.machine_id.clone());
    }
    for by in &p.proposed_by {
        if !stored.proposed_by.contains(by) {
            stored.proposed_by.push(by.clone());
        }
    }
    keep_request(&tx, &stored, request).await?;
    stored.requests += 1;
    let hosts: Vec<&[u8]> = stored.hosts.iter().map(|h| h.as_bytes()).collect();
    let update = tx
        .prepare_cached(
            "UPDATE dasher_proposals SET count = $2, last_seen_unix = $3, reason = $4, hosts = $5, proposed_by = $6,
                 requests = $7
             WHERE id = $1",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(
        &update,
        &[
            &to_i64("proposal id", stored.id)?,
            &to_i64("proposal count", stored.count)?,
            &stored.last_seen_unix,
            &stored.reason.as_bytes(),
            &hosts,
            &Json(&stored.proposed_by),
            &to_i64("proposal requests", stored.requests)?,
        ],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok((stored, false))
}

pub(super) async fn get(client: &Client, id: u64) -> Result<Option<Proposal>> {
    let Ok(id) = i64::try_from(id) else { return Ok(None) };
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM dasher_proposals WHERE id = $1"))
        .await
        .map_err(pg_err)?;
    client.query_opt(&stmt, &[&id]).await.map_err(pg_err)?.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    client: &Client,
    status: Option<ProposalStatus>,
    before_id: Option<u64>,
    limit: usize,
) -> Result<Vec<Proposal>> {
    if limit == 0 || before_id == Some(0) {
        return Ok(Vec::new());
    }
    let before = before_id.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let rows = match status {
        Some(s) => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM dasher_proposals WHERE status = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&status_name(s), &before, &self::limit(limit)]).await
        }
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM dasher_proposals WHERE id < $1 ORDER BY id DESC LIMIT $2"
                ))
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&before, &self::limit(limit)]).await
        }
    }
    .map_err(pg_err)?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn decide(client: &mut Client, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome> {
    let Ok(row_id) = i64::try_from(id) else { return Ok(DecideOutcome::NotFound) };
    let tx = client.transaction().await.map_err(pg_err)?;
    // The row lock makes a concurrent decision (on any replica) wait, then see this one.
    let lock = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM dasher_proposals WHERE id = $1 FOR UPDATE"))
        .await
        .map_err(pg_err)?;
    let Some(row) = tx.query_opt(&lock, &[&row_id]).await.map_err(pg_err)? else {
        return Ok(DecideOutcome::NotFound);
    };
    let mut p = from_row(&row)?;
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
            // Same transaction, same head-row lock as every rule commit.
            p.applied_version = Some(rules::commit_in(&tx, std::slice::from_ref(change.as_ref())).await?);
            p.applied_rule_set = Some(change.rule_set.clone());
            (ProposalStatus::Approved, by, at_unix)
        }
        ProposalDecision::Reject { by, at_unix } => (ProposalStatus::Rejected, by, at_unix),
    };
    p.status = status;
    p.decided_by = Some(by.clone());
    p.decided_at_unix = Some(*at);
    let applied = p.applied_version.map(|v| to_i64("rule version", v)).transpose()?;
    let update = tx
        .prepare_cached(
            "UPDATE dasher_proposals SET status = $2, decided_by = $3, decided_at_unix = $4, applied_version = $5,
             applied_rule_set = $6 WHERE id = $1",
        )
        .await
        .map_err(pg_err)?;
    let applied_set = p.applied_rule_set.as_deref().map(str::as_bytes);
    tx.execute(&update, &[&row_id, &status_name(status), &by.as_bytes(), at, &applied, &applied_set])
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(DecideOutcome::Decided(p))
}
