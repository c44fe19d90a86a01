//! The Binaries pages: `/ui/binaries` (recent binaries and the search box, in [`list`]) and
//! `/ui/binaries/{sha256}` (what the fleet saw of it, who signed it, how often it ran and was
//! blocked, the rules that apply to it and where they come from, its proposals), with allow /
//! block actions by binary, signing ID, Team ID, certificate or CD hash for one host, a tag's
//! rule set or everyone — committed through [`actions::post_rules`], the code
//! `POST /api/v1/rules` runs.
//!
//! Bounded reads only: the store's summary and per-day counters of the binary, its newest
//! [`MAX_EVENTS`] events (one index range), the records of the first hosts that ran it, one
//! batched rule read per candidate rule set, the newest proposals, and one host's selection.

use super::error::UiError;
use super::layout::{Nav, PageCtx, csrf_field, page};
use super::{Cx, Result, authorize, enc, fmt, html};
use crate::actions;
use crate::http::admin;
use crate::sync::now_unix;
use dasher_sdk::domain::{GLOBAL_RULE_SET, Rule, RuleKey, host_rule_set};
use dasher_sdk::names::{PLUGIN_HOST_SET_PREFIX, RuleSetName, check_tag};
use dasher_sdk::wire::{self, Decision, Policy, RuleType, WireEnum};
use dasher_store::{BinarySigner, BinarySummary, EventFilter, EventKind, EventRecord, Proposal, SignerCert, Store};
use http::{Method, StatusCode};
use maud::{Markup, html};
use std::collections::{BTreeMap, BTreeSet};

mod list;

pub use list::search;

/// Newest events of one binary read per page.
pub const MAX_EVENTS: usize = 200;
/// Hosts whose rule sets are looked at for "rules that apply".
const MAX_HOSTS_CHECKED: usize = 10;
/// Newest proposals searched for ones about this binary.
const MAX_PROPOSALS_SCANNED: usize = 500;
/// Longest custom message on a rule made here (the rule's own bound applies too).
const MAX_MESSAGE_CHARS: usize = 4096;

/// Santa's evaluation order of rule types: the first type with a rule decides.
pub const RULE_PRECEDENCE: [RuleType; 5] =
    [RuleType::CdHash, RuleType::Binary, RuleType::SigningId, RuleType::Certificate, RuleType::TeamId];

