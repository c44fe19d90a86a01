//! [`PgStore`]: the [`Store`] on PostgreSQL, so several stateless Dasher replicas can share one
//! database.
//!
//! Owns the SQL mapping of the domain (schema in `postgres/schema.rs`, applied and versioned at
//! connect), a connection pool (deadpool-postgres, prepared statements cached per connection),
//! and multi-writer correctness:
//!
//! - rule commits serialise on the `head` row of `dasher_meta` (`SELECT … FOR UPDATE`): the
//!   version is allocated inside the transaction that writes it, so versions are gap-free and
//!   become visible in order, and a reader that saw head `v` sees every commit `≤ v`;
//! - every read that checks the head/floor and reads history does it in one statement (one
//!   snapshot), so compaction running at the same time can never be observed half-done;
//! - events are de-duplicated by a unique `(machine_id, dedupe_key)` (`ON CONFLICT DO NOTHING`);
//! - proposal repeats and decisions lock the proposal row; an approval's rule commit takes the
//!   same head-row lock inside the decision's transaction.
//!
//! Strings that are identities (machine ids, rule sets, identifiers, plugin namespaces and keys,
//! event filter fields) are stored as `bytea`: PostgreSQL `text` cannot hold NUL, and `bytea`
//! compares bytewise, like Rust's `str` ordering the trait promises. Records are stored as
//! `json` (not `jsonb`, which rejects `\u0000` and reorders keys).
//!
//! Must never: allocate a rule version outside the head-row lock, split a version check from
//! the history read it guards, or log a password (see [`PgUrl`]'s `Display`).

mod console;
mod events;
mod leases;
mod plugin_kv;
mod proposals;
mod rules;
mod schema;
pub mod testing;

pub use schema::SCHEMA_VERSION;

use crate::{
    ActivityBucket, ActivitySeries, AuditEntry, BinaryCursor, BinarySummary, HostMatch, HostSearchCursor,
    NewAuditEntry, ProposalRequest, RequestSource,
};
use crate::{
    ChangeEntry, ChangePos, DecideOutcome, EventFilter, EventRecord, EventTriage, Host, HostInventory, HostSyncState,
    InsertOutcome, Lease, NewEvent, NewProposal, Proposal, ProposalDecision, ProposalStatus, Result, RuleChange,
    RuleSetInfo, Store, StoreError,
};
use crate::{HOUR_SECS, bucket_start, search_term};
use async_trait::async_trait;
use dasher_sdk::domain::{Rule, RuleKey};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;

/// A pooled connection.
pub(crate) type Client = deadpool_postgres::Client;

/// Connections each replica keeps open at most.
pub const POOL_MAX_SIZE: usize = 16;
/// How long a request waits for a free pooled connection before failing.
pub const POOL_WAIT: Duration = Duration::from_secs(30);
/// Connect timeout used when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]` URL (libpq URL syntax as
/// tokio-postgres reads it). `Display` redacts the password; [`PgUrl::as_str`] does not.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    url: String,
}

impl PgUrl {
    /// The URL as given, password included.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The connection settings.
    pub fn config(&self) -> tokio_postgres::Config {
        self.url.parse().expect("PgUrl was validated when parsed")
    }
}

impl FromStr for PgUrl {
    type Err = String;

    /// Parses and checks the URL; the error explains what is missing (never the password).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
            return Err("a PostgreSQL store is postgres://USER@HOST:PORT/DB".into());
        }
        let config: tokio_postgres::Config =
            s.parse().map_err(|e| format!("not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DB"))?;
        if config.get_hosts().is_empty() {
            return Err("the PostgreSQL URL names no host; expected postgres://USER@HOST:PORT/DB".into());
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err("the PostgreSQL URL names no user; expected postgres://USER@HOST:PORT/DB".into());
        }
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err("the PostgreSQL URL names no database; expected postgres://USER@HOST:PORT/DB".into());
        }
        Ok(PgUrl { url: s.to_owned() })
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// `url` with the password of its user-info part (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{hosts}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The [`Store`] on a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to `url` and applies pending schema migrations (under an advisory lock, so
    /// replicas starting together migrate once). Fails if the database cannot be reached or
    /// its schema is newer than this build knows.
    pub async fn connect(url: &PgUrl) -> Result<PgStore> {
        let mut config = url.config();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("dasher");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_MAX_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Engine(format!("cannot build the PostgreSQL pool for {url}: {e}")))?;
        let store = PgStore { pool };
        let mut client = store.client().await.map_err(|e| match e {
            StoreError::Engine(msg) => StoreError::Engine(format!("connecting to {url}: {msg}")),
            other => other,
        })?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_err(e),
            other => StoreError::Engine(format!("PostgreSQL connection pool: {other}")),
        })
    }
}

