//! What the console reads, on PostgreSQL: host search terms (`dasher_host_terms`), activity
//! counters (`dasher_activity_events`/`_syncs`, sharded by machine so concurrent writers
//! rarely wait on one row; reads sum the shards), the audit log (`dasher_audit`) and binary
//! summaries (`dasher_binaries`, `dasher_binary_hosts`, `dasher_binary_decisions`).
//!
//! Owns the event batch's derived writes ([`apply_event_batch`], inside the insert's
//! transaction). Row locks are taken in key order within each statement and the statements
//! run in one fixed order, so concurrent uploads do not deadlock each other.
//!
//! Must never: compute a search term in SQL (Rust's lower case is the one every engine uses),
//! or read a summary without locking its row before writing it back.

use super::{Client, host_from_row, limit, pg_err, to_u64, utf8};
use crate::derive::{EventBatch, host_terms, merge_summary, pick_match, search_prefix};
use crate::{
    ActivityBucket, ActivitySeries, AuditEntry, BinaryCursor, BinarySummary, DAY_SECS, HOUR_SECS, HostInventory,
    HostMatch, HostSearchCursor, MAX_ACTIVITY_BUCKETS, NewAuditEntry, Result, StoreError, bucket_start,
};
use deadpool_postgres::Transaction;
use std::collections::{BTreeMap, HashSet};
use tokio_postgres::types::Json;

/// Counter shards per bucket.
const SHARDS: u32 = 16;

/// The counter shard of a machine (FNV-1a of its id).
pub(super) fn shard(machine_id: &str) -> i16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in machine_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h % SHARDS) as i16
}

/// A host's search terms as `bytea` parameters.
pub(super) fn terms(machine_id: &str, inv: Option<&HostInventory>) -> Vec<Vec<u8>> {
    host_terms(machine_id, inv).into_iter().map(String::into_bytes).collect()
}

/// Indexes every stored host (run once, by the migration that creates the table).
pub(super) async fn index_existing_hosts(tx: &Transaction<'_>) -> Result<()> {
    let mut after: Vec<u8> = Vec::new();
    loop {
        let rows = tx
            .query(
                "SELECT machine_id, inventory FROM dasher_hosts WHERE machine_id > $1 ORDER BY machine_id LIMIT 2000",
                &[&after],
            )
            .await
            .map_err(pg_err)?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.get(0);
        let (mut ts, mut ids) = (Vec::new(), Vec::new());
        for row in &rows {
            let id = utf8("dasher_hosts.machine_id", row.get(0))?;
            let inv = row.get::<_, Option<Json<HostInventory>>>(1).map(|Json(i)| i);
            for t in terms(&id, inv.as_ref()) {
                ts.push(t);
                ids.push(id.clone().into_bytes());
            }
        }
        tx.execute(
            "INSERT INTO dasher_host_terms (term, machine_id) SELECT * FROM unnest($1::bytea[], $2::bytea[])
             ON CONFLICT DO NOTHING",
            &[&ts, &ids],
        )
        .await
        .map_err(pg_err)?;
    }
}

