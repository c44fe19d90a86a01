//! Dasher's storage layer.
//!
//! [`Store`] is the domain interface the server uses: hosts, versioned rule sets with a
//! change log, events, and per-plugin key/value state. Everything above it is
//! engine-agnostic. Embedded engines (redb by default, sled as an alternative) share one
//! ordered key/value adapter; [`postgres`] lets several server replicas share one PostgreSQL
//! database. The same conformance suite ([`conformance`]) runs against every engine.
//!
//! Code map: [`open`], [`connect`] and [`StoreSpec`] (`redb:PATH` / `sled:PATH` /
//! `postgres://…`) pick an engine, [`OpenOptions`] tunes it; [`postgres::PgStore`] is the PostgreSQL engine;
//! [`kv`] is the ordered key/value adapter ([`kv::KvEngine`]) with the redb and sled
//! implementations; [`KvStore`] maps the domain onto it (key layout in [`kvstore`]) and
//! writes through one group-committing writer thread; [`conformance`] holds the contract
//! checks every engine runs (`store/tests/conformance.rs`), `store/tests/crash.rs` kills a
//! writer with SIGKILL and checks what survived.
//!
//! Invariants every engine keeps:
//! - a call that returned `Ok` is durable (on disk for embedded engines) — the server answers
//!   200 only after it;
//! - rule versions are gap-free and increase by one per [`Store::commit_rules`] that changed
//!   something; a reader at version `v` sees exactly the commits `≤ v`;
//! - [`Store::get_rule`]/[`Store::scan_rules`] at version `v` are repeatable while `v ≥`
//!   [`Store::history_floor`] (history before the floor may be compacted).

pub mod conformance;
pub mod console;
mod derive;
pub mod kv;
pub mod kvstore;
pub mod lease;
pub mod model;
pub mod postgres;
mod spec;

pub use console::*;
pub use dasher_sdk::plugin::kv::CounterError;
pub use kvstore::KvStore;
pub use lease::Lease;
pub use model::*;
pub use spec::{BadStoreSpec, OpenOptions, StoreSpec, connect, connect_with, open, open_with};

use async_trait::async_trait;
use dasher_sdk::domain::{Rule, RuleKey};

/// The key/value namespace of the server's own secrets (e.g. the rule-download cursor key).
/// Plugin namespaces are always `plugin:NAME`, `shadow:NAME` or `dasher-last-good:…` (formed
/// by the plugin host, never by a plugin), so no plugin can read or write here.
pub const SERVER_KV_NAMESPACE: &str = "dasher-server";

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, corruption, transaction error).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored value under {key}: {detail}")]
    Corrupt {
        /// Where.
        key: String,
        /// What.
        detail: String,
    },
    /// The requested rule version is older than the compacted history.
    #[error("rule version {requested} is no longer available (history starts at {floor})")]
    VersionCompacted {
        /// Asked for.
        requested: u64,
        /// Oldest available.
        floor: u64,
    },
    /// The requested rule version does not exist yet.
    #[error("rule version {requested} is newer than the head ({head})")]
    VersionInFuture {
        /// Asked for.
        requested: u64,
        /// Current head.
        head: u64,
    },
}

/// [`Store::commit_rules_at`] found another head than expected; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the rule head moved to version {head} (expected {expected})")]
pub struct HeadMoved {
    /// What the caller expected.
    pub expected: u64,
    /// The head found.
    pub head: u64,
}

