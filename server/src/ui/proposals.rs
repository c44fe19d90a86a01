//! The Proposals page, `/ui/proposals`: the review queue (pending first; any status on
//! request), newest first, keyset-paged by id. Each proposal shows its rule, the set it was
//! proposed for, how often and from which hosts it came and why; it is approved (into its own
//! set, one of its hosts' sets, a tag's set or `global`) or rejected one at a time or many at
//! once (checkboxes and the bulk buttons). Decisions run [`actions::approve_proposal`] /
//! [`actions::reject_proposal`], the code of `POST /api/v1/proposals/{id}/approve|reject`,
//! with that route's role; the decider recorded is the signed-in name.

use super::error::UiError;
use super::layout::{Nav, PageCtx, csrf_field, page};
use super::{Cx, Result, authorize, enc, fmt, html};
use crate::actions;
use crate::proposals::ApproveScope;
use crate::sync::now_unix;
use dasher_sdk::wire::WireEnum;
use dasher_store::{Proposal, ProposalRequest, ProposalScope, ProposalStatus, RequestSource};
use http::{Method, StatusCode};
use maud::{Markup, html};

/// Proposals per page (each reads its requests: one bounded read per row).
const PAGE: usize = 25;
/// Requests shown per proposal (the newest).
const REQUESTS_SHOWN: usize = 5;
/// Most proposals one bulk decision may name.
pub const MAX_BULK: usize = 100;
/// Hosts offered as a scope per proposal.
const HOST_CHOICES: usize = 10;

fn parse_status(s: Option<&str>) -> std::result::Result<Option<ProposalStatus>, UiError> {
    match s {
        None | Some("pending") => Ok(Some(ProposalStatus::Pending)),
        Some("approved") => Ok(Some(ProposalStatus::Approved)),
        Some("rejected") => Ok(Some(ProposalStatus::Rejected)),
        Some("all") => Ok(None),
        Some(_) => Err(UiError::field("status", "status must be pending, approved, rejected or all")),
    }
}

fn status_name(s: ProposalStatus) -> &'static str {
    match s {
        ProposalStatus::Pending => "pending",
        ProposalStatus::Approved => "approved",
        ProposalStatus::Rejected => "rejected",
    }
}

/// `GET /ui/proposals[?status=pending|approved|rejected|all&before_id=N]`.
pub async fn list(cx: &Cx<'_>) -> Result {
    render(cx, None, StatusCode::OK).await
}

async fn render(cx: &Cx<'_>, notice: Option<Markup>, status: StatusCode) -> Result {
    let wanted = parse_status(cx.q("status"))?;
    let before_id = match cx.q("before_id") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| UiError::field("before_id", "before_id must be a number"))?),
    };
    let list = cx.state.sync.store.list_proposals(wanted, before_id, PAGE + 1).await?;
    let more = list.len() > PAGE;
    let list = &list[..list.len().min(PAGE)];
    let mut requests = Vec::with_capacity(list.len());
    for p in list {
        requests.push(cx.state.sync.store.proposal_requests(p.id).await?);
    }
    let ctx = cx.page_ctx();
    let status_q = cx.q("status").unwrap_or("pending");
    let now = now_unix();
    let body = html! {
        @if let Some(n) = notice { (n) }
        form.filters method="get" action="/ui/proposals" {
            (csrf_field(&ctx))
            label { "Status " select name="status" {
                @for s in ["pending", "approved", "rejected", "all"] { option value=(s) selected[s == status_q] { (s) } }
            } }
            button type="submit" { "Show" }
        }
        @if list.is_empty() {
            p.muted { "No proposals here. Triage plugins propose rules; users ask from the block page." }
        } @else {
            (bulk_form(&ctx))
            table {
                thead { tr {
                    th { "" } th { "#" } th { "Rule" } th { "Proposed for" } th.num { "Count" } th { "Hosts" }
                    th { "Asked by" } th { "Seen" } th { "Status / decide" }
                } }
                tbody { @for (p, r) in list.iter().zip(&requests) { (row(&ctx, p, r, now)) } }
            }
            @if more {
                p.pager { a href=(format!("/ui/proposals?status={}&before_id={}", enc(status_q), list[list.len() - 1].id)) { "Older →" } }
            }
        }
    };
    Ok(html(status, page(&ctx, "Proposals", Nav::Proposals, body)))
}

