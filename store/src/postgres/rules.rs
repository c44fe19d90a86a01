//! Rule sets on PostgreSQL: history rows per (rule, version) with NULL tombstones, the change
//! log, per-set live counts and the `head`/`floor` rows of `dasher_meta`.
//!
//! Owns: version allocation. A commit locks the `head` row first (`FOR UPDATE`) and writes the
//! new version in the same transaction, so commits from any number of replicas are serialised,
//! versions are gap-free, and version `v` becomes visible only together with (and after) every
//! version below it. Reads check `head`/`floor` and read rows in one statement, i.e. one
//! snapshot.
//!
//! Must never: create a version for a commit that changes nothing, or read history in a
//! statement other than the one that checked the version against head and floor.

use super::{Client, limit, pg_err, to_i64, to_u64, utf8};
use crate::{ChangeEntry, ChangePos, Result, RuleChange, RuleSetInfo, StoreError};
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_sdk::wire::{RuleType, WireEnum};
use deadpool_postgres::Transaction;
use std::collections::HashMap;
use tokio_postgres::types::Json;

/// A `dasher_meta` counter (`head` or `floor`).
pub(super) async fn meta(client: &Client, name: &str) -> Result<u64> {
    let stmt = client.prepare_cached("SELECT value FROM dasher_meta WHERE name = $1").await.map_err(pg_err)?;
    let row = client.query_one(&stmt, &[&name]).await.map_err(pg_err)?;
    to_u64(name, row.get(0))
}

/// `at` checked against head and floor read in the same statement as the data.
fn check(head: i64, floor: i64, at: u64) -> Result<()> {
    let (head, floor) = (to_u64("head", head)?, to_u64("floor", floor)?);
    if at > head {
        return Err(StoreError::VersionInFuture { requested: at, head });
    }
    if at < floor {
        return Err(StoreError::VersionCompacted { requested: at, floor });
    }
    Ok(())
}

