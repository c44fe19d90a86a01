//! What the [`crate::PluginManager`] tells its callers: decisions with their provenance
//! and faults, plugin status for the admin API, and reload reports. Plain data, no logic.

use crate::config::{Mode, OnUnavailable};
use dasher_sdk::plugin::Hook;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A decision and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decided<T> {
    /// The merged decision of the enforcing plugins.
    pub value: T,
    /// Enforcing plugins that took part, in chain order, with their generation: store this
    /// with the decision so "which policy made this host LOCKDOWN" has an answer.
    pub made_by: Vec<Contribution>,
    /// Faults during this call (already logged and counted).
    pub faults: Vec<FaultRecord>,
    /// What shadow plugins would have decided.
    pub shadow: Vec<ShadowRecord>,
    /// True if any enforcing plugin failed and its part came from a last good decision, a
    /// fallback, or nothing. For `select-rules`, a degraded decision with a plugin at
    /// [`Source::NoOpinion`] must not be used to remove rules: keep the host's acknowledged
    /// selection. For `triage`, the batch may be retried later.
    pub degraded: bool,
    /// True if an enforcing plugin with `on_failure = "reject"` failed: answer the stage with
    /// 503 (the client keeps its state and retries) instead of using `value`.
    pub reject: bool,
}

/// One enforcing plugin's part in a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contribution {
    /// Plugin name.
    pub plugin: String,
    /// Generation (content hash) that ran.
    pub generation: String,
    /// Where its part came from.
    pub source: Source,
    /// Top-level fields its part had an opinion on (set, not `None`), e.g. `client_mode`:
    /// with the merge rule (a later plugin's set field wins) this attributes each field of
    /// the merged decision to one plugin.
    pub fields: Vec<String>,
}

/// Where a plugin's part of a decision came from (shared with the store's provenance records).
pub use dasher_sdk::plugin::DecisionSource as Source;

/// A fault in one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultRecord {
    /// Plugin name.
    pub plugin: String,
    /// Generation.
    pub generation: String,
    /// Hook.
    pub hook: Hook,
    /// Kind (`trap`, `timeout`, `oom`, …).
    pub kind: &'static str,
    /// Description.
    pub message: String,
}

/// What a shadow plugin would have decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowRecord {
    /// Plugin name.
    pub plugin: String,
    /// Generation.
    pub generation: String,
    /// Its decision (`None` if it failed). Whether it differs from the applied decision is
    /// for the caller to say: only it knows what was finally applied (the server fills the
    /// plugins' gaps from its config); see `PluginManager::note_shadow_disagreement`.
    pub decision: Option<serde_json::Value>,
}

/// One plugin's status, for `GET /api/v1/plugins`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Plugin version from its metadata.
    pub version: String,
    /// Contract it was built against, e.g. `dasher:plugin@0.3.0` (older minors still load).
    pub contract: String,
    /// File it was loaded from.
    pub file: PathBuf,
    /// Active generation (SHA-256 of the file).
    pub hash: String,
    /// Component size.
    pub size_bytes: usize,
    /// Declared hooks.
    pub hooks: Vec<Hook>,
    /// Enforce or shadow.
    pub mode: Mode,
    /// When this generation was loaded (Unix seconds).
    pub loaded_at_unix: u64,
    /// Calls to this generation that entered the guest (and overloaded calls).
    pub calls: u64,
    /// Faulted calls of this generation.
    pub errors: u64,
    /// Faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Median call time (µs, last 1024 successful calls).
    pub p50_us: u64,
    /// 99th percentile call time (µs).
    pub p99_us: u64,
    /// Last call fault.
    pub last_error: Option<String>,
    /// Last failed load of a new file for this plugin (the active generation kept serving).
    pub last_load_error: Option<String>,
    /// True while any hook's breaker is open or half-open (calls skip the plugin).
    pub degraded: bool,
    /// Circuit breaker of each declared hook.
    pub breakers: Vec<BreakerStatus>,
    /// Calls that skipped this generation because a breaker was open (all hooks); they
    /// never entered the guest and are not in `calls`.
    pub skipped_calls: u64,
    /// Hosts whose decision by this shadow generation went from agreeing (or unseen) to
    /// differing from the applied one, as reported by the server
    /// (`PluginManager::note_shadow_disagreement`): a host that keeps differing counts once.
    pub shadow_disagreements: u64,
    /// Kept generations, newest first (the active one included).
    pub generations: Vec<String>,
}

/// The circuit breaker of one hook of a plugin generation (see `BreakerConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    /// The hook.
    pub hook: Hook,
    /// Closed, open or half-open.
    pub state: BreakerState,
    /// While open: when the cool-down ends and the next call becomes a trial (Unix ms).
    pub open_until_unix_ms: Option<u64>,
    /// Current cool-down (doubles after each failed trial, back to the configured one on closing).
    pub cool_down_ms: u64,
    /// Calls that entered the guest within the window (while closed).
    pub calls_in_window: u64,
    /// Of those, faulted calls.
    pub faults_in_window: u64,
    /// Times it opened since this generation was loaded.
    pub times_opened: u64,
    /// Calls skipped while it was open.
    pub skipped_calls: u64,
}

/// State of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls enter the guest.
    Closed,
    /// Calls are skipped (fail-static) until the cool-down ends.
    Open,
    /// The cool-down is over: the next call (or the one running) is the trial that decides.
    HalfOpen,
}

/// A file that failed to load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadFailure {
    /// The file.
    pub file: PathBuf,
    /// The plugin name, if its metadata was readable.
    pub plugin: Option<String>,
    /// Why.
    pub error: String,
    /// When (Unix seconds).
    pub at_unix: u64,
}

/// The whole plugin system's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ManagerStatus {
    /// Set generation, incremented by every swap.
    pub generation: u64,
    /// Plugins in chain order.
    pub plugins: Vec<PluginStatus>,
    /// Files currently failing to load.
    pub load_errors: Vec<LoadFailure>,
    /// Configured plugins that are not loaded (the server is not ready while any is).
    pub unavailable: Vec<UnavailablePlugin>,
}

/// A configured plugin (a `[plugins.plugin.NAME]` table or a name in `order`) that is not
/// loaded: its file is missing or failed to load and no generation of it could be restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnavailablePlugin {
    /// Plugin name.
    pub name: String,
    /// Why it is not loaded.
    pub reason: String,
    /// What hosts get meanwhile.
    pub on_unavailable: OnUnavailable,
    /// Its configured mode (a shadow plugin's absence changes no decision).
    pub mode: Mode,
    /// Hooks of its last known generation (`None`: never loaded here; treated as
    /// `configure` and `select-rules`).
    pub hooks: Option<Vec<Hook>>,
    /// Its last known generation.
    pub last_generation: Option<String>,
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Plugins (name, generation) newly loaded.
    pub loaded: Vec<(String, String)>,
    /// Plugins kept as they were.
    pub unchanged: Vec<String>,
    /// Plugins unloaded because their file is gone.
    pub unloaded: Vec<String>,
    /// Files that failed (the previous generation, if any, kept serving).
    pub errors: Vec<LoadFailure>,
    /// True if the active set was swapped.
    pub swapped: bool,
}
