//! The admin API (JSON, `Authorization: Bearer <token>`): rules, hosts, events, rule
//! proposals, maintenance, plugins. Invalid input gets a 4xx whose JSON names the field.
//! Tokens and roles are checked by [`auth`] in [`crate::http`] before a request gets here.

pub mod auth;
mod plugins_ops;
mod requests;
pub mod rules_code;

use crate::actions::{self, Actor, Via};
use crate::config::Role;
use crate::http::error::{ApiError, json_response};
use crate::http::{AppState, machine_id::parse_machine_id, read_limited};
use crate::sync::rules::Resolver;
use crate::sync::{SyncService, host_facts, now_unix};
use bytes::Bytes;
use dasher_sdk::domain::{GLOBAL_RULE_SET, RuleKey};
use dasher_sdk::names::{NameError, RuleSetName};
use dasher_sdk::version::ClientCaps;
use dasher_store::{EventFilter, ProposalStatus, RuleChange};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use std::collections::HashMap;

pub(crate) type Resp = Result<Response<Full<Bytes>>, ApiError>;

/// Largest admin request body.
pub(crate) const MAX_ADMIN_BODY_BYTES: usize = 64 << 20;

/// The query string, decoded (`application/x-www-form-urlencoded`); a repeated key keeps its
/// last value.
fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// A rule-set name checked for its use (`RuleSetName::readable` / `writable`), or a 400 naming
/// the field.
fn rule_set_name(
    name: &str,
    field: &str,
    check: fn(&str) -> Result<RuleSetName, NameError>,
) -> Result<RuleSetName, ApiError> {
    check(name).map_err(|e| ApiError::field(field, e.to_string()))
}

fn parse_limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::field("limit", format!("limit must be a number from 1 to {max}"))),
    }
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<hyper::body::Incoming>) -> Result<T, ApiError> {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// What an admin route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `POST /api/v1/rules`
    PostRules,
    /// `GET /api/v1/rules`
    GetRules,
    /// `GET /api/v1/rule-sets`
    RuleSets,
    /// `GET /api/v1/hosts`
    ListHosts,
    /// `GET /api/v1/hosts/{id}`
    GetHost,
    /// `PUT /api/v1/hosts/{id}/tags`
    PutTags,
    /// `POST /api/v1/hosts/{id}/clean-sync`
    CleanSync,
    /// `GET /api/v1/hosts/{id}/effective-rules`
    EffectiveRules,
    /// `GET /api/v1/events`
    Events,
    /// `POST /api/v1/maintenance/compact-history`
    CompactHistory,
    /// `GET /api/v1/proposals`
    ListProposals,
    /// `GET /api/v1/proposals/{id}`
    GetProposal,
    /// `POST /api/v1/proposals/{id}/approve`
    ApproveProposal,
    /// `POST /api/v1/proposals/{id}/reject`
    RejectProposal,
    /// `GET /api/v1/plugins`
    Plugins,
    /// `POST /api/v1/plugins/reload`
    ReloadPlugins,
    /// `POST /api/v1/plugins/{name}/rollback`
    RollbackPlugin,
    /// `GET /metrics` (when `metrics.require_token`)
    Metrics,
    /// `POST /api/v1/config/reload`
    ReloadConfig,
    /// `GET /api/v1/plugins/{name}/history`
    PluginHistory,
    /// `POST /api/v1/proposals/requests`
    UserRequest,
    /// `POST /api/v1/rules/plan`
    PlanRules,
    /// `POST /api/v1/rules/apply`
    ApplyRules,
    /// `GET /api/v1/rules-dir`
    RulesDir,
    /// `GET /api/v1/export`
    Export,
}

/// One admin route: method, path (`{}` matches one segment), the least role that may call
/// it, and what it does. The only list of admin routes: dispatch and role checks both read it.
#[derive(Debug)]
pub struct Route {
    /// Method (a `GET` route also answers `HEAD`).
    pub method: Method,
    /// Path pattern.
    pub path: &'static str,
    /// Least role.
    pub role: Role,
    /// What it does.
    pub op: Op,
}

