//! The Rules page, `/ui/rules`: rule sets with their rule counts (keyset-paged by name), one
//! set's rules at the head version (keyset-paged by rule key, searchable by rule type and
//! identifier prefix), and forms to add, change and remove a rule. Every write is the body
//! `POST /api/v1/rules` would get, validated by [`admin::parse_rule_changes`] and committed by
//! [`actions::post_rules`] with that route's role; a refused field is shown next to it.

use super::error::UiError;
use super::layout::{Nav, PageCtx, csrf_field, page};
use super::{Cx, Result, authorize, enc, html, redirect};
use crate::actions;
use crate::http::admin;
use crate::http::error::ApiError;
use dasher_sdk::domain::{GLOBAL_RULE_SET, Rule, RuleKey};
use dasher_sdk::names::RuleSetName;
use dasher_sdk::wire::{Policy, RuleType, WireEnum};
use http::{Method, StatusCode};
use maud::{Markup, html};
use std::collections::HashMap;

/// Rule sets or rules per page.
const PAGE: usize = 100;

/// Rule types an admin may write.
const TYPES: [RuleType; 5] =
    [RuleType::Binary, RuleType::Certificate, RuleType::SigningId, RuleType::TeamId, RuleType::CdHash];
/// Policies an admin may write.
const POLICIES: [Policy; 7] = [
    Policy::Allowlist,
    Policy::AllowlistCompiler,
    Policy::Blocklist,
    Policy::SilentBlocklist,
    Policy::SilentGuiBlocklist,
    Policy::SilentTtyBlocklist,
    Policy::Cel,
];
/// The rule form's text fields: (name, label, bound in characters).
const TEXT_FIELDS: [(&str, &str, usize); 5] = [
    ("custom_msg", "Message", 4096),
    ("custom_url", "URL", 4096),
    ("cel_expr", "CEL expression", 4096),
    ("notification_app_name", "Notification name", 256),
    ("event_detail_button_label", "Button label", 48),
];

/// What the rule form shows: its values and, after a refused save, the error by field.
#[derive(Default)]
struct FormState {
    values: HashMap<String, String>,
    error: Option<(String, String)>,
}

impl FormState {
    fn value(&self, k: &str) -> &str {
        self.values.get(k).map(String::as_str).unwrap_or("")
    }

    fn error_for(&self, k: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == k).map(|(_, m)| m.as_str())
    }

    fn of_rule(set: &str, r: &Rule) -> FormState {
        let mut values = HashMap::from([
            ("rule_set".to_owned(), set.to_owned()),
            ("rule_type".to_owned(), r.rule_type.name().to_owned()),
            ("identifier".to_owned(), r.identifier.clone()),
            ("policy".to_owned(), r.policy.name().to_owned()),
        ]);
        for (k, v) in [
            ("custom_msg", &r.custom_msg),
            ("custom_url", &r.custom_url),
            ("cel_expr", &r.cel_expr),
            ("notification_app_name", &r.notification_app_name),
            ("event_detail_button_label", &r.event_detail_button_label),
        ] {
            if let Some(v) = v {
                values.insert(k.to_owned(), v.clone());
            }
        }
        FormState { values, error: None }
    }
}

fn set_name(s: &str) -> std::result::Result<String, UiError> {
    RuleSetName::readable(s).map(RuleSetName::into_string).map_err(|e| UiError::field("set", e.to_string()))
}

fn rule_type(s: &str, field: &str) -> std::result::Result<RuleType, UiError> {
    s.parse::<RuleType>()
        .ok()
        .filter(|t| TYPES.contains(t))
        .ok_or_else(|| UiError::field(field, "rule type must be BINARY, CERTIFICATE, SIGNINGID, TEAMID or CDHASH"))
}

