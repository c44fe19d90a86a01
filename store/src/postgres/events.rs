//! Events on PostgreSQL: one row per event with the filterable fields as indexed columns and
//! the event itself as JSON; `(machine_id, dedupe_key)` is unique, so concurrent uploads from
//! any replica store each event once.
//!
//! Must never: delete in one unbounded statement (pruning works in steps of
//! [`PRUNE_STEP_EVENTS`]), or report an event stored that a conflict skipped.

use super::{Client, is_retryable, limit, pg_err, to_u64, utf8};
use crate::{EventFilter, EventRecord, InsertOutcome, NewEvent, Result, StoreError};
use tokio_postgres::types::{Json, ToSql};

/// Most events one pruning statement deletes.
pub const PRUNE_STEP_EVENTS: i64 = 10_000;

/// Attempts for an insert that lost a deadlock to a concurrent upload.
const INSERT_ATTEMPTS: u32 = 5;

pub(super) async fn insert(client: &mut Client, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome> {
    let dedupe: Vec<&[u8]> = events.iter().map(|e| e.dedupe_key.as_bytes()).collect();
    let decision: Vec<&[u8]> = events.iter().map(|e| e.decision.as_bytes()).collect();
    let sha: Vec<&[u8]> = events.iter().map(|e| e.file_sha256.as_bytes()).collect();
    let bundle: Vec<&[u8]> = events.iter().map(|e| e.file_bundle_hash.as_bytes()).collect();
    let received: Vec<i64> = events.iter().map(|e| e.received_at_unix).collect();
    let json: Vec<String> =
        events.iter().map(|e| serde_json::to_string(e).expect("events serialise to JSON")).collect();
    // Ids follow the order of the upload; a key seen twice in one upload is stored once.
    let stmt = client
        .prepare_cached(
            "INSERT INTO dasher_events
                 (machine_id, dedupe_key, decision, file_sha256, file_bundle_hash, received_at_unix, event)
             SELECT $1, d, x, s, b, r, e::json
             FROM unnest($2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::int8[], $7::text[])
                  WITH ORDINALITY AS u(d, x, s, b, r, e, i)
             ORDER BY i
             ON CONFLICT (machine_id, dedupe_key) DO NOTHING",
        )
        .await
        .map_err(pg_err)?;
    let params: [&(dyn ToSql + Sync); 7] =
        [&machine_id.as_bytes(), &dedupe, &decision, &sha, &bundle, &received, &json];
    let mut attempt = 1;
    let stored = loop {
        match client.execute(&stmt, &params).await {
            Ok(n) => break n,
            Err(e) if is_retryable(&e) && attempt < INSERT_ATTEMPTS => attempt += 1,
            Err(e) => return Err(pg_err(e)),
        }
    };
    let stored = u32::try_from(stored).map_err(|_| StoreError::Engine("more than 2^32 events stored".into()))?;
    Ok(InsertOutcome { stored, duplicates: events.len() as u32 - stored })
}

pub(super) async fn query(client: &Client, filter: &EventFilter) -> Result<Vec<EventRecord>> {
    let mut sql = String::from("SELECT id, machine_id, event FROM dasher_events WHERE true");
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |column: &str, op: &str, value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
    };
    let bytes = |s: &Option<String>| s.as_ref().map(|s| s.as_bytes().to_vec());
    if let Some(v) = bytes(&filter.machine_id) {
        add("machine_id", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.file_sha256) {
        add("file_sha256", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.file_bundle_hash) {
        add("file_bundle_hash", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.decision) {
        add("decision", "=", Box::new(v));
    }
    if let Some(v) = filter.since_unix {
        add("received_at_unix", ">=", Box::new(v));
    }
    if let Some(v) = filter.before_id {
        add("id", "<", Box::new(i64::try_from(v).unwrap_or(i64::MAX)));
    }
    params.push(Box::new(limit(filter.limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
    let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&stmt, &refs).await.map_err(pg_err)?;
    rows.into_iter()
        .map(|row| {
            let Json(event) = row.try_get::<_, Json<NewEvent>>(2).map_err(|e| StoreError::Corrupt {
                key: format!("dasher_events id {}", row.get::<_, i64>(0)),
                detail: e.to_string(),
            })?;
            Ok(EventRecord {
                id: to_u64("dasher_events.id", row.get(0))?,
                machine_id: utf8("dasher_events.machine_id", row.get(1))?,
                event,
            })
        })
        .collect()
}

pub(super) async fn prune(client: &Client, received_before: Option<i64>, keep_max: Option<u64>) -> Result<u64> {
    let mut deleted = 0u64;
    if let Some(before) = received_before {
        let stmt = client
            .prepare_cached(
                "DELETE FROM dasher_events WHERE id IN
                     (SELECT id FROM dasher_events WHERE received_at_unix < $1 LIMIT $2)",
            )
            .await
            .map_err(pg_err)?;
        loop {
            let n = client.execute(&stmt, &[&before, &PRUNE_STEP_EVENTS]).await.map_err(pg_err)?;
            deleted += n;
            if n < PRUNE_STEP_EVENTS as u64 {
                break;
            }
        }
    }
    if let Some(keep) = keep_max {
        // Everything at or below the newest id beyond the `keep` newest goes.
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let cutoff = client
            .query_opt("SELECT id FROM dasher_events ORDER BY id DESC OFFSET $1 LIMIT 1", &[&keep])
            .await
            .map_err(pg_err)?
            .map(|r| r.get::<_, i64>(0));
        if let Some(cutoff) = cutoff {
            let stmt = client
                .prepare_cached(
                    "DELETE FROM dasher_events WHERE id IN
                         (SELECT id FROM dasher_events WHERE id <= $1 ORDER BY id LIMIT $2)",
                )
                .await
                .map_err(pg_err)?;
            loop {
                let n = client.execute(&stmt, &[&cutoff, &PRUNE_STEP_EVENTS]).await.map_err(pg_err)?;
                deleted += n;
                if n < PRUNE_STEP_EVENTS as u64 {
                    break;
                }
            }
        }
    }
    Ok(deleted)
}
