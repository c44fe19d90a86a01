//! Leases on PostgreSQL: table `dasher_leases` (name, holder, expires_at), every decision
//! made by one statement against the database's clock (`now()`), so replicas' clocks and
//! races between them do not matter.

use super::{Client, pg_err};
use crate::lease::check_args;
use crate::{Lease, Result};

const COLUMNS: &str = "name, holder, (extract(epoch FROM expires_at) * 1000)::bigint, expires_at > now()";

fn lease(row: &tokio_postgres::Row) -> Lease {
    Lease { name: row.get(0), holder: row.get(1), expires_unix_ms: row.get(2), live: row.get(3) }
}

fn ms(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).unwrap_or(i64::MAX)
}

pub(super) async fn acquire(client: &Client, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
    check_args(name, holder, ttl_ms)?;
    // A racing insert of the same name makes this one wait for it and then re-check the
    // WHERE against the winner's row: at most one holder comes out with a live lease.
    let sql = format!(
        "INSERT INTO dasher_leases (name, holder, expires_at) VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE dasher_leases.expires_at <= now() OR dasher_leases.holder = excluded.holder
         RETURNING {COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
    let row = client.query_opt(&stmt, &[&name, &holder, &ms(ttl_ms)]).await.map_err(pg_err)?;
    Ok(row.as_ref().map(lease))
}

pub(super) async fn renew(client: &Client, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
    check_args(name, holder, ttl_ms)?;
    let sql = format!(
        "UPDATE dasher_leases SET expires_at = now() + $3::bigint * interval '1 millisecond'
         WHERE name = $1 AND holder = $2 AND expires_at > now() RETURNING {COLUMNS}"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
    let row = client.query_opt(&stmt, &[&name, &holder, &ms(ttl_ms)]).await.map_err(pg_err)?;
    Ok(row.as_ref().map(lease))
}

pub(super) async fn release(client: &Client, name: &str, holder: &str) -> Result<()> {
    let stmt =
        client.prepare_cached("DELETE FROM dasher_leases WHERE name = $1 AND holder = $2").await.map_err(pg_err)?;
    client.execute(&stmt, &[&name, &holder]).await.map_err(pg_err)?;
    Ok(())
}

pub(super) async fn get(client: &Client, name: &str) -> Result<Option<Lease>> {
    let sql = format!("SELECT {COLUMNS} FROM dasher_leases WHERE name = $1");
    let stmt = client.prepare_cached(&sql).await.map_err(pg_err)?;
    let row = client.query_opt(&stmt, &[&name]).await.map_err(pg_err)?;
    Ok(row.as_ref().map(lease))
}

pub(super) async fn kv_put_leased(
    client: &Client,
    lease: &str,
    holder: &str,
    namespace: &str,
    key: &str,
    value: &[u8],
) -> Result<bool> {
    // `FOR SHARE` locks the lease row until this statement commits: a successor's takeover
    // (an UPDATE of that row) waits for the write, and a write after a takeover sees the
    // successor's row and writes nothing.
    let stmt = client
        .prepare_cached(
            "INSERT INTO dasher_plugin_kv (namespace, key, value)
             SELECT $3, $4, $5 WHERE EXISTS (
                 SELECT 1 FROM dasher_leases WHERE name = $1 AND holder = $2 AND expires_at > now() FOR SHARE)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
        )
        .await
        .map_err(pg_err)?;
    let n = client
        .execute(&stmt, &[&lease, &holder, &namespace.as_bytes(), &key.as_bytes(), &value])
        .await
        .map_err(pg_err)?;
    Ok(n == 1)
}
