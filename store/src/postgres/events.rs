//! Events on PostgreSQL: one row per event with the filterable fields as indexed columns and
//! the event itself as JSON; `(machine_id, dedupe_key)` is unique, so concurrent uploads from
//! any replica store each event once. Triage is a row of `dasher_event_triage` keyed by event
//! id (with a `dropped` column), its labels rows of `dasher_event_labels`; both go with the
//! event through `ON DELETE CASCADE`. Queries left-join the triage in the same statement.
//!
//! An insert updates the activity counters and binary summaries of its new events in the same
//! transaction (`postgres/console.rs`).
//!
//! Must never: delete in one unbounded statement (pruning works in steps of
//! [`PRUNE_STEP_EVENTS`]), report an event stored that a conflict skipped, or leave a triage
//! or label row for an event that is gone.

use super::{Client, console, is_retryable, limit, pg_err, to_u64, utf8};
use crate::derive::{EventBatch, event_facts};
use crate::{EventFilter, EventRecord, EventTriage, InsertOutcome, NewEvent, Result, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};

/// Most events one pruning statement deletes.
pub const PRUNE_STEP_EVENTS: i64 = 10_000;

/// Attempts for an insert that lost a deadlock to a concurrent upload.
const INSERT_ATTEMPTS: u32 = 5;

/// Why an insert attempt failed: PostgreSQL (maybe worth retrying) or a stored value.
pub(super) enum Failure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

