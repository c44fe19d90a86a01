//! Export (`GET /ui/export`, linked from the navigation when `[[export.sinks]]` are
//! configured): each sink's kind, cursor, lag, deliveries, last error and which replica holds
//! its lease (exports it). Read-only; the same data as `GET /api/v1/export`.

use super::layout::{self, Nav};
use super::{Cx, Result, fmt, html};
use http::StatusCode;
use maud::html as m;

/// `GET /ui/export`.
pub async fn page(cx: &Cx<'_>) -> Result {
    let ctx = cx.page_ctx();
    let now = crate::sync::now_unix();
    let sinks = cx.state.export.snapshot();
    let replica = cx.state.export.replica().unwrap_or("");
    let body = if sinks.is_empty() {
        m! { p.muted { "Event export is not configured (add " code { "[[export.sinks]]" } " to the configuration)." } }
    } else {
        m! {
            p.muted {
                "This replica is " code { (replica) } ". Only the lease holder exports a sink; delivered, "
                "dead-lettered and error counts are this replica's since it started."
            }
            table.export {
                tr {
                    th { "Sink" } th { "Kind" } th.num { "Cursor" } th.num { "Lag (events)" } th.num { "Delivered" }
                    th.num { "Dead-lettered" } th.num { "Errors" } th { "Last error" } th { "Last delivery" }
                    th { "Lease holder" } th { "Lease expires" }
                }
                @for s in &sinks {
                    tr {
                        td { strong { (s.name) } }
                        td { (s.kind) }
                        td.num.mono { (s.cursor) }
                        td.num { (s.lag_events) }
                        td.num { (s.delivered) }
                        td.num { (s.dead_lettered) }
                        td.num { (s.errors) }
                        td {
                            @match (&s.last_error, s.last_error_unix) {
                                (Some(e), Some(at)) => { (e) br; span.muted { (fmt::when(at, now)) } }
                                (Some(e), None) => { (e) }
                                _ => { span.muted { "none" } }
                            }
                        }
                        td { @if let Some(at) = s.last_delivery_unix { (fmt::when(at, now)) } @else { span.muted { "not yet" } } }
                        td {
                            @match &s.holder {
                                Some(h) => {
                                    span.mono { (h) }
                                    @if s.held_here { " " span.badge.ok { "this replica" } }
                                }
                                None => { span.badge.bad { "none" } }
                            }
                        }
                        td { @if let Some(at) = s.lease_expires { (fmt::when(at, now)) } }
                    }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, layout::page(&ctx, "Export", Nav::Export, body)))
}