/// The smallest byte string above every string starting with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(super) async fn search(
    client: &Client,
    prefix: &str,
    after: Option<&HostSearchCursor>,
    want: usize,
) -> Result<Vec<HostMatch>> {
    let mut out = Vec::new();
    if want == 0 {
        return Ok(out);
    }
    let (lower, term) = search_prefix(prefix);
    let start = term.into_bytes();
    let end = prefix_end(&start);
    // Entries of hosts already reported at a smaller term are skipped, so fetch pages until
    // `want` matches or the range ends.
    let page = want.clamp(16, 1000);
    let mut cursor: Option<(Vec<u8>, Vec<u8>)> =
        after.map(|a| (a.term.clone().into_bytes(), a.machine_id.clone().into_bytes()));
    loop {
        let mut sql = format!(
            "SELECT t.term, {} FROM dasher_host_terms t JOIN dasher_hosts h ON h.machine_id = t.machine_id
             WHERE t.term >= $1",
            super::HOST_COLUMNS.split(", ").map(|c| format!("h.{c}")).collect::<Vec<_>>().join(", ")
        );
        let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = vec![Box::new(start.clone())];
        if let Some(end) = &end {
            params.push(Box::new(end.clone()));
            sql.push_str(&format!(" AND t.term < ${}", params.len()));
        }
        if let Some((t, m)) = &cursor {
            params.push(Box::new(t.clone()));
            params.push(Box::new(m.clone()));
            sql.push_str(&format!(" AND (t.term, t.machine_id) > (${}, ${})", params.len() - 1, params.len()));
        }
        params.push(Box::new(limit(page)));
        sql.push_str(&format!(" ORDER BY t.term, t.machine_id LIMIT ${}", params.len()));
        let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let rows = client.query(&stmt, &refs).await.map_err(pg_err)?;
        for row in &rows {
            let t = utf8("dasher_host_terms.term", row.get(0))?;
            let host = host_from_row(row)?;
            cursor = Some((t.clone().into_bytes(), host.machine_id.clone().into_bytes()));
            if let Some(m) = pick_match(host, &t, &lower) {
                out.push(m);
                if out.len() == want {
                    return Ok(out);
                }
            }
        }
        if rows.len() < page {
            return Ok(out);
        }
    }
}

/// Applies a batch of newly stored events from `machine_id` inside the insert's transaction.
pub(super) async fn apply_event_batch(
    tx: &Transaction<'_>,
    machine_id: &str,
    batch: &EventBatch,
) -> std::result::Result<(), super::events::Failure> {
    // Events per day and decision (one row per bucket; BTreeMap order = lock order).
    let (mut days, mut series, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((day, s), n) in &batch.per_day {
        days.push(*day);
        series.push(s.as_bytes());
        counts.push(*n as i64);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_activity_events (day, series, shard, count)
             SELECT d, s, $4, c FROM unnest($1::int8[], $2::bytea[], $3::int8[]) AS u(d, s, c) ORDER BY d, s
             ON CONFLICT (day, series, shard) DO UPDATE SET count = dasher_activity_events.count + excluded.count",
        )
        .await?;
    tx.execute(&stmt, &[&days, &series, &counts, &shard(machine_id)]).await?;
    if batch.binaries.is_empty() {
        return Ok(());
    }
    let shas: Vec<&[u8]> = batch.binaries.keys().map(|s| s.as_bytes()).collect();
    // Host markers: only the pairs this insert created count as new hosts.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_binary_hosts (sha256, machine_id) SELECT s, $2 FROM unnest($1::bytea[]) s ORDER BY s
             ON CONFLICT DO NOTHING RETURNING sha256",
        )
        .await?;
    let new_hosts: HashSet<Vec<u8>> =
        tx.query(&stmt, &[&shas, &machine_id.as_bytes()]).await?.iter().map(|r| r.get(0)).collect();
    // Lock (creating placeholders for new binaries, so racing creators wait for each other),
    // read, merge, write back.
    let seen: Vec<i64> = batch.binaries.values().map(|d| d.last_seen_unix).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_binaries (sha256, last_seen_unix)
             SELECT * FROM unnest($1::bytea[], $2::int8[]) AS u(s, l) ORDER BY s ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&shas, &seen]).await?;
    let stmt = tx
        .prepare_cached(
            "SELECT sha256, summary FROM dasher_binaries WHERE sha256 = ANY($1::bytea[]) ORDER BY sha256 FOR UPDATE",
        )
        .await?;
    let mut old: BTreeMap<Vec<u8>, Option<BinarySummary>> = BTreeMap::new();
    for row in tx.query(&stmt, &[&shas]).await? {
        let summary = row
            .try_get::<_, Option<Json<BinarySummary>>>(1)
            .map_err(|e| {
                super::events::Failure::Store(StoreError::Corrupt {
                    key: "dasher_binaries.summary".into(),
                    detail: e.to_string(),
                })
            })?
            .map(|Json(s)| s);
        old.insert(row.get(0), summary);
    }
    let (mut s_shas, mut s_seen, mut s_json) = (Vec::new(), Vec::new(), Vec::new());
    let (mut d_shas, mut d_days, mut d_series, mut d_counts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (sha, delta) in &batch.binaries {
        let previous = old.remove(sha.as_bytes()).flatten();
        let summary = merge_summary(sha, previous, delta, new_hosts.contains(sha.as_bytes()));
        s_shas.push(sha.as_bytes());
        s_seen.push(summary.last_seen_unix);
        s_json.push(serde_json::to_string(&summary).expect("summaries serialise to JSON"));
        for ((day, s), n) in &delta.decisions {
            d_shas.push(sha.as_bytes());
            d_days.push(*day);
            d_series.push(s.as_bytes());
            d_counts.push(*n as i64);
        }
    }
    let stmt = tx
        .prepare_cached(
            "UPDATE dasher_binaries b SET last_seen_unix = u.l, summary = u.j::json
             FROM unnest($1::bytea[], $2::int8[], $3::text[]) AS u(s, l, j) WHERE b.sha256 = u.s",
        )
        .await?;
    tx.execute(&stmt, &[&s_shas, &s_seen, &s_json]).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_binary_decisions (sha256, day, series, count)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[]) AS u(s, d, x, c)
             ORDER BY s, d, x
             ON CONFLICT (sha256, day, series) DO UPDATE SET count = dasher_binary_decisions.count + excluded.count",
        )
        .await?;
    tx.execute(&stmt, &[&d_shas, &d_days, &d_series, &d_counts]).await?;
    Ok(())
}