fn bulk_form(ctx: &PageCtx) -> Markup {
    html! {
        form #bulk.filters method="post" action="/ui/proposals/decide" {
            (csrf_field(ctx))
            "Selected: "
            label { "approve into " select name="scope" {
                option value="proposed" { "each one's proposed set" }
                option value="global" { "global" }
                option value="rule_set" { "the tag set named →" }
            } }
            input type="text" name="rule_set" maxlength="300" placeholder="tag / rule set";
            button type="submit" name="verb" value="approve" { "Approve selected" }
            button.danger type="submit" name="verb" value="reject" { "Reject selected" }
        }
    }
}

fn scope_label(p: &Proposal) -> &'static str {
    match p.scope {
        ProposalScope::Host => "host",
        ProposalScope::RuleSet => "rule set",
        ProposalScope::Global => "global",
    }
}

fn row(ctx: &PageCtx, p: &Proposal, requests: &[ProposalRequest], now: i64) -> Markup {
    let pending = p.status == ProposalStatus::Pending;
    html! {
        tr {
            td { @if pending { input type="checkbox" name="id" value=(p.id) form="bulk" aria-label=(format!("select proposal {}", p.id)); } }
            td { (p.id) }
            td {
                span class=(if p.rule.policy.name().starts_with("ALLOW") { "badge allow" } else { "badge block" }) { (p.rule.policy.name()) }
                " " (p.key.rule_type.name()) br;
                code { (p.key.identifier) }
                @if let Some(m) = &p.rule.custom_msg { br; span.muted { "“" (m) "”" } }
            }
            td { code { (p.rule_set) } " " span.muted { "(" (scope_label(p)) ")" } }
            td.num { (p.count) }
            td {
                @for h in p.hosts.iter().take(5) { a href=(format!("/ui/hosts/{}", enc(h))) { (h) } br; }
                @if p.hosts.len() > 5 { span.muted { "+" (p.hosts.len() - 5) " more" } }
            }
            td {
                @if requests.is_empty() { (p.reason) }
                @for r in requests.iter().rev().take(REQUESTS_SHOWN) {
                    div {
                        @match r.source {
                            RequestSource::User => { span.badge { "user" } " " (r.user.as_deref().unwrap_or("?")) }
                            RequestSource::Triage => { span.badge { "triage" } }
                        }
                        " on " a href=(format!("/ui/hosts/{}", enc(&r.machine_id))) { (r.machine_id) }
                        " " span.muted { (fmt::ago(r.at_unix, now)) }
                        @if !r.justification.is_empty() { br; "“" (r.justification) "”" }
                    }
                }
                @if p.requests as usize > REQUESTS_SHOWN { span.muted { (p.requests) " requests in all" } }
                @if !p.proposed_by.is_empty() {
                    span.muted { "plugins: " @for (i, r) in p.proposed_by.iter().enumerate() { @if i > 0 { ", " } (r.plugin) } }
                }
            }
            td { "first " (fmt::when(p.first_seen_unix, now)) br; "last " (fmt::when(p.last_seen_unix, now)) }
            td {
                @if pending {
                    (decide_form(ctx, p))
                } @else {
                    span class=(if p.status == ProposalStatus::Approved { "badge allow" } else { "badge block" }) { (status_name(p.status)) }
                    " by " (p.decided_by.as_deref().unwrap_or("?"))
                    " " (fmt::when(p.decided_at_unix.unwrap_or(0), now))
                    @if let Some(set) = &p.applied_rule_set { br; "into " code { (set) } }
                    @if let Some(v) = p.applied_version { " (version " (v) ")" }
                }
            }
        }
    }
}