const fn route(method: Method, path: &'static str, role: Role, op: Op) -> Route {
    Route { method, path, role, op }
}

/// Every admin route.
pub const ROUTES: &[Route] = &[
    route(Method::POST, "/api/v1/rules", Role::RulesEditor, Op::PostRules),
    route(Method::GET, "/api/v1/rules", Role::ReadOnly, Op::GetRules),
    route(Method::GET, "/api/v1/rule-sets", Role::ReadOnly, Op::RuleSets),
    route(Method::GET, "/api/v1/hosts", Role::ReadOnly, Op::ListHosts),
    route(Method::GET, "/api/v1/hosts/{}", Role::ReadOnly, Op::GetHost),
    route(Method::PUT, "/api/v1/hosts/{}/tags", Role::RulesEditor, Op::PutTags),
    route(Method::POST, "/api/v1/hosts/{}/clean-sync", Role::RulesEditor, Op::CleanSync),
    route(Method::GET, "/api/v1/hosts/{}/effective-rules", Role::ReadOnly, Op::EffectiveRules),
    route(Method::GET, "/api/v1/events", Role::ReadOnly, Op::Events),
    route(Method::POST, "/api/v1/maintenance/compact-history", Role::Admin, Op::CompactHistory),
    route(Method::GET, "/api/v1/proposals", Role::ReadOnly, Op::ListProposals),
    route(Method::GET, "/api/v1/proposals/{}", Role::ReadOnly, Op::GetProposal),
    route(Method::POST, "/api/v1/proposals/{}/approve", Role::RulesEditor, Op::ApproveProposal),
    route(Method::POST, "/api/v1/proposals/{}/reject", Role::RulesEditor, Op::RejectProposal),
    route(Method::GET, "/api/v1/plugins", Role::ReadOnly, Op::Plugins),
    route(Method::POST, "/api/v1/plugins/reload", Role::Admin, Op::ReloadPlugins),
    route(Method::POST, "/api/v1/plugins/{}/rollback", Role::Admin, Op::RollbackPlugin),
    route(Method::GET, "/metrics", Role::ReadOnly, Op::Metrics),
    route(Method::POST, "/api/v1/config/reload", Role::Admin, Op::ReloadConfig),
    route(Method::GET, "/api/v1/plugins/{}/history", Role::ReadOnly, Op::PluginHistory),
    route(Method::POST, "/api/v1/proposals/requests", Role::RulesEditor, Op::UserRequest),
    route(Method::POST, "/api/v1/rules/plan", Role::ReadOnly, Op::PlanRules),
    route(Method::POST, "/api/v1/rules/apply", Role::RulesEditor, Op::ApplyRules),
    route(Method::GET, "/api/v1/rules-dir", Role::ReadOnly, Op::RulesDir),
    route(Method::GET, "/api/v1/export", Role::ReadOnly, Op::Export),
];

/// Why no route answers a request.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    NotFound,
    /// Routes have this path, but not with this method.
    MethodNotAllowed,
}

/// The route for `method` and `path`, with the path's `{}` segments in order.
pub fn find<'p>(method: &Method, path: &'p str) -> Result<(&'static Route, Vec<&'p str>), NoRoute> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_matched = false;
    for r in ROUTES {
        let pattern = r.path.trim_start_matches('/').split('/');
        if pattern.clone().count() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matched = pattern.zip(&segments).all(|(p, s)| {
            if p == "{}" {
                params.push(*s);
                !s.is_empty()
            } else {
                p == *s
            }
        });
        if !matched {
            continue;
        }
        if r.method == method {
            return Ok((r, params));
        }
        path_matched = true;
    }
    Err(if path_matched { NoRoute::MethodNotAllowed } else { NoRoute::NotFound })
}

