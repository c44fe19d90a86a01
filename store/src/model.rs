//! The records the store keeps. Serde-serialisable so engines can store them as JSON.

use dasher_sdk::domain::{Rule, RuleCounts, RuleKey, RuleSpec};
use dasher_sdk::plugin::{Action, DecisionSource, Hook, Severity};
use dasher_sdk::wire::{ClientMode, SyncType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a host reported in its last preflight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInventory {
    /// Opaque machine id.
    pub machine_id: String,
    /// Serial number.
    pub serial_number: String,
    /// Hostname.
    pub hostname: String,
    /// macOS version.
    pub os_version: String,
    /// macOS build.
    pub os_build: String,
    /// Model identifier.
    pub model_identifier: String,
    /// Santa version.
    pub santa_version: String,
    /// Primary user.
    pub primary_user: String,
    /// Primary user's groups.
    pub primary_user_groups: Vec<String>,
    /// Reported client mode.
    pub client_mode: Option<ClientMode>,
    /// Push token (FCM).
    pub push_notification_token: String,
    /// Reported rule counts.
    pub rule_counts: RuleCounts,
    /// Reported SIP flags.
    pub sip_status: Option<u32>,
    /// Reported rules hash (NPS ≥ 2025.7).
    pub rules_hash: Option<String>,
    /// The client asked for a clean sync.
    pub request_clean_sync: bool,
    /// First preflight (Unix seconds); kept by the store on upsert.
    pub first_seen_unix: i64,
    /// Last preflight (Unix seconds).
    pub last_seen_unix: i64,
    /// Lists the last preflight reported longer than the server keeps, cut to their first
    /// entries: wire field name → the length the client reported (e.g.
    /// `primary_user_groups` → 1000 with `limits.max_user_groups` = 256). Empty when nothing
    /// was cut (and in records stored before it existed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub truncated: BTreeMap<String, u64>,
}

/// A host as the admin API and the sync path see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    /// Machine id.
    pub machine_id: String,
    /// Last preflight report; `None` for a host known only by tags.
    pub inventory: Option<HostInventory>,
    /// Admin-assigned tags.
    pub tags: Vec<String>,
    /// An admin asked for a clean sync at the next preflight.
    pub clean_requested: bool,
    /// Sync bookkeeping.
    pub sync: HostSyncState,
}

/// How a host's last sync ended. Stored (and shown by the admin API) as the sentence its
/// `Display` writes, so records written before this type existed still read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Never synced.
    #[default]
    None,
    /// Preflight answered; the sync has not finished.
    InProgress,
    /// Rules downloaded and acknowledged.
    Ok,
    /// Acknowledged, but the client kept fewer rules than it received.
    RulesRejected {
        /// `rules_processed`.
        kept: u32,
        /// `rules_received`.
        received: u32,
    },
    /// Postflight without a completed rule download (nothing acknowledged).
    Incomplete,
    /// A reject-on-failure plugin failed at preflight; the client kept its state.
    PolicyRejected {
        /// The failed plugins, comma-separated.
        plugins: String,
        /// The hook they failed in.
        hook: Hook,
    },
    /// A value this version does not know (written by another version).
    Other(String),
}

impl fmt::Display for SyncOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncOutcome::None => Ok(()),
            SyncOutcome::InProgress => f.write_str("in_progress"),
            SyncOutcome::Ok => f.write_str("ok"),
            SyncOutcome::RulesRejected { kept, received } => {
                write!(f, "rules_rejected: client kept {kept} of {received} rules")
            }
            SyncOutcome::Incomplete => f.write_str("incomplete: postflight without a completed rule download"),
            SyncOutcome::PolicyRejected { plugins, hook } => write!(f, "policy_rejected: {plugins} failed in {hook}"),
            SyncOutcome::Other(s) => f.write_str(s),
        }
    }
}

