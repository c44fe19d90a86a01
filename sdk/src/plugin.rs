//! The policy plugin contract, Rust side: the JSON payloads that cross the WebAssembly
//! boundary (`sdk/wit/plugin.wit`), the metadata a plugin carries, the one-trait-per-hook
//! authoring API, the `kv`/`log` imports, and a native test harness.
//!
//! This module compiles everywhere and never touches wasm: the host (`dasher-policy`) uses the
//! payload and metadata types; plugin authors use the traits, [`kv`], [`log`] and
//! [`testing`]. The WIT glue and the `export_plugin!` macro live behind the `plugin` feature
//! (`dasher_sdk::guest`).
//!
//! Payload rules: inputs (`HostFacts`, [`EventBatch`]) ignore unknown fields so a newer server
//! may send more; outputs (`ConfigDecision`, [`SelectionDecision`], [`Verdicts`]) are parsed
//! strictly (`deny_unknown_fields`) so a typo in a plugin written in another language is an
//! error, not a silently ignored decision. Every output field is optional: absent = no opinion.

use crate::domain::{ConfigDecision, HostFacts, RuleSelection, RuleSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The WIT package this SDK implements.
pub const CONTRACT: &str = "dasher:plugin@0.3.0";
/// The contract's semver (the part after `@` in [`CONTRACT`]).
pub const CONTRACT_VERSION: &str = "0.3.0";
/// This SDK's version, written into every plugin's metadata.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The oldest server that can load plugins built with this SDK (the default
/// `min_server_version` of a plugin's metadata).
pub const MIN_SERVER_VERSION: &str = "0.1.0";
/// Name of the custom section carrying [`PluginMetadata`] as JSON.
pub const METADATA_SECTION: &str = "dasher:plugin";

// ---------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------

/// Which kind of event (mirrors the store's `EventKind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An execution event.
    #[default]
    Execution,
    /// A file-access event.
    FileAccess,
}

/// One stored event as a plugin sees it: normalised from every client generation, with the
/// fields policy decisions use. Input type: unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFacts {
    /// Store id; verdicts refer to events by this id.
    pub id: u64,
    /// Execution or file access.
    pub kind: EventKind,
    /// Decision name, e.g. `BLOCK_UNKNOWN`, `ALLOW_BINARY`, `FILE_ACCESS_DECISION_DENIED`.
    pub decision: String,
    /// SHA-256 of the executable ("" if none).
    pub file_sha256: String,
    /// Directory of the binary (execution) or the accessed path (file access).
    pub file_path: String,
    /// Binary name.
    pub file_name: String,
    /// CFBundleIdentifier.
    pub file_bundle_id: String,
    /// Bundle hash ("" if none).
    pub file_bundle_hash: String,
    /// User of the real UID.
    pub executing_user: String,
    /// Apple Team ID of the signer ("" if unsigned or a platform binary).
    pub team_id: String,
    /// `TEAMID:com.x` or `platform:com.apple.x`.
    pub signing_id: String,
    /// CD hash.
    pub cdhash: String,
    /// SHA-256 of the leaf signing certificate ("" if none).
    pub certificate_sha256: String,
    /// Common name of the leaf signing certificate.
    pub certificate_cn: String,
    /// Parent process name.
    pub parent_name: String,
    /// File-access rule that matched (file-access events).
    pub rule_name: String,
    /// When it happened (Unix seconds; 0 if unknown).
    pub occurred_at_unix: f64,
    /// When the server received it (Unix seconds).
    pub received_at_unix: i64,
}

impl EventFacts {
    /// True for execution events the client blocked.
    pub fn is_block(&self) -> bool {
        self.decision().is_block()
    }

    /// The decision as a typed value (the `decision` field is its wire name).
    pub fn decision(&self) -> EventDecision {
        EventDecision::parse(&self.decision)
    }

    /// True for platform (Apple) binaries.
    pub fn is_platform(&self) -> bool {
        self.signing_id.starts_with("platform:")
    }
}