impl From<NoRoute> for ApiError {
    fn from(e: NoRoute) -> Self {
        match e {
            NoRoute::NotFound => ApiError::NotFound("no such admin route (see the README's admin API)".into()),
            NoRoute::MethodNotAllowed => ApiError::MethodNotAllowed,
        }
    }
}

/// The least role of the route that does `op` (the one table, [`ROUTES`]).
pub fn role_of(op: Op) -> Role {
    ROUTES.iter().find(|r| r.op == op).map(|r| r.role).expect("every op has a route")
}

/// Answers an admin route found by [`find`] (the caller checked that `who` has its role).
pub async fn handle(
    state: &AppState,
    route: &Route,
    params: &[&str],
    req: Request<hyper::body::Incoming>,
    who: &auth::Identity,
) -> Resp {
    let sync = &state.sync;
    let actor = Actor { name: who.name.clone(), role: who.role, via: Via::Api };
    let machine_id = || {
        parse_machine_id(params[0], sync.config.get().limits.max_machine_id_bytes)
            .map_err(|e| ApiError::field("machine_id", e.to_string()))
    };
    let proposal_id =
        || {
            params[0].parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                ApiError::field("id", format!("proposal id must be a positive number, not {:?}", params[0]))
            })
        };
    match route.op {
        Op::PostRules => post_rules(sync, &actor, req).await,
        Op::GetRules => get_rules(sync, &query(&req)).await,
        Op::RuleSets => {
            Ok(json_response(StatusCode::OK, &serde_json::json!({"rule_sets": sync.store.rule_sets().await?})))
        }
        Op::ListHosts => {
            let q = query(&req);
            let limit = parse_limit(&q, 100, 10_000)?;
            let hosts = sync.store.list_hosts(q.get("after").map(String::as_str), limit).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({"hosts": hosts})))
        }
        Op::GetHost => {
            let id = machine_id()?;
            match sync.store.get_host(&id).await? {
                Some(h) => Ok(json_response(StatusCode::OK, &h)),
                None => Err(ApiError::NotFound(format!("no host {id}"))),
            }
        }
        Op::PutTags => put_tags(sync, &actor, &machine_id()?, req).await,
        Op::CleanSync => {
            let id = machine_id()?;
            actions::clean_sync(sync, &actor, &id).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({"machine_id": id.as_str(), "clean_requested": true})))
        }
        Op::EffectiveRules => effective_rules(sync, &machine_id()?).await,
        Op::Events => get_events(sync, &query(&req)).await,
        Op::Export => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "replica": state.export.replica(), "sinks": state.export.snapshot() }),
        )),
        Op::CompactHistory => compact_history(sync, req).await,
        Op::ListProposals => get_proposals(sync, &query(&req)).await,
        Op::GetProposal => {
            let id = proposal_id()?;
            match sync.store.get_proposal(id).await? {
                Some(p) => Ok(json_response(StatusCode::OK, &p)),
                None => Err(ApiError::NotFound(format!("no proposal {id}"))),
            }
        }
        Op::ApproveProposal => decide_proposal(sync, &actor, proposal_id()?, true, req).await,
        Op::RejectProposal => decide_proposal(sync, &actor, proposal_id()?, false, req).await,
        Op::Plugins => plugin_status(state),
        Op::UserRequest => requests::post_request(sync, req).await,
        Op::ReloadPlugins => {
            let report = actions::reload_plugins(sync, state.plugins.as_deref(), &state.reloader, &actor).await?;
            Ok(json_response(StatusCode::OK, &report))
        }
        Op::RollbackPlugin => plugins_ops::rollback(state, &actor, params[0], req).await,
        Op::Metrics => super::ops::metrics(state, &req).await,
        Op::ReloadConfig => plugins_ops::reload_config(state, req).await,
        Op::PluginHistory => plugins_ops::history(state, params[0]).await,
        Op::PlanRules => rules_code::plan_or_apply(state, req, false).await,
        Op::ApplyRules => rules_code::plan_or_apply(state, req, true).await,
        Op::RulesDir => rules_code::dir_status(state),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesRequest {
    rules: Vec<serde_json::Value>,
}

