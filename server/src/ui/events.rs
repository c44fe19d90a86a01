//! Events (`GET /ui/events`): filter by host, SHA-256, decision, triage label and time;
//! events triage dropped as noise are hidden unless asked for; newest first, keyset pages
//! by `before_id`. The filter is the admin API's (`GET /api/v1/events`), checked the same way.

use super::layout::{Nav, page};
use super::{Cx, Result, UiError, enc, fmt, html};
use crate::http::admin;
use crate::sync::now_unix;
use dasher_store::EventRecord;
use http::StatusCode;
use maud::{Markup, html as m};
use std::collections::HashMap;

/// Events per page.
pub const PAGE: usize = 50;

/// The query keys the filter form carries over to the next page.
const KEYS: &[&str] = &["machine_id", "file_sha256", "decision", "label", "since", "include_dropped"];

/// A table of events (also used on a host's page).
pub fn table(events: &[EventRecord], now: i64) -> Markup {
    if events.is_empty() {
        return m! { p.muted { "No events." } };
    }
    m! {
        table {
            tr { th { "Id" } th { "When" } th { "Host" } th { "Decision" } th { "File" } th { "SHA-256" } th { "Triage" } }
            @for e in events {
                @let body = &e.event.body;
                @let path = body.get("file_path").and_then(|v| v.as_str()).unwrap_or("");
                @let name = body.get("file_name").and_then(|v| v.as_str()).unwrap_or("");
                tr {
                    td.num { (e.id) }
                    td { (fmt::when(e.event.received_at_unix, now)) }
                    td.mono { a href={ "/ui/hosts/" (enc(&e.machine_id)) } { (e.machine_id) } }
                    td { span class={ "badge " (super::hosts::policy_class(&e.event.decision)) } { (e.event.decision) } }
                    td { (if path.is_empty() { name.to_owned() } else if name.is_empty() || path.ends_with(name) { path.to_owned() } else { format!("{path}/{name}") }) }
                    td.mono {
                        @if e.event.file_sha256.is_empty() { "—" } @else {
                            a href={ "/ui/binaries/" (e.event.file_sha256) } title=(e.event.file_sha256) { (&e.event.file_sha256[..e.event.file_sha256.len().min(16)]) "…" }
                        }
                    }
                    td {
                        @if let Some(t) = &e.triage {
                            @if t.is_dropped() { span.badge.warn { "dropped" } " " }
                            @for l in &t.labels { span.badge { (l) } " " }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/events?...`.
pub async fn list(cx: &Cx<'_>) -> Result {
    // Empty form fields mean "any".
    let q: HashMap<String, String> =
        cx.query.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.clone(), v.trim().to_owned())).collect();
    let mut q = q;
    // The form's date field gives `YYYY-MM-DD`; the filter takes Unix seconds (either works).
    if let Some(v) = q.get("since") {
        match fmt::parse_date(v) {
            Some(t) => _ = q.insert("since".into(), t.to_string()),
            None if v.parse::<i64>().is_ok() => {}
            None => return Err(UiError::field("since", "since must be a date (YYYY-MM-DD) or Unix seconds")),
        }
    }
    let mut filter = admin::event_filter(&q, PAGE, PAGE)?;
    filter.limit = PAGE;
    let events = cx.state.sync.store.query_events(&filter).await?;
    let now = now_unix();
    let val = |k: &str| q.get(k).cloned().unwrap_or_default();
    let since_shown = q.get("since").and_then(|v| v.parse::<i64>().ok()).map(fmt::date).unwrap_or_default();
    let carried: String = KEYS.iter().filter_map(|k| q.get(*k).map(|v| format!("{k}={}&", enc(v)))).collect();
    let next = (events.len() == PAGE).then(|| events.last().map(|e| e.id)).flatten();
    let body = m! {
        form.filters method="get" action="/ui/events" {
            label { "Host (machine id)" input type="text" name="machine_id" value=(val("machine_id")); }
            label { "SHA-256" input type="text" name="file_sha256" value=(val("file_sha256")) size="40"; }
            label { "Decision"
                select name="decision" {
                    option value="" { "any" }
                    @for d in DECISIONS {
                        option value=(d) selected[val("decision") == *d] { (d) }
                    }
                }
            }
            label { "Triage label" input type="text" name="label" value=(val("label")); }
            label { "Since (date, UTC)" input type="date" name="since" value=(since_shown); }
            label { "Dropped noise"
                select name="include_dropped" {
                    option value="false" { "hidden" }
                    option value="true" selected[val("include_dropped") == "true"] { "shown" }
                }
            }
            button type="submit" { "Filter" }
            a href="/ui/events" { "Clear" }
        }
        (table(&events, now))
        div.pager {
            @if q.contains_key("before_id") { a href={ "/ui/events?" (carried) } { "Newest" } }
            @if let Some(n) = next { a href={ "/ui/events?" (carried) "before_id=" (n) } { "Older" } }
        }
    };
    Ok(html(StatusCode::OK, page(&cx.page_ctx(), "Events", Nav::Events, body)))
}

/// Decision names offered in the filter (what Santa reports).
const DECISIONS: &[&str] = &[
    "BLOCK_UNKNOWN",
    "BLOCK_BINARY",
    "BLOCK_CERTIFICATE",
    "BLOCK_SCOPE",
    "BLOCK_TEAMID",
    "BLOCK_SIGNINGID",
    "BLOCK_CDHASH",
    "ALLOW_UNKNOWN",
    "ALLOW_BINARY",
    "ALLOW_CERTIFICATE",
    "ALLOW_SCOPE",
    "ALLOW_TEAMID",
    "ALLOW_SIGNINGID",
    "ALLOW_CDHASH",
    "BLOCK_BINARY_MISMATCH",
    "ALLOW_PLATFORM",
    "BUNDLE_BINARY",
];