/// Input of the `triage` hook: one host and a batch of its newly stored events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventBatch {
    /// The host the events came from.
    pub host: HostFacts,
    /// The events, oldest first.
    pub events: Vec<EventFacts>,
}

/// How a `select-rules` decision's `rule_sets` combine with the host's default selection
/// (its tags, each tag's `[tags.X].rule_sets`, and `global`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMode {
    /// The sets are added after the default selection (before `global`): the common case.
    #[default]
    Add,
    /// The sets are the whole selection (the host's own set and `global` are still added):
    /// the default selection is dropped.
    Replace,
}

/// Output of the `select-rules` hook. A superset of [`RuleSelection`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionDecision {
    /// Rule-set names in precedence order (first wins). `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_sets: Option<Vec<String>>,
    /// Whether `rule_sets` add to (`add`, the default when absent) or replace (`replace`)
    /// the host's default selection. Ignored while `rule_sets` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<SelectionMode>,
    /// Rules for this host only, validated by the server (invalid ones are skipped and
    /// logged) and kept in the host's `plugin-host:<machine id>` set, which the plugins own:
    /// a rule no plugin returns any more is removed from the host. `None` = no opinion (with
    /// every plugin at `None` the set is emptied); a `REMOVE` entry just leaves that rule out.
    /// The host's own `host:<machine id>` set (admin-written) takes precedence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rules: Option<Vec<RuleSpec>>,
}

impl SelectionDecision {
    /// A decision adding `sets` to the host's default selection.
    pub fn adding(sets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        SelectionDecision {
            rule_sets: Some(sets.into_iter().map(Into::into).collect()),
            mode: Some(SelectionMode::Add),
            host_rules: None,
        }
    }

    /// A decision replacing the host's default selection with `sets`.
    pub fn replacing(sets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        SelectionDecision { mode: Some(SelectionMode::Replace), ..Self::adding(sets) }
    }

    /// The effective mode (`add` when absent).
    pub fn selection_mode(&self) -> SelectionMode {
        self.mode.unwrap_or_default()
    }

    /// The rule-set part as the domain's [`RuleSelection`].
    pub fn rule_selection(&self) -> RuleSelection {
        RuleSelection { rule_sets: self.rule_sets.clone() }
    }

    /// True when the decision has no opinion at all.
    pub fn is_empty(&self) -> bool {
        self.rule_sets.is_none() && self.host_rules.is_none()
    }
}

/// What to do with a stored event. Events are never deleted by a plugin: `drop` marks it as
/// noise (hidden from default views and not forwarded), `keep` marks it as worth attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Worth attention.
    Keep,
    /// Noise.
    Drop,
}

/// How urgent an event is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Someone should look now.
    Critical,
}

/// Where a proposed rule would go.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalScope {
    /// The host the events came from (its `host:<machine id>` set).
    Host,
    /// A named rule set.
    RuleSet {
        /// The rule set.
        name: String,
    },
    /// The `global` rule set (every host).
    Global,
}

/// A rule a plugin suggests; stored as a pending proposal (or applied when the server allows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleProposal {
    /// Where the rule would go.
    pub scope: ProposalScope,
    /// The rule.
    pub rule: RuleSpec,
    /// Why, for the admin who approves it.
    #[serde(default)]
    pub reason: String,
}

/// A plugin's verdict on one event. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Verdict {
    /// The event ([`EventFacts::id`]).
    pub event_id: u64,
    /// Keep or drop; `None` = no opinion (the event is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Labels to attach, e.g. `team:EQHXZ8M8AV`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Severity; `None` = no opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Rules to propose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<RuleProposal>,
}

impl Verdict {
    /// A verdict with no opinion on `event_id`.
    pub fn on(event_id: u64) -> Self {
        Verdict { event_id, ..Verdict::default() }
    }
}

/// Output of the `triage` hook: at most one verdict per event of the batch; events without a
/// verdict get no opinion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Verdicts {
    /// Verdicts, in any order.
    pub verdicts: Vec<Verdict>,
}