async fn post_rules(sync: &SyncService, actor: &Actor, req: Request<hyper::body::Incoming>) -> Resp {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let changes = parse_rule_changes(&bytes, sync.config.get().limits.max_rules_per_request)?;
    let version = actions::post_rules(sync, actor, &changes).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"version": version, "applied": changes.len()})))
}

/// Parses and validates a `POST /api/v1/rules` body into the changes to commit: at most
/// `max_rules` rules, each passing [`crate::rules::parse_rule`] (the check rules files pass
/// too); a later rule for the same
/// set and key replaces an earlier one. Errors name the offending field (`rules[3].identifier`).
pub fn parse_rule_changes(body: &[u8], max_rules: usize) -> Result<Vec<RuleChange>, ApiError> {
    let body: RulesRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    if body.rules.len() > max_rules {
        return Err(ApiError::field("rules", format!("at most {max_rules} rules per request")));
    }
    let mut changes: Vec<RuleChange> = Vec::with_capacity(body.rules.len());
    let mut index: HashMap<(String, RuleKey), usize> = HashMap::new();
    for (i, value) in body.rules.into_iter().enumerate() {
        let (rule_set, key, rule) =
            crate::rules::parse_rule(value).map_err(|e| ApiError::field(e.path(&format!("rules[{i}]")), e.message))?;
        let rule_set = rule_set.unwrap_or_else(|| GLOBAL_RULE_SET.to_owned());
        let change = RuleChange { rule_set: rule_set.clone(), key: key.clone(), rule };
        match index.get(&(rule_set.clone(), key.clone())) {
            Some(&at) => changes[at] = change,
            None => {
                index.insert((rule_set, key), changes.len());
                changes.push(change);
            }
        }
    }
    Ok(changes)
}

async fn get_rules(sync: &SyncService, q: &HashMap<String, String>) -> Resp {
    let rule_set = q.get("rule_set").cloned().unwrap_or_else(|| GLOBAL_RULE_SET.to_owned());
    rule_set_name(&rule_set, "rule_set", RuleSetName::readable)?;
    let limit = parse_limit(q, 1000, 100_000)?;
    // Paging for exports: `version` pins the read, `after_type` + `after_identifier` continue.
    let version = match q.get("version") {
        None => sync.store.head_version().await?,
        Some(v) => v.parse().map_err(|_| ApiError::field("version", "version must be a number"))?,
    };
    let after = match (q.get("after_type"), q.get("after_identifier")) {
        (None, None) => None,
        (Some(t), Some(id)) => Some(RuleKey {
            rule_type: t.parse().map_err(|_| ApiError::field("after_type", format!("unknown rule type {t:?}")))?,
            identifier: id.clone(),
        }),
        _ => return Err(ApiError::field("after_type", "after_type and after_identifier go together")),
    };
    let rules = match sync.store.scan_rules(&rule_set, version, after.as_ref(), limit).await {
        Err(
            e @ (dasher_store::StoreError::VersionCompacted { .. } | dasher_store::StoreError::VersionInFuture { .. }),
        ) => {
            return Err(ApiError::field("version", e.to_string()));
        }
        r => r?,
    };
    Ok(json_response(StatusCode::OK, &serde_json::json!({"rule_set": rule_set, "version": version, "rules": rules})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsRequest {
    tags: Vec<String>,
}

async fn put_tags(sync: &SyncService, actor: &Actor, id: &str, req: Request<hyper::body::Incoming>) -> Resp {
    let body: TagsRequest = json_body(req).await?;
    let tags = actions::put_tags(sync, actor, id, &body.tags).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"machine_id": id, "tags": tags})))
}

/// The rules the host should hold right now (what a completed sync would give it).
async fn effective_rules(sync: &SyncService, id: &str) -> Resp {
    let (version, sets, rules) = effective_rules_of(sync, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"machine_id": id, "version": version, "rule_sets": sets, "rules": rules}),
    ))
}