pub(super) async fn insert(client: &mut Client, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome> {
    let mut attempt = 1;
    loop {
        match insert_once(client, machine_id, events).await {
            Ok(outcome) => return Ok(outcome),
            Err(Failure::Pg(e)) if is_retryable(&e) && attempt < INSERT_ATTEMPTS => attempt += 1,
            Err(Failure::Pg(e)) => return Err(pg_err(e)),
            Err(Failure::Store(e)) => return Err(e),
        }
    }
}

/// Stores the events and, in the same transaction, the counters and binary summaries of the
/// ones that were new.
async fn insert_once(
    client: &mut Client,
    machine_id: &str,
    events: &[NewEvent],
) -> std::result::Result<InsertOutcome, Failure> {
    let dedupe: Vec<&[u8]> = events.iter().map(|e| e.dedupe_key.as_bytes()).collect();
    let decision: Vec<&[u8]> = events.iter().map(|e| e.decision.as_bytes()).collect();
    let sha: Vec<&[u8]> = events.iter().map(|e| e.file_sha256.as_bytes()).collect();
    let bundle: Vec<&[u8]> = events.iter().map(|e| e.file_bundle_hash.as_bytes()).collect();
    let received: Vec<i64> = events.iter().map(|e| e.received_at_unix).collect();
    let json: Vec<String> =
        events.iter().map(|e| serde_json::to_string(e).expect("events serialise to JSON")).collect();
    let tx = client.transaction().await?;
    // Ids follow the order of the upload; a key seen twice in one upload is stored once.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_events
                 (machine_id, dedupe_key, decision, file_sha256, file_bundle_hash, received_at_unix, event)
             SELECT $1, d, x, s, b, r, e::json
             FROM unnest($2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::int8[], $7::text[])
                  WITH ORDINALITY AS u(d, x, s, b, r, e, i)
             ORDER BY i
             ON CONFLICT (machine_id, dedupe_key) DO NOTHING
             RETURNING id, dedupe_key",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 7] =
        [&machine_id.as_bytes(), &dedupe, &decision, &sha, &bundle, &received, &json];
    let rows = tx.query(&stmt, &params).await?;
    // A stored row's dedupe key is unique in the upload's stored rows; the first input event
    // with that key is the one stored, later ones (and keys stored before) are duplicates.
    let mut new_ids: HashMap<Vec<u8>, u64> = HashMap::with_capacity(rows.len());
    for row in rows {
        new_ids.insert(row.get(1), to_u64("dasher_events.id", row.get(0)).map_err(Failure::Store)?);
    }
    let mut outcome = InsertOutcome::default();
    let mut batch = EventBatch::default();
    for e in events {
        match new_ids.remove(e.dedupe_key.as_bytes()) {
            Some(id) => {
                outcome.stored += 1;
                outcome.ids.push(Some(id));
                batch.add(event_facts(e));
            }
            None => {
                outcome.duplicates += 1;
                outcome.ids.push(None);
            }
        }
    }
    if !new_ids.is_empty() {
        return Err(Failure::Store(StoreError::Engine(
            "PostgreSQL returned an event id for a key not in the upload".into(),
        )));
    }
    if outcome.stored > 0 {
        console::apply_event_batch(&tx, machine_id, &batch).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Records triage for events still stored (one statement per table, in one transaction),
/// replacing an earlier triage and its labels. A later entry for the same id wins.
pub(super) async fn put_triage(client: &mut Client, triage: &[(u64, EventTriage)]) -> Result<u64> {
    // Last entry per id wins, as if applied in order; ids sorted so concurrent calls lock
    // rows in the same order.
    let mut last: BTreeMap<i64, &EventTriage> = BTreeMap::new();
    for (id, t) in triage {
        if let Ok(id) = i64::try_from(*id) {
            last.insert(id, t);
        }
    }
    if last.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = last.keys().copied().collect();
    let dropped: Vec<bool> = last.values().map(|t| t.is_dropped()).collect();
    let json: Vec<String> =
        last.values().map(|t| serde_json::to_string(t).expect("triage serialises to JSON")).collect();
    let (mut label_ids, mut labels) = (Vec::new(), Vec::new());
    for (id, t) in &last {
        for l in &t.labels {
            label_ids.push(*id);
            labels.push(l.as_bytes());
        }
    }
    let mut attempt = 1;
    let stored = loop {
        match put_triage_once(client, &ids, &dropped, &json, &label_ids, &labels).await {
            Ok(stored) => break stored,
            // A prune that deleted one of the events after this statement's snapshot makes
            // the foreign key check fail; the next attempt no longer sees that event.
            Err(e)
                if (is_retryable(&e) || e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION))
                    && attempt < INSERT_ATTEMPTS =>
            {
                attempt += 1
            }
            Err(e) => return Err(pg_err(e)),
        }
    };
    let stored: HashSet<i64> = stored.into_iter().collect();
    Ok(triage.iter().filter(|(id, _)| i64::try_from(*id).is_ok_and(|id| stored.contains(&id))).count() as u64)
}

async fn put_triage_once(
    client: &mut Client,
    ids: &[i64],
    dropped: &[bool],
    json: &[String],
    label_ids: &[i64],
    labels: &[&[u8]],
) -> std::result::Result<Vec<i64>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let upsert = tx
        .prepare_cached(
            "INSERT INTO dasher_event_triage (event_id, dropped, triage)
             SELECT u.id, u.d, u.t::json FROM unnest($1::int8[], $2::bool[], $3::text[]) AS u(id, d, t)
             JOIN dasher_events e ON e.id = u.id
             ORDER BY u.id
             ON CONFLICT (event_id) DO UPDATE SET dropped = excluded.dropped, triage = excluded.triage
             RETURNING event_id",
        )
        .await?;
    let stored: Vec<i64> = tx.query(&upsert, &[&ids, &dropped, &json]).await?.iter().map(|r| r.get(0)).collect();
    let unlabel = tx.prepare_cached("DELETE FROM dasher_event_labels WHERE event_id = ANY($1::int8[])").await?;
    tx.execute(&unlabel, &[&stored]).await?;
    let label = tx
        .prepare_cached(
            "INSERT INTO dasher_event_labels (event_id, label)
             SELECT u.id, u.l FROM unnest($1::int8[], $2::bytea[]) AS u(id, l)
             WHERE u.id = ANY($3::int8[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&label, &[&label_ids, &labels, &stored]).await?;
    tx.commit().await?;
    Ok(stored)
}

pub(super) async fn query(client: &Client, filter: &EventFilter) -> Result<Vec<EventRecord>> {
    let mut sql = String::from(
        "SELECT e.id, e.machine_id, e.event, t.triage FROM dasher_events e
         LEFT JOIN dasher_event_triage t ON t.event_id = e.id WHERE true",
    );
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |column: &str, op: &str, value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
    };
    let bytes = |s: &Option<String>| s.as_ref().map(|s| s.as_bytes().to_vec());
    if let Some(v) = bytes(&filter.machine_id) {
        add("e.machine_id", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.file_sha256) {
        add("e.file_sha256", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.file_bundle_hash) {
        add("e.file_bundle_hash", "=", Box::new(v));
    }
    if let Some(v) = bytes(&filter.decision) {
        add("e.decision", "=", Box::new(v));
    }
    if let Some(v) = filter.since_unix {
        add("e.received_at_unix", ">=", Box::new(v));
    }
    if let Some(v) = filter.before_id {
        add("e.id", "<", Box::new(i64::try_from(v).unwrap_or(i64::MAX)));
    }
    if let Some(v) = bytes(&filter.label) {
        params.push(Box::new(v));
        sql.push_str(&format!(
            " AND e.id IN (SELECT event_id FROM dasher_event_labels WHERE label = ${})",
            params.len()
        ));
    }
    match filter.dropped {
        Some(true) => sql.push_str(" AND t.dropped"),
        Some(false) => sql.push_str(" AND t.dropped IS NOT TRUE"),
        None => {}
    }
    params.push(Box::new(limit(filter.limit)));
    sql.push_str(&format!(" ORDER BY e.id DESC LIMIT ${}", params.len()));
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
                triage: row
                    .try_get::<_, Option<Json<EventTriage>>>(3)
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("dasher_event_triage event_id {}", row.get::<_, i64>(0)),
                        detail: e.to_string(),
                    })?
                    .map(|Json(t)| t),
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
