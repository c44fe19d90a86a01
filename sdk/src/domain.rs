//! Dasher's domain types: what the store keeps and what policy (built-in or plugin) sees.
//! Wire quirks stop at the server's protocol layer; nothing here depends on a client
//! generation.

use crate::wire::{self, ClientMode, FileAccessAction, Policy, RuleType, SyncType};
use serde::{Deserialize, Serialize};

pub use crate::names::GLOBAL_RULE_SET;

/// The implicit rule set holding one host's own rules.
pub fn host_rule_set(machine_id: &str) -> String {
    format!("{}{machine_id}", crate::names::HOST_SET_PREFIX)
}

/// A rule's identity: clients keep one rule per `(rule_type, identifier)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleKey {
    /// What the identifier names.
    pub rule_type: RuleType,
    /// Normalised identifier.
    pub identifier: String,
}

/// A validated, normalised rule as stored and as sent (never `Policy::Remove`: removal is
/// the absence of a rule).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Normalised identifier (see [`validate_identifier`]).
    pub identifier: String,
    /// What the identifier names.
    pub rule_type: RuleType,
    /// Allow / block / CEL…
    pub policy: Policy,
    /// Block-dialog message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_msg: Option<String>,
    /// "Open" button URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_url: Option<String>,
    /// CEL expression (policy CEL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel_expr: Option<String>,
    /// "App allowed" notification name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_app_name: Option<String>,
    /// Event-detail button label (≤ 48 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_detail_button_label: Option<String>,
    /// Why the rule exists (rules files, admin API, console). Kept by the server only: never
    /// sent to clients, but a change of it is a rule change like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Rule {
    /// The rule's identity.
    pub fn key(&self) -> RuleKey {
        RuleKey { rule_type: self.rule_type, identifier: self.identifier.clone() }
    }

    /// The wire form of this rule.
    pub fn to_wire(&self) -> wire::Rule {
        wire::Rule {
            identifier: self.identifier.clone(),
            policy: self.policy as i32,
            rule_type: self.rule_type as i32,
            custom_msg: self.custom_msg.clone(),
            custom_url: self.custom_url.clone(),
            notification_app_name: self.notification_app_name.clone(),
            cel_expr: self.cel_expr.clone(),
            event_detail_button_label: self.event_detail_button_label.clone(),
            ..Default::default()
        }
    }

    /// The wire form of a removal of `key`.
    pub fn removal_to_wire(key: &RuleKey) -> wire::Rule {
        wire::Rule {
            identifier: key.identifier.clone(),
            policy: Policy::Remove as i32,
            rule_type: key.rule_type as i32,
            ..Default::default()
        }
    }
}

/// A rule that fails the client's own checks (§5.5).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Identifier missing.
    #[error("identifier is empty")]
    EmptyIdentifier,
    /// Identifier does not fit the rule type.
    #[error("identifier {identifier:?} is not a valid {rule_type} identifier: {expected}")]
    BadIdentifier {
        /// The rule type.
        rule_type: RuleType,
        /// The given identifier (truncated).
        identifier: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `RuleType::Unknown`.
    #[error("rule_type is required")]
    UnknownRuleType,
    /// `Policy::Unknown`.
    #[error("policy is required")]
    UnknownPolicy,
    /// CEL policy without an expression, or an expression on another policy.
    #[error("cel_expr is required for policy CEL and only allowed with it")]
    CelMismatch,
    /// A text field too long.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Maximum.
        max: usize,
    },
    /// A control character other than newline and tab in a text field (clients are
    /// Objective-C: a U+0000 ends the string there).
    #[error(
        "{field} contains the control character U+{code:04X} at character {index}; only newline and tab are allowed"
    )]
    ControlCharacter {
        /// Field name.
        field: &'static str,
        /// The character's code point.
        code: u32,
        /// Its 0-based position, in characters.
        index: usize,
    },
    /// A URL clients would not open as a web page.
    #[error("{field} must be an http:// or https:// URL with a host: {reason}")]
    BadUrl {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `cel_expr` would not compile in santad (checked only with the `cel` feature).
    #[error("cel_expr does not compile at line {line}, column {column}: {message}")]
    CelInvalid {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

impl RuleError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            RuleError::EmptyIdentifier | RuleError::BadIdentifier { .. } => "identifier",
            RuleError::UnknownRuleType => "rule_type",
            RuleError::UnknownPolicy => "policy",
            RuleError::CelMismatch | RuleError::CelInvalid { .. } => "cel_expr",
            RuleError::TooLong { field, .. }
            | RuleError::ControlCharacter { field, .. }
            | RuleError::BadUrl { field, .. } => field,
        }
    }
}