fn bucket_rows(rows: Vec<tokio_postgres::Row>, with_series: bool) -> Result<Vec<ActivityBucket>> {
    rows.into_iter()
        .map(|r| {
            Ok(ActivityBucket {
                start_unix: r.get(0),
                series: if with_series { utf8("activity series", r.get(1))? } else { String::new() },
                count: to_u64("activity count", r.get(if with_series { 2 } else { 1 }))?,
            })
        })
        .collect()
}

pub(super) async fn activity(
    client: &Client,
    series: ActivitySeries,
    from: i64,
    to: i64,
) -> Result<Vec<ActivityBucket>> {
    let width = match series {
        ActivitySeries::EventsPerDay => DAY_SECS,
        ActivitySeries::SyncsPerHour => HOUR_SECS,
    };
    let from = bucket_start(from, width);
    if from >= to {
        return Ok(Vec::new());
    }
    let max = limit(MAX_ACTIVITY_BUCKETS);
    match series {
        ActivitySeries::EventsPerDay => {
            let stmt = client
                .prepare_cached(
                    "SELECT day, series, sum(count)::int8 FROM dasher_activity_events WHERE day >= $1 AND day < $2
                     GROUP BY day, series ORDER BY day, series LIMIT $3",
                )
                .await
                .map_err(pg_err)?;
            bucket_rows(client.query(&stmt, &[&from, &to, &max]).await.map_err(pg_err)?, true)
        }
        ActivitySeries::SyncsPerHour => {
            let stmt = client
                .prepare_cached(
                    "SELECT hour, sum(count)::int8 FROM dasher_activity_syncs WHERE hour >= $1 AND hour < $2
                     GROUP BY hour ORDER BY hour LIMIT $3",
                )
                .await
                .map_err(pg_err)?;
            bucket_rows(client.query(&stmt, &[&from, &to, &max]).await.map_err(pg_err)?, false)
        }
    }
}