/// A lower-case 64-hex SHA-256, or `None`.
pub fn parse_sha256(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// What the newest events say about a binary.
#[derive(Default)]
struct Seen {
    events: Vec<EventRecord>,
    /// The newest execution event's signing data.
    latest: Option<BinarySigner>,
    names: BTreeSet<String>,
    paths: BTreeSet<String>,
    hosts: Vec<String>,
    first_unix: i64,
    last_unix: i64,
    /// Day (Unix seconds at 00:00 UTC) → (allowed, blocked, other).
    per_day: BTreeMap<i64, [u64; 3]>,
    /// The store's all-time summary (prevalence, names, latest signer), if any event had it.
    summary: Option<BinarySummary>,
}

/// Days of decisions the chart shows.
const CHART_DAYS: i64 = 90;

/// Allowed (0), blocked (1) or other (2).
fn decision_kind(decision: &str) -> usize {
    match decision.parse::<Decision>() {
        Ok(d) if d.is_block() => 1,
        Ok(Decision::Unknown) | Err(_) => 2,
        Ok(_) => 0,
    }
}

async fn seen(store: &dyn Store, sha: &str) -> std::result::Result<Seen, dasher_store::StoreError> {
    let filter =
        EventFilter { file_sha256: Some(sha.to_owned()), dropped: None, limit: MAX_EVENTS, ..Default::default() };
    let events = store.query_events(&filter).await?;
    let mut s = Seen { first_unix: i64::MAX, ..Default::default() };
    for e in &events {
        let at = e.event.received_at_unix;
        s.first_unix = s.first_unix.min(at);
        s.last_unix = s.last_unix.max(at);
        if !s.hosts.contains(&e.machine_id) {
            s.hosts.push(e.machine_id.clone());
        }
        s.per_day.entry(at.div_euclid(86_400) * 86_400).or_default()[decision_kind(&e.event.decision)] += 1;
        if e.event.kind != EventKind::Execution {
            continue;
        }
        if let Ok(body) = serde_json::from_value::<wire::Event>(e.event.body.clone()) {
            if !body.file_name.is_empty() {
                s.names.insert(body.file_name.clone());
            }
            if !body.file_path.is_empty() {
                s.paths.insert(body.file_path.clone());
            }
            if s.latest.is_none() {
                s.latest = Some(signer_of(&body));
            }
        }
    }
    if events.is_empty() {
        s.first_unix = 0;
    }
    s.events = events;
    // The store's counters cover every event ever stored, not only the newest sampled.
    s.summary = store.get_binary(sha).await?;
    if let Some(sum) = &s.summary {
        if sum.signer.as_ref().is_some_and(|x| !x.is_empty()) {
            s.latest = sum.signer.clone();
        }
        for n in &sum.names {
            s.names.insert(n.file_name.clone());
            s.paths.insert(n.file_path.clone());
        }
    }
    let now = now_unix();
    let buckets = store.binary_activity(sha, now - CHART_DAYS * 86_400, now + 86_400).await?;
    if !buckets.is_empty() {
        s.per_day.clear();
        for b in buckets {
            s.per_day.entry(b.start_unix).or_default()[decision_kind(&b.series)] += b.count;
        }
    }
    Ok(s)
}

/// An event's signing data as the binary summary keeps it.
fn signer_of(e: &wire::Event) -> BinarySigner {
    BinarySigner {
        team_id: e.team_id.clone(),
        signing_id: e.signing_id.clone(),
        cdhash: e.cdhash.clone(),
        chain: e
            .signing_chain
            .iter()
            .map(|c| SignerCert {
                sha256: c.sha256.clone(),
                cn: c.cn.clone(),
                org: c.org.clone(),
                ou: c.ou.clone(),
                valid_from: c.valid_from,
                valid_until: c.valid_until,
            })
            .collect(),
    }
}

/// The rule keys that can match this binary, from its hash and its latest signature.
fn keys_of(sha: &str, latest: Option<&BinarySigner>) -> Vec<RuleKey> {
    let key = |rule_type, identifier: &str| RuleKey { rule_type, identifier: identifier.to_owned() };
    let mut keys = vec![key(RuleType::Binary, sha)];
    if let Some(e) = latest {
        if !e.cdhash.is_empty() {
            keys.push(key(RuleType::CdHash, &e.cdhash.to_ascii_lowercase()));
        }
        if !e.signing_id.is_empty() {
            keys.push(key(RuleType::SigningId, &e.signing_id));
        }
        if let Some(leaf) = e.chain.first().filter(|c| !c.sha256.is_empty()) {
            keys.push(key(RuleType::Certificate, &leaf.sha256.to_ascii_lowercase()));
        }
        if !e.team_id.is_empty() {
            keys.push(key(RuleType::TeamId, &e.team_id.to_ascii_uppercase()));
        }
    }
    keys
}

/// The identifier a rule of `rule_type` for this binary would use.
fn identifier_for(rule_type: RuleType, sha: &str, latest: Option<&BinarySigner>) -> Option<String> {
    keys_of(sha, latest).into_iter().find(|k| k.rule_type == rule_type).map(|k| k.identifier)
}

/// One host's view: its id, its rule sets in precedence order, and the deciding rule (set, rule).
type OnHost = (String, Vec<String>, Option<(String, Rule)>);

/// One rule found for the binary.
struct Found {
    rule_set: String,
    rule: Rule,
}

/// The rule sets looked at: `global`, and for each of the first hosts that ran the binary its
/// own sets and its tags' sets (from the host record; no policy plugin runs for this).
async fn candidate_sets(
    store: &dyn Store,
    hosts: &[String],
) -> std::result::Result<Vec<String>, dasher_store::StoreError> {
    let mut sets = vec![GLOBAL_RULE_SET.to_owned()];
    for id in hosts.iter().take(MAX_HOSTS_CHECKED) {
        let tags = store.get_host(id).await?.map(|h| h.tags).unwrap_or_default();
        let own = [host_rule_set(id), format!("{PLUGIN_HOST_SET_PREFIX}{id}")];
        for set in own.into_iter().chain(tags) {
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
    }
    Ok(sets)
}

async fn rules_for(
    store: &dyn Store,
    sets: &[String],
    keys: &[RuleKey],
    at: u64,
) -> std::result::Result<Vec<Found>, dasher_store::StoreError> {
    let mut found = Vec::new();
    for set in sets {
        for rule in store.get_rules(set, keys, at).await?.into_iter().flatten() {
            found.push(Found { rule_set: set.clone(), rule });
        }
    }
    Ok(found)
}

/// On a host with `selection` (sets in precedence order), the rule that decides: for each
/// key the first set holding it wins; of those, the first type in [`RULE_PRECEDENCE`].
fn deciding<'a>(selection: &[String], found: &'a [Found]) -> Option<&'a Found> {
    RULE_PRECEDENCE.iter().find_map(|t| {
        selection.iter().find_map(|set| found.iter().find(|f| &f.rule_set == set && f.rule.rule_type == *t))
    })
}