impl Verdicts {
    /// The verdict for `event_id`, if any.
    pub fn get(&self, event_id: u64) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.event_id == event_id)
    }
}

// ---------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------

/// A hook of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// `init(settings-json)`.
    Init,
    /// `configure(host-json)`.
    Configure,
    /// `select-rules(host-json)`.
    SelectRules,
    /// `triage(batch-json)`.
    Triage,
    /// `review(review-json)`.
    Review,
}

impl Hook {
    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Configure => "configure",
            Hook::SelectRules => "select-rules",
            Hook::Triage => "triage",
            Hook::Review => "review",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a plugin's part of a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSource {
    /// The plugin answered.
    Live,
    /// The plugin failed; its last good decision for this host was used.
    LastGood,
    /// The plugin failed; the configured fallback was used.
    Fallback,
    /// The plugin failed and there was nothing to fall back on.
    NoOpinion,
}

/// The `dasher:plugin` custom section: what a plugin is and what it needs. Written by
/// `export_plugin!`, read by the host with wasmparser before compiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// Plugin name (the crate name); unique within a server.
    pub name: String,
    /// Plugin version (the crate version).
    pub version: String,
    /// SDK version it was built with.
    pub sdk_version: String,
    /// WIT package it implements, e.g. `dasher:plugin@0.3.0`.
    pub contract: String,
    /// Hooks it implements; the server calls only these.
    pub hooks: Vec<Hook>,
    /// The oldest server version that can run it.
    pub min_server_version: String,
    /// JSON Schema of its settings, if the author provided one.
    #[serde(default)]
    pub settings_schema: Option<serde_json::Value>,
}

impl PluginMetadata {
    /// True if the plugin implements `hook`.
    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }
}

// ---------------------------------------------------------------------------------------
// Authoring API
// ---------------------------------------------------------------------------------------

/// An error a plugin reports on purpose; becomes the WIT `plugin-error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong, for the admin.
    pub message: String,
}

impl PluginError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError { message: message.into() }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for PluginError {
    fn from(e: E) -> Self {
        PluginError::new(e.to_string())
    }
}

/// The result type of every hook.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Settings checks beyond what serde enforces; list `Validate` in `export_plugin!`'s hooks.
/// An error rejects the load (the previous version of the plugin keeps serving).
pub trait Validate {
    /// Checks the settings.
    fn validate(&self) -> Result<()>;
}

/// The `configure` hook: settings a host should have.
pub trait Configure {
    /// Decides the host's configuration; leave fields `None` to have no opinion.
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision>;
}

/// The `select-rules` hook: which rule sets (and host rules) a host gets.
pub trait SelectRules {
    /// Decides the host's rule selection; leave fields `None` to have no opinion.
    fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision>;
}

/// The `triage` hook: verdicts on newly stored events.
pub trait Triage {
    /// Judges a batch; return verdicts only for events you have an opinion on.
    fn triage(&self, batch: &EventBatch) -> Result<Verdicts>;
}

/// What Santa decided for an event: an execution decision, a file-access decision, or a name
/// this SDK does not know (a newer client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventDecision {
    /// An execution event's decision (`BLOCK_BINARY`, `ALLOW_SIGNINGID`, …).
    Execution(crate::wire::Decision),
    /// A file-access event's decision (`FILE_ACCESS_DECISION_DENIED`, …).
    FileAccess(crate::wire::FileAccessDecision),
    /// A name neither enum has.
    Other(String),
}

impl EventDecision {
    /// From a wire name (canonical or alias).
    pub fn parse(name: &str) -> Self {
        use crate::wire::WireEnum;
        if let Some(d) = crate::wire::Decision::from_name(name) {
            EventDecision::Execution(d)
        } else if let Some(d) = crate::wire::FileAccessDecision::from_name(name) {
            EventDecision::FileAccess(d)
        } else {
            EventDecision::Other(name.to_owned())
        }
    }