pub(super) async fn binary_activity(client: &Client, sha: &str, from: i64, to: i64) -> Result<Vec<ActivityBucket>> {
    let from = bucket_start(from, DAY_SECS);
    if from >= to {
        return Ok(Vec::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT day, series, count FROM dasher_binary_decisions WHERE sha256 = $1 AND day >= $2 AND day < $3
             ORDER BY day, series LIMIT $4",
        )
        .await
        .map_err(pg_err)?;
    let rows =
        client.query(&stmt, &[&sha.as_bytes(), &from, &to, &limit(MAX_ACTIVITY_BUCKETS)]).await.map_err(pg_err)?;
    bucket_rows(rows, true)
}

fn summary(row: &tokio_postgres::Row) -> Result<BinarySummary> {
    row.try_get::<_, Json<BinarySummary>>("summary")
        .map(|Json(s)| s)
        .map_err(|e| StoreError::Corrupt { key: "dasher_binaries.summary".into(), detail: e.to_string() })
}

pub(super) async fn get_binary(client: &Client, sha: &str) -> Result<Option<BinarySummary>> {
    let stmt = client
        .prepare_cached("SELECT summary FROM dasher_binaries WHERE sha256 = $1 AND summary IS NOT NULL")
        .await
        .map_err(pg_err)?;
    client.query_opt(&stmt, &[&sha.as_bytes()]).await.map_err(pg_err)?.as_ref().map(summary).transpose()
}

pub(super) async fn list_binaries(
    client: &Client,
    before: Option<&BinaryCursor>,
    n: usize,
) -> Result<Vec<BinarySummary>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = match before {
        Some(c) => {
            let stmt = client
                .prepare_cached(
                    "SELECT summary FROM dasher_binaries WHERE (last_seen_unix, sha256) < ($1, $2)
                     AND summary IS NOT NULL ORDER BY last_seen_unix DESC, sha256 DESC LIMIT $3",
                )
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&c.last_seen_unix, &c.sha256.as_bytes(), &limit(n)]).await
        }
        None => {
            let stmt = client
                .prepare_cached(
                    "SELECT summary FROM dasher_binaries WHERE summary IS NOT NULL
                     ORDER BY last_seen_unix DESC, sha256 DESC LIMIT $1",
                )
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&limit(n)]).await
        }
    }
    .map_err(pg_err)?;
    rows.iter().map(summary).collect()
}

pub(super) async fn record_audit(client: &Client, entry: &NewAuditEntry) -> Result<u64> {
    let entry = entry.bounded();
    let stmt = client
        .prepare_cached("INSERT INTO dasher_audit (target, entry) VALUES ($1, $2) RETURNING id")
        .await
        .map_err(pg_err)?;
    let row = client.query_one(&stmt, &[&entry.target.as_bytes(), &Json(&entry)]).await.map_err(pg_err)?;
    to_u64("dasher_audit.id", row.get(0))
}

pub(super) async fn list_audit(
    client: &Client,
    target: Option<&str>,
    before_id: Option<u64>,
    n: usize,
) -> Result<Vec<AuditEntry>> {
    if n == 0 || before_id == Some(0) {
        return Ok(Vec::new());
    }
    let before = before_id.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let rows = match target {
        Some(t) => {
            let stmt = client
                .prepare_cached(
                    "SELECT id, entry FROM dasher_audit WHERE target = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&t.as_bytes(), &before, &limit(n)]).await
        }
        None => {
            let stmt = client
                .prepare_cached("SELECT id, entry FROM dasher_audit WHERE id < $1 ORDER BY id DESC LIMIT $2")
                .await
                .map_err(pg_err)?;
            client.query(&stmt, &[&before, &limit(n)]).await
        }
    }
    .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            let id = to_u64("dasher_audit.id", r.get(0))?;
            let Json(e) = r
                .try_get::<_, Json<NewAuditEntry>>(1)
                .map_err(|e| StoreError::Corrupt { key: format!("dasher_audit id {id}"), detail: e.to_string() })?;
            Ok(e.with_id(id))
        })
        .collect()
}