impl SyncOutcome {
    /// Parses what [`SyncOutcome`]'s `Display` writes; anything else is kept as `Other`.
    pub fn parse(s: &str) -> SyncOutcome {
        let rules_rejected = |rest: &str| {
            let (kept, received) = rest.strip_prefix("client kept ")?.strip_suffix(" rules")?.split_once(" of ")?;
            Some(SyncOutcome::RulesRejected { kept: kept.parse().ok()?, received: received.parse().ok()? })
        };
        let policy_rejected = |rest: &str| {
            let (plugins, hook) = rest.rsplit_once(" failed in ")?;
            let hook = serde_json::from_value(serde_json::Value::String(hook.to_owned())).ok()?;
            Some(SyncOutcome::PolicyRejected { plugins: plugins.to_owned(), hook })
        };
        let parsed = match s {
            "" => Some(SyncOutcome::None),
            "in_progress" => Some(SyncOutcome::InProgress),
            "ok" => Some(SyncOutcome::Ok),
            s if s.starts_with("incomplete") => Some(SyncOutcome::Incomplete),
            s => match s.split_once(": ") {
                Some(("rules_rejected", rest)) => rules_rejected(rest),
                Some(("policy_rejected", rest)) => policy_rejected(rest),
                _ => None,
            },
        };
        parsed.unwrap_or_else(|| SyncOutcome::Other(s.to_owned()))
    }
}

impl Serialize for SyncOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SyncOutcome::parse(&String::deserialize(deserializer)?))
    }
}

/// What the server knows about a host's rules and syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSyncState {
    /// The rules the host has acknowledged (postflight of a completed download).
    pub acked: Option<RuleAck>,
    /// A download whose last page was served, awaiting postflight.
    pub pending: Option<RuleAck>,
    /// Sync type decided at the last preflight.
    pub last_sync_type: Option<SyncType>,
    /// Why the last preflight chose that sync type (e.g. "client requested", "drift").
    pub last_sync_reason: String,
    /// Last preflight (Unix seconds).
    pub last_preflight_unix: i64,
    /// Last postflight (Unix seconds).
    pub last_postflight_unix: i64,
    /// Outcome of the last sync.
    pub last_outcome: SyncOutcome,
    /// `rules_received` of the last postflight.
    pub last_rules_received: u32,
    /// `rules_processed` of the last postflight.
    pub last_rules_processed: u32,
    /// `rulesHash` the client reported at its last completed postflight.
    pub acked_rules_hash: Option<String>,
    /// The full sync in progress (set at preflight, cleared at postflight, except that a
    /// completed NORMAL sync's plan is kept: the next preflight compares with it).
    pub plan: Option<SyncPlan>,
    /// Who made the decisions of the last answered preflight (`None` before the first one,
    /// and in records stored by versions that did not keep it).
    pub decided: Option<DecisionProvenance>,
    /// The clean sync type a policy (plugin) demands that this host has completed: while
    /// the policy keeps demanding the same type, it is not applied again (a standing CLEAN
    /// would wipe the host at every sync). Cleared when the policy stops demanding one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_clean_done: Option<SyncType>,
}

/// Who made a host's policy decisions at one preflight: which plugin generation (or the
/// config file) set each setting and chose the rule sets, and what shadow plugins would
/// have decided instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionProvenance {
    /// When (Unix seconds).
    pub decided_unix: i64,
    /// Every setting sent, by `ConfigDecision` field name: its value and who decided it.
    pub settings: BTreeMap<String, AppliedSetting>,
    /// Who chose the rule-set selection: the enforcing plugins that had an opinion, in
    /// chain order, or `config`.
    pub rule_sets_by: Vec<Decider>,
    /// Plugins whose host rules make up the host's plugin host set (empty when none did).
    pub host_rules_by: Vec<Decider>,
    /// Plugin host rules applied (the set's size after this preflight); `None` when the
    /// set was kept unchanged (a plugin failed) or plugins are not configured.
    pub host_rules: Option<u32>,
    /// Host rules a plugin returned that failed validation and were skipped.
    pub host_rules_skipped: Vec<String>,
    /// Every enforcing plugin that ran for this host, per hook, in chain order (also those
    /// without an opinion): the generations behind this decision.
    pub chain: Vec<ChainPart>,
    /// What shadow (non-enforcing) plugins would have decided.
    pub shadow: Vec<ShadowDecision>,
}

