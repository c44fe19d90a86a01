//! The end-user block page: `GET /ui/blocked?sha256=…&machine_id=…[&username=…&bundle_id=…
//! &team_id=…&signing_id=…&cdhash=…]` (Santa's `EventDetailURL` placeholders) and its
//! "request approval" form, `POST /ui/blocked` (`sha256`, `machine_id`, `justification`,
//! `csrf_token`, optionally `username`). No sign-in: served on the main listener too.
//!
//! What it shows comes from the server's own records of that machine ([`crate::blocked`]),
//! never from the URL: the extra placeholders are accepted and bounded but only the user name
//! is used (to attribute a request). A machine that reported no block of that binary gets the
//! same neutral page, same status, whatever the reason (unknown machine, other machine's
//! binary, not reported yet). Views and requests are rate-limited per machine (429 page with
//! `Retry-After`). A request records a pending proposal, never a rule.

use super::error::UiError;
use super::layout::{Nav, PageCtx, csrf_field, page};
use super::{Cx, Resp, Result, fmt};
use crate::blocked::{
    self, ApprovalRequest, BlockedBinary, BlockedError, MAX_JUSTIFICATION_CHARS, RequestOutcome, Why,
};
use crate::sync::now_unix;
use dasher_sdk::names::MachineId;
use dasher_sdk::wire::RuleType;
use dasher_store::ProposalStatus;
use http::{StatusCode, header};
use maud::{Markup, html};

/// Longest accepted value of the optional placeholders (`bundle_id`, `team_id`, …).
const MAX_PLACEHOLDER_CHARS: usize = 512;
/// The optional placeholders Santa may fill in besides `sha256` and `machine_id`.
const OPTIONAL: &[&str] = &["username", "bundle_id", "team_id", "signing_id", "cdhash"];

impl From<BlockedError> for UiError {
    fn from(e: BlockedError) -> Self {
        match e {
            BlockedError::Invalid { field, message } => UiError::field(field, message),
            BlockedError::Store(e) => e.into(),
        }
    }
}

/// The parameters every block-page request carries.
struct Target {
    machine_id: MachineId,
    sha256: String,
    username: Option<String>,
}

fn target(cx: &Cx<'_>, get: impl Fn(&str) -> Option<String>) -> Result<Target> {
    for key in OPTIONAL {
        if get(key).is_some_and(|v| v.chars().count() > MAX_PLACEHOLDER_CHARS) {
            return Err(UiError::field(key, format!("{key} must be at most {MAX_PLACEHOLDER_CHARS} characters")));
        }
    }
    let sha256 = get("sha256").ok_or_else(|| {
        UiError::field("sha256", "the link is missing sha256 (the blocked file's SHA-256, Santa's %file_sha%)")
    })?;
    let sha256 = blocked::parse_sha256(&sha256)?;
    let raw = get("machine_id")
        .ok_or_else(|| UiError::field("machine_id", "the link is missing machine_id (Santa's %machine_id%)"))?;
    let machine_id = MachineId::parse(&raw, cx.state.sync.config.get().limits.max_machine_id_bytes)
        .map_err(|e| UiError::field("machine_id", e.to_string()))?;
    let username = get("username").as_deref().and_then(blocked::clean_username);
    Ok(Target { machine_id, sha256, username })
}

/// `GET /ui/blocked`.
pub async fn view(cx: &Cx<'_>) -> Result {
    let t = target(cx, |k| cx.q(k).map(str::to_owned))?;
    if let Err(wait) = cx.state.ui.blocked.check_view(t.machine_id.as_str()) {
        return Ok(too_many(cx, wait));
    }
    let found = blocked::lookup(cx.state.sync.store.as_ref(), &t.machine_id, &t.sha256).await?;
    Ok(super::html(StatusCode::OK, render(&cx.page_ctx(), &t, found.as_ref(), None)))
}

/// `POST /ui/blocked` (the dispatcher checked the CSRF token).
pub async fn request(cx: &Cx<'_>) -> Result {
    let t = target(cx, |k| cx.f(k).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned))?;
    let justification = blocked::check_justification(cx.f("justification").unwrap_or(""))?;
    if let Err(wait) = cx.state.ui.blocked.check_request(t.machine_id.as_str()) {
        return Ok(too_many(cx, wait));
    }
    let req = ApprovalRequest {
        machine_id: t.machine_id.clone(),
        sha256: t.sha256.clone(),
        username: t.username.clone(),
        justification,
    };
    let store = cx.state.sync.store.as_ref();
    let ctx = cx.page_ctx();
    match blocked::request_approval(store, cx.state.sync.policy.as_ref(), &req, now_unix()).await? {
        RequestOutcome::NothingBlocked => Ok(super::html(StatusCode::OK, render(&ctx, &t, None, None))),
        RequestOutcome::Recorded { proposal, .. } => {
            let found = blocked::lookup(store, &t.machine_id, &t.sha256).await?;
            Ok(super::html(StatusCode::OK, render(&ctx, &t, found.as_ref(), Some((proposal.id, proposal.status)))))
        }
    }
}

