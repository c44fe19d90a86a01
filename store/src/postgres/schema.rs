//! The PostgreSQL schema as numbered migrations, applied at connect.
//!
//! Owns: `dasher_schema_migrations` (one row per applied migration) and every `dasher_*` table.
//! All pending migrations run in one transaction that first takes a transaction-scoped advisory
//! lock, so replicas starting together apply each migration exactly once and a failure leaves
//! the schema as it was. Must never edit a released migration: add a new one.

use super::pg_err;
use crate::{Result, StoreError};

/// Key of the advisory lock that serialises migrations ("dasher" + 1).
const MIGRATION_LOCK: i64 = 0x6461_7368_6572_0001;

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// `(description, SQL)`; migration `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "hosts, versioned rules with a change log, events, plugin state",
        r#"
CREATE TABLE dasher_meta (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO dasher_meta (name, value) VALUES ('head', 0), ('floor', 0);

CREATE TABLE dasher_hosts (
    machine_id bytea PRIMARY KEY,
    inventory json,
    first_seen_unix bigint NOT NULL DEFAULT 0,
    tags json NOT NULL DEFAULT '[]',
    clean_requested boolean NOT NULL DEFAULT false,
    sync json
);

-- One row per rule per version that changed it; rule NULL is a tombstone.
CREATE TABLE dasher_rule_history (
    rule_set bytea NOT NULL,
    rule_type integer NOT NULL,
    identifier bytea NOT NULL,
    version bigint NOT NULL,
    rule json
);
CREATE UNIQUE INDEX dasher_rule_history_key ON dasher_rule_history (rule_set, rule_type, identifier, version DESC);

CREATE TABLE dasher_rule_log (
    version bigint NOT NULL,
    seq bigint NOT NULL,
    rule_set bytea NOT NULL,
    rule_type integer NOT NULL,
    identifier bytea NOT NULL,
    PRIMARY KEY (version, seq)
);

CREATE TABLE dasher_rule_sets (
    name bytea PRIMARY KEY,
    rules bigint NOT NULL
);

CREATE TABLE dasher_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id bytea NOT NULL,
    dedupe_key bytea NOT NULL,
    decision bytea NOT NULL,
    file_sha256 bytea NOT NULL,
    file_bundle_hash bytea NOT NULL,
    received_at_unix bigint NOT NULL,
    event json NOT NULL,
    UNIQUE (machine_id, dedupe_key)
);
CREATE INDEX dasher_events_machine ON dasher_events (machine_id, id);
CREATE INDEX dasher_events_sha256 ON dasher_events (file_sha256, id);
CREATE INDEX dasher_events_bundle ON dasher_events (file_bundle_hash, id);
CREATE INDEX dasher_events_decision ON dasher_events (decision, id);
CREATE INDEX dasher_events_received ON dasher_events (received_at_unix, id);

CREATE TABLE dasher_plugin_kv (
    namespace bytea NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);