/// The host's effective rules now: (rule version, its rule sets in precedence order, rules).
async fn effective_rules_of(
    sync: &SyncService,
    id: &str,
) -> Result<(u64, Vec<String>, Vec<dasher_sdk::domain::Rule>), ApiError> {
    let (version, sets, rules, _) = first_effective_rules_of(sync, id, usize::MAX).await?;
    Ok((version, sets, rules))
}

/// The host's first `limit` effective rules now: (rule version, its rule sets in precedence
/// order, rules, whether there are more). Shared by the admin API and the console.
pub async fn first_effective_rules_of(
    sync: &SyncService,
    id: &str,
    limit: usize,
) -> Result<(u64, Vec<String>, Vec<dasher_sdk::domain::Rule>, bool), ApiError> {
    let host = sync.store.get_host(id).await?;
    let facts = host_facts(id, host.as_ref(), now_unix());
    let sets = sync.current_selection(id, host.as_ref()).await?;
    // A host that never reported a version is shown every rule (a sync adapts them to its version).
    let caps = match host.as_ref().and_then(|h| h.inventory.as_ref()) {
        Some(_) => ClientCaps::from_version_str(&facts.santa_version),
        None => ClientCaps::EVERY_FEATURE,
    };
    let version = sync.store.head_version().await?;
    let (rules, more) = Resolver::new(sync.store.as_ref(), caps).first_effective(&sets, version, limit).await?;
    Ok((version, sets, rules, more))
}

async fn get_events(sync: &SyncService, q: &HashMap<String, String>) -> Resp {
    let filter = event_filter(q, 100, 10_000)?;
    let events = sync.store.query_events(&filter).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"events": events})))
}

/// The event filter of a query (`machine_id`, `file_sha256`, `decision`, `label`, `since`,
/// `before_id`, `include_dropped`, `limit` up to `max`), each checked; shared by the admin
/// API and the console.
pub fn event_filter(q: &HashMap<String, String>, default_limit: usize, max: usize) -> Result<EventFilter, ApiError> {
    let since_unix = match q.get("since") {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| ApiError::field("since", "since must be Unix seconds"))?),
    };
    let before_id = match q.get("before_id") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| ApiError::field("before_id", "before_id must be a number"))?),
    };
    if let Some(sha) = q.get("file_sha256")
        && !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::field("file_sha256", "file_sha256 must be 64 hexadecimal characters"));
    }
    if let Some(d) = q.get("decision")
        && d.parse::<dasher_sdk::wire::Decision>().is_err()
        && d.parse::<dasher_sdk::wire::FileAccessDecision>().is_err()
    {
        return Err(ApiError::field("decision", format!("unknown decision {d:?}")));
    }
    let include_dropped = match q.get("include_dropped").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("include_dropped", "include_dropped must be true or false")),
    };
    if let Some(l) = q.get("label")
        && (l.is_empty() || l.len() > crate::triage::MAX_LABEL_BYTES)
    {
        return Err(ApiError::field("label", format!("label must be 1 to {} bytes", crate::triage::MAX_LABEL_BYTES)));
    }
    Ok(EventFilter {
        label: q.get("label").cloned(),
        // Events triage dropped as noise are stored; they are hidden unless asked for.
        dropped: if include_dropped { None } else { Some(false) },
        machine_id: q.get("machine_id").cloned(),
        file_sha256: q.get("file_sha256").map(|s| s.to_ascii_lowercase()),
        decision: q.get("decision").cloned(),
        since_unix,
        before_id,
        limit: parse_limit(q, default_limit, max)?,
        ..Default::default()
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CompactRequest {
    /// Compact exactly up to this version (hosts behind it get a clean sync).
    keep_from: Option<u64>,
    /// Otherwise keep what hosts seen within this many days build on (default: the config's).
    active_within_days: Option<u64>,
}

/// `POST /api/v1/maintenance/compact-history`: compacts rule history now (the server also
/// does it hourly, see [`crate::maintenance`]). An empty body uses the configured window.
async fn compact_history(sync: &SyncService, req: Request<hyper::body::Incoming>) -> Resp {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let body: CompactRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CompactRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    let head = sync.store.head_version().await?;
    if let Some(v) = body.keep_from
        && v > head
    {
        return Err(ApiError::field("keep_from", format!("keep_from {v} is above the head version {head}")));
    }
    let days = body.active_within_days.unwrap_or(sync.config.get().sync.rule_history_days);
    let since = now_unix().saturating_sub(i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX));
    let report = crate::maintenance::compact_rule_history(sync.store.as_ref(), body.keep_from, since, None).await?;
    Ok(json_response(StatusCode::OK, &report))
}

/// `GET /api/v1/proposals[?status=pending|approved|rejected&before_id=N&limit=N]`, newest first.
async fn get_proposals(sync: &SyncService, q: &HashMap<String, String>) -> Resp {
    let status = match q.get("status").map(String::as_str) {
        None => None,
        Some("pending") => Some(ProposalStatus::Pending),
        Some("approved") => Some(ProposalStatus::Approved),
        Some("rejected") => Some(ProposalStatus::Rejected),
        Some(other) => {
            return Err(ApiError::field(
                "status",
                format!(
                    "status must be pending, approved or rejected, not {:?}",
                    other.chars().take(32).collect::<String>()
                ),
            ));
        }
    };
    let before_id = match q.get("before_id") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| ApiError::field("before_id", "before_id must be a number"))?),
    };
    let limit = parse_limit(q, 100, 10_000)?;
    let list = sync.store.list_proposals(status, before_id, limit).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"proposals": list})))
}