async fn proposals_for(
    store: &dyn Store,
    keys: &[RuleKey],
) -> std::result::Result<Vec<Proposal>, dasher_store::StoreError> {
    let all = store.list_proposals(None, None, MAX_PROPOSALS_SCANNED).await?;
    Ok(all.into_iter().filter(|p| keys.contains(&p.key)).collect())
}

/// `GET /ui/binaries/{sha256}[?machine_id=…]`.
pub async fn detail(cx: &Cx<'_>) -> Result {
    let sha = parse_sha256(&cx.params[0])
        .ok_or_else(|| UiError::field("sha256", "a binary is named by its SHA-256: 64 hexadecimal characters"))?;
    render(cx, &sha, None, StatusCode::OK).await
}

async fn render(cx: &Cx<'_>, sha: &str, notice: Option<Markup>, status: StatusCode) -> Result {
    let store = cx.state.sync.store.as_ref();
    let now = now_unix();
    let seen = seen(store, sha).await?;
    let keys = keys_of(sha, seen.latest.as_ref());
    let sets = candidate_sets(store, &seen.hosts).await?;
    let head = store.head_version().await?;
    let found = rules_for(store, &sets, &keys, head).await?;
    let proposals = proposals_for(store, &keys).await?;
    let on_host = match cx.q("machine_id").or(seen.hosts.first().map(String::as_str)) {
        Some(id) => {
            let host = store.get_host(id).await?;
            let selection =
                cx.state.sync.current_selection(id, host.as_ref()).await.map_err(crate::http::error::ApiError::from)?;
            // A host not among those sampled: read its own sets too.
            let extra: Vec<String> = selection.iter().filter(|s| !sets.contains(s)).cloned().collect();
            let mut all = rules_for(store, &extra, &keys, head).await?;
            all.extend(found.iter().map(|f| Found { rule_set: f.rule_set.clone(), rule: f.rule.clone() }));
            let decided = deciding(&selection, &all).map(|f| (f.rule_set.clone(), f.rule.clone()));
            Some((id.to_owned(), selection, decided))
        }
        None => None,
    };
    let ctx = cx.page_ctx();
    let title = match seen.names.iter().next() {
        Some(name) => format!("Binary {name}"),
        None => format!("Binary {}…", &sha[..12]),
    };
    let body = html! {
        @if let Some(n) = notice { (n) }
        p { "SHA-256 " code { (sha) } " · " a href=(format!("/ui/events?file_sha256={sha}")) { "its events" } }
        @if seen.events.is_empty() && seen.summary.is_none() {
            div.flash { "No host has reported an event for this binary yet. Rules for it can still be added below." }
        }
        (overview(&seen, now))
        (signer(seen.latest.as_ref()))
        (chart(&seen))
        (rules_section(&found, &sets, on_host.as_ref()))
        (proposals_section(&proposals))
        (actions_form(&ctx, sha, seen.latest.as_ref(), &seen.hosts))
    };
    Ok(html(status, page(&ctx, &title, Nav::Binaries, body)))
}

