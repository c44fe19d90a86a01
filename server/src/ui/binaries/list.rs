//! `/ui/binaries`: the binaries seen most recently (keyset pages by last seen), and the search
//! box: a whole SHA-256 goes to the binary's page, a shorter prefix is looked for among the
//! most recently seen.

use super::parse_sha256;
use crate::sync::now_unix;
use crate::ui::error::UiError;
use crate::ui::layout::{Nav, PageCtx, csrf_field, page};
use crate::ui::{Cx, Result, enc, fmt, html, redirect};
use dasher_store::{BinaryCursor, BinarySummary};
use http::StatusCode;
use maud::{Markup, html};

/// Binaries listed per page of `/ui/binaries`.
const LIST_PAGE: usize = 50;
/// Most recently seen binaries a prefix search looks through.
const PREFIX_SCAN: usize = 2_000;

/// `GET /ui/binaries[?sha256=…][&before_seen=T&before_sha=H]`: the search box and the binaries
/// seen most recently (keyset pages). A whole SHA-256 goes to its page; a shorter hexadecimal
/// prefix is looked for among the [`PREFIX_SCAN`] most recently seen binaries.
pub async fn search(cx: &Cx<'_>) -> Result {
    let ctx = cx.page_ctx();
    let store = cx.state.sync.store.as_ref();
    let now = now_unix();
    let query = cx.q("sha256").map(str::to_ascii_lowercase);
    let mut error = None;
    let mut matches: Option<Vec<BinarySummary>> = None;
    if let Some(q) = &query {
        if let Some(sha) = parse_sha256(q) {
            return Ok(redirect(&format!("/ui/binaries/{sha}")));
        }
        if q.len() > 64 || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
            error = Some("A SHA-256 is 64 hexadecimal characters; enter it or its beginning.");
        } else {
            let mut found = Vec::new();
            let mut cursor: Option<BinaryCursor> = None;
            let mut scanned = 0;
            while scanned < PREFIX_SCAN && found.len() < LIST_PAGE {
                let page = store.list_binaries(cursor.as_ref(), 500).await?;
                scanned += page.len();
                cursor = page.last().map(BinarySummary::cursor);
                let done = page.len() < 500;
                found.extend(page.into_iter().filter(|b| b.sha256.starts_with(q.as_str())));
                if done {
                    break;
                }
            }
            found.truncate(LIST_PAGE);
            matches = Some(found);
        }
    }
    let before = match (cx.q("before_seen"), cx.q("before_sha")) {
        (Some(t), Some(h)) => Some(BinaryCursor {
            last_seen_unix: t.parse().map_err(|_| UiError::field("before_seen", "before_seen must be Unix seconds"))?,
            sha256: h.to_owned(),
        }),
        _ => None,
    };
    let (list, more) = match matches {
        Some(m) => (m, false),
        None if error.is_none() => {
            let mut l = store.list_binaries(before.as_ref(), LIST_PAGE + 1).await?;
            let more = l.len() > LIST_PAGE;
            l.truncate(LIST_PAGE);
            (l, more)
        }
        None => (Vec::new(), false),
    };
    let body = html! {
        @if let Some(e) = error { div.flash.error { (e) } }
        (search_form(&ctx, query.as_deref().unwrap_or("")))
        @if query.is_some() && error.is_none() {
            p.muted { "Matches among the " (PREFIX_SCAN) " most recently seen binaries." }
        }
        table {
            thead { tr { th { "SHA-256" } th { "Name" } th { "Signing ID" } th.num { "Hosts" } th.num { "Events" } th { "Last seen" } } }
            tbody {
                @for b in &list {
                    tr {
                        td.mono { a href=(format!("/ui/binaries/{}", b.sha256)) { (b.sha256[..b.sha256.len().min(16)]) "…" } }
                        td { (b.names.first().map(|n| n.file_name.as_str()).unwrap_or("")) }
                        td { (b.signer.as_ref().map(|x| x.signing_id.as_str()).unwrap_or("")) }
                        td.num { (b.hosts) }
                        td.num { (b.events) }
                        td { (fmt::when(b.last_seen_unix, now)) }
                    }
                }
            }
        }
        @if list.is_empty() && error.is_none() { p.muted { "No binaries." } }
        @if more {
            @let last = &list[list.len() - 1];
            p.pager { a href=(format!("/ui/binaries?before_seen={}&before_sha={}", last.last_seen_unix, enc(&last.sha256))) { "Older →" } }
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(html(status, page(&ctx, "Binaries", Nav::Binaries, body)))
}

fn search_form(ctx: &PageCtx, value: &str) -> Markup {
    html! {
        form.filters method="get" action="/ui/binaries" {
            (csrf_field(ctx))
            label { "SHA-256 " input type="text" name="sha256" value=(value) size="70" maxlength="64"
                placeholder="all 64 hexadecimal characters, or the first few"; }
            button type="submit" { "Show" }
        }
    }
}