/// Optional body of approve / reject: who decides (recorded with the decision) and, for an
/// approval, where the rule goes (`scope`, see [`crate::proposals::ApproveScope`]; default: the
/// proposal's own rule set).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DecideRequest {
    by: Option<String>,
    scope: Option<crate::proposals::ApproveScope>,
}

/// `POST /api/v1/proposals/{id}/approve|reject`: 404 unknown, 409 already decided. `by`
/// defaults to `admin`.
async fn decide_proposal(
    sync: &SyncService,
    actor: &Actor,
    id: u64,
    approve: bool,
    req: Request<hyper::body::Incoming>,
) -> Resp {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let body: DecideRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DecideRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    // The API's documented default; the audit log records the token either way.
    let by = body.by.as_deref().unwrap_or("admin");
    let p = match (approve, body.scope) {
        (true, scope) => actions::approve_proposal(sync, actor, id, Some(by), &scope.unwrap_or_default()).await?,
        (false, Some(_)) => return Err(ApiError::field("scope", "a rejection has no scope; leave scope out")),
        (false, None) => actions::reject_proposal(sync, actor, id, Some(by)).await?,
    };
    Ok(json_response(StatusCode::OK, &p))
}

pub(super) fn plugin_manager(state: &AppState) -> Result<&dasher_policy::PluginManager, ApiError> {
    state
        .plugins
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("plugins are not configured (set [plugins] or --plugins-dir)".into()))
}

/// `GET /api/v1/plugins`: the plugin host's status, plus per shadow plugin
/// `shadow_hosts_differing`: hosts whose latest decision by its active generation differs
/// from the applied one now (`shadow_disagreements` counts hosts that started to differ;
/// see `policy::shadow` for the one definition of "differs").
fn plugin_status(state: &AppState) -> Resp {
    let manager = plugin_manager(state)?;
    let counts = state.sync.policy.shadow_counts();
    let mut status = serde_json::to_value(manager.status()).expect("status serializes");
    if let Some(plugins) = status.get_mut("plugins").and_then(|p| p.as_array_mut()) {
        for p in plugins {
            let n = p.get("name").and_then(|n| n.as_str()).and_then(|n| counts.get(n)).copied();
            p["shadow_hosts_differing"] = n.unwrap_or_default().hosts_differing.into();
        }
    }
    Ok(json_response(StatusCode::OK, &status))
}
