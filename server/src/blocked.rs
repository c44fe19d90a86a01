//! The end-user block page's logic (`/ui/blocked`, rendered by the console): what was blocked
//! on one machine and why, and a user's request for approval, which becomes a rule proposal
//! for admins to review.
//!
//! Must never: reveal anything beyond that binary on that machine (no other hosts, no rule-set
//! names — only the applying rule's type and its own custom message), read without bound (the
//! machine's newest [`MAX_EVENTS_SCANNED`] events of that file are looked at, through the
//! store's machine + SHA-256 index; no fleet-wide scan), or
//! create a rule: a request only records a pending proposal (host scope, allow that binary).
//! Rate limits per machine live in [`BlockPageLimits`].

use dasher_sdk::domain::RuleKey;
use dasher_sdk::names::MachineId;
use dasher_sdk::wire::{self, Decision, Policy, RuleType};
use dasher_store::{EventFilter, EventKind, Proposal, Store, StoreError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Longest justification a user may send (characters).
pub const MAX_JUSTIFICATION_CHARS: usize = 1000;
/// Shortest justification (characters, after trimming): a reviewer needs a reason.
pub const MIN_JUSTIFICATION_CHARS: usize = 3;
/// Longest user name accepted from the URL (characters); longer ones are cut.
pub const MAX_USERNAME_CHARS: usize = 128;
/// How many of the machine's newest events of the blocked file are looked at.
pub const MAX_EVENTS_SCANNED: usize = 500;

/// Block-page views per machine per minute.
pub const VIEWS_PER_MACHINE_PER_MINUTE: u32 = 30;
/// Approval requests per machine per hour (burst [`REQUEST_BURST`]).
pub const REQUESTS_PER_MACHINE_PER_HOUR: u32 = 10;
/// Approval requests a machine may send at once before the hourly pace applies.
pub const REQUEST_BURST: u32 = 3;
/// Block-page requests (views and approval requests) per second over all machines: bounds the
/// work an attacker cycling through made-up machine ids can cause.
pub const ALL_MACHINES_PER_SECOND: u32 = 50;

/// Why a block-page request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockedError {
    /// A parameter is missing or malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What to do about it.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> BlockedError {
    BlockedError::Invalid { field, message: message.into() }
}

/// Checks a `sha256` parameter (64 hex digits) and returns it lower-cased.
pub fn parse_sha256(s: &str) -> Result<String, BlockedError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(invalid("sha256", "sha256 must be the 64 hexadecimal digits of the blocked file's SHA-256"))
    }
}

/// A user name from the URL: control characters removed, cut to [`MAX_USERNAME_CHARS`];
/// `None` if nothing is left.
pub fn clean_username(s: &str) -> Option<String> {
    let name: String = s.chars().filter(|c| !c.is_control()).take(MAX_USERNAME_CHARS).collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Checks a justification: trimmed, [`MIN_JUSTIFICATION_CHARS`] to
/// [`MAX_JUSTIFICATION_CHARS`] characters, no control characters except line breaks and tabs.
pub fn check_justification(s: &str) -> Result<String, BlockedError> {
    let s = s.trim();
    let n = s.chars().count();
    if n < MIN_JUSTIFICATION_CHARS {
        return Err(invalid(
            "justification",
            format!("please say in at least {MIN_JUSTIFICATION_CHARS} characters why you need this software"),
        ));
    }
    if n > MAX_JUSTIFICATION_CHARS {
        return Err(invalid(
            "justification",
            format!("the justification is {n} characters long; please shorten it to {MAX_JUSTIFICATION_CHARS}"),
        ));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid("justification", "the justification contains control characters; please retype it"));
    }
    Ok(s.replace("\r\n", "\n"))
}

/// Why the binary was blocked, as far as the server can tell.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// A rule of this type blocks it; its custom message and URL, if it has them.
    Rule {
        /// What the rule names (binary, certificate, Team ID, signing ID, CDHash).
        rule_type: RuleType,
        /// The rule's message for users.
        custom_msg: Option<String>,
        /// The rule's "open" URL.
        custom_url: Option<String>,
    },
    /// A rule of this type blocked it, but the rule the machine holds now allows it: it runs
    /// after the machine's next sync.
    NowAllowed {
        /// The rule type.
        rule_type: RuleType,
    },
    /// A rule of this type blocked it and is no longer among the machine's rules (removed or
    /// not yet synced): the server cannot show its message.
    RuleNotFound {
        /// The rule type.
        rule_type: RuleType,
    },
    /// A rule from the Mac's configuration profile (not from this server) blocked it.
    StaticRule,
    /// No rule matched and the Mac is in Lockdown mode, which blocks unknown software.
    Unknown,
    /// A scope (path or script) rule of the client blocked it.
    Scope,
}