/// The domain storage interface. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- hosts -------------------------------------------------------------------------

    /// Upserts what a preflight reported. `first_seen_unix` of an existing host is kept.
    async fn put_host_inventory(&self, inventory: &HostInventory) -> Result<()>;
    /// One host: inventory, tags, clean-sync request and sync state.
    async fn get_host(&self, machine_id: &str) -> Result<Option<Host>>;
    /// Hosts in machine-id order, after `after`, at most `limit`.
    async fn list_hosts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Host>>;
    /// Number of hosts in the inventory.
    async fn host_count(&self) -> Result<u64>;
    /// Replaces a host's tags (the host need not have synced yet).
    async fn set_host_tags(&self, machine_id: &str, tags: &[String]) -> Result<()>;
    /// Sets or clears an admin request for a clean sync at the host's next preflight.
    async fn set_clean_requested(&self, machine_id: &str, requested: bool) -> Result<()>;
    /// Replaces the host's sync state.
    async fn put_sync_state(&self, machine_id: &str, state: &HostSyncState) -> Result<()>;
    /// A preflight's writes as one atomic, durable write: upserts `inventory` exactly as
    /// [`Store::put_host_inventory`] and replaces the sync state of `inventory.machine_id`
    /// exactly as [`Store::put_sync_state`] (one commit to wait for instead of two).
    async fn record_preflight(&self, inventory: &HostInventory, state: &HostSyncState) -> Result<()>;

    // ---- rules -------------------------------------------------------------------------

    /// Applies `changes` atomically as one new version and returns it. Changes that do not
    /// change anything (upsert of an identical rule, removal of an absent one) are skipped;
    /// if nothing changes, no version is created and the current head is returned.
    async fn commit_rules(&self, changes: &[RuleChange]) -> Result<u64>;
    /// [`Store::commit_rules`] only while the head is `expected_head`, checked in the same
    /// atomic write: `Ok(Err(HeadMoved))` (nothing written) if another commit moved it. How a
    /// plan computed at one version is applied exactly on that version (rules as code).
    async fn commit_rules_at(
        &self,
        expected_head: u64,
        changes: &[RuleChange],
    ) -> Result<std::result::Result<u64, HeadMoved>>;
    /// The newest committed rule version (0 for an empty store).
    async fn head_version(&self) -> Result<u64>;
    /// The oldest version still readable with `get_rule`/`scan_rules`/`scan_changes`.
    async fn history_floor(&self) -> Result<u64>;
    /// The rule for `key` in `rule_set` as of version `at`.
    async fn get_rule(&self, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>>;
    /// [`Store::get_rule`] for many keys of one set, answered in `keys` order from one read
    /// (rule downloads resolve a page of keys at once instead of a read per key).
    async fn get_rules(&self, rule_set: &str, keys: &[RuleKey], at: u64) -> Result<Vec<Option<Rule>>>;
    /// Live rules of `rule_set` as of version `at`, in [`RuleKey`] order, strictly after
    /// `after`, at most `limit`.
    async fn scan_rules(&self, rule_set: &str, at: u64, after: Option<&RuleKey>, limit: usize) -> Result<Vec<Rule>>;
    /// Change-log entries with position `> after` and version `≤ upto`, in position order.
    /// [`StoreError::VersionCompacted`] if entries after `after` were compacted away
    /// (`after.version + 1 <` [`Store::history_floor`]).
    async fn scan_changes(&self, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>>;
    /// Every rule set that has ever held a rule, with its live rule count at the head.
    async fn rule_sets(&self) -> Result<Vec<RuleSetInfo>>;
    /// A page of [`Store::rule_sets`]: in name order, strictly after `after`, at most `limit`.
    async fn rule_sets_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<RuleSetInfo>>;
    /// Drops rule history that no reader at `keep_from` or later needs and raises
    /// [`Store::history_floor`] to `keep_from` (no-op if already there). Returns how many
    /// stored entries were removed. `keep_from` above the head is [`StoreError::VersionInFuture`].
    async fn compact_history(&self, keep_from: u64) -> Result<u64>;

    // ---- events ------------------------------------------------------------------------

    /// Stores events durably, skipping ones whose `(machine_id, dedupe_key)` is stored.
    async fn insert_events(&self, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome>;
    /// Events matching `filter`, newest first.
    async fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;
    /// Deletes events received before `received_before_unix` and, then, the oldest beyond
    /// `keep_max`. Returns how many were deleted.
    async fn prune_events(&self, received_before_unix: Option<i64>, keep_max: Option<u64>) -> Result<u64>;
    /// Total stored events.
    async fn event_count(&self) -> Result<u64>;
    /// Records triage verdicts by event id, replacing an earlier triage of the same event
    /// (its labels are re-indexed). Ids of events no longer stored (pruned) are skipped.
    /// Returns how many were recorded.
    async fn put_event_triage(&self, triage: &[(u64, EventTriage)]) -> Result<u64>;

    // ---- rule proposals ----------------------------------------------------------------

    /// Records one occurrence of a proposal. The first occurrence for a `(rule_set, key)`
    /// creates a pending proposal; a repeat (whatever its status) bumps `count`,
    /// `last_seen_unix`, `reason` and adds the host, keeping the first rule. Each occurrence
    /// is also kept as a [`RequestSource::Triage`] request (justification = reason, see
    /// [`Store::proposal_requests`]). Returns the stored proposal and whether it was created.
    async fn record_proposal(&self, proposal: &NewProposal) -> Result<(Proposal, bool)>;
    /// One proposal.
    async fn get_proposal(&self, id: u64) -> Result<Option<Proposal>>;
    /// Proposals, newest first, optionally of one status, with id below `before_id`, at most
    /// `limit`.
    async fn list_proposals(
        &self,
        status: Option<ProposalStatus>,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Proposal>>;
    /// Approves or rejects a pending proposal. An approval commits its rule change as one
    /// rule version (exactly like [`Store::commit_rules`]) in the same atomic write as the
    /// status change, so an approved proposal's rule is always in place and a rejected one's
    /// never got there through it.
    async fn decide_proposal(&self, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome>;

    /// Records an end user's request for `proposal`'s rule (the block page's "request
    /// approval"): creates the proposal (pending) or raises it exactly as
    /// [`Store::record_proposal`] does (count, last seen, reason if not empty, host), and keeps
    /// a [`RequestSource::User`] request with `user` and `justification` (cut to
    /// [`MAX_REQUEST_USER_BYTES`] / [`MAX_JUSTIFICATION_BYTES`]). Returns the stored proposal
    /// and whether it was created.
    async fn record_user_request(
        &self,
        proposal: &NewProposal,
        user: Option<&str>,
        justification: &str,
    ) -> Result<(Proposal, bool)>;
    /// The requests kept for a proposal, oldest first: the first [`MAX_PROPOSAL_REQUESTS`]
    /// (later ones are counted in [`Proposal::requests`] only). Empty for an unknown id.
    async fn proposal_requests(&self, id: u64) -> Result<Vec<ProposalRequest>>;

    // ---- console: host search, activity, audit, binaries --------------------------------

    /// Hosts whose machine id, hostname, serial number or primary user starts with `prefix`,
    /// compared case-insensitively (Unicode lower case). Results are ordered by the matching
    /// value's [`search_term`], then machine id; a host matching through several values
    /// appears once, at its smallest. Pages continue strictly after `after` (see
    /// [`HostMatch::cursor`]); at most `limit`. Served from a term index kept up to date by
    /// every inventory write (an old value's entry is removed when it changes), never by a
    /// scan of the hosts. An empty prefix lists every host.
    async fn search_hosts(
        &self,
        prefix: &str,
        after: Option<&HostSearchCursor>,
        limit: usize,
    ) -> Result<Vec<HostMatch>>;
    /// Counter buckets of `series` whose start lies in `[from_unix, to_unix)` after rounding
    /// `from_unix` down to its bucket, oldest first (then by series name), at most
    /// [`MAX_ACTIVITY_BUCKETS`]. Events are counted by received time and decision
    /// ([`decision_series`]) in the write that stores them, preflights by
    /// [`HostInventory::last_seen_unix`] in [`Store::record_preflight`]'s write. Counters are
    /// history: pruning events does not lower them.
    async fn activity(&self, series: ActivitySeries, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>>;
    /// Appends an entry to the audit log (cut to its bounds, see [`NewAuditEntry::bounded`])
    /// and returns its id (increasing). The log is kept whole (admin actions are few).
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<u64>;
    /// Audit entries, newest first, optionally only those whose target equals `target`, with
    /// id below `before_id`, at most `limit`.
    async fn list_audit(&self, target: Option<&str>, before_id: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>>;
    /// What the fleet has seen of one SHA-256 (as events carry it), maintained by
    /// [`Store::insert_events`] in the same write: first/last seen, event and distinct host
    /// counts, names and paths, latest signer. `None` if no stored event ever carried it.
    async fn get_binary(&self, sha256: &str) -> Result<Option<BinarySummary>>;
    /// Binaries, most recently seen first, continuing after `before` (see
    /// [`BinarySummary::cursor`]), at most `limit`.
    async fn list_binaries(&self, before: Option<&BinaryCursor>, limit: usize) -> Result<Vec<BinarySummary>>;
    /// A binary's events per UTC day and decision (series = decision), for days in
    /// `[from_unix, to_unix)` as [`Store::activity`] bounds them, oldest first, at most
    /// [`MAX_ACTIVITY_BUCKETS`].
    async fn binary_activity(&self, sha256: &str, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>>;

    // ---- plugin state ------------------------------------------------------------------

    /// A value from a plugin's key/value namespace.
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Sets a value in a plugin's namespace.
    async fn kv_put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<()>;
    /// Deletes a value from a plugin's namespace.
    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<()>;
    /// Stores `value` under `key` unless a value is there already, and returns the value now
    /// stored: `value`, or the existing one, untouched. Atomic across every writer of the
    /// store (replicas included), so racing callers all get the same value — how replicas
    /// agree on a server secret ([`SERVER_KV_NAMESPACE`]) at their first start.
    async fn kv_put_if_absent(&self, namespace: &str, key: &str, value: &[u8]) -> Result<Vec<u8>>;
    /// Adds `delta` to the integer under `key` (ASCII decimal, see
    /// [`dasher_sdk::plugin::kv::encode_counter`]; absent = 0), stores and returns the sum.
    /// `Ok(Err(_))` when the existing value is not such an integer or the sum overflows:
    /// nothing written. Atomic across every writer of the store (replicas included): racing
    /// increments never lose one. Backs the plugins' `kv-increment`.
    async fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<std::result::Result<i64, CounterError>>;
    /// Sets `key` to `new` (`None` deletes) if its value equals `expected` (`None` = absent),
    /// and returns whether it did. Atomic across every writer of the store (replicas
    /// included). Backs the plugins' `kv-compare-and-swap`.
    async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool>;

    /// Sets a value only while `holder` holds a live lease `lease` (checked and written in one
    /// step, so a holder whose lease ran out cannot write after its successor); `Ok(false)`
    /// when it does not, and nothing was written.
    async fn kv_put_leased(&self, lease: &str, holder: &str, namespace: &str, key: &str, value: &[u8]) -> Result<bool>;

    // ---- leases (one replica at a time does a job; see [`lease`]) ---------------------

    /// Takes lease `name` for `holder` for `ttl_ms` milliseconds when it is free, expired,
    /// or already `holder`'s (then it is extended); `Ok(None)` while another holder's lease
    /// is live. Atomic across replicas.
    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>>;
    /// Extends a lease `holder` holds and that has not expired; `Ok(None)` otherwise (the
    /// holder lost it and must stop the job at once).
    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>>;
    /// Gives lease `name` up if `holder` holds it (live or not); otherwise does nothing.
    async fn lease_release(&self, name: &str, holder: &str) -> Result<()>;
    /// Lease `name` as stored (possibly expired: see [`Lease::live`]), or `None`.
    async fn lease_get(&self, name: &str) -> Result<Option<Lease>>;
}