/// `GET /ui/rules`: the rule sets (`after=` pages); with `set=NAME` that set's rules
/// (`after_type=`/`after_id=` pages, `type=` + `q=` prefix search, `edit_type=`/`edit_id=`
/// fills the form with a rule).
pub async fn page_get(cx: &Cx<'_>) -> Result {
    let form = match (cx.q("set"), cx.q("edit_type"), cx.q("edit_id")) {
        (Some(set), Some(t), Some(id)) => {
            let set = set_name(set)?;
            let key = RuleKey { rule_type: rule_type(t, "edit_type")?, identifier: id.to_owned() };
            let head = cx.state.sync.store.head_version().await?;
            match cx.state.sync.store.get_rule(&set, &key, head).await? {
                Some(r) => FormState::of_rule(&set, &r),
                None => return Err(UiError::NotFound(format!("no {} rule {id:?} in {set}", key.rule_type.name()))),
            }
        }
        (set, _, _) => FormState {
            values: HashMap::from([("rule_set".to_owned(), set.unwrap_or(GLOBAL_RULE_SET).to_owned())]),
            error: None,
        },
    };
    render(cx, form, None, StatusCode::OK).await
}

async fn render(cx: &Cx<'_>, form: FormState, notice: Option<Markup>, status: StatusCode) -> Result {
    let ctx = cx.page_ctx();
    let listing = match cx.q("set") {
        Some(set) => set_rules(cx, &ctx, &set_name(set)?).await?,
        None => sets(cx).await?,
    };
    let saved = cx.q("saved").and_then(|v| v.parse::<u64>().ok());
    let gitops = rules_dir_panel(cx);
    let body = html! {
        (gitops)
        @if let Some(n) = notice { (n) }
        @if let Some(v) = saved { div.flash.ok { "Saved as rule version " (v) ". Hosts get it at their next sync." } }
        @if let Some((field, message)) = &form.error {
            @if !["rule_set", "rule_type", "identifier", "policy"].contains(&field.as_str())
                && !TEXT_FIELDS.iter().any(|(k, _, _)| k == field) {
                div.flash.error { (message) }
            }
        }
        (listing)
        (rule_form(&ctx, &form))
    };
    Ok(html(status, page(&ctx, "Rules and rule sets", Nav::Rules, body)))
}

/// The GitOps rules directory's state (`[rules_dir]`), when there is one: what it last
/// applied, its last error, and — on a set's page — that the set is edited in its file.
fn rules_dir_panel(cx: &Cx<'_>) -> Markup {
    let Some(dir) = cx.state.rules_dir.as_deref() else { return html! {} };
    let st = dir.status();
    let now = crate::sync::now_unix();
    let owner = cx.q("set").and_then(|set| st.sets.get(set).cloned());
    html! {
        div.card.gitops {
            h2 { "Rules directory" }
            p {
                "Rule sets are applied from " code { (st.path) }
                @match (st.applied_version, st.applied_at_unix) {
                    (Some(v), Some(at)) => {
                        ": last applied as rule version " (v) ", " (super::fmt::when(at, now))
                        @if let Some(sha) = &st.applied_sha256 { " (files " code { (sha.get(..12).unwrap_or(sha)) } ")" }
                        "; " (st.sets.len()) " sets managed there."
                    }
                    _ => { ": nothing applied yet." }
                }
            }
            @if let Some(e) = &st.last_error {
                div.flash.error {
                    "The last apply failed"
                    @if let Some(at) = st.last_error_at_unix { " (" (super::fmt::when(at, now)) ")" }
                    "; the last good rules stay: " (e)
                }
            }
            @if let Some(file) = owner {
                p.muted { "This set is managed by " code { (file) } ": change the file (the console and the API refuse edits here)." }
            }
        }
    }
}

async fn sets(cx: &Cx<'_>) -> Result<Markup> {
    let after = cx.q("after");
    let sets = cx.state.sync.store.rule_sets_after(after, PAGE + 1).await?;
    let more = sets.len() > PAGE;
    let sets = &sets[..sets.len().min(PAGE)];
    Ok(html! {
        h2 { "Rule sets" }
        p.muted { "Hosts get " code { "global" } ", the sets named like their tags and their own " code { "host:ID" }
            " set; a rule in an earlier set wins." }
        table {
            thead { tr { th { "Rule set" } th.num { "Rules" } } }
            tbody {
                @for s in sets {
                    tr { td { a href=(format!("/ui/rules?set={}", enc(&s.name))) { (s.name) } } td.num { (s.rules) } }
                }
            }
        }
        @if sets.is_empty() { p.muted { "No rules yet: add one below." } }
        @if more { p.pager { a href=(format!("/ui/rules?after={}", enc(&sets[sets.len() - 1].name))) { "Next →" } } }
    })
}