/// A PostgreSQL error as a [`StoreError`], with the server's message when there is one.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            StoreError::Engine(format!("PostgreSQL: {} ({}): {}", db.severity(), db.code().code(), db.message()))
        }
        None => {
            // Connection errors say only "error connecting to server"; the cause is the source.
            let mut msg = format!("PostgreSQL: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            StoreError::Engine(msg)
        }
    }
}

/// Whether `e` is a transient conflict worth retrying the transaction for (deadlock,
/// serialisation failure).
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// A `u64` the domain uses as a PostgreSQL `bigint`.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Engine(format!("{what} {v} is beyond PostgreSQL's bigint")))
}

/// A stored `bigint` as the domain's `u64`.
pub(crate) fn to_u64(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt { key: what.to_owned(), detail: format!("negative value {v}") })
}

/// A page size as a SQL `LIMIT`.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored `bytea` string.
pub(crate) fn utf8(what: &str, b: Vec<u8>) -> Result<String> {
    String::from_utf8(b).map_err(|e| StoreError::Corrupt { key: what.to_owned(), detail: e.to_string() })
}

fn host_from_row(row: &tokio_postgres::Row) -> Result<Host> {
    let machine_id = utf8("dasher_hosts.machine_id", row.get("machine_id"))?;
    let inventory = row.get::<_, Option<Json<HostInventory>>>("inventory").map(|Json(mut inv)| {
        inv.first_seen_unix = row.get("first_seen_unix");
        inv
    });
    let Json(tags) = row.get::<_, Json<Vec<String>>>("tags");
    let sync = row.get::<_, Option<Json<HostSyncState>>>("sync").map(|Json(s)| s).unwrap_or_default();
    Ok(Host { machine_id, inventory, tags, clean_requested: row.get("clean_requested"), sync })
}

const HOST_COLUMNS: &str = "machine_id, inventory, first_seen_unix, tags, clean_requested, sync";

/// The `SET` clause of an inventory upsert (`excluded` holds the new inventory and
/// [`reported_first_seen`]): an existing non-zero `first_seen_unix` wins.
macro_rules! upsert_inventory {
    () => {
        "inventory = excluded.inventory,
         first_seen_unix = CASE WHEN dasher_hosts.inventory IS NOT NULL AND dasher_hosts.first_seen_unix <> 0
                                THEN dasher_hosts.first_seen_unix ELSE excluded.first_seen_unix END"
    };
}

/// CTE parts replacing the search terms of host `$1` by the `bytea[]` parameter `$n`: the
/// terms of values that changed go, new ones come (both touch different rows, so they may
/// share the statement's snapshot).
macro_rules! replace_terms {
    ($n:literal) => {
        concat!(
            "d AS (DELETE FROM dasher_host_terms WHERE machine_id = $1 AND term <> ALL(",
            $n,
            "::bytea[])), t AS (INSERT INTO dasher_host_terms (term, machine_id) SELECT u, $1 FROM unnest(",
            $n,
            "::bytea[]) u ON CONFLICT DO NOTHING)"
        )
    };
}

/// A CTE part making host `$1` findable by its machine id (parameter `$n`, its term).
macro_rules! machine_term {
    ($n:literal) => {
        concat!("t AS (INSERT INTO dasher_host_terms (term, machine_id) VALUES (", $n, ", $1) ON CONFLICT DO NOTHING)")
    };
}

/// The search term of a machine id, as a parameter.
fn machine_term(machine_id: &str) -> Vec<u8> {
    search_term(machine_id).into_bytes()
}

/// `first_seen_unix` to store for a host not seen before: the report's, or its `last_seen_unix`.
fn reported_first_seen(inventory: &HostInventory) -> i64 {
    if inventory.first_seen_unix != 0 { inventory.first_seen_unix } else { inventory.last_seen_unix }
}

