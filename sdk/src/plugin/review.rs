//! The `review` hook's payloads: a rule proposal with everything known about it in, a
//! decision out. Inputs ignore unknown fields; the output is parsed strictly.

use super::ProposalScope;
use crate::domain::RuleSpec;
use serde::{Deserialize, Serialize};

/// Where a request for a proposal came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    /// A triage plugin proposed the rule from a host's events.
    #[default]
    Triage,
    /// A user asked for approval (the block page's request form).
    User,
}

/// One request for a proposal: a triage proposal or a user's approval request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProposalRequest {
    /// Triage or user.
    pub source: RequestSource,
    /// The host it came from.
    pub machine_id: String,
    /// The requesting user (user requests; empty for triage).
    pub user: String,
    /// The justification (user) or the plugin's reason (triage).
    pub reason: String,
    /// When (Unix seconds).
    pub at_unix: i64,
}

/// The proposal under review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProposalFacts {
    /// Store id.
    pub id: u64,
    /// Where it would go as proposed.
    pub scope: ProposalScope,
    /// The rule set it resolves to (`host:<machine id>` for a host scope).
    pub rule_set: String,
    /// The rule as proposed.
    pub rule: RuleSpec,
    /// The latest reason given.
    pub reason: String,
    /// How many times it was proposed or requested.
    pub count: u64,
    /// Every host that raised it, first first.
    pub hosts: Vec<String>,
    /// First raised (Unix seconds).
    pub first_seen_unix: i64,
    /// Last raised (Unix seconds).
    pub last_seen_unix: i64,
}

impl Default for ProposalFacts {
    fn default() -> Self {
        ProposalFacts {
            id: 0,
            scope: ProposalScope::Global,
            rule_set: String::new(),
            rule: RuleSpec {
                identifier: String::new(),
                rule_type: crate::wire::RuleType::Unknown,
                policy: crate::wire::Policy::Unknown,
                custom_msg: None,
                custom_url: None,
                cel_expr: None,
                notification_app_name: None,
                event_detail_button_label: None,
                comment: None,
            },
            reason: String::new(),
            count: 0,
            hosts: vec![],
            first_seen_unix: 0,
            last_seen_unix: 0,
        }
    }
}

/// How widespread the proposal's binary is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prevalence {
    /// Distinct hosts that raised the proposal or requested it.
    pub hosts: u64,
    /// Distinct users who requested it.
    pub users: u64,
    /// Events the fleet sent for the binary, ever (BINARY proposals; 0 otherwise).
    pub binary_events: u64,
    /// Distinct hosts that sent an event for the binary, ever (BINARY proposals; 0 otherwise).
    pub binary_hosts: u64,
}

/// What the server knows of the binary's signer, from the latest event that carried signing
/// data (BINARY proposals).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignerFacts {
    /// SHA-256 of the executable.
    pub file_sha256: String,
    /// Binary name.
    pub file_name: String,
    /// CFBundleIdentifier.
    pub file_bundle_id: String,
    /// Apple Team ID ("" if unsigned or a platform binary).
    pub team_id: String,
    /// `TEAMID:com.x` or `platform:com.apple.x`.
    pub signing_id: String,
    /// CD hash.
    pub cdhash: String,
    /// SHA-256 of the leaf signing certificate.
    pub certificate_sha256: String,
    /// Common name of the leaf signing certificate.
    pub certificate_cn: String,
}

/// A `BLOCKLIST`/`SILENT_BLOCKLIST` rule covering the binary in the global set, the
/// proposal's target set or a requesting host's selected sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockingRule {
    /// Its rule set.
    pub rule_set: String,
    /// Its rule type (`BINARY`, `TEAMID`, …).
    pub rule_type: String,
    /// Its identifier.
    pub identifier: String,
    /// The approved proposal that committed it; `None` = written by an admin.
    pub by_proposal: Option<u64>,
}

/// Input of the `review` hook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewInput {
    /// The proposal.
    pub proposal: ProposalFacts,
    /// Every request for it (triage and users), oldest first.
    pub requests: Vec<ProposalRequest>,
    /// Prevalence.
    pub prevalence: Prevalence,
    /// The signer, if an event of the binary is stored.
    pub signer: Option<SignerFacts>,
    /// Block rules already covering the binary.
    pub blocking_rules: Vec<BlockingRule>,
    /// Now (Unix seconds).
    pub now_unix: i64,
}

impl ReviewInput {
    /// True if an admin (not an approved proposal) committed a block rule for the binary.
    pub fn blocked_by_admin(&self) -> bool {
        self.blocking_rules.iter().any(|r| r.by_proposal.is_none())
    }

    /// Distinct requesting users, in order of their first request.
    pub fn users(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for r in self.requests.iter().filter(|r| r.source == RequestSource::User && !r.user.is_empty()) {
            if !out.contains(&r.user.as_str()) {
                out.push(&r.user);
            }
        }
        out
    }

    /// Distinct hosts of users' requests, in order of their first request.
    pub fn requesting_hosts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![];
        for r in self.requests.iter().filter(|r| r.source == RequestSource::User && !r.machine_id.is_empty()) {
            if !out.contains(&r.machine_id.as_str()) {
                out.push(&r.machine_id);
            }
        }
        out
    }
}

/// Approve, reject, or leave for an admin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// No decision: the proposal stays pending for an admin (or a later review).
    #[default]
    Leave,
    /// Commit the rule (see [`ReviewDecision::scope`] and [`ReviewDecision::rule`]).
    Approve,
    /// Reject the proposal; nothing is committed.
    Reject,
}

/// Where an approved rule goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApprovalScope {
    /// The proposal's own rule set.
    #[default]
    AsProposed,
    /// The own set (`host:<machine id>`) of every host that requested it (users' requests;
    /// the hosts that raised it when no user requested it).
    Hosts,
    /// A named rule set.
    RuleSet {
        /// The rule set.
        name: String,
    },
    /// The `global` set (every host).
    Global,
}

/// Output of the `review` hook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewDecision {
    /// Approve, reject or leave (the default).
    pub decision: ReviewVerdict,
    /// For `approve`: where the rule goes (default: as proposed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<ApprovalScope>,
    /// For `approve`: the rule to commit instead of the proposed one (e.g. a `TEAMID`
    /// rule for the binary's signer). Validated by the server like any rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleSpec>,
    /// Why, recorded with the decision.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl ReviewDecision {
    /// No decision: leave it for an admin.
    pub fn leave() -> Self {
        ReviewDecision::default()
    }

    /// Approve into `scope`.
    pub fn approve(scope: ApprovalScope, reason: impl Into<String>) -> Self {
        ReviewDecision { decision: ReviewVerdict::Approve, scope: Some(scope), rule: None, reason: reason.into() }
    }

    /// Reject.
    pub fn reject(reason: impl Into<String>) -> Self {
        ReviewDecision { decision: ReviewVerdict::Reject, reason: reason.into(), ..Default::default() }
    }

    /// The same decision committing `rule` instead of the proposed one.
    pub fn with_rule(mut self, rule: RuleSpec) -> Self {
        self.rule = Some(rule);
        self
    }
}