/// One setting as applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppliedSetting {
    /// The value decided (JSON, as in `ConfigDecision`).
    pub value: serde_json::Value,
    /// Who decided it.
    pub by: Decider,
}

/// Who made one part of a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decider {
    /// `config` (the config file's policy) or a plugin name.
    pub by: String,
    /// The plugin generation (SHA-256 of its component); empty for `config`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generation: String,
    /// For plugins, where its part came from; `None` for `config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<DecisionSource>,
}

impl Decider {
    /// The `config` decider.
    pub fn config() -> Decider {
        Decider { by: "config".into(), ..Decider::default() }
    }
}

/// One enforcing plugin's part in a hook's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPart {
    /// `configure` or `select-rules`.
    pub hook: Hook,
    /// The plugin, its generation and where its part came from.
    #[serde(flatten)]
    pub plugin: Decider,
    /// Fields it had an opinion on.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What a shadow plugin would have decided, beside what was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// `configure` or `select-rules`.
    pub hook: Hook,
    /// Plugin name.
    pub plugin: String,
    /// Plugin generation.
    #[serde(default)]
    pub generation: String,
    /// Its decision (`None` if it failed without a fail-static answer).
    #[serde(default)]
    pub decision: Option<serde_json::Value>,
    /// True if one of its opinions differs from what was applied to the host.
    #[serde(default)]
    pub differs: bool,
}

/// What a preflight decided for the rest of its sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncPlan {
    /// NORMAL, CLEAN or CLEAN_ALL, as told to the client.
    pub sync_type: Option<SyncType>,
    /// Rule sets selected, in precedence order.
    pub rule_sets: Vec<String>,
    /// When the preflight happened (Unix seconds).
    pub started_unix: i64,
    /// The clean sync type policy demanded at this preflight (recorded as done at the
    /// postflight of a completed clean sync, see `HostSyncState::policy_clean_done`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_clean: Option<SyncType>,
}

/// A point in rule history a host has (or is about to have) applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleAck {
    /// Rule version.
    pub version: u64,
    /// Rule sets selected, in precedence order.
    pub rule_sets: Vec<String>,
    /// Counts of the host's effective rules at that version (what a client should report).
    pub counts: RuleCounts,
    /// The Santa version `counts` were computed for (its rule types and policies decide what
    /// is counted). `None`: not computed (clients that send `rulesHash`) or written before
    /// counts were carried forward, so the next download counts with a full scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts_for: Option<String>,
    /// Type of the sync that delivered it.
    pub sync_type: Option<SyncType>,
}

/// One change to one rule set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    /// The rule set.
    pub rule_set: String,
    /// The rule's identity.
    pub key: RuleKey,
    /// New value; `None` removes the rule.
    pub rule: Option<Rule>,
}

/// A position in the change log: version, then order within the version's commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChangePos {
    /// Version of the commit.
    pub version: u64,
    /// Index of the change within the commit.
    pub seq: u32,
}

/// One change-log entry: which key of which set changed at which position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// Position.
    pub pos: ChangePos,
    /// Rule set.
    pub rule_set: String,
    /// Key that changed (look up its value with `get_rule`).
    pub key: RuleKey,
}

/// A rule set and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetInfo {
    /// Name.
    pub name: String,
    /// Live rules at the head.
    pub rules: u64,
}

/// Which kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An execution event (`events[]`).
    Execution,
    /// A file-access event (`file_access_events[]`).
    FileAccess,
}