#[async_trait]
impl Store for PgStore {
    async fn put_host_inventory(&self, inventory: &HostInventory) -> Result<()> {
        // One statement (so one atomic commit): the host row and its search terms.
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "WITH h AS (INSERT INTO dasher_hosts (machine_id, inventory, first_seen_unix) VALUES ($1, $2, $3)
                 ON CONFLICT (machine_id) DO UPDATE SET ",
                upsert_inventory!(),
                "), ",
                replace_terms!("$4"),
                " SELECT 1"
            ))
            .await
            .map_err(pg_err)?;
        let first_seen = reported_first_seen(inventory);
        let terms = console::terms(&inventory.machine_id, Some(inventory));
        client
            .execute(&stmt, &[&inventory.machine_id.as_bytes(), &Json(inventory), &first_seen, &terms])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn get_host(&self, machine_id: &str) -> Result<Option<Host>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM dasher_hosts WHERE machine_id = $1"))
            .await
            .map_err(pg_err)?;
        let row = client.query_opt(&stmt, &[&machine_id.as_bytes()]).await.map_err(pg_err)?;
        row.as_ref().map(host_from_row).transpose()
    }

    async fn list_hosts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Host>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = match after {
            Some(after) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {HOST_COLUMNS} FROM dasher_hosts WHERE machine_id > $1 ORDER BY machine_id LIMIT $2"
                    ))
                    .await
                    .map_err(pg_err)?;
                client.query(&stmt, &[&after.as_bytes(), &self::limit(limit)]).await
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM dasher_hosts ORDER BY machine_id LIMIT $1"))
                    .await
                    .map_err(pg_err)?;
                client.query(&stmt, &[&self::limit(limit)]).await
            }
        }
        .map_err(pg_err)?;
        rows.iter().map(host_from_row).collect()
    }

    async fn host_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT count(*) FROM dasher_hosts WHERE inventory IS NOT NULL")
            .await
            .map_err(pg_err)?;
        to_u64("host count", client.query_one(&stmt, &[]).await.map_err(pg_err)?.get(0))
    }

    async fn set_host_tags(&self, machine_id: &str, tags: &[String]) -> Result<()> {
        let client = self.client().await?;
        // Clearing tags does not make a host known; setting them does.
        if tags.is_empty() {
            let stmt = client
                .prepare_cached("UPDATE dasher_hosts SET tags = $2 WHERE machine_id = $1")
                .await
                .map_err(pg_err)?;
            client.execute(&stmt, &[&machine_id.as_bytes(), &Json(tags)]).await.map_err(pg_err)?;
            return Ok(());
        }
        let stmt = client
            .prepare_cached(concat!(
                "WITH h AS (INSERT INTO dasher_hosts (machine_id, tags) VALUES ($1, $2)
                 ON CONFLICT (machine_id) DO UPDATE SET tags = excluded.tags), ",
                machine_term!("$3"),
                " SELECT 1"
            ))
            .await
            .map_err(pg_err)?;
        client
            .execute(&stmt, &[&machine_id.as_bytes(), &Json(tags), &machine_term(machine_id)])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn set_clean_requested(&self, machine_id: &str, requested: bool) -> Result<()> {
        let client = self.client().await?;
        if !requested {
            let stmt = client
                .prepare_cached("UPDATE dasher_hosts SET clean_requested = false WHERE machine_id = $1")
                .await
                .map_err(pg_err)?;
            client.execute(&stmt, &[&machine_id.as_bytes()]).await.map_err(pg_err)?;
            return Ok(());
        }
        let stmt = client
            .prepare_cached(concat!(
                "WITH h AS (INSERT INTO dasher_hosts (machine_id, clean_requested) VALUES ($1, true)
                 ON CONFLICT (machine_id) DO UPDATE SET clean_requested = true), ",
                machine_term!("$2"),
                " SELECT 1"
            ))
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[&machine_id.as_bytes(), &machine_term(machine_id)]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn put_sync_state(&self, machine_id: &str, state: &HostSyncState) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "WITH h AS (INSERT INTO dasher_hosts (machine_id, sync) VALUES ($1, $2)
                 ON CONFLICT (machine_id) DO UPDATE SET sync = excluded.sync), ",
                machine_term!("$3"),
                " SELECT 1"
            ))
            .await
            .map_err(pg_err)?;
        client
            .execute(&stmt, &[&machine_id.as_bytes(), &Json(state), &machine_term(machine_id)])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn record_preflight(&self, inventory: &HostInventory, state: &HostSyncState) -> Result<()> {
        // One statement, so one atomic commit: host row, search terms, preflight counter.
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(concat!(
                "WITH h AS (INSERT INTO dasher_hosts (machine_id, inventory, first_seen_unix, sync)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (machine_id) DO UPDATE SET sync = excluded.sync, ",
                upsert_inventory!(),
                "), ",
                replace_terms!("$5"),
                ", c AS (INSERT INTO dasher_activity_syncs (hour, shard, count) VALUES ($6, $7, 1)
                 ON CONFLICT (hour, shard) DO UPDATE SET count = dasher_activity_syncs.count + 1)
                 SELECT 1"
            ))
            .await
            .map_err(pg_err)?;
        let first_seen = reported_first_seen(inventory);
        let id = inventory.machine_id.as_str();
        let terms = console::terms(id, Some(inventory));
        let hour = bucket_start(inventory.last_seen_unix, HOUR_SECS);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&id.as_bytes(), &Json(inventory), &first_seen, &Json(state), &terms, &hour, &console::shard(id)];
        client.execute(&stmt, &params).await.map_err(pg_err)?;
        Ok(())
    }

    async fn commit_rules(&self, changes: &[RuleChange]) -> Result<u64> {
        let mut client = self.client().await?;
        rules::commit(&mut client, changes).await
    }

    async fn commit_rules_at(
        &self,
        expected_head: u64,
        changes: &[RuleChange],
    ) -> Result<std::result::Result<u64, crate::HeadMoved>> {
        let mut client = self.client().await?;
        rules::commit_at(&mut client, expected_head, changes).await
    }

    async fn head_version(&self) -> Result<u64> {
        let client = self.client().await?;
        rules::meta(&client, "head").await
    }

    async fn history_floor(&self) -> Result<u64> {
        let client = self.client().await?;
        rules::meta(&client, "floor").await
    }

    async fn get_rule(&self, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>> {
        let client = self.client().await?;
        rules::get(&client, rule_set, key, at).await
    }

    /// One pooled connection, one statement per key (the statement is prepared once per
    /// connection); a single `= ANY` query would save the round trips, not done yet.
    async fn get_rules(&self, rule_set: &str, keys: &[RuleKey], at: u64) -> Result<Vec<Option<Rule>>> {
        let client = self.client().await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(rules::get(&client, rule_set, key, at).await?);
        }
        Ok(out)
    }

    async fn scan_rules(&self, rule_set: &str, at: u64, after: Option<&RuleKey>, limit: usize) -> Result<Vec<Rule>> {
        let client = self.client().await?;
        rules::scan(&client, rule_set, at, after, limit).await
    }

    async fn scan_changes(&self, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
        let client = self.client().await?;
        rules::changes(&client, after, upto, limit).await
    }

    async fn rule_sets(&self) -> Result<Vec<RuleSetInfo>> {
        let client = self.client().await?;
        rules::sets(&client).await
    }

    async fn rule_sets_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<RuleSetInfo>> {
        let client = self.client().await?;
        rules::sets_after(&client, after.unwrap_or("").as_bytes(), limit).await
    }

    async fn compact_history(&self, keep_from: u64) -> Result<u64> {
        let mut client = self.client().await?;
        rules::compact(&mut client, keep_from).await
    }

    async fn insert_events(&self, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let mut client = self.client().await?;
        events::insert(&mut client, machine_id, events).await
    }

    async fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        events::query(&client, filter).await
    }

    async fn prune_events(&self, received_before_unix: Option<i64>, keep_max: Option<u64>) -> Result<u64> {
        let client = self.client().await?;
        events::prune(&client, received_before_unix, keep_max).await
    }

    async fn event_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT count(*) FROM dasher_events").await.map_err(pg_err)?;
        to_u64("event count", client.query_one(&stmt, &[]).await.map_err(pg_err)?.get(0))
    }

    async fn put_event_triage(&self, triage: &[(u64, EventTriage)]) -> Result<u64> {
        if triage.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        events::put_triage(&mut client, triage).await
    }

    async fn record_proposal(&self, proposal: &NewProposal) -> Result<(Proposal, bool)> {
        let p = proposal;
        let request = ProposalRequest::new(RequestSource::Triage, &p.machine_id, None, &p.reason, p.at_unix);
        let mut client = self.client().await?;
        proposals::record(&mut client, proposal, &request).await
    }

    async fn get_proposal(&self, id: u64) -> Result<Option<Proposal>> {
        let client = self.client().await?;
        proposals::get(&client, id).await
    }

    async fn list_proposals(
        &self,
        status: Option<ProposalStatus>,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Proposal>> {
        let client = self.client().await?;
        proposals::list(&client, status, before_id, limit).await
    }

    async fn decide_proposal(&self, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome> {
        let mut client = self.client().await?;
        proposals::decide(&mut client, id, decision).await
    }

    async fn record_user_request(
        &self,
        proposal: &NewProposal,
        user: Option<&str>,
        justification: &str,
    ) -> Result<(Proposal, bool)> {
        let p = proposal;
        let request = ProposalRequest::new(RequestSource::User, &p.machine_id, user, justification, p.at_unix);
        let mut client = self.client().await?;
        proposals::record(&mut client, proposal, &request).await
    }

    async fn proposal_requests(&self, id: u64) -> Result<Vec<ProposalRequest>> {
        let client = self.client().await?;
        proposals::requests(&client, id).await
    }

    async fn search_hosts(
        &self,
        prefix: &str,
        after: Option<&HostSearchCursor>,
        limit: usize,
    ) -> Result<Vec<HostMatch>> {
        let client = self.client().await?;
        console::search(&client, prefix, after, limit).await
    }

    async fn activity(&self, series: ActivitySeries, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        let client = self.client().await?;
        console::activity(&client, series, from_unix, to_unix).await
    }

    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<u64> {
        let client = self.client().await?;
        console::record_audit(&client, entry).await
    }

    async fn list_audit(&self, target: Option<&str>, before_id: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let client = self.client().await?;
        console::list_audit(&client, target, before_id, limit).await
    }

    async fn get_binary(&self, sha256: &str) -> Result<Option<BinarySummary>> {
        let client = self.client().await?;
        console::get_binary(&client, sha256).await
    }

    async fn list_binaries(&self, before: Option<&BinaryCursor>, limit: usize) -> Result<Vec<BinarySummary>> {
        let client = self.client().await?;
        console::list_binaries(&client, before, limit).await
    }

    async fn binary_activity(&self, sha256: &str, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        let client = self.client().await?;
        console::binary_activity(&client, sha256, from_unix, to_unix).await
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT value FROM dasher_plugin_kv WHERE namespace = $1 AND key = $2")
            .await
            .map_err(pg_err)?;
        let row = client.query_opt(&stmt, &[&namespace.as_bytes(), &key.as_bytes()]).await.map_err(pg_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO dasher_plugin_kv (namespace, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            )
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[&namespace.as_bytes(), &key.as_bytes(), &value]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("DELETE FROM dasher_plugin_kv WHERE namespace = $1 AND key = $2")
            .await
            .map_err(pg_err)?;
        client.execute(&stmt, &[&namespace.as_bytes(), &key.as_bytes()]).await.map_err(pg_err)?;
        Ok(())
    }

    async fn kv_put_if_absent(&self, namespace: &str, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let client = self.client().await?;
        // Two statements: the INSERT waits for a racing insert of the same key to commit and
        // then does nothing; the SELECT, a new snapshot, sees whichever row won.
        let insert = client
            .prepare_cached(
                "INSERT INTO dasher_plugin_kv (namespace, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, key) DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let (ns, k) = (namespace.as_bytes(), key.as_bytes());
        client.execute(&insert, &[&ns, &k, &value]).await.map_err(pg_err)?;
        let select = client
            .prepare_cached("SELECT value FROM dasher_plugin_kv WHERE namespace = $1 AND key = $2")
            .await
            .map_err(pg_err)?;
        let row = client.query_opt(&select, &[&ns, &k]).await.map_err(pg_err)?;
        row.map(|r| r.get(0))
            .ok_or_else(|| StoreError::Engine(format!("kv {namespace}/{key} vanished after its insert")))
    }

    async fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<std::result::Result<i64, crate::CounterError>> {
        let mut client = self.client().await?;
        plugin_kv::increment(&mut client, namespace, key, delta).await
    }

    async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        plugin_kv::compare_and_swap(&mut client, namespace, key, expected, new).await
    }

    async fn kv_put_leased(&self, lease: &str, holder: &str, namespace: &str, key: &str, value: &[u8]) -> Result<bool> {
        let client = self.client().await?;
        leases::kv_put_leased(&client, lease, holder, namespace, key, value).await
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let client = self.client().await?;
        leases::acquire(&client, name, holder, ttl_ms).await
    }

    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let client = self.client().await?;
        leases::renew(&client, name, holder, ttl_ms).await
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        let client = self.client().await?;
        leases::release(&client, name, holder).await
    }

    async fn lease_get(&self, name: &str) -> Result<Option<Lease>> {
        let client = self.client().await?;
        leases::get(&client, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact("postgres://u:pw@h:1/d"), "postgres://u:***@h:1/d");
        assert_eq!(redact("postgres://u:p%40w@h/d?x=1"), "postgres://u:***@h/d?x=1");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
    }
}