/// A 429 page with `Retry-After`.
fn too_many(cx: &Cx<'_>, wait: std::time::Duration) -> Resp {
    let secs = wait.as_secs() + 1;
    let body = html! {
        div.flash.error {
            "Too many requests from this Mac. Please wait " (secs) " seconds and reload the page."
        }
    };
    let mut r = super::html(StatusCode::TOO_MANY_REQUESTS, page(&cx.page_ctx(), "Blocked software", Nav::None, body));
    r.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    r
}

fn rule_kind(t: RuleType) -> &'static str {
    match t {
        RuleType::Binary => "a rule for this exact file",
        RuleType::Certificate => "a rule for its signing certificate",
        RuleType::TeamId => "a rule for its developer (Team ID)",
        RuleType::SigningId => "a rule for its signing ID",
        RuleType::CdHash => "a rule for its code directory hash",
        RuleType::Unknown => "a rule",
    }
}

fn why(w: &Why) -> Markup {
    match w {
        Why::Rule { rule_type, custom_msg, custom_url } => html! {
            p { "It is blocked by " (rule_kind(*rule_type)) "." }
            @if let Some(msg) = custom_msg {
                blockquote.message { (msg) }
            }
            @if let Some(url) = custom_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                p { "More information: " a href=(url) rel="noopener noreferrer" { (url) } }
            }
        },
        Why::NowAllowed { rule_type } => html! {
            p { "It was blocked by " (rule_kind(*rule_type)) ", but that rule now allows it. "
                "It will run after your Mac's next sync with the server (usually within 10 minutes)." }
        },
        Why::RuleNotFound { rule_type } => html! {
            p { "It was blocked by " (rule_kind(*rule_type)) ", which has since changed or is not yet on your Mac." }
        },
        Why::StaticRule => html! {
            p { "It is blocked by a rule in your Mac's configuration profile (set by your organisation's device management)." }
        },
        Why::Unknown => html! {
            p { "No rule allows this software, and your Mac is in Lockdown mode, which blocks software that has not been approved." }
        },
        Why::Scope => html! {
            p { "It is blocked because of where it is stored or how it was started (a path or script rule)." }
        },
    }
}

fn render(
    ctx: &PageCtx,
    t: &Target,
    found: Option<&BlockedBinary>,
    requested: Option<(u64, ProposalStatus)>,
) -> Markup {
    let Some(b) = found else {
        let body = html! {
            div.card.blocked {
                p { "No block of this software has been reported from this Mac." }
                p.muted { "If Santa just blocked it, wait a minute for your Mac to report the block, then reload this page." }
            }
        };
        return page(ctx, "Blocked software", Nav::None, body);
    };
    let name = [&b.bundle_name, &b.file_name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "Unknown software".into());
    let body = html! { div.blockpage {
        @if let Some((id, status)) = requested {
            @match status {
                ProposalStatus::Pending => div.flash.ok {
                    "Your request was sent (request #" (id) "). An administrator will review it; "
                    "once approved, the software runs after your Mac's next sync."
                },
                ProposalStatus::Approved => div.flash.ok {
                    "An administrator has already approved this software (request #" (id) "). It runs after your Mac's next sync."
                },
                ProposalStatus::Rejected => div.flash.error {
                    "An administrator has already declined a request for this software (request #" (id) "). "
                    "Contact your IT team if you still need it."
                },
            }
        }
        div.card.blocked {
            p.lead { "Santa blocked " strong { (name) } " on this Mac." }
            (why(&b.why))
            dl.kv {
                @if !b.bundle_name.is_empty() { dt { "Application" } dd { (b.bundle_name) @if !b.bundle_version.is_empty() { " " (b.bundle_version) } } }
                @if !b.bundle_id.is_empty() { dt { "Bundle ID" } dd { code { (b.bundle_id) } } }
                dt { "File" } dd { code { (b.file_path) "/" (b.file_name) } }
                @if !b.publisher.is_empty() { dt { "Publisher" } dd { (b.publisher) } }
                @if !b.team_id.is_empty() { dt { "Team ID" } dd { code { (b.team_id) } } }
                @if !b.signing_id.is_empty() { dt { "Signing ID" } dd { code { (b.signing_id) } } }
                dt { "SHA-256" } dd { code { (b.sha256) } }
                dt { "Last blocked" } dd { (fmt::time(b.last_blocked_unix as i64)) @if b.times > 1 { " (" (b.times) " times recently)" } }
                @if !b.executing_user.is_empty() { dt { "User" } dd { (b.executing_user) } }
                dt { "Mac" } dd { code { (b.machine_id) } }
            }
        }
        @if requested.is_none() {
            div.card.blocked {
                h2 { "Request approval" }
                p.muted { "Tell your IT team why you need this software. They will review the request; nothing changes on your Mac until they approve it." }
                form.request method="post" action="/ui/blocked" {
                    (csrf_field(ctx))
                    input type="hidden" name="sha256" value=(t.sha256);
                    input type="hidden" name="machine_id" value=(t.machine_id.as_str());
                    @if let Some(u) = &t.username { input type="hidden" name="username" value=(u); }
                    label for="justification" { "Why do you need it?" }
                    textarea id="justification" name="justification" rows="5" required minlength=(blocked::MIN_JUSTIFICATION_CHARS) maxlength=(MAX_JUSTIFICATION_CHARS) {}
                    button type="submit" { "Request approval" }
                }
            }
        }
    } };
    page(ctx, &format!("Blocked: {name}"), Nav::None, body)
}