    /// True for every kind of block (execution blocks and denied file access).
    pub fn is_block(&self) -> bool {
        use crate::wire::FileAccessDecision as F;
        match self {
            EventDecision::Execution(d) => d.is_block(),
            EventDecision::FileAccess(d) => matches!(d, F::Denied | F::DeniedInvalidSignature),
            EventDecision::Other(_) => false,
        }
    }
}

/// The `review` hook: decides a rule proposal when it is created or raised.
pub trait Review {
    /// Approves (with a scope), rejects, or leaves the proposal for an admin
    /// ([`ReviewDecision::leave`], the default).
    fn review(&self, input: &ReviewInput) -> Result<ReviewDecision>;
}

/// Payloads of the `review` hook.
mod review;
pub use review::{
    ApprovalScope, BlockingRule, Prevalence, ProposalFacts, ProposalRequest, RequestSource, ReviewDecision,
    ReviewInput, ReviewVerdict, SignerFacts,
};

/// Everything a plugin usually needs: `use dasher_sdk::plugin::prelude::*;`.
pub mod prelude {
    pub use super::{
        Action, ApprovalScope, Configure, EventBatch, EventDecision, EventFacts, EventKind, PluginError, ProposalScope,
        RequestSource, Result, Review, ReviewDecision, ReviewInput, ReviewVerdict, RuleProposal, SelectRules,
        SelectionDecision, SelectionMode, Severity, Triage, Validate, Verdict, Verdicts, kv, log,
    };
    pub use crate::domain::{ConfigDecision, HostFacts, RuleSpec};
    pub use crate::version::{MacOsVersion, SantaVersion};
    pub use crate::wire::{ClientMode, Decision, FileAccessDecision, Policy, RuleType, SyncType};
}

/// Glue the export macro calls; stable only through `export_plugin!`.
#[doc(hidden)]
pub mod runtime {
    use super::*;

    /// Hook signature after JSON decoding: plugin + input JSON → output JSON.
    pub type HookFn<T> = fn(&T, &str) -> Result<String>;

    /// Which hooks a plugin implements. Field names are the trait names so the export macro
    /// can fill them from its `hooks: [...]` list.
    #[allow(non_snake_case)]
    pub struct HookTable<T: 'static> {
        /// `Configure`.
        pub Configure: Option<HookFn<T>>,
        /// `SelectRules`.
        pub SelectRules: Option<HookFn<T>>,
        /// `Triage`.
        pub Triage: Option<HookFn<T>>,
        /// `Review`.
        pub Review: Option<HookFn<T>>,
        /// `Validate`.
        pub Validate: Option<fn(&T) -> Result<()>>,
    }

    impl<T: 'static> HookTable<T> {
        /// No hooks.
        pub const EMPTY: Self =
            HookTable { Configure: None, SelectRules: None, Triage: None, Review: None, Validate: None };
    }

    /// Adapters from the typed traits to [`HookFn`]; named like the traits.
    #[allow(non_snake_case)]
    pub mod entry {
        use super::super::*;

        fn decode<I: DeserializeOwned>(what: &str, input: &str) -> Result<I> {
            serde_json::from_str(input).map_err(|e| PluginError::new(format!("invalid {what} input: {e}")))
        }

        fn encode<O: Serialize>(out: &O) -> Result<String> {
            serde_json::to_string(out).map_err(|e| PluginError::new(format!("cannot encode output: {e}")))
        }

        /// `configure`.
        pub fn Configure<T: super::super::Configure>(p: &T, input: &str) -> Result<String> {
            encode(&p.configure(&decode::<HostFacts>("HostFacts", input)?)?)
        }

        /// `select-rules`.
        pub fn SelectRules<T: super::super::SelectRules>(p: &T, input: &str) -> Result<String> {
            encode(&p.select_rules(&decode::<HostFacts>("HostFacts", input)?)?)
        }

        /// `triage`.
        pub fn Triage<T: super::super::Triage>(p: &T, input: &str) -> Result<String> {
            encode(&p.triage(&decode::<EventBatch>("EventBatch", input)?)?)
        }

        /// `review`.
        pub fn Review<T: super::super::Review>(p: &T, input: &str) -> Result<String> {
            encode(&p.review(&decode::<ReviewInput>("ReviewInput", input)?)?)
        }

        /// Settings validation.
        pub fn Validate<T: super::super::Validate>(p: &T) -> Result<()> {
            p.validate()
        }
    }

    /// Parses settings and validates them if the plugin listed `Validate`.
    pub fn init<T: DeserializeOwned + 'static>(table: &HookTable<T>, settings: &str) -> Result<T> {
        let settings = if settings.trim().is_empty() || settings.trim() == "null" { "{}" } else { settings };
        let plugin: T =
            serde_json::from_str(settings).map_err(|e| PluginError::new(format!("invalid settings: {e}")))?;
        if let Some(validate) = table.Validate {
            validate(&plugin).map_err(|e| PluginError::new(format!("invalid settings: {e}")))?;
        }
        Ok(plugin)
    }

    /// Total length of `parts` (for the metadata section's array length).
    pub const fn concat_len(parts: &[&str]) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < parts.len() {
            n += parts[i].len();
            i += 1;
        }
        n
    }

    /// `parts` concatenated into a fixed-size array (the metadata section's bytes).
    pub const fn concat_bytes<const N: usize>(parts: &[&str]) -> [u8; N] {
        let mut out = [0u8; N];
        let mut k = 0;
        let mut i = 0;
        while i < parts.len() {
            let bytes = parts[i].as_bytes();
            let mut j = 0;
            while j < bytes.len() {
                out[k] = bytes[j];
                k += 1;
                j += 1;
            }
            i += 1;
        }
        assert!(k == N, "metadata length mismatch");
        out
    }

    /// `",\"<name>\""` if `present`, else `""` (builds the metadata `hooks` list).
    pub const fn hook_item(present: bool, item: &'static str) -> &'static str {
        if present { item } else { "" }
    }
}