fn overview(seen: &Seen, now: i64) -> Markup {
    let sampled = seen.events.len() >= MAX_EVENTS;
    html! {
        h2 { "Prevalence" }
        dl.kv {
            @if let Some(sum) = &seen.summary {
                dt { "Hosts" } dd { (sum.hosts) }
                dt { "Events" } dd { (sum.events) }
                dt { "First seen" } dd { (fmt::time(sum.first_seen_unix)) }
                dt { "Last seen" } dd { (fmt::when(sum.last_seen_unix, now)) }
            } @else {
                dt { "Hosts" } dd { (seen.hosts.len()) @if sampled { " (in its newest " (MAX_EVENTS) " events)" } }
                dt { "Events" } dd { (seen.events.len()) @if sampled { "+" } }
                dt { "First seen" } dd { @if sampled { "before " } (fmt::time(seen.first_unix)) }
                dt { "Last seen" } dd { (fmt::when(seen.last_unix, now)) }
            }
            dt { "Names" } dd { @for n in &seen.names { code { (n) } " " } @if seen.names.is_empty() { "—" } }
            dt { "Paths" } dd { @for p in &seen.paths { code { (p) } br; } @if seen.paths.is_empty() { "—" } }
        }
        @if !seen.hosts.is_empty() {
            p { "Hosts: "
                @for h in seen.hosts.iter().take(20) { a href=(format!("/ui/hosts/{}", enc(h))) { (h) } " " }
                @if seen.hosts.len() > 20 { "and " (seen.hosts.len() - 20) " more" }
            }
        }
    }
}

fn signer(latest: Option<&BinarySigner>) -> Markup {
    let Some(e) = latest.filter(|s| !s.is_empty()) else {
        return html! { h2 { "Signer" } p.muted { "Unsigned, or no event carried signing data." } };
    };
    let or_dash = |v: &str| {
        if v.is_empty() {
            html! { "—" }
        } else {
            html! { code { (v) } }
        }
    };
    html! {
        h2 { "Signer" }
        dl.kv {
            dt { "Team ID" } dd { (or_dash(&e.team_id)) }
            dt { "Signing ID" } dd { (or_dash(&e.signing_id)) }
            dt { "CD hash" } dd { (or_dash(&e.cdhash)) }
        }
        @if !e.chain.is_empty() {
            table {
                thead { tr { th { "Certificate (leaf first)" } th { "Organisation" } th { "Valid until" } th { "SHA-256" } } }
                tbody {
                    @for c in &e.chain {
                        tr {
                            td { (c.cn) @if !c.ou.is_empty() { " (" (c.ou) ")" } }
                            td { (c.org) }
                            td { @if c.valid_until == 0 { "—" } @else { (fmt::date(i64::from(c.valid_until))) } }
                            td.mono { (c.sha256) }
                        }
                    }
                }
            }
        }
    }
}

fn chart(seen: &Seen) -> Markup {
    if seen.per_day.is_empty() {
        return html! {};
    }
    let join = |i: usize| seen.per_day.values().map(|v| v[i].to_string()).collect::<Vec<_>>().join(",");
    let xs = seen.per_day.keys().map(i64::to_string).collect::<Vec<_>>().join(",");
    let series = format!("Allowed|#2e7d32|{};Blocked|#c0392b|{};Other|#8a8f98|{}", join(0), join(1), join(2));
    html! {
        h2 { "Decisions per day" }
        div.chart data-kind="bars" data-x=(xs) data-series=(series) {
            table.fallback {
                thead { tr { th { "Day (UTC)" } th.num { "Allowed" } th.num { "Blocked" } th.num { "Other" } } }
                tbody {
                    @for (day, v) in &seen.per_day {
                        tr { td { (fmt::date(*day)) } td.num { (v[0]) } td.num { (v[1]) } td.num { (v[2]) } }
                    }
                }
            }
        }
    }
}