/// A version as a query bound (versions beyond bigint are in the future anyway).
fn bound(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn rule_type(n: i32) -> Result<RuleType> {
    RuleType::from_number(n).ok_or_else(|| StoreError::Corrupt {
        key: "dasher_rule_history.rule_type".into(),
        detail: format!("unknown rule type {n}"),
    })
}

pub(super) async fn commit(client: &mut Client, changes: &[RuleChange]) -> Result<u64> {
    check_changes(changes)?;
    if changes.is_empty() {
        return meta(client, "head").await;
    }
    let tx = client.transaction().await.map_err(pg_err)?;
    let version = commit_in(&tx, changes).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(version)
}

/// [`commit`] only while the head is `expected`: the head row is locked first, so no other
/// commit can move it between the check and the write.
pub(super) async fn commit_at(
    client: &mut Client,
    expected: u64,
    changes: &[RuleChange],
) -> Result<std::result::Result<u64, crate::HeadMoved>> {
    check_changes(changes)?;
    let tx = client.transaction().await.map_err(pg_err)?;
    let lock =
        tx.prepare_cached("SELECT value FROM dasher_meta WHERE name = 'head' FOR UPDATE").await.map_err(pg_err)?;
    let head = to_u64("head", tx.query_one(&lock, &[]).await.map_err(pg_err)?.get(0))?;
    if head != expected {
        return Ok(Err(crate::HeadMoved { expected, head }));
    }
    let version = if changes.is_empty() { head } else { commit_in(&tx, changes).await? };
    tx.commit().await.map_err(pg_err)?;
    Ok(Ok(version))
}

/// Every change carries a rule for its own key (or none).
fn check_changes(changes: &[RuleChange]) -> Result<()> {
    for change in changes {
        if let Some(rule) = &change.rule
            && rule.key() != change.key
        {
            return Err(StoreError::Engine(format!(
                "rule change for {:?} carries a rule for {:?}",
                change.key,
                rule.key()
            )));
        }
    }
    Ok(())
}

/// Applies `changes` as one new version inside `tx` (which the caller commits) and returns
/// it, or the head if nothing changes. Takes the `head` row lock first: every path that
/// creates a rule version goes through here.
pub(super) async fn commit_in(tx: &Transaction<'_>, changes: &[RuleChange]) -> Result<u64> {
    check_changes(changes)?;
    // The lock every commit takes first: commits run one at a time across all replicas.
    let lock =
        tx.prepare_cached("SELECT value FROM dasher_meta WHERE name = 'head' FOR UPDATE").await.map_err(pg_err)?;
    let head: i64 = tx.query_one(&lock, &[]).await.map_err(pg_err)?.get(0);
    let version = head + 1;

    // Current values of every key touched (newest history row; all are ≤ head under the lock).
    let sets: Vec<&[u8]> = changes.iter().map(|c| c.rule_set.as_bytes()).collect();
    let types: Vec<i32> = changes.iter().map(|c| c.key.rule_type.number()).collect();
    let idents: Vec<&[u8]> = changes.iter().map(|c| c.key.identifier.as_bytes()).collect();
    let current_stmt = tx
        .prepare_cached(
            "SELECT k.i, h.rule FROM unnest($1::bytea[], $2::int4[], $3::bytea[]) WITH ORDINALITY AS k(s, t, ident, i)
             LEFT JOIN LATERAL (SELECT rule FROM dasher_rule_history
                                WHERE rule_set = k.s AND rule_type = k.t AND identifier = k.ident
                                ORDER BY version DESC LIMIT 1) h ON true",
        )
        .await
        .map_err(pg_err)?;
    let rows = tx.query(&current_stmt, &[&sets, &types, &idents]).await.map_err(pg_err)?;
    let mut current: HashMap<(&str, &RuleKey), Option<Rule>> = HashMap::with_capacity(changes.len());
    for row in rows {
        let i: i64 = row.get(0);
        let change = usize::try_from(i - 1).ok().and_then(|i| changes.get(i)).ok_or_else(|| {
            StoreError::Engine(format!("PostgreSQL returned row {i} for {} rule changes", changes.len()))
        })?;
        let rule = row.get::<_, Option<Json<Rule>>>(1).map(|Json(r)| r);
        current.insert((change.rule_set.as_str(), &change.key), rule);
    }

    let mut history: HashMap<(&str, &RuleKey), Option<String>> = HashMap::new();
    let mut log: Vec<&RuleChange> = Vec::new();
    let mut deltas: HashMap<&str, i64> = HashMap::new();
    for change in changes {
        let slot = current.entry((change.rule_set.as_str(), &change.key)).or_default();
        if *slot == change.rule {
            continue;
        }
        let delta = i64::from(change.rule.is_some()) - i64::from(slot.is_some());
        *deltas.entry(change.rule_set.as_str()).or_default() += delta;
        slot.clone_from(&change.rule);
        let json = change.rule.as_ref().map(|r| serde_json::to_string(r).expect("rules serialise to JSON"));
        history.insert((change.rule_set.as_str(), &change.key), json);
        log.push(change);
    }
    if log.is_empty() {
        return to_u64("head", head);
    }
    u32::try_from(log.len()).map_err(|_| StoreError::Engine("more than 2^32 changes in one commit".into()))?;

    let (mut h_sets, mut h_types, mut h_idents, mut h_rules) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((set, key), rule) in &history {
        h_sets.push(set.as_bytes());
        h_types.push(key.rule_type.number());
        h_idents.push(key.identifier.as_bytes());
        h_rules.push(rule.as_deref());
    }
    let insert_history = tx
        .prepare_cached(
            "INSERT INTO dasher_rule_history (rule_set, rule_type, identifier, version, rule)
             SELECT s, t, ident, $5, r::json FROM unnest($1::bytea[], $2::int4[], $3::bytea[], $4::text[]) AS u(s, t, ident, r)",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(&insert_history, &[&h_sets, &h_types, &h_idents, &h_rules, &version]).await.map_err(pg_err)?;

    let seqs: Vec<i64> = (0..log.len() as i64).collect();
    let l_sets: Vec<&[u8]> = log.iter().map(|c| c.rule_set.as_bytes()).collect();
    let l_types: Vec<i32> = log.iter().map(|c| c.key.rule_type.number()).collect();
    let l_idents: Vec<&[u8]> = log.iter().map(|c| c.key.identifier.as_bytes()).collect();
    let insert_log = tx
        .prepare_cached(
            "INSERT INTO dasher_rule_log (version, seq, rule_set, rule_type, identifier)
             SELECT $1, seq, s, t, ident FROM unnest($2::int8[], $3::bytea[], $4::int4[], $5::bytea[]) AS u(seq, s, t, ident)",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(&insert_log, &[&version, &seqs, &l_sets, &l_types, &l_idents]).await.map_err(pg_err)?;

    let c_sets: Vec<&[u8]> = deltas.keys().map(|s| s.as_bytes()).collect();
    let c_deltas: Vec<i64> = deltas.values().copied().collect();
    let counts = tx
        .prepare_cached(
            "INSERT INTO dasher_rule_sets (name, rules) SELECT * FROM unnest($1::bytea[], $2::int8[])
             ON CONFLICT (name) DO UPDATE SET rules = dasher_rule_sets.rules + excluded.rules",
        )
        .await
        .map_err(pg_err)?;
    tx.execute(&counts, &[&c_sets, &c_deltas]).await.map_err(pg_err)?;

    let set_head = tx.prepare_cached("UPDATE dasher_meta SET value = $1 WHERE name = 'head'").await.map_err(pg_err)?;
    tx.execute(&set_head, &[&version]).await.map_err(pg_err)?;
    to_u64("head", version)
}

pub(super) async fn get(client: &Client, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>> {
    let stmt = client
        .prepare_cached(
            "SELECT (SELECT value FROM dasher_meta WHERE name = 'head'),
                    (SELECT value FROM dasher_meta WHERE name = 'floor'),
                    (SELECT rule FROM dasher_rule_history
                     WHERE rule_set = $1 AND rule_type = $2 AND identifier = $3 AND version <= $4
                     ORDER BY version DESC LIMIT 1)",
        )
        .await
        .map_err(pg_err)?;
    let row = client
        .query_one(&stmt, &[&rule_set.as_bytes(), &key.rule_type.number(), &key.identifier.as_bytes(), &bound(at)])
        .await
        .map_err(pg_err)?;
    check(row.get(0), row.get(1), at)?;
    Ok(row.get::<_, Option<Json<Rule>>>(2).map(|Json(r)| r))
}

pub(super) async fn scan(
    client: &Client,
    rule_set: &str,
    at: u64,
    after: Option<&RuleKey>,
    limit: usize,
) -> Result<Vec<Rule>> {
    // The newest row of each rule as of `at`, tombstones dropped, in RuleKey order (rule
    // type number, then identifier bytes), served by the (set, type, identifier, version
    // DESC) index.
    let sql = |after_clause: &str| {
        format!(
            "WITH m AS (SELECT (SELECT value FROM dasher_meta WHERE name = 'head') AS head,
                               (SELECT value FROM dasher_meta WHERE name = 'floor') AS floor)
             SELECT m.head, m.floor, r.rule FROM m LEFT JOIN LATERAL (
                 SELECT rule, rule_type, identifier FROM (
                     SELECT DISTINCT ON (rule_type, identifier) rule_type, identifier, rule
                     FROM dasher_rule_history
                     WHERE rule_set = $1 AND version <= $2 {after_clause}
                     ORDER BY rule_type, identifier, version DESC
                 ) latest WHERE rule IS NOT NULL ORDER BY rule_type, identifier LIMIT $3
             ) r ON true
             ORDER BY r.rule_type, r.identifier"
        )
    };
    let (set, at_bound, n) = (rule_set.as_bytes(), bound(at), super::limit(limit));
    let rows = match after {
        Some(k) => {
            let stmt = client.prepare_cached(&sql("AND (rule_type, identifier) > ($4, $5)")).await.map_err(pg_err)?;
            client.query(&stmt, &[&set, &at_bound, &n, &k.rule_type.number(), &k.identifier.as_bytes()]).await
        }
        None => {
            let stmt = client.prepare_cached(&sql("")).await.map_err(pg_err)?;
            client.query(&stmt, &[&set, &at_bound, &n]).await
        }
    }
    .map_err(pg_err)?;
    let first = rows.first().ok_or_else(|| StoreError::Engine("rule scan returned no row".into()))?;
    check(first.get(0), first.get(1), at)?;
    Ok(rows.iter().filter_map(|r| r.get::<_, Option<Json<Rule>>>(2)).map(|Json(r)| r).collect())
}

pub(super) async fn changes(client: &Client, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
    let stmt = client
        .prepare_cached(
            "SELECT f.floor, l.version, l.seq, l.rule_set, l.rule_type, l.identifier
             FROM (SELECT value AS floor FROM dasher_meta WHERE name = 'floor') f
             LEFT JOIN LATERAL (SELECT version, seq, rule_set, rule_type, identifier FROM dasher_rule_log
                                WHERE (version, seq) > ($1, $2) AND version <= $3
                                ORDER BY version, seq LIMIT $4) l ON true
             ORDER BY l.version, l.seq",
        )
        .await
        .map_err(pg_err)?;
    let rows = client
        .query(&stmt, &[&bound(after.version), &i64::from(after.seq), &bound(upto), &self::limit(limit)])
        .await
        .map_err(pg_err)?;
    let first = rows.first().ok_or_else(|| StoreError::Engine("change-log scan returned no row".into()))?;
    let floor = to_u64("floor", first.get(0))?;
    if floor > 0 && after.version.saturating_add(1) < floor {
        return Err(StoreError::VersionCompacted { requested: after.version, floor });
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(version) = row.get::<_, Option<i64>>(1) else { continue };
        let seq: i64 = row.get(2);
        let seq = u32::try_from(seq).map_err(|_| StoreError::Corrupt {
            key: format!("dasher_rule_log ({version}, {seq})"),
            detail: "sequence number out of range".into(),
        })?;
        out.push(ChangeEntry {
            pos: ChangePos { version: to_u64("dasher_rule_log.version", version)?, seq },
            rule_set: utf8("dasher_rule_log.rule_set", row.get(3))?,
            key: RuleKey {
                rule_type: rule_type(row.get(4))?,
                identifier: utf8("dasher_rule_log.identifier", row.get(5))?,
            },
        });
    }
    Ok(out)
}

pub(super) async fn sets(client: &Client) -> Result<Vec<RuleSetInfo>> {
    let stmt = client.prepare_cached("SELECT name, rules FROM dasher_rule_sets ORDER BY name").await.map_err(pg_err)?;
    client
        .query(&stmt, &[])
        .await
        .map_err(pg_err)?
        .into_iter()
        .map(|row| {
            Ok(RuleSetInfo { name: utf8("dasher_rule_sets.name", row.get(0))?, rules: to_u64("rules", row.get(1))? })
        })
        .collect()
}

/// Rule sets named after `after` (byte order, as `bytea` compares), at most `limit`.
pub(super) async fn sets_after(client: &Client, after: &[u8], limit: usize) -> Result<Vec<RuleSetInfo>> {
    let stmt = client
        .prepare_cached("SELECT name, rules FROM dasher_rule_sets WHERE name > $1 ORDER BY name LIMIT $2")
        .await
        .map_err(pg_err)?;
    client
        .query(&stmt, &[&after, &super::limit(limit)])
        .await
        .map_err(pg_err)?
        .into_iter()
        .map(|row| {
            Ok(RuleSetInfo { name: utf8("dasher_rule_sets.name", row.get(0))?, rules: to_u64("rules", row.get(1))? })
        })
        .collect()
}

/// Raises the floor and removes, in one transaction, the change log below `keep_from` and
/// every history row older than its rule's value as of `keep_from` (that value too if it is a
/// tombstone). Commits are not blocked (they lock `head`, this locks `floor`).
pub(super) async fn compact(client: &mut Client, keep_from: u64) -> Result<u64> {
    let tx = client.transaction().await.map_err(pg_err)?;
    let head: i64 =
        tx.query_one("SELECT value FROM dasher_meta WHERE name = 'head'", &[]).await.map_err(pg_err)?.get(0);
    let head = to_u64("head", head)?;
    if keep_from > head {
        return Err(StoreError::VersionInFuture { requested: keep_from, head });
    }
    let keep = to_i64("version", keep_from)?;
    let floor: i64 = tx
        .query_one("SELECT value FROM dasher_meta WHERE name = 'floor' FOR UPDATE", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if keep <= floor {
        return Ok(0);
    }
    tx.execute("UPDATE dasher_meta SET value = $1 WHERE name = 'floor'", &[&keep]).await.map_err(pg_err)?;
    let log = tx.execute("DELETE FROM dasher_rule_log WHERE version < $1", &[&keep]).await.map_err(pg_err)?;
    let history = tx
        .execute(
            "DELETE FROM dasher_rule_history h
             USING (SELECT rule_set, rule_type, identifier, max(version) AS v FROM dasher_rule_history
                    WHERE version <= $1 GROUP BY rule_set, rule_type, identifier) asof
             WHERE h.rule_set = asof.rule_set AND h.rule_type = asof.rule_type AND h.identifier = asof.identifier
               AND (h.version < asof.v OR (h.version = asof.v AND h.rule IS NULL))",
            &[&keep],
        )
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(log + history)
}
