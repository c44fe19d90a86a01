//! The Audit page, `/ui/audit`: who did what, on what, when and through which surface (admin
//! API or console), newest first, keyset-paged by id (`before_id=`), optionally only the
//! entries of one target (`target=`, matched exactly, e.g. a machine id or a proposal id).
//! Any signed-in role may read it.

use super::error::UiError;
use super::layout::{Nav, csrf_field, page};
use super::{Cx, Result, enc, fmt, html};
use crate::sync::now_unix;
use http::StatusCode;
use maud::html;

/// Entries per page.
const PAGE: usize = 100;
/// Longest target filter accepted.
const MAX_TARGET_BYTES: usize = 1024;

/// `GET /ui/audit[?target=…&before_id=N]`.
pub async fn list(cx: &Cx<'_>) -> Result {
    let target = cx.q("target");
    if target.is_some_and(|t| t.len() > MAX_TARGET_BYTES) {
        return Err(UiError::field("target", format!("target must be at most {MAX_TARGET_BYTES} bytes")));
    }
    let before_id = match cx.q("before_id") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| UiError::field("before_id", "before_id must be a number"))?),
    };
    let entries = cx.state.sync.store.list_audit(target, before_id, PAGE + 1).await?;
    let more = entries.len() > PAGE;
    let entries = &entries[..entries.len().min(PAGE)];
    let now = now_unix();
    let ctx = cx.page_ctx();
    let body = html! {
        form.filters method="get" action="/ui/audit" {
            (csrf_field(&ctx))
            label { "Target " input type="text" name="target" value=(target.unwrap_or("")) maxlength=(MAX_TARGET_BYTES)
                placeholder="exact target, e.g. a machine id"; }
            button type="submit" { "Filter" }
            @if target.is_some() { " " a href="/ui/audit" { "all entries" } }
        }
        @if entries.is_empty() {
            p.muted { "Nothing recorded yet." }
        } @else {
            table {
                thead { tr { th { "When" } th { "Who" } th { "Role" } th { "Via" } th { "Action" } th { "Target" } th { "Detail" } } }
                tbody {
                    @for e in entries {
                        tr {
                            td { span title=(fmt::time(e.at_unix)) { (fmt::time(e.at_unix)) } br; span.muted { (fmt::ago(e.at_unix, now)) } }
                            td { (e.actor) }
                            td { (e.role) }
                            td { (serde_json::to_value(e.via).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                            td { code { (e.action) } }
                            td { a href=(format!("/ui/audit?target={}", enc(&e.target))) { (e.target) } }
                            td.mono { @match &e.detail {
                                serde_json::Value::String(s) => { (s) }
                                serde_json::Value::Null => {}
                                other => { (other.to_string()) }
                            } }
                        }
                    }
                }
            }
            @if more {
                @let last = entries[entries.len() - 1].id;
                p.pager { a href=(match target {
                    Some(t) => format!("/ui/audit?target={}&before_id={last}", enc(t)),
                    None => format!("/ui/audit?before_id={last}"),
                }) { "Older →" } }
            }
        }
    };
    Ok(html(StatusCode::OK, page(&ctx, "Audit log", Nav::Audit, body)))
}