fn policy_badge(p: Policy) -> Markup {
    let class = match p {
        Policy::Allowlist | Policy::AllowlistCompiler => "badge allow",
        Policy::Cel => "badge warn",
        _ => "badge block",
    };
    html! { span class=(class) { (p.name()) } }
}

fn rules_section(found: &[Found], sets: &[String], on_host: Option<&OnHost>) -> Markup {
    html! {
        h2 { "Rules that apply" }
        @if let Some((id, selection, decided)) = on_host {
            p {
                "On host " a href=(format!("/ui/hosts/{}", enc(id))) { (id) } " (rule sets "
                @for (i, s) in selection.iter().enumerate() { @if i > 0 { ", " } code { (s) } } "): "
                @match decided {
                    Some((set, r)) => { (policy_badge(r.policy)) " by its " (r.rule_type.name()) " rule in " code { (set) } }
                    None => { "no rule; the host's client mode decides." }
                }
            }
        }
        @if found.is_empty() {
            p.muted { "No rule for this binary, its signing ID, Team ID, certificate or CD hash." }
        } @else {
            table {
                thead { tr { th { "Rule set" } th { "Key type" } th { "Identifier" } th { "Policy" } th { "Message" } } }
                tbody {
                    @for f in found {
                        tr {
                            td { a href=(format!("/ui/rules?set={}", enc(&f.rule_set))) { (f.rule_set) } }
                            td { (f.rule.rule_type.name()) }
                            td.mono { (f.rule.identifier) }
                            td { (policy_badge(f.rule.policy)) }
                            td { (f.rule.custom_msg.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        p.muted { "Looked in: " @for (i, s) in sets.iter().enumerate() { @if i > 0 { ", " } code { (s) } }
            " (global, and the sets of up to " (MAX_HOSTS_CHECKED) " hosts that ran it)." }
    }
}

fn proposals_section(proposals: &[Proposal]) -> Markup {
    html! {
        h2 { "Proposals" }
        @if proposals.is_empty() {
            p.muted { "None among the newest " (MAX_PROPOSALS_SCANNED) " proposals." }
        } @else {
            table {
                thead { tr { th { "#" } th { "Rule" } th { "Rule set" } th { "Status" } th.num { "Count" } th { "Reason" } } }
                tbody {
                    @for p in proposals {
                        tr {
                            td { a href=(format!("/ui/proposals?status=all&before_id={}", p.id + 1)) { (p.id) } }
                            td { (p.key.rule_type.name()) " " (policy_badge(p.rule.policy)) }
                            td { code { (p.rule_set) } }
                            td { (format!("{:?}", p.status).to_lowercase()) }
                            td.num { (p.count) }
                            td { (p.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn actions_form(ctx: &PageCtx, sha: &str, latest: Option<&BinarySigner>, hosts: &[String]) -> Markup {
    let keys = keys_of(sha, latest);
    html! {
        h2 { "Allow or block" }
        form method="post" action=(format!("/ui/binaries/{sha}/rule")) {
            (csrf_field(ctx))
            fieldset {
                legend { "By" }
                @for (i, k) in keys.iter().enumerate() {
                    label { input type="radio" name="rule_type" value=(k.rule_type.name()) checked[i == 0];
                        " " (k.rule_type.name()) " " code { (k.identifier) } }
                    br;
                }
            }
            fieldset {
                legend { "Policy" }
                label { input type="radio" name="policy" value="BLOCKLIST" checked; " block" } " "
                label { input type="radio" name="policy" value="SILENT_BLOCKLIST"; " block silently" } " "
                label { input type="radio" name="policy" value="ALLOWLIST"; " allow" }
            }
            fieldset {
                legend { "For" }
                label { input type="radio" name="scope" value="host" checked; " one host: " }
                input type="text" name="machine_id" value=(hosts.first().map(String::as_str).unwrap_or("")) maxlength="256"
                    list="binary-hosts" placeholder="machine id";
                datalist id="binary-hosts" { @for h in hosts.iter().take(50) { option value=(h) {} } }
                br;
                label { input type="radio" name="scope" value="tag"; " hosts tagged " }
                input type="text" name="tag" maxlength="300" placeholder="tag (its rule set)";
                br;
                label { input type="radio" name="scope" value="global"; " every host (global)" }
            }
            label { "Message shown in the block dialog (optional) "
                input type="text" name="custom_msg" maxlength=(MAX_MESSAGE_CHARS) size="60"; }
            p { button type="submit" { "Save rule" } }
        }
    }
}

/// `POST /ui/binaries/{sha256}/rule`: a rule for this binary (fields `rule_type`, `policy`,
/// `scope` = `host` (+ `machine_id`) | `tag` (+ `tag`) | `global`, `custom_msg`), committed
/// through the admin API's validation and action ([`admin::parse_rule_changes`],
/// [`actions::post_rules`]) with the role of `POST /api/v1/rules`.
/// A refused field is shown above the page's form (400), with the admin API's message.
pub async fn add_rule(cx: &Cx<'_>) -> Result {
    let actor = authorize(cx, &Method::POST, "/api/v1/rules", "Adding a rule")?;
    let sha = parse_sha256(&cx.params[0])
        .ok_or_else(|| UiError::field("sha256", "a binary is named by its SHA-256: 64 hexadecimal characters"))?;
    match save_rule(cx, &actor, &sha).await {
        Ok(notice) => render(cx, &sha, Some(notice), StatusCode::OK).await,
        Err(UiError::BadRequest { field, message }) => {
            let notice = html! {
                div.flash.error role="alert" {
                    "Not saved: " (message)
                    @if let Some(f) = field { " (field " code { (f) } ")" }
                }
            };
            render(cx, &sha, Some(notice), StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(e),
    }
}

async fn save_rule(cx: &Cx<'_>, actor: &actions::Actor, sha: &str) -> Result<Markup> {
    let sha = sha.to_owned();
    let rule_type =
        cx.f("rule_type").and_then(|t| t.parse::<RuleType>().ok()).filter(|t| RULE_PRECEDENCE.contains(t)).ok_or_else(
            || UiError::field("rule_type", "choose what to match: BINARY, CDHASH, SIGNINGID, CERTIFICATE or TEAMID"),
        )?;
    let policy = match cx.f("policy") {
        Some(p @ ("BLOCKLIST" | "SILENT_BLOCKLIST" | "ALLOWLIST")) => p,
        _ => return Err(UiError::field("policy", "choose allow, block or block silently")),
    };
    let rule_set = match cx.f("scope") {
        Some("global") => GLOBAL_RULE_SET.to_owned(),
        Some("host") => {
            let id = cx.f("machine_id").map(str::trim).unwrap_or("");
            let id =
                crate::http::machine_id::parse_machine_id(id, cx.state.sync.config.get().limits.max_machine_id_bytes)
                    .map_err(|e| UiError::field("machine_id", e.to_string()))?;
            host_rule_set(&id)
        }
        Some("tag") => {
            let tag = cx.f("tag").map(str::trim).unwrap_or("");
            check_tag(tag).map_err(|e| UiError::field("tag", e.to_string()))?;
            tag.to_owned()
        }
        _ => return Err(UiError::field("scope", "choose one host, a tag or every host")),
    };
    debug_assert!(RuleSetName::writable(&rule_set).is_ok() && !rule_set.starts_with(PLUGIN_HOST_SET_PREFIX));
    let message = cx.f("custom_msg").map(str::trim).filter(|m| !m.is_empty());
    let store = cx.state.sync.store.as_ref();
    let latest = seen(store, &sha).await?.latest;
    let identifier = identifier_for(rule_type, &sha, latest.as_ref()).ok_or_else(|| {
        UiError::field("rule_type", format!("no {} is known for this binary (no host reported one)", rule_type.name()))
    })?;
    let mut rule = serde_json::json!({
        "identifier": identifier, "rule_type": rule_type.name(), "policy": policy, "rule_set": rule_set,
    });
    if let Some(m) = message {
        rule["custom_msg"] = m.into();
    }
    let body = serde_json::to_vec(&serde_json::json!({ "rules": [rule] })).expect("serializes");
    let changes =
        admin::parse_rule_changes(&body, cx.state.sync.config.get().limits.max_rules_per_request).map_err(|e| {
            // `rules[0].custom_msg` → the form's `custom_msg`.
            match e {
                crate::http::error::ApiError::BadRequest { field: Some(f), message } => {
                    UiError::BadRequest { field: Some(f.trim_start_matches("rules[0].").to_owned()), message }
                }
                e => e.into(),
            }
        })?;
    let version = actions::post_rules(&cx.state.sync, actor, &changes).await?;
    Ok(html! {
        div.flash.ok { "Saved: " (policy) " by " (rule_type.name()) " in " code { (rule_set) } " (rule version " (version)
            "). Hosts get it at their next sync." }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(set: &str, t: RuleType, p: Policy) -> Found {
        Found {
            rule_set: set.into(),
            rule: Rule {
                identifier: "x".into(),
                rule_type: t,
                policy: p,
                custom_msg: None,
                custom_url: None,
                cel_expr: None,
                notification_app_name: None,
                event_detail_button_label: None,
                comment: None,
            },
        }
    }

    #[test]
    fn the_deciding_rule_follows_santas_type_order_then_set_precedence() {
        let sel = vec!["host:m1".to_string(), "eng".into(), "global".into()];
        let all = vec![
            found("global", RuleType::Binary, Policy::Allowlist),
            found("eng", RuleType::TeamId, Policy::Blocklist),
            found("host:m1", RuleType::Binary, Policy::Blocklist),
            found("other", RuleType::CdHash, Policy::Allowlist),
        ];
        let d = deciding(&sel, &all).unwrap();
        assert_eq!((d.rule_set.as_str(), d.rule.policy), ("host:m1", Policy::Blocklist), "binary beats team id");
        let d = deciding(&sel[1..], &all).unwrap();
        assert_eq!(d.rule_set, "global", "a set the host does not select never decides");
        assert!(deciding(&["lab".to_string()], &all).is_none());
    }

    #[test]
    fn keys_come_from_the_hash_and_the_newest_signature() {
        let sha = "a".repeat(64);
        assert_eq!(keys_of(&sha, None).len(), 1);
        let e = wire::Event {
            team_id: "eqhxz8m8av".into(),
            signing_id: "EQHXZ8M8AV:com.x".into(),
            signing_chain: vec![wire::Certificate { sha256: "B".repeat(64), ..Default::default() }],
            ..Default::default()
        };
        let e = signer_of(&e);
        let keys = keys_of(&sha, Some(&e));
        let types: Vec<RuleType> = keys.iter().map(|k| k.rule_type).collect();
        assert_eq!(types, [RuleType::Binary, RuleType::SigningId, RuleType::Certificate, RuleType::TeamId]);
        assert_eq!(identifier_for(RuleType::TeamId, &sha, Some(&e)).unwrap(), "EQHXZ8M8AV");
        assert_eq!(identifier_for(RuleType::Certificate, &sha, Some(&e)).unwrap(), "b".repeat(64));
        assert!(identifier_for(RuleType::CdHash, &sha, Some(&e)).is_none());
        assert_eq!(parse_sha256(&"F".repeat(64)).unwrap(), "f".repeat(64));
        assert!(parse_sha256("abc").is_none());
    }
}