// ---------------------------------------------------------------------------------------
// Imports: kv and log (the server's inside wasm, in-memory natively for tests)
// ---------------------------------------------------------------------------------------

/// The plugin's key/value namespace, persisted by the server and shared by every call of the
/// plugin (concurrent ones included). Keys ≤ 256 bytes, values ≤ 64 KiB.
///
/// [`kv::set`]/[`kv::delete`] are buffered: saved together when the call returns, dropped if
/// it traps. [`kv::increment`]/[`kv::compare_and_swap`] are atomic: applied at once, durable,
/// kept on a later trap, linearizable across concurrent calls and replicas; don't mix the two
/// kinds on one key in one call. Natively (in `cargo test`) it is an in-memory map per thread
/// with no buffering, so every test starts empty; see [`kv::native_clear`].
pub mod kv;

/// Logging into the server log under the plugin's name (natively: collected per thread, see
/// [`log::native_take`]).
pub mod log;

// ---------------------------------------------------------------------------------------
// Native test harness
// ---------------------------------------------------------------------------------------

/// Unit-test a plugin's policy natively (`cargo test`, no wasm): the same JSON round trip and
/// settings handling as inside the server, with [`kv`] and [`log`] in memory.
///
/// ```
/// use dasher_sdk::plugin::prelude::*;
/// use dasher_sdk::plugin::testing::Harness;
///
/// #[derive(serde::Deserialize)]
/// struct Lab { prefix: String }
///
/// impl Configure for Lab {
///     fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
///         let lab = host.hostname.starts_with(&self.prefix);
///         Ok(ConfigDecision { client_mode: lab.then_some(ClientMode::Lockdown), ..Default::default() })
///     }
/// }
///
/// let plugin = Harness::<Lab>::with_settings(r#"{"prefix":"lab-"}"#).unwrap();
/// let host = HostFacts { hostname: "lab-1".into(), ..Default::default() };
/// assert_eq!(plugin.configure(&host).unwrap().client_mode, Some(ClientMode::Lockdown));
/// ```
pub mod testing;

#[cfg(test)]
mod tests;