/// Longest accepted identifier (a SIGNINGID is `TEAMID:` plus a bundle-id-like string).
pub const MAX_IDENTIFIER_BYTES: usize = 512;
/// Longest accepted custom message / URL / CEL expression.
pub const MAX_RULE_TEXT_CHARS: usize = 4096;
/// Clients truncate the button label to this (NPS `kEventDetailButtonTextMaxLength`).
pub const MAX_BUTTON_LABEL_CHARS: usize = 48;

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_team_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Validates and normalises an identifier exactly as current clients do (§5.5): hashes
/// lower-cased, Team IDs upper-cased, `platform` prefixes lower-cased, signing ids kept.
pub fn validate_identifier(rule_type: RuleType, identifier: &str) -> Result<String, RuleError> {
    let id = identifier.trim();
    if id.is_empty() {
        return Err(RuleError::EmptyIdentifier);
    }
    let bad =
        |expected| RuleError::BadIdentifier { rule_type, identifier: identifier.chars().take(80).collect(), expected };
    if id.len() > MAX_IDENTIFIER_BYTES {
        return Err(bad("at most 512 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("no control characters"));
    }
    match rule_type {
        RuleType::Unknown => Err(RuleError::UnknownRuleType),
        RuleType::Binary | RuleType::Certificate => {
            if id.len() == 64 && is_hex(id) {
                Ok(id.to_ascii_lowercase())
            } else {
                Err(bad("64 hexadecimal characters (SHA-256)"))
            }
        }
        RuleType::CdHash => {
            if id.len() == 40 && is_hex(id) {
                Ok(id.to_ascii_lowercase())
            } else {
                Err(bad("40 hexadecimal characters"))
            }
        }
        RuleType::TeamId => {
            if is_team_id(id) {
                Ok(id.to_ascii_uppercase())
            } else {
                Err(bad("10 letters or digits (Apple Team ID)"))
            }
        }
        RuleType::SigningId => {
            let Some((prefix, signing_id)) = id.split_once(':') else {
                return Err(bad("TEAMID:signing.id or platform:signing.id"));
            };
            if signing_id.is_empty() {
                return Err(bad("a non-empty signing id after the ':'"));
            }
            if prefix.eq_ignore_ascii_case("platform") {
                Ok(format!("platform:{signing_id}"))
            } else if is_team_id(prefix) {
                Ok(format!("{}:{signing_id}", prefix.to_ascii_uppercase()))
            } else {
                Err(bad("a prefix that is a Team ID or 'platform'"))
            }
        }
    }
}

/// An unvalidated rule as an admin or a plugin writes it; `Policy::Remove` means delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Identifier (normalised on validation).
    pub identifier: String,
    /// Rule type.
    pub rule_type: RuleType,
    /// Policy; `REMOVE` deletes the rule from its set.
    pub policy: Policy,
    /// Block-dialog message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_msg: Option<String>,
    /// "Open" button URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_url: Option<String>,
    /// CEL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel_expr: Option<String>,
    /// Notification name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_app_name: Option<String>,
    /// Button label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_detail_button_label: Option<String>,
    /// Why the rule exists (kept by the server, never sent to clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl RuleSpec {
    /// A rule with no optional fields: `RuleSpec::new(RuleType::TeamId, "EQHXZ8M8AV", Policy::Allowlist)`.
    pub fn new(rule_type: RuleType, identifier: impl Into<String>, policy: Policy) -> Self {
        RuleSpec {
            identifier: identifier.into(),
            rule_type,
            policy,
            custom_msg: None,
            custom_url: None,
            cel_expr: None,
            notification_app_name: None,
            event_detail_button_label: None,
            comment: None,
        }
    }

    /// An `ALLOWLIST` rule.
    pub fn allow(rule_type: RuleType, identifier: impl Into<String>) -> Self {
        Self::new(rule_type, identifier, Policy::Allowlist)
    }

    /// A `BLOCKLIST` rule.
    pub fn block(rule_type: RuleType, identifier: impl Into<String>) -> Self {
        Self::new(rule_type, identifier, Policy::Blocklist)
    }

    /// A `REMOVE` (delete the rule with this key from its set).
    pub fn remove(rule_type: RuleType, identifier: impl Into<String>) -> Self {
        Self::new(rule_type, identifier, Policy::Remove)
    }

    /// A `CEL` rule with its expression.
    pub fn cel(rule_type: RuleType, identifier: impl Into<String>, expr: impl Into<String>) -> Self {
        Self::new(rule_type, identifier, Policy::Cel).with_cel(expr)
    }

    /// With the block dialog's message.
    pub fn with_message(mut self, msg: impl Into<String>) -> Self {
        self.custom_msg = Some(msg.into());
        self
    }

    /// With the block dialog's "Open" button URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.custom_url = Some(url.into());
        self
    }

    /// With a CEL expression.
    pub fn with_cel(mut self, expr: impl Into<String>) -> Self {
        self.cel_expr = Some(expr.into());
        self
    }

    /// With a comment (why the rule exists).
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// A text field as stored: empty means unset; at most `max` characters; no control
/// characters but newline and tab.
fn clean_text(field: &'static str, v: &Option<String>, max: usize) -> Result<Option<String>, RuleError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() > max => Err(RuleError::TooLong { field, max }),
        Some(s) => match s.chars().enumerate().find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t')) {
            Some((index, c)) => Err(RuleError::ControlCharacter { field, code: u32::from(c), index }),
            None => Ok(Some(s.to_owned())),
        },
    }
}

