//! The plugins' atomic key/value operations on PostgreSQL: each is one transaction holding
//! the key's row lock (`SELECT … FOR UPDATE`), so they are atomic across every replica
//! sharing the database. A key that is absent has no row to lock; creating it goes through
//! `INSERT … ON CONFLICT DO NOTHING`, which waits for a racing insert of the same key and
//! then reports that it lost.

use super::{Client, pg_err};
use crate::{CounterError, Result, StoreError};
use dasher_sdk::plugin::kv::{encode_counter, next_counter};
use deadpool_postgres::Transaction;

/// Rounds of "absent, then someone created it" an increment retries before giving up (each
/// round needs another replica to delete the key in between).
const CREATE_RACE_ROUNDS: usize = 16;

/// The key's value with its row locked until the transaction ends; `None` if absent (nothing
/// locked).
async fn lock(tx: &Transaction<'_>, ns: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
    let stmt = tx
        .prepare_cached("SELECT value FROM dasher_plugin_kv WHERE namespace = $1 AND key = $2 FOR UPDATE")
        .await
        .map_err(pg_err)?;
    let row = tx.query_opt(&stmt, &[&ns, &key]).await.map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// Inserts an absent key; `false` if a racing insert got there first (nothing written).
async fn create(tx: &Transaction<'_>, ns: &[u8], key: &[u8], value: &[u8]) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO dasher_plugin_kv (namespace, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, key) DO NOTHING",
        )
        .await
        .map_err(pg_err)?;
    Ok(tx.execute(&stmt, &[&ns, &key, &value]).await.map_err(pg_err)? == 1)
}

/// Overwrites a key whose row this transaction holds locked.
async fn update(tx: &Transaction<'_>, ns: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
    let stmt = tx
        .prepare_cached("UPDATE dasher_plugin_kv SET value = $3 WHERE namespace = $1 AND key = $2")
        .await
        .map_err(pg_err)?;
    tx.execute(&stmt, &[&ns, &key, &value]).await.map_err(pg_err)?;
    Ok(())
}

pub(super) async fn increment(
    client: &mut Client,
    namespace: &str,
    key: &str,
    delta: i64,
) -> Result<std::result::Result<i64, CounterError>> {
    let (ns, k) = (namespace.as_bytes(), key.as_bytes());
    let tx = client.transaction().await.map_err(pg_err)?;
    for _ in 0..CREATE_RACE_ROUNDS {
        match lock(&tx, ns, k).await? {
            Some(current) => {
                let next = next_counter(Some(&current), delta);
                if let Ok(n) = next {
                    update(&tx, ns, k, &encode_counter(n)).await?;
                }
                tx.commit().await.map_err(pg_err)?;
                return Ok(next);
            }
            None => {
                let next = next_counter(None, delta);
                let Ok(n) = next else { return Ok(next) };
                if create(&tx, ns, k, &encode_counter(n)).await? {
                    tx.commit().await.map_err(pg_err)?;
                    return Ok(next);
                }
                // Another writer created the key since our read: lock and add to its value.
            }
        }
    }
    Err(StoreError::Engine(format!(
        "kv increment of {namespace}/{key}: the key was created and deleted concurrently {CREATE_RACE_ROUNDS} times"
    )))
}

pub(super) async fn compare_and_swap(
    client: &mut Client,
    namespace: &str,
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool> {
    let (ns, k) = (namespace.as_bytes(), key.as_bytes());
    let tx = client.transaction().await.map_err(pg_err)?;
    let current = lock(&tx, ns, k).await?;
    if current.as_deref() != expected {
        return Ok(false);
    }
    match (current, new) {
        (Some(_), Some(v)) => update(&tx, ns, k, v).await?,
        (Some(_), None) => {
            let stmt = tx
                .prepare_cached("DELETE FROM dasher_plugin_kv WHERE namespace = $1 AND key = $2")
                .await
                .map_err(pg_err)?;
            tx.execute(&stmt, &[&ns, &k]).await.map_err(pg_err)?;
        }
        // Absent as expected: a racing insert that commits first makes this one lose, as if
        // it had run after that insert.
        (None, Some(v)) => {
            if !create(&tx, ns, k, v).await? {
                return Ok(false);
            }
        }
        (None, None) => return Ok(true),
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(true)
}