/// What the block page shows about one blocked binary on one machine.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockedBinary {
    /// The machine.
    pub machine_id: String,
    /// File SHA-256 (lower-case hex).
    pub sha256: String,
    /// File name.
    pub file_name: String,
    /// Directory the file was in.
    pub file_path: String,
    /// Bundle (app) name, if any.
    pub bundle_name: String,
    /// Bundle id, if any.
    pub bundle_id: String,
    /// Bundle version string, if any.
    pub bundle_version: String,
    /// Apple Team ID of the signer, if any.
    pub team_id: String,
    /// Signing ID, if any.
    pub signing_id: String,
    /// Common name of the signing certificate, if signed.
    pub publisher: String,
    /// The user that ran it (as Santa reported).
    pub executing_user: String,
    /// The newest block's decision.
    pub decision: Decision,
    /// How many blocks of it were found among the machine's newest events of that file.
    pub times: usize,
    /// When the newest block happened (Unix seconds; 0 if unknown).
    pub last_blocked_unix: f64,
    /// Why.
    pub why: Why,
}

/// The rule type a block decision names, if it names one.
pub fn decision_rule_type(d: Decision) -> Option<RuleType> {
    match d {
        Decision::BlockBinary => Some(RuleType::Binary),
        Decision::BlockCertificate => Some(RuleType::Certificate),
        Decision::BlockTeamId => Some(RuleType::TeamId),
        Decision::BlockSigningId => Some(RuleType::SigningId),
        Decision::BlockCdHash => Some(RuleType::CdHash),
        _ => None,
    }
}

/// Finds the newest block of `sha256` on `machine_id` among the machine's newest
/// [`MAX_EVENTS_SCANNED`] events of that file (one indexed read by machine and SHA-256), and
/// why it was blocked. `None` if none was reported (also for a machine the server does not
/// know): the caller shows a neutral page.
pub async fn lookup(
    store: &dyn Store,
    machine_id: &MachineId,
    sha256: &str,
) -> Result<Option<BlockedBinary>, StoreError> {
    let mid = machine_id.as_str();
    let Some(host) = store.get_host(mid).await? else { return Ok(None) };
    let filter = EventFilter {
        machine_id: Some(mid.to_owned()),
        file_sha256: Some(sha256.to_owned()),
        limit: MAX_EVENTS_SCANNED,
        ..Default::default()
    };
    let mut newest: Option<wire::Event> = None;
    let mut times = 0usize;
    for r in store.query_events(&filter).await? {
        if r.event.kind != EventKind::Execution {
            continue;
        }
        let Ok(d) = r.event.decision.parse::<Decision>() else { continue };
        if !d.is_block() {
            continue;
        }
        times += 1;
        if newest.is_none() {
            // Stored events are the SDK's wire form; one that does not read back is skipped.
            newest = serde_json::from_value(r.event.body.clone()).ok();
        }
    }
    let Some(event) = newest else { return Ok(None) };
    let decision = event.decision_value();
    let sets = host.sync.acked.as_ref().map(|a| a.rule_sets.clone()).unwrap_or_default();
    let why = explain(store, &event, decision, &sets).await?;
    Ok(Some(BlockedBinary {
        machine_id: mid.to_owned(),
        sha256: sha256.to_owned(),
        file_name: event.file_name.clone(),
        file_path: event.file_path.clone(),
        bundle_name: event.file_bundle_name.clone(),
        bundle_id: event.file_bundle_id.clone(),
        bundle_version: event.file_bundle_version_string.clone(),
        team_id: event.team_id.clone(),
        signing_id: event.signing_id.clone(),
        publisher: event.signing_chain.first().map(|c| c.cn.clone()).unwrap_or_default(),
        executing_user: event.executing_user.clone(),
        decision,
        times,
        last_blocked_unix: event.execution_time,
        why,
    }))
}

/// The identifier a rule of `rule_type` would have for this event.
fn identifier_for(event: &wire::Event, rule_type: RuleType) -> Option<String> {
    let id = match rule_type {
        RuleType::Binary => event.file_sha256.clone(),
        RuleType::Certificate => event.signing_chain.first()?.sha256.clone(),
        RuleType::TeamId => event.team_id.clone(),
        RuleType::SigningId => event.signing_id.clone(),
        RuleType::CdHash => event.cdhash.clone(),
        RuleType::Unknown => return None,
    };
    dasher_sdk::domain::validate_identifier(rule_type, &id).ok()
}