/// Refuses a URL that is not `http://` or `https://` with a host (a `javascript:` or `file:`
/// URL behind the block dialog's button). Santa's `%placeholders%` are left alone.
fn check_web_url(field: &'static str, url: &str) -> Result<(), RuleError> {
    let bad = |reason| Err(RuleError::BadUrl { field, reason });
    let Some((scheme, rest)) = url.split_once(':') else { return bad("it has no scheme") };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return bad("only the http and https schemes are allowed");
    }
    let Some(rest) = rest.strip_prefix("//") else { return bad("'//' must follow the scheme") };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return bad("the host is missing");
    }
    if url.chars().any(char::is_whitespace) {
        return bad("it contains whitespace (percent-encode it as %20)");
    }
    Ok(())
}

impl RuleSpec {
    /// Validates the spec: `Ok(Some(rule))` to upsert, `Ok(None)` with the key to remove.
    /// The one gate every rule passes before it is stored (admin API, proposals, plugin host
    /// rules, rule files). With the `cel` feature (the server) `cel_expr` is parsed and
    /// type-checked against Santa's CEL environment ([`crate::cel::check`]); without it
    /// (plugins) only its presence is checked, and the server checks it again.
    pub fn validate(&self) -> Result<(RuleKey, Option<Rule>), RuleError> {
        if self.rule_type == RuleType::Unknown {
            return Err(RuleError::UnknownRuleType);
        }
        if self.policy == Policy::Unknown {
            return Err(RuleError::UnknownPolicy);
        }
        let identifier = validate_identifier(self.rule_type, &self.identifier)?;
        let key = RuleKey { rule_type: self.rule_type, identifier: identifier.clone() };
        if self.policy == Policy::Remove {
            return Ok((key, None));
        }
        let cel_expr = clean_text("cel_expr", &self.cel_expr, MAX_RULE_TEXT_CHARS)?;
        if (self.policy == Policy::Cel) != cel_expr.is_some() {
            return Err(RuleError::CelMismatch);
        }
        #[cfg(feature = "cel")]
        if let Some(expr) = &cel_expr {
            crate::cel::check(expr).map_err(|e| RuleError::CelInvalid {
                line: e.line,
                column: e.column,
                message: e.message,
            })?;
        }
        let custom_url = clean_text("custom_url", &self.custom_url, MAX_RULE_TEXT_CHARS)?;
        if let Some(url) = &custom_url {
            check_web_url("custom_url", url)?;
        }
        let rule = Rule {
            identifier,
            rule_type: self.rule_type,
            policy: self.policy,
            custom_msg: clean_text("custom_msg", &self.custom_msg, MAX_RULE_TEXT_CHARS)?,
            custom_url,
            cel_expr,
            notification_app_name: clean_text("notification_app_name", &self.notification_app_name, 256)?,
            event_detail_button_label: clean_text(
                "event_detail_button_label",
                &self.event_detail_button_label,
                MAX_BUTTON_LABEL_CHARS,
            )?,
            comment: clean_text("comment", &self.comment, MAX_RULE_TEXT_CHARS)?,
        };
        Ok((key, Some(rule)))
    }
}