/// An event to store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Execution or file access.
    pub kind: EventKind,
    /// Duplicate detection key, unique per machine (e.g. sha256 + time + pid).
    pub dedupe_key: String,
    /// Decision name (e.g. `BLOCK_BINARY`).
    pub decision: String,
    /// SHA-256 of the executable ("" if none).
    pub file_sha256: String,
    /// Bundle hash ("" if none).
    pub file_bundle_hash: String,
    /// When it happened (Unix seconds; 0 if unknown).
    pub occurred_at_unix: f64,
    /// When the server received it (Unix seconds).
    pub received_at_unix: i64,
    /// The event in canonical JSON (the SDK's wire form).
    pub body: serde_json::Value,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Store-assigned id, increasing with insertion order.
    pub id: u64,
    /// Machine id.
    pub machine_id: String,
    /// The stored event.
    #[serde(flatten)]
    pub event: NewEvent,
    /// What triage decided about it; `None` until triaged (or if no plugin had an opinion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<EventTriage>,
}

/// What `insert_events` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertOutcome {
    /// Newly stored.
    pub stored: u32,
    /// Already stored (same dedupe key), skipped.
    pub duplicates: u32,
    /// One entry per input event, in input order: its new id, or `None` for a duplicate.
    pub ids: Vec<Option<u64>>,
}

/// A plugin generation that took part in a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PluginRef {
    /// Plugin name.
    pub plugin: String,
    /// Generation (content hash of the component that ran).
    pub generation: String,
}

/// What triage decided about one stored event.
///
/// Stored as its own record keyed by the event id, not inside the event: the event body is
/// written once at upload (the only copy of what the client sent, possibly large) and never
/// rewritten, while triage arrives later, off the request path, and may be replaced by a
/// re-triage. Queries join the two; pruning an event deletes its triage with it. `Drop`
/// never deletes anything: the event stays stored, marked as noise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventTriage {
    /// Keep (worth attention) or drop (noise, hidden from default views); `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Labels, e.g. `team:EQHXZ8M8AV` (indexed: queryable with [`EventFilter::label`]).
    pub labels: Vec<String>,
    /// Severity; `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The plugin generations whose verdicts were merged into this one.
    pub made_by: Vec<PluginRef>,
    /// When triage ran (Unix seconds).
    pub triaged_at_unix: i64,
    /// What shadow triage plugins would have decided (never applied, never indexed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowVerdict>,
}

/// A shadow triage plugin's verdict on one event, stored beside the applied one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowVerdict {
    /// Plugin name.
    pub plugin: String,
    /// Plugin generation.
    pub generation: String,
    /// Keep or drop; `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Labels it would attach.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Severity; `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Rules it would propose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<dasher_sdk::plugin::RuleProposal>,
    /// True if one of its opinions is not in the applied verdict (the server's one
    /// definition of "differs", shared with host records and counters).
    pub differs: bool,
}

impl EventTriage {
    /// True if triage marked the event as noise.
    pub fn is_dropped(&self) -> bool {
        self.action == Some(Action::Drop)
    }
}

/// Where a proposed rule goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalScope {
    /// The set of the host whose events triggered it (`host:<machine id>`).
    Host,
    /// A named rule set.
    RuleSet,
    /// The `global` set.
    Global,
}

/// Review state of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for an admin.
    Pending,
    /// Applied to its rule set.
    Approved,
    /// Turned down; repeats are counted but stay rejected.
    Rejected,
}

/// Hosts remembered per proposal; further hosts are counted in `count` only.
pub const MAX_PROPOSAL_HOSTS: usize = 1000;