async fn set_rules(cx: &Cx<'_>, ctx: &PageCtx, set: &str) -> Result<Markup> {
    let store = cx.state.sync.store.as_ref();
    let head = store.head_version().await?;
    let search_type = cx.q("type").map(|t| rule_type(t, "type")).transpose()?;
    let prefix = cx.q("q").unwrap_or("");
    let after = match (cx.q("after_type"), cx.q("after_id")) {
        (Some(t), Some(id)) => Some(RuleKey { rule_type: rule_type(t, "after_type")?, identifier: id.to_owned() }),
        _ => None,
    };
    let mut rules = match (search_type, after) {
        (_, Some(after)) => store.scan_rules(set, head, Some(&after), PAGE + 1).await?,
        // A search starts at the prefix itself (scan_rules is strictly after its key).
        (Some(t), None) => {
            let start = RuleKey { rule_type: t, identifier: prefix.to_owned() };
            let mut r: Vec<Rule> = store.get_rule(set, &start, head).await?.into_iter().collect();
            r.extend(store.scan_rules(set, head, Some(&start), PAGE + 1).await?);
            r
        }
        (None, None) => store.scan_rules(set, head, None, PAGE + 1).await?,
    };
    if let Some(t) = search_type {
        // Keys are ordered by type, then identifier: the matches are one contiguous run.
        rules.retain(|r| r.rule_type == t && r.identifier.starts_with(prefix));
    }
    let more = rules.len() > PAGE;
    rules.truncate(PAGE);
    let search = |extra: String| {
        let mut q = format!("/ui/rules?set={}", enc(set));
        if let Some(t) = search_type {
            q.push_str(&format!("&type={}&q={}", t.name(), enc(prefix)));
        }
        q + &extra
    };
    Ok(html! {
        h2 { "Rule set " code { (set) } }
        p { a href="/ui/rules" { "← all rule sets" } " · version " (head) }
        form.filters method="get" action="/ui/rules" {
            (csrf_field(ctx))
            input type="hidden" name="set" value=(set);
            label { "Type " select name="type" {
                @for t in TYPES { option value=(t.name()) selected[search_type == Some(t)] { (t.name()) } }
            } }
            label { " identifier starts with " input type="text" name="q" value=(prefix) maxlength="512"; }
            button type="submit" { "Search" }
        }
        table {
            thead { tr { th { "Type" } th { "Identifier" } th { "Policy" } th { "Message" } th { "" } } }
            tbody {
                @for r in &rules {
                    tr {
                        td { (r.rule_type.name()) }
                        td.mono { (r.identifier) }
                        td { (r.policy.name()) }
                        td { (r.custom_msg.as_deref().unwrap_or("")) }
                        td {
                            a href=(format!("/ui/rules?set={}&edit_type={}&edit_id={}#rule-form", enc(set), r.rule_type.name(), enc(&r.identifier))) { "Change" }
                            " "
                            form.inline method="post" action="/ui/rules/remove" {
                                (csrf_field(ctx))
                                input type="hidden" name="rule_set" value=(set);
                                input type="hidden" name="rule_type" value=(r.rule_type.name());
                                input type="hidden" name="identifier" value=(r.identifier);
                                button.danger type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        @if rules.is_empty() { p.muted { "No rules match." } }
        @if more {
            @let last = &rules[rules.len() - 1];
            p.pager { a href=(search(format!("&after_type={}&after_id={}", last.rule_type.name(), enc(&last.identifier)))) { "Next →" } }
        }
    })
}

fn field_error(form: &FormState, k: &str) -> Markup {
    html! { @if let Some(m) = form.error_for(k) { " " span.badge.bad role="alert" { (m) } } }
}

fn rule_form(ctx: &PageCtx, form: &FormState) -> Markup {
    let cur_type = form.value("rule_type");
    let cur_policy = form.value("policy");
    html! {
        h2 #rule-form { "Add or change a rule" }
        p.muted { "A rule with the same type and identifier in the set is replaced." }
        form method="post" action="/ui/rules" {
            (csrf_field(ctx))
            dl.kv {
                dt { label for="f-set" { "Rule set" } }
                dd { input #f-set type="text" name="rule_set" value=(form.value("rule_set")) maxlength="300" required; (field_error(form, "rule_set")) }
                dt { label for="f-type" { "Type" } }
                dd { select #f-type name="rule_type" {
                    @for t in TYPES { option value=(t.name()) selected[cur_type == t.name()] { (t.name()) } }
                } (field_error(form, "rule_type")) }
                dt { label for="f-id" { "Identifier" } }
                dd { input #f-id type="text" name="identifier" value=(form.value("identifier")) maxlength="512" size="70" required; (field_error(form, "identifier")) }
                dt { label for="f-policy" { "Policy" } }
                dd { select #f-policy name="policy" {
                    @for p in POLICIES { option value=(p.name()) selected[cur_policy == p.name()] { (p.name()) } }
                } (field_error(form, "policy")) }
                @for (k, label, max) in TEXT_FIELDS {
                    dt { label for=(format!("f-{k}")) { (label) } }
                    dd { input id=(format!("f-{k}")) type="text" name=(k) value=(form.value(k)) maxlength=(max) size="70"; (field_error(form, k)) }
                }
            }
            button type="submit" { "Save rule" }
        }
    }
}

/// The posted rule form as the admin API's rule object, then parsed exactly as
/// `POST /api/v1/rules` parses it. A refused field comes back by its form name.
fn parse_form(
    cx: &Cx<'_>,
    policy: Option<&str>,
) -> std::result::Result<Vec<dasher_store::RuleChange>, (String, String)> {
    let mut rule = serde_json::Map::new();
    for k in ["rule_set", "rule_type", "identifier", "policy"] {
        let v = if k == "policy" { policy.or(cx.f(k)) } else { cx.f(k) };
        let v = v.map(str::trim).unwrap_or("");
        if v.is_empty() {
            return Err((k.to_owned(), format!("{} is required", k.replace('_', " "))));
        }
        rule.insert(k.to_owned(), v.into());
    }
    if policy.is_none() {
        for (k, _, _) in TEXT_FIELDS {
            if let Some(v) = cx.f(k).filter(|v| !v.trim().is_empty()) {
                rule.insert(k.to_owned(), v.trim().into());
            }
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({ "rules": [rule] })).expect("serializes");
    admin::parse_rule_changes(&body, cx.state.sync.config.get().limits.max_rules_per_request).map_err(|e| match e {
        ApiError::BadRequest { field, message } => {
            let field = field.unwrap_or_default();
            // `rules[0]` alone is a wrong type or policy name (serde's message names which).
            let field = match field.trim_start_matches("rules[0]").trim_start_matches('.') {
                "" if message.contains("RuleType") => "rule_type".to_owned(),
                "" if message.contains("Policy") => "policy".to_owned(),
                f => f.to_owned(),
            };
            (field, message)
        }
        other => (String::new(), other.to_string()),
    })
}

async fn save(cx: &Cx<'_>, policy: Option<&str>) -> Result {
    let actor = authorize(cx, &Method::POST, "/api/v1/rules", "Changing rules")?;
    let changes = match parse_form(cx, policy) {
        Ok(c) => c,
        Err(error) => {
            let values = cx
                .form
                .iter()
                .filter(|(k, _)| k.as_str() != super::csrf::FIELD)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return render(cx, FormState { values, error: Some(error) }, None, StatusCode::BAD_REQUEST).await;
        }
    };
    let version = actions::post_rules(&cx.state.sync, &actor, &changes).await?;
    let set = &changes[0].rule_set;
    Ok(redirect(&format!("/ui/rules?set={}&saved={version}", enc(set))))
}

/// `POST /ui/rules`: add or change one rule (the form's fields are the admin API's rule object).
pub async fn post(cx: &Cx<'_>) -> Result {
    save(cx, None).await
}

/// `POST /ui/rules/remove`: removes one rule (`rule_set`, `rule_type`, `identifier`), i.e. the
/// admin API's rule with policy `REMOVE`.
pub async fn remove(cx: &Cx<'_>) -> Result {
    save(cx, Some("REMOVE")).await
}