/// Per-type rule counts as a client reports them in preflight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// BINARY (includes compiler and transitive).
    pub binary: u32,
    /// CERTIFICATE.
    pub certificate: u32,
    /// ALLOWLIST_COMPILER.
    pub compiler: u32,
    /// Local transitive rules.
    pub transitive: u32,
    /// TEAMID.
    pub teamid: u32,
    /// SIGNINGID.
    pub signingid: u32,
    /// CDHASH.
    pub cdhash: u32,
}

impl RuleCounts {
    /// Counts one rule as a client would.
    pub fn add(&mut self, rule: &Rule) {
        match rule.rule_type {
            RuleType::Binary => self.binary += 1,
            RuleType::Certificate => self.certificate += 1,
            RuleType::TeamId => self.teamid += 1,
            RuleType::SigningId => self.signingid += 1,
            RuleType::CdHash => self.cdhash += 1,
            RuleType::Unknown => {}
        }
        if rule.policy == Policy::AllowlistCompiler {
            self.compiler += 1;
        }
    }

    /// Total server-delivered rules (transitive rules are the client's own).
    pub fn total_synced(&self) -> u64 {
        u64::from(self.binary.saturating_sub(self.transitive))
            + u64::from(self.certificate)
            + u64::from(self.teamid)
            + u64::from(self.signingid)
            + u64::from(self.cdhash)
    }

    /// True if a client reporting `self` holds exactly the server-delivered `expected` set.
    pub fn matches_delivered(&self, expected: &RuleCounts) -> bool {
        self.binary.saturating_sub(self.transitive) == expected.binary
            && self.certificate == expected.certificate
            && self.teamid == expected.teamid
            && self.signingid == expected.signingid
            && self.cdhash == expected.cdhash
    }
}

/// What Dasher knows about a host when it makes a policy decision. Normalised from every
/// client generation; the input of the `configure`, `select-rules` and `triage` hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostFacts {
    /// Opaque machine id from the URL.
    pub machine_id: String,
    /// Serial number.
    pub serial_number: String,
    /// Hostname (FQDN).
    pub hostname: String,
    /// macOS version, e.g. `15.5`.
    pub os_version: String,
    /// macOS build, e.g. `24F74`.
    pub os_build: String,
    /// Model identifier, e.g. `Mac15,7`.
    pub model_identifier: String,
    /// Santa version, e.g. `2026.7.123`.
    pub santa_version: String,
    /// Primary user.
    pub primary_user: String,
    /// Primary user's groups (NPS ≥ 2025.6).
    pub primary_user_groups: Vec<String>,
    /// Mode the client reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<ClientMode>,
    /// Admin-assigned tags.
    pub tags: Vec<String>,
    /// The client asked for a clean sync.
    pub request_clean_sync: bool,
    /// Rule counts the client reported.
    pub rule_counts: RuleCounts,
    /// SIP flags, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_status: Option<u32>,
    /// When the host was first seen (Unix seconds).
    pub first_seen_unix: i64,
    /// Now (Unix seconds): time arrives in the input so decisions are replayable.
    pub now_unix: i64,
}