/// A rule proposal as triage reports it (one occurrence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProposal {
    /// Scope kind.
    pub scope: ProposalScope,
    /// The rule set it resolves to (the de-duplication target).
    pub rule_set: String,
    /// The rule's key, normalised (the other half of the de-duplication key).
    pub key: RuleKey,
    /// The rule as proposed.
    pub rule: RuleSpec,
    /// Why, for the reviewer.
    pub reason: String,
    /// The host whose events triggered it.
    pub machine_id: String,
    /// Plugin generations that proposed it.
    pub proposed_by: Vec<PluginRef>,
    /// When (Unix seconds).
    pub at_unix: i64,
}

/// A stored proposal: one per `(rule_set, key)`; repeats bump `count`, `last_seen_unix`
/// and `hosts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Store-assigned id, increasing.
    pub id: u64,
    /// Scope kind.
    pub scope: ProposalScope,
    /// Target rule set.
    pub rule_set: String,
    /// Rule key (normalised).
    pub key: RuleKey,
    /// The rule as first proposed (what an approval commits).
    pub rule: RuleSpec,
    /// The latest reason given.
    pub reason: String,
    /// Review state.
    pub status: ProposalStatus,
    /// How many times it was proposed.
    pub count: u64,
    /// Distinct hosts that raised it (triage or user requests), first first (at most
    /// [`MAX_PROPOSAL_HOSTS`]; further hosts are counted in `count` only).
    pub hosts: Vec<String>,
    /// Requests recorded (triage occurrences and user requests); the first
    /// [`crate::MAX_PROPOSAL_REQUESTS`] are kept ([`crate::Store::proposal_requests`]).
    /// Occurrences from before requests were recorded are counted in `count` only.
    #[serde(default)]
    pub requests: u64,
    /// Plugin generations that proposed it (distinct).
    pub proposed_by: Vec<PluginRef>,
    /// First proposed (Unix seconds).
    pub first_seen_unix: i64,
    /// Last proposed (Unix seconds).
    pub last_seen_unix: i64,
    /// Who approved or rejected it.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// When it was approved or rejected (Unix seconds).
    #[serde(default)]
    pub decided_at_unix: Option<i64>,
    /// The rule version its approval committed (equal to the head then if the rule was
    /// already in place).
    #[serde(default)]
    pub applied_version: Option<u64>,
    /// The rule set its approval committed the rule to: `rule_set`, unless the reviewer
    /// chose another scope (`None` until approved, and for approvals stored before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_rule_set: Option<String>,
}

/// A review decision on a pending proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalDecision {
    /// Commit `change` (which must be the proposal's key, in its own or another rule set the
    /// caller checked) and mark approved, atomically.
    Approve {
        /// Who.
        by: String,
        /// When (Unix seconds).
        at_unix: i64,
        /// The validated rule change (boxed: the variant would dwarf `Reject`).
        change: Box<RuleChange>,
    },
    /// Mark rejected.
    Reject {
        /// Who.
        by: String,
        /// When (Unix seconds).
        at_unix: i64,
    },
}

/// What [`crate::Store::decide_proposal`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecideOutcome {
    /// Decided; the updated proposal.
    Decided(Proposal),
    /// No proposal with that id.
    NotFound,
    /// Already approved or rejected; unchanged.
    AlreadyDecided(Proposal),
}

/// Event query. All criteria are ANDed; `limit` is capped by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    /// Only this machine.
    pub machine_id: Option<String>,
    /// Only this file hash.
    pub file_sha256: Option<String>,
    /// Only this bundle hash.
    pub file_bundle_hash: Option<String>,
    /// Only this decision name.
    pub decision: Option<String>,
    /// Only events received at or after this time (Unix seconds).
    pub since_unix: Option<i64>,
    /// Only events with id below this (paging, newest first).
    pub before_id: Option<u64>,
    /// Only events triage labelled with this label.
    pub label: Option<String>,
    /// `Some(false)`: hide events triage dropped; `Some(true)`: only those; `None`: all.
    pub dropped: Option<bool>,
    /// At most this many.
    pub limit: usize,
}

#[cfg(test)]
mod tests;
