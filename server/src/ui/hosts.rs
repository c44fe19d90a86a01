//! Hosts: the list with search (`GET /ui/hosts?q=…&after=…`, keyset pages), one host
//! (`GET /ui/hosts/{machine_id}`: inventory, tags, sync state and who decided what,
//! effective rules, recent events), and its writes (tags, clean sync), which run the admin
//! API's actions with the admin API's roles.

use super::layout::{Nav, csrf_field, page};
use super::{Cx, Result, UiError, authorize, enc, fmt, html, redirect};
use crate::actions;
use crate::http::admin;
use crate::http::machine_id::parse_machine_id;
use crate::sync::now_unix;
use dasher_store::{EventFilter, HostMatch, HostSearchCursor, HostSearchField};
use http::{Method, StatusCode};
use maud::{Markup, html as m};

/// Hosts per page.
pub const PAGE: usize = 50;
/// Longest search text.
pub const MAX_QUERY_BYTES: usize = 256;
/// Recent events shown on a host's page.
const RECENT_EVENTS: usize = 20;
/// Audit entries shown on a host's page.
const HISTORY: usize = 10;
/// Effective rules shown on a host's page (the admin API has them all).
const MAX_RULES_SHOWN: usize = 500;

fn machine_id(cx: &Cx<'_>) -> Result<String> {
    parse_machine_id(&cx.params[0], cx.state.sync.config.get().limits.max_machine_id_bytes)
        .map(|m| m.as_str().to_owned())
        .map_err(|e| UiError::field("machine_id", e.to_string()))
}

fn host_row(found: &HostMatch, now: i64) -> Markup {
    let h = &found.host;
    let inv = h.inventory.as_ref();
    m! {
        tr {
            td { a.mono href={ "/ui/hosts/" (enc(&h.machine_id)) } { (h.machine_id) } }
            td { (inv.map(|i| i.hostname.as_str()).unwrap_or("")) }
            td.mono { (inv.map(|i| i.serial_number.as_str()).unwrap_or("")) }
            td { (inv.map(|i| i.primary_user.as_str()).unwrap_or("")) }
            td { (inv.map(|i| i.santa_version.as_str()).unwrap_or("")) }
            td { (inv.and_then(|i| i.client_mode).map(|m| format!("{m:?}")).unwrap_or_default()) }
            td { @for t in &h.tags { span.badge { (t) } " " } }
            td { (fmt::when(h.sync.last_preflight_unix, now)) }
            td.muted { (field_name(found.field)) }
        }
    }
}

fn field_name(f: HostSearchField) -> &'static str {
    match f {
        HostSearchField::MachineId => "machine id",
        HostSearchField::Hostname => "hostname",
        HostSearchField::SerialNumber => "serial",
        HostSearchField::PrimaryUser => "user",
    }
}

/// `GET /ui/hosts[?q=TEXT][&after=CURSOR]`: hosts whose machine id, hostname, serial number
/// or primary user starts with `q` (case-insensitive), from the store's search index.
pub async fn list(cx: &Cx<'_>) -> Result {
    let q = cx.q("q").unwrap_or("");
    if q.len() > MAX_QUERY_BYTES {
        return Err(UiError::field("q", format!("search text must be at most {MAX_QUERY_BYTES} bytes")));
    }
    let after =
        match cx.q("after") {
            None => None,
            Some(a) => Some(HostSearchCursor::decode(a).ok_or_else(|| {
                UiError::field("after", "after is not a page cursor; start again from the first page")
            })?),
        };
    let hosts = cx.state.sync.store.search_hosts(q, after.as_ref(), PAGE).await?;
    let now = now_unix();
    let next = (hosts.len() == PAGE).then(|| hosts.last().map(|h| h.cursor().encode())).flatten();
    let body = m! {
        form.filters method="get" action="/ui/hosts" {
            label { "Search"
                input type="search" name="q" value=(q) placeholder="machine id, hostname, serial or user (start of)" size="40"
                    hx-get="/ui/hosts" hx-trigger="input changed delay:300ms, search" hx-target="#results" hx-select="#results"
                    hx-swap="outerHTML" hx-push-url="true";
            }
            button type="submit" { "Search" }
            @if !q.is_empty() { a href="/ui/hosts" { "Clear" } }
        }
        div #results {
        @if hosts.is_empty() {
            p.muted { "No hosts match." }
        } @else {
            table {
                tr { th { "Machine id" } th { "Hostname" } th { "Serial" } th { "User" } th { "Santa" } th { "Mode" } th { "Tags" } th { "Last sync" } th { "Matched" } }
                @for h in &hosts { (host_row(h, now)) }
            }
        }
        div.pager {
            @if after.is_some() { a href={ "/ui/hosts?q=" (enc(q)) } { "First page" } }
            @if let Some(n) = &next { a href={ "/ui/hosts?q=" (enc(q)) "&after=" (enc(n)) } { "Next page" } }
        }
        }
    };
    Ok(html(StatusCode::OK, page(&cx.page_ctx(), "Hosts", Nav::Hosts, body)))
}