"#,
    ),
    (
        "event triage with a label index, rule proposals",
        r#"
-- Triage of a stored event: written after the event, replaceable, deleted with it.
CREATE TABLE dasher_event_triage (
    event_id bigint PRIMARY KEY REFERENCES dasher_events (id) ON DELETE CASCADE,
    dropped boolean NOT NULL,
    triage json NOT NULL
);
CREATE INDEX dasher_event_triage_dropped ON dasher_event_triage (dropped, event_id);

CREATE TABLE dasher_event_labels (
    label bytea NOT NULL,
    event_id bigint NOT NULL REFERENCES dasher_event_triage (event_id) ON DELETE CASCADE,
    PRIMARY KEY (label, event_id)
);
CREATE INDEX dasher_event_labels_event ON dasher_event_labels (event_id);

-- One proposal per (rule set, rule key); the rule is the first proposed.
CREATE TABLE dasher_proposals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_set bytea NOT NULL,
    rule_type integer NOT NULL,
    identifier bytea NOT NULL,
    scope text NOT NULL,
    rule json NOT NULL,
    reason bytea NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    count bigint NOT NULL,
    hosts bytea[] NOT NULL,
    proposed_by json NOT NULL,
    first_seen_unix bigint NOT NULL,
    last_seen_unix bigint NOT NULL,
    decided_by bytea,
    decided_at_unix bigint,
    applied_version bigint,
    UNIQUE (rule_set, rule_type, identifier)
);
CREATE INDEX dasher_proposals_status ON dasher_proposals (status, id);
"#,
    ),
    (
        "console: host search terms, activity counters, audit log, binary summaries, proposal requests",
        r#"
-- Search terms of each host (lower-cased machine id, hostname, serial, primary user; computed
-- by Dasher, so every engine agrees), replaced on every inventory write.
CREATE TABLE dasher_host_terms (
    term bytea NOT NULL,
    machine_id bytea NOT NULL,
    PRIMARY KEY (term, machine_id)
);
CREATE INDEX dasher_host_terms_machine ON dasher_host_terms (machine_id);

-- Counters, sharded by machine so concurrent uploads rarely wait for one row; reads sum.
CREATE TABLE dasher_activity_events (
    day bigint NOT NULL,
    series bytea NOT NULL,
    shard smallint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (day, series, shard)
);
CREATE TABLE dasher_activity_syncs (
    hour bigint NOT NULL,
    shard smallint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (hour, shard)
);

CREATE TABLE dasher_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target bytea NOT NULL,
    entry json NOT NULL
);
CREATE INDEX dasher_audit_target ON dasher_audit (target, id);

-- summary is NULL only inside the transaction that creates the row (a lock placeholder).
CREATE TABLE dasher_binaries (
    sha256 bytea PRIMARY KEY,
    last_seen_unix bigint NOT NULL,
    summary json
);
CREATE INDEX dasher_binaries_recent ON dasher_binaries (last_seen_unix, sha256);
CREATE TABLE dasher_binary_hosts (
    sha256 bytea NOT NULL,
    machine_id bytea NOT NULL,
    PRIMARY KEY (sha256, machine_id)
);
CREATE TABLE dasher_binary_decisions (
    sha256 bytea NOT NULL,
    day bigint NOT NULL,
    series bytea NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (sha256, day, series)
);

ALTER TABLE dasher_proposals ADD COLUMN requests bigint NOT NULL DEFAULT 0;
CREATE TABLE dasher_proposal_requests (
    proposal_id bigint NOT NULL REFERENCES dasher_proposals (id),
    seq integer NOT NULL,
    request json NOT NULL,
    PRIMARY KEY (proposal_id, seq)
);
"#,
    ),
    (
        "the rule set a proposal's approval was applied to",
        r#"
ALTER TABLE dasher_proposals ADD COLUMN applied_rule_set bytea;
"#,
    ),
    (
        "leases: one replica at a time does a job (e.g. exports a sink)",
        r#"
CREATE TABLE dasher_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
    ),
    (
        "events: index by machine and file SHA-256 (the block page's lookup)",
        r#"
CREATE INDEX IF NOT EXISTS dasher_events_machine_sha256 ON dasher_events (machine_id, file_sha256, id);
"#,
    ),
];

/// The migration that created `dasher_host_terms`: applying it indexes the hosts already
/// stored ([`super::console::index_existing_hosts`]).
const HOST_TERMS_MIGRATION: i32 = 3;

/// Brings the schema up to [`SCHEMA_VERSION`]; returns how many migrations it applied.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<usize> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dasher_schema_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(pg_err)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM dasher_schema_migrations", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Engine(format!(
            "the database schema is at version {current}, newer than this Dasher understands ({SCHEMA_VERSION}); \
             upgrade Dasher"
        )));
    }
    let mut applied = 0;
    for (i, (description, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Engine(format!("schema migration {version} ({description}) failed: {}", pg_err(e)))
        })?;
        tx.execute(
            "INSERT INTO dasher_schema_migrations (version, description) VALUES ($1, $2)",
            &[&version, description],
        )
        .await
        .map_err(pg_err)?;
        if version == HOST_TERMS_MIGRATION {
            super::console::index_existing_hosts(&tx).await?;
        }
        applied += 1;
    }
    tx.commit().await.map_err(pg_err)?;
    if applied > 0 {
        tracing::info!(applied, version = SCHEMA_VERSION, "applied PostgreSQL schema migrations");
    }
    Ok(applied)
}