impl HostFacts {
    /// The macOS version (`os_version`), if it parses.
    pub fn macos(&self) -> Option<crate::version::MacOsVersion> {
        crate::version::MacOsVersion::parse(&self.os_version)
    }

    /// True if the host runs macOS `major.minor` or later (false when unknown).
    pub fn macos_at_least(&self, major: u32, minor: u32) -> bool {
        self.macos().is_some_and(|v| v >= crate::version::MacOsVersion::new(major, minor, 0))
    }

    /// The Santa version (`santa_version`), if it parses.
    pub fn santa(&self) -> Option<crate::version::SantaVersion> {
        crate::version::SantaVersion::parse(&self.santa_version)
    }

    /// True if the host runs Santa `year.release` or later (false when unknown).
    pub fn santa_at_least(&self, year: u32, release: u32) -> bool {
        self.santa().is_some_and(|v| v >= crate::version::SantaVersion::new(year, release))
    }
}

/// Settings policy wants a host to have. Every field is optional: `None` = no opinion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigDecision {
    /// MONITOR / LOCKDOWN / STANDALONE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<ClientMode>,
    /// Force a CLEAN or CLEAN_ALL sync (NORMAL = no opinion beyond the default logic),
    /// once per change of this demand: a host that completed the demanded clean sync is not
    /// sent it again until the demand changes or is dropped. Config files may not set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_type: Option<SyncType>,
    /// Events per upload request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Seconds between full syncs (clamped to ≥ 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_sync_interval_seconds: Option<u32>,
    /// Full-sync interval when push is active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_notification_full_sync_interval_seconds: Option<u32>,
    /// ICU regex of paths to allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_path_regex: Option<String>,
    /// ICU regex of paths to block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_path_regex: Option<String>,
    /// Block USB mass storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_usb_mount: Option<bool>,
    /// Remount USB volumes with these flags instead of blocking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remount_usb_mode: Option<Vec<String>>,
    /// FAA override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_file_access_action: Option<FileAccessAction>,
    /// Bundle hashing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_bundles: Option<bool>,
    /// Transitive rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_transitive_rules: Option<bool>,
    /// Upload all events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_all_event_upload: Option<bool>,
    /// Suppress ALLOW_UNKNOWN events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_unknown_event_upload: Option<bool>,
    /// Event detail URL template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_detail_url: Option<String>,
    /// Event detail button text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_detail_text: Option<String>,
}

impl ConfigDecision {
    /// Fills every field `self` has no opinion on from `lower` (a lower-precedence source).
    pub fn fill_from(&mut self, lower: &ConfigDecision) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = lower.$f.clone(); } )* };
        }
        fill!(
            client_mode,
            sync_type,
            batch_size,
            full_sync_interval_seconds,
            push_notification_full_sync_interval_seconds,
            allowed_path_regex,
            blocked_path_regex,
            block_usb_mount,
            remount_usb_mode,
            override_file_access_action,
            enable_bundles,
            enable_transitive_rules,
            enable_all_event_upload,
            disable_unknown_event_upload,
            event_detail_url,
            event_detail_text
        );
    }
}

/// Which rule sets a host gets. `None` = no opinion (the default selection applies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSelection {
    /// Rule-set names in precedence order (first wins); the host's own set always comes
    /// first and `global` last unless listed explicitly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_sets: Option<Vec<String>>,
}

#[cfg(test)]
mod tests;