fn flash(cx: &Cx<'_>) -> Markup {
    let msg = match cx.q("done") {
        Some("tags") => "Tags saved; they apply from the host's next sync.",
        Some("clean-sync") => "A clean sync was requested for the host's next sync.",
        _ => return m! {},
    };
    m! { div.flash.ok { (msg) } }
}

/// `GET /ui/hosts/{machine_id}`.
pub async fn detail(cx: &Cx<'_>) -> Result {
    let id = machine_id(cx)?;
    let sync = &cx.state.sync;
    let Some(host) = sync.store.get_host(&id).await? else {
        return Err(UiError::NotFound(format!("no host {id}")));
    };
    let now = now_unix();
    let (version, sets, rules, more_rules) = admin::first_effective_rules_of(sync, &id, MAX_RULES_SHOWN).await?;
    let events = sync
        .store
        .query_events(&EventFilter {
            machine_id: Some(id.clone()),
            dropped: Some(false),
            limit: RECENT_EVENTS,
            ..Default::default()
        })
        .await?;
    let history = sync.store.list_audit(Some(&format!("host:{id}")), None, HISTORY).await?;
    let ctx = cx.page_ctx();
    let inv = host.inventory.as_ref();
    let st = &host.sync;
    let title = inv.map(|i| i.hostname.as_str()).filter(|h| !h.is_empty()).unwrap_or(&id).to_owned();
    let body = m! {
        (flash(cx))
        div.cards {
            div.card {
                h2 { "Inventory" }
                dl.kv {
                    dt { "Machine id" } dd.mono { (id) }
                    @if let Some(i) = inv {
                        dt { "Hostname" } dd { (i.hostname) }
                        dt { "Serial" } dd.mono { (i.serial_number) }
                        dt { "Primary user" } dd { (i.primary_user) }
                        dt { "Groups" } dd { (i.primary_user_groups.join(", ")) }
                        dt { "macOS" } dd { (i.os_version) @if !i.os_build.is_empty() { " (" (i.os_build) ")" } }
                        dt { "Model" } dd { (i.model_identifier) }
                        dt { "Santa" } dd { (i.santa_version) }
                        dt { "Client mode" } dd { (i.client_mode.map(|m| format!("{m:?}")).unwrap_or_default()) }
                        dt { "Rule counts" } dd { (counts(&i.rule_counts)) }
                        dt { "First seen" } dd { (fmt::time(i.first_seen_unix)) }
                        dt { "Last seen" } dd { (fmt::when(i.last_seen_unix, now)) }
                    } @else {
                        dt { "Inventory" } dd.muted { "never synced (known by its tags only)" }
                    }
                }
            }
            div.card {
                h2 { "Tags" }
                form method="post" action={ "/ui/hosts/" (enc(&id)) "/tags" } {
                    (csrf_field(&ctx))
                    input type="text" name="tags" value=(host.tags.join(" ")) aria-label="Tags, separated by spaces or commas";
                    " "
                    button type="submit" { "Save tags" }
                }
                p.muted { "Separate tags by spaces or commas; an empty field removes them all." }
                h2 { "Clean sync" }
                @if host.clean_requested {
                    p { span.badge.warn { "requested" } " The next sync will be a clean one." }
                } @else {
                    form method="post" action={ "/ui/hosts/" (enc(&id)) "/clean-sync" } {
                        (csrf_field(&ctx))
                        button.secondary type="submit" { "Clean sync next time" }
                    }
                }
            }
            div.card {
                h2 { "Sync state" }
                dl.kv {
                    dt { "Last preflight" } dd { (fmt::when(st.last_preflight_unix, now)) }
                    dt { "Last postflight" } dd { (fmt::when(st.last_postflight_unix, now)) }
                    dt { "Sync type" } dd { (st.last_sync_type.map(|t| t.to_string()).unwrap_or_default()) " " span.muted { (st.last_sync_reason) } }
                    dt { "Outcome" } dd { (st.last_outcome.to_string()) }
                    dt { "Acknowledged" } dd {
                        @match &st.acked {
                            None => span.muted { "nothing yet" },
                            Some(a) => {
                                div {
                                    "rule version " (a.version)
                                    @if let Some(t) = a.sync_type { " (" (t.to_string()) " sync)" }
                                }
                                ol.sets title="Rule sets, in precedence order" {
                                    @for set in &a.rule_sets { li.mono { (set) } }
                                }
                                div.muted { (counts(&a.counts)) }
                            }
                        }
                    }
                    dt { "Rules received / kept" } dd { (st.last_rules_received) " / " (st.last_rules_processed) }
                }
            }
        }
        h2 { "Who decided what (sync.decided)" }
        (decided(st.decided.as_ref(), now))
        h2 { "Effective rules" }
        p.muted {
            "Rule version " (version) "; rule sets in precedence order: " (sets.join(" → ")) ". "
            @if more_rules { "More than " (MAX_RULES_SHOWN) " rules." } @else { (rules.len()) " rules." }
        }
        @if !rules.is_empty() {
            table {
                tr { th { "Type" } th { "Identifier" } th { "Policy" } th { "Message" } }
                @for r in &rules {
                    tr {
                        td { (format!("{:?}", r.rule_type)) }
                        td.mono {
                            @if matches!(r.rule_type, dasher_sdk::wire::RuleType::Binary) {
                                a href={ "/ui/binaries/" (enc(&r.identifier)) } { (r.identifier) }
                            } @else { (r.identifier) }
                        }
                        td { span class={ "badge " (policy_class(&format!("{:?}", r.policy))) } { (format!("{:?}", r.policy)) } }
                        td { (r.custom_msg.as_deref().unwrap_or("")) }
                    }
                }
            }
            @if more_rules {
                p.muted { "First " (MAX_RULES_SHOWN) " shown; the admin API lists them all: "
                    code { "GET /api/v1/hosts/" (id) "/effective-rules" } }
            }
        }
        h2 { "Recent events" }
        (super::events::table(&events, now))
        p { a href={ "/ui/events?machine_id=" (enc(&id)) } { "All events of this host" } }
        h2 { "Changes by operators" }
        @if history.is_empty() {
            p.muted { "None recorded." }
        } @else {
            table {
                tr { th { "When" } th { "Who" } th { "Role" } th { "Via" } th { "What" } th { "Details" } }
                @for a in &history {
                    tr {
                        td { (fmt::when(a.at_unix, now)) }
                        td { (a.actor) }
                        td { (a.role) }
                        td { (format!("{:?}", a.via).to_ascii_lowercase()) }
                        td { code { (a.action) } }
                        td.mono { @if !a.detail.is_null() { (a.detail.to_string()) } }
                    }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, page(&ctx, &title, Nav::Hosts, body)))
}

/// The badge class of a policy or decision name.
pub fn policy_class(p: &str) -> &'static str {
    let p = p.to_ascii_uppercase();
    if p.contains("BLOCK") || p.contains("DENY") {
        "block"
    } else if p.contains("ALLOW") {
        "allow"
    } else {
        ""
    }
}

fn decided(d: Option<&dasher_store::DecisionProvenance>, now: i64) -> Markup {
    let Some(d) = d else {
        return m! { p.muted { "No preflight answered yet." } };
    };
    m! {
        p.muted { "Decided " (fmt::when(d.decided_unix, now)) " (last answered preflight)." }
        table {
            tr { th { "Setting" } th { "Value" } th { "Decided by" } }
            @for (field, applied) in &d.settings {
                @let v = serde_json::to_value(applied).unwrap_or_default();
                tr {
                    td { code { (field) } }
                    td.mono { (v.get("value").map(|x| x.to_string()).unwrap_or_default()) }
                    td { (v.get("by").map(decider).unwrap_or_default()) }
                }
            }
            tr {
                td { "rule sets" }
                td {}
                td { (d.rule_sets_by.iter().map(show).collect::<Vec<_>>().join(", ")) }
            }
            @if !d.host_rules_by.is_empty() || d.host_rules.is_some() {
                tr {
                    td { "host rules" }
                    td { (d.host_rules.map(|n| n.to_string()).unwrap_or_else(|| "kept".into())) }
                    td { (d.host_rules_by.iter().map(show).collect::<Vec<_>>().join(", ")) }
                }
            }
        }
        @if !d.shadow.is_empty() {
            h2 { "Shadow plugins would have decided" }
            table {
                tr { th { "Decision" } }
                @for s in &d.shadow { tr { td.mono { (show(s)) } } }
            }
        }
    }
}

/// `{"by": "plugin", "generation": "…", "source": "live"}` as `plugin (live, generation 1a2b3c4d)`.
fn decider(v: &serde_json::Value) -> String {
    let by = v.get("by").and_then(|b| b.as_str()).unwrap_or("?");
    let mut extra = Vec::new();
    if let Some(s) = v.get("source").and_then(|s| s.as_str()) {
        extra.push(s.to_owned());
    }
    if let Some(g) = v.get("generation").and_then(|g| g.as_str()) {
        extra.push(format!("generation {}", &g[..g.len().min(12)]));
    }
    if extra.is_empty() { by.to_owned() } else { format!("{by} ({})", extra.join(", ")) }
}

/// A decider as a sentence, anything else as compact JSON.
fn show<T: serde::Serialize>(v: &T) -> String {
    let v = serde_json::to_value(v).unwrap_or_default();
    if v.get("by").is_some_and(|b| b.is_string()) { decider(&v) } else { v.to_string() }
}

/// Rule counts as `binary 3, teamid 1` (`none` when all are 0).
fn counts(c: &dasher_sdk::domain::RuleCounts) -> String {
    let v = serde_json::to_value(c).unwrap_or_default();
    let parts: Vec<String> = v
        .as_object()
        .map(|o| o.iter().filter(|(_, n)| n.as_u64().unwrap_or(0) > 0).map(|(k, n)| format!("{k} {n}")).collect())
        .unwrap_or_default();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

/// Splits the tags field on commas and whitespace.
pub fn split_tags(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// `POST /ui/hosts/{machine_id}/tags` (field `tags`): the admin API's tag write.
pub async fn put_tags(cx: &Cx<'_>) -> Result {
    let id = machine_id(cx)?;
    let actor = authorize(cx, &Method::PUT, &format!("/api/v1/hosts/{}/tags", enc(&id)), "Editing tags")?;
    let tags = split_tags(cx.f("tags").unwrap_or(""));
    actions::put_tags(&cx.state.sync, &actor, &id, &tags).await?;
    Ok(redirect(&format!("/ui/hosts/{}?done=tags", enc(&id))))
}

/// `POST /ui/hosts/{machine_id}/clean-sync`: the admin API's clean-sync request.
pub async fn clean_sync(cx: &Cx<'_>) -> Result {
    let id = machine_id(cx)?;
    let actor =
        authorize(cx, &Method::POST, &format!("/api/v1/hosts/{}/clean-sync", enc(&id)), "Requesting a clean sync")?;
    actions::clean_sync(&cx.state.sync, &actor, &id).await?;
    Ok(redirect(&format!("/ui/hosts/{}?done=clean-sync", enc(&id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_on_commas_and_spaces() {
        assert_eq!(split_tags(" a, b  c,,d "), vec!["a", "b", "c", "d"]);
        assert!(split_tags("  ").is_empty());
        assert_eq!(policy_class("BLOCK_BINARY"), "block");
        assert_eq!(policy_class("Allowlist"), "allow");
    }
}