fn decide_form(ctx: &PageCtx, p: &Proposal) -> Markup {
    html! {
        form.inline method="post" action="/ui/proposals/decide" {
            (csrf_field(ctx))
            input type="hidden" name="id" value=(p.id);
            select name="scope" aria-label="approve into" {
                option value="proposed" { "into " (p.rule_set) }
                @if p.scope != ProposalScope::Global { option value="global" { "into global" } }
                @for h in p.hosts.iter().take(HOST_CHOICES) {
                    @let set = dasher_sdk::domain::host_rule_set(h);
                    @if set != p.rule_set { option value=(format!("host:{h}")) { "into " (set) } }
                }
                option value="rule_set" { "into the tag set named →" }
            }
            input type="text" name="rule_set" maxlength="300" size="10" placeholder="tag";
            button type="submit" name="verb" value="approve" { "Approve" }
            button.danger type="submit" name="verb" value="reject" { "Reject" }
        }
    }
}

/// The scope a decide form chose: `proposed`, `global`, `host:<machine id>` or `rule_set`
/// (with the `rule_set` field).
fn form_scope(cx: &Cx<'_>) -> std::result::Result<ApproveScope, UiError> {
    match cx.f("scope").unwrap_or("proposed") {
        "proposed" => Ok(ApproveScope::Proposed),
        "global" => Ok(ApproveScope::Global),
        "rule_set" => match cx.f("rule_set").map(str::trim).filter(|s| !s.is_empty()) {
            Some(name) => Ok(ApproveScope::RuleSet(name.to_owned())),
            None => Err(UiError::field("rule_set", "name the tag (rule set) to approve into")),
        },
        s => match s.strip_prefix("host:") {
            Some(id) if !id.is_empty() => Ok(ApproveScope::Host(id.to_owned())),
            _ => Err(UiError::field("scope", "scope must be proposed, global, host:<machine id> or rule_set")),
        },
    }
}

/// `POST /ui/proposals/decide`: `verb` = `approve` | `reject`, one or more `id`s (at most
/// [`MAX_BULK`]), and for an approval the `scope`. Each proposal is decided on its own; the
/// page says which were decided and why others were not.
pub async fn decide(cx: &Cx<'_>) -> Result {
    let verb = match cx.f("verb") {
        Some(v @ ("approve" | "reject")) => v,
        _ => return Err(UiError::field("verb", "choose Approve or Reject")),
    };
    let api_path = format!("/api/v1/proposals/1/{verb}");
    let actor = authorize(cx, &Method::POST, &api_path, "Deciding proposals")?;
    let mut ids = Vec::new();
    for (k, v) in &cx.form_all {
        if k == "id" {
            let id = v
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| UiError::field("id", "proposal ids are positive numbers"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.is_empty() {
        return Err(UiError::field("id", "select at least one proposal"));
    }
    if ids.len() > MAX_BULK {
        return Err(UiError::field("id", format!("at most {MAX_BULK} proposals at once")));
    }
    let scope = if verb == "approve" { Some(form_scope(cx)?) } else { None };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for id in ids {
        let r = match &scope {
            Some(scope) => actions::approve_proposal(&cx.state.sync, &actor, id, None, scope).await,
            None => actions::reject_proposal(&cx.state.sync, &actor, id, None).await,
        };
        match r {
            Ok(p) => done.push((id, p.applied_rule_set)),
            Err(actions::ActionError::Store(e)) => return Err(e.into()),
            Err(e) => failed.push((id, e)),
        }
    }
    if done.is_empty() && failed.len() == 1 {
        // One proposal, not decided: the error page with its status (404, 409, 400 naming the field).
        return Err(failed.pop().expect("one").1.into());
    }
    let past = if verb == "approve" { "Approved" } else { "Rejected" };
    let notice = html! {
        @if !done.is_empty() {
            div.flash.ok { (past) " by " (actor.name) ": "
                @for (i, (id, set)) in done.iter().enumerate() {
                    @if i > 0 { ", " } "#" (id) @if let Some(s) = set { " into " code { (s) } }
                }
                "."
            }
        }
        @for (id, why) in &failed { div.flash.error { "#" (id) ": " (why) } }
    };
    let status = if done.is_empty() { StatusCode::CONFLICT } else { StatusCode::OK };
    render(cx, Some(notice), status).await
}