/// Why `event` was blocked: the rule the machine holds for it (first of its acknowledged
/// `sets` in precedence order, at the head version), or the decision's own reason.
async fn explain(
    store: &dyn Store,
    event: &wire::Event,
    decision: Decision,
    sets: &[String],
) -> Result<Why, StoreError> {
    if event.static_rule {
        return Ok(Why::StaticRule);
    }
    let Some(rule_type) = decision_rule_type(decision) else {
        return Ok(if decision == Decision::BlockScope { Why::Scope } else { Why::Unknown });
    };
    let Some(identifier) = identifier_for(event, rule_type) else { return Ok(Why::RuleNotFound { rule_type }) };
    let key = RuleKey { rule_type, identifier };
    let head = store.head_version().await?;
    for set in sets {
        if let Some(rule) = store.get_rule(set, &key, head).await? {
            return Ok(match rule.policy {
                Policy::Allowlist | Policy::AllowlistCompiler => Why::NowAllowed { rule_type },
                _ => Why::Rule { rule_type, custom_msg: rule.custom_msg, custom_url: rule.custom_url },
            });
        }
    }
    Ok(Why::RuleNotFound { rule_type })
}

/// A user's request to run a blocked binary.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    /// The machine it was blocked on.
    pub machine_id: MachineId,
    /// The binary (checked with [`parse_sha256`]).
    pub sha256: String,
    /// Who asks (from Santa's `%username%`; cleaned with [`clean_username`]).
    pub username: Option<String>,
    /// Why (checked with [`check_justification`]).
    pub justification: String,
}

/// What a request did.
#[derive(Clone, Debug)]
pub enum RequestOutcome {
    /// Recorded on this proposal (`created`: a new one, else an existing one was raised).
    Recorded {
        /// The proposal, as stored after the request.
        proposal: Box<Proposal>,
        /// True if this request created it.
        created: bool,
    },
    /// No block of that binary on that machine is known: nothing recorded.
    NothingBlocked,
}

/// Records `req` as a user's approval request for the binary through
/// [`crate::proposals::user_request`] (the same path as `POST /api/v1/proposals/requests`):
/// it raises the binary's pending allow proposal (one per binary, so requests from many users
/// and Macs add up; the requests keep machine, user and justification) and asks `review`
/// plugins (e.g. approval-voting) to decide it. Only for a block the machine reported; an
/// admin picks the scope when approving.
pub async fn request_approval(
    store: &dyn Store,
    policy: &dyn crate::policy::PolicyEngine,
    req: &ApprovalRequest,
    now: i64,
) -> Result<RequestOutcome, StoreError> {
    let Some(blocked) = lookup(store, &req.machine_id, &req.sha256).await? else {
        return Ok(RequestOutcome::NothingBlocked);
    };
    let proposal = crate::proposals::user_request(
        store,
        policy,
        req.machine_id.as_str(),
        &blocked.sha256,
        req.username.as_deref(),
        &req.justification,
        now,
    )
    .await?;
    let created = proposal.requests <= 1;
    tracing::info!(id = proposal.id, machine_id = req.machine_id.as_str(), sha256 = %blocked.sha256, created, "approval requested from the block page");
    Ok(RequestOutcome::Recorded { proposal: Box::new(proposal), created })
}

/// Rate limits of the block page: views and approval requests per machine, and all of it
/// over every machine. Buckets of machines not seen for a while are dropped as it goes.
pub struct BlockPageLimits {
    views: DefaultKeyedRateLimiter<String>,
    requests: DefaultKeyedRateLimiter<String>,
    all: DefaultDirectRateLimiter,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl Default for BlockPageLimits {
    fn default() -> Self {
        let nz = |n: u32| NonZeroU32::new(n).expect("limits are positive");
        BlockPageLimits {
            views: RateLimiter::keyed(Quota::per_minute(nz(VIEWS_PER_MACHINE_PER_MINUTE))),
            requests: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(3600) / REQUESTS_PER_MACHINE_PER_HOUR)
                    .expect("non-zero period")
                    .allow_burst(nz(REQUEST_BURST)),
            ),
            all: RateLimiter::direct(Quota::per_second(nz(ALL_MACHINES_PER_SECOND))),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }
}

impl BlockPageLimits {
    /// Takes one page view from `machine_id`'s budget, or says how long to wait.
    pub fn check_view(&self, machine_id: &str) -> Result<(), Duration> {
        self.check(&self.views, machine_id)
    }

    /// Takes one approval request from `machine_id`'s budget, or says how long to wait.
    pub fn check_request(&self, machine_id: &str) -> Result<(), Duration> {
        self.check(&self.requests, machine_id)
    }

    fn check(&self, keyed: &DefaultKeyedRateLimiter<String>, machine_id: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Relaxed) % 4096 == 4095 {
            self.views.retain_recent();
            self.requests.retain_recent();
        }
        let now = self.clock.now();
        self.all.check().map_err(|n| n.wait_time_from(now))?;
        keyed.check_key(&machine_id.to_owned()).map_err(|n| n.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests;
