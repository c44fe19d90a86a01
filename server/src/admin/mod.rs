//! The admin API (JSON, `Authorization: Bearer <token>`): rules, hosts, events, rule
//! proposals, maintenance, plugins. Invalid input gets a 4xx whose JSON names the field.
//! Tokens and roles are checked by [`auth`] in [`crate::http`] before a request gets here.

pub mod auth;

use crate::http::error::{ApiError, json_response};
use crate::http::{AppState, machine_id::parse_machine_id, read_limited};
use crate::policy::{PLUGIN_HOST_SET_PREFIX, is_reserved_rule_set};
use crate::proposals;
use crate::sync::rules::Resolver;
use crate::sync::{SyncService, host_facts, now_unix};
use bytes::Bytes;
use dasher_sdk::domain::{GLOBAL_RULE_SET, RuleKey, RuleSpec};
use dasher_sdk::version::ClientCaps;
use dasher_store::{EventFilter, ProposalStatus, RuleChange};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use std::collections::HashMap;

type Resp = Result<Response<Full<Bytes>>, ApiError>;

/// Largest admin request body.
const MAX_ADMIN_BODY_BYTES: usize = 64 << 20;

fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.replace("%3A", ":").replace("%3a", ":").replace("%40", "@"))
        })
        .collect()
}

fn validate_rule_set(name: &str, field: &str) -> Result<(), ApiError> {
    if proposals::valid_rule_set_name(name) {
        Ok(())
    } else {
        Err(ApiError::field(field, format!("invalid rule set name {:?}", name.chars().take(64).collect::<String>())))
    }
}

/// Plugin host sets are written by the preflight only (and a tag names a rule set).
fn refuse_reserved(name: &str, field: &str) -> Result<(), ApiError> {
    if is_reserved_rule_set(name) {
        return Err(ApiError::field(
            field,
            format!("rule set names starting with {PLUGIN_HOST_SET_PREFIX:?} are reserved for plugin host rules"),
        ));
    }
    Ok(())
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

/// Routes `/healthz` and `/api/v1/...`.
pub async fn handle(state: &AppState, req: Request<hyper::body::Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let sync = &state.sync;
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, ["api", "v1", "rules"]) => post_rules(sync, req).await,
        (Method::GET, ["api", "v1", "rules"]) => get_rules(sync, &query(&req)).await,
        (Method::GET, ["api", "v1", "rule-sets"]) => {
            Ok(json_response(StatusCode::OK, &serde_json::json!({"rule_sets": sync.store.rule_sets().await?})))
        }
        (Method::GET, ["api", "v1", "hosts"]) => {
            let q = query(&req);
            let limit = parse_limit(&q, 100, 10_000)?;
            let hosts = sync.store.list_hosts(q.get("after").map(String::as_str), limit).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({"hosts": hosts})))
        }
        (method, ["api", "v1", "hosts", raw_id, rest @ ..]) => {
            let id = parse_machine_id(raw_id, sync.config.limits.max_machine_id_bytes)
                .map_err(|e| ApiError::field("machine_id", e.to_string()))?;
            match (method, rest) {
                (Method::GET, []) => match sync.store.get_host(&id).await? {
                    Some(h) => Ok(json_response(StatusCode::OK, &h)),
                    None => Err(ApiError::NotFound(format!("no host {id}"))),
                },
                (Method::PUT, ["tags"]) => put_tags(sync, &id, req).await,
                (Method::POST, ["clean-sync"]) => {
                    sync.store.set_clean_requested(&id, true).await?;
                    Ok(json_response(StatusCode::OK, &serde_json::json!({"machine_id": id, "clean_requested": true})))
                }
                (Method::GET, ["effective-rules"]) => effective_rules(sync, &id).await,
                _ => Err(ApiError::NotFound(format!("no route for {path}"))),
            }
        }
        (Method::GET, ["api", "v1", "events"]) => get_events(sync, &query(&req)).await,
        (Method::POST, ["api", "v1", "maintenance", "compact-history"]) => compact_history(sync, req).await,
        (Method::GET, ["api", "v1", "proposals"]) => get_proposals(sync, &query(&req)).await,
        (method, ["api", "v1", "proposals", raw_id, rest @ ..]) => {
            let id = raw_id.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                ApiError::field("id", format!("proposal id must be a positive number, not {raw_id:?}"))
            })?;
            match (method, rest) {
                (Method::GET, []) => match sync.store.get_proposal(id).await? {
                    Some(p) => Ok(json_response(StatusCode::OK, &p)),
                    None => Err(ApiError::NotFound(format!("no proposal {id}"))),
                },
                (Method::POST, [verb @ ("approve" | "reject")]) => decide_proposal(sync, id, verb, req).await,
                _ => Err(ApiError::NotFound(format!("no route for {path}"))),
            }
        }
        (method, ["api", "v1", "plugins", rest @ ..]) => plugins(state, method, rest).await,
        _ => Err(ApiError::NotFound(format!("no route for {path}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesRequest {
    rules: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RuleInput {
    #[serde(flatten)]
    spec: RuleSpec,
    #[serde(default)]
    rule_set: Option<String>,
}

async fn post_rules(sync: &SyncService, req: Request<hyper::body::Incoming>) -> Resp {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let changes = parse_rule_changes(&bytes, sync.config.limits.max_rules_per_request)?;
    let version = sync.store.commit_rules(&changes).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"version": version, "applied": changes.len()})))
}

/// Parses and validates a `POST /api/v1/rules` body into the changes to commit: at most
/// `max_rules` rules, each a valid [`RuleSpec`] in a valid rule set; a later rule for the same
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
        let input: RuleInput =
            serde_json::from_value(value).map_err(|e| ApiError::field(format!("rules[{i}]"), e.to_string()))?;
        let rule_set = input.rule_set.unwrap_or_else(|| GLOBAL_RULE_SET.to_owned());
        validate_rule_set(&rule_set, &format!("rules[{i}].rule_set"))?;
        refuse_reserved(&rule_set, &format!("rules[{i}].rule_set"))?;
        let (key, rule) =
            input.spec.validate().map_err(|e| ApiError::field(format!("rules[{i}].{}", e.field()), e.to_string()))?;
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
    validate_rule_set(&rule_set, "rule_set")?;
    let limit = parse_limit(q, 1000, 100_000)?;
    let version = sync.store.head_version().await?;
    let rules = sync.store.scan_rules(&rule_set, version, None, limit).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"rule_set": rule_set, "version": version, "rules": rules})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsRequest {
    tags: Vec<String>,
}

async fn put_tags(sync: &SyncService, id: &str, req: Request<hyper::body::Incoming>) -> Resp {
    let body: TagsRequest = json_body(req).await?;
    for (i, tag) in body.tags.iter().enumerate() {
        validate_rule_set(tag, &format!("tags[{i}]"))?;
        refuse_reserved(tag, &format!("tags[{i}]"))?;
    }
    sync.store.set_host_tags(id, &body.tags).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"machine_id": id, "tags": body.tags})))
}

/// The rules the host should hold right now (what a completed sync would give it).
async fn effective_rules(sync: &SyncService, id: &str) -> Resp {
    let host = sync.store.get_host(id).await?;
    let facts = host_facts(id, host.as_ref(), now_unix());
    let sets = sync.current_selection(id, host.as_ref()).await?;
    // A host that never reported a version is shown every rule (a sync adapts them to its version).
    let caps = match host.as_ref().and_then(|h| h.inventory.as_ref()) {
        Some(_) => ClientCaps::from_version_str(&facts.santa_version),
        None => ClientCaps::EVERY_FEATURE,
    };
    let version = sync.store.head_version().await?;
    let rules = Resolver::new(sync.store.as_ref(), caps).all_effective(&sets, version).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"machine_id": id, "version": version, "rule_sets": sets, "rules": rules}),
    ))
}

async fn get_events(sync: &SyncService, q: &HashMap<String, String>) -> Resp {
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
    let filter = EventFilter {
        label: q.get("label").cloned(),
        // Events triage dropped as noise are stored; they are hidden unless asked for.
        dropped: if include_dropped { None } else { Some(false) },
        machine_id: q.get("machine_id").cloned(),
        file_sha256: q.get("file_sha256").map(|s| s.to_ascii_lowercase()),
        decision: q.get("decision").cloned(),
        since_unix,
        before_id,
        limit: parse_limit(q, 100, 10_000)?,
        ..Default::default()
    };
    let events = sync.store.query_events(&filter).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"events": events})))
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
    let days = body.active_within_days.unwrap_or(sync.config.sync.rule_history_days);
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

/// Optional body of approve / reject: who decides (recorded with the decision).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DecideRequest {
    by: Option<String>,
}

/// Longest `by` accepted on approve / reject.
const MAX_DECIDED_BY_BYTES: usize = 256;

/// `POST /api/v1/proposals/{id}/approve|reject`: 404 unknown, 409 already decided.
async fn decide_proposal(sync: &SyncService, id: u64, verb: &str, req: Request<hyper::body::Incoming>) -> Resp {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let body: DecideRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DecideRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    let by = body.by.unwrap_or_else(|| "admin".to_owned());
    if by.is_empty() || by.len() > MAX_DECIDED_BY_BYTES {
        return Err(ApiError::field("by", format!("by must be 1 to {MAX_DECIDED_BY_BYTES} bytes")));
    }
    let store = sync.store.as_ref();
    let p = match verb {
        "approve" => proposals::approve(store, id, &by, now_unix()).await?,
        _ => proposals::reject(store, id, &by, now_unix()).await?,
    };
    Ok(json_response(StatusCode::OK, &p))
}

/// `GET /api/v1/plugins`, `POST /api/v1/plugins/reload`, `POST /api/v1/plugins/{name}/rollback`.
async fn plugins(state: &AppState, method: Method, rest: &[&str]) -> Resp {
    let Some(manager) = &state.plugins else {
        return Err(ApiError::NotFound("plugins are not configured (set [plugins] or --plugins-dir)".into()));
    };
    match (method, rest) {
        (Method::GET, []) => {
            // Per plugin: hosts whose last decision by it (as a shadow plugin) would have
            // differed from the applied one, counted since the server started.
            let differing = state.sync.policy.shadow_hosts_differing();
            let mut status = serde_json::to_value(manager.status()).expect("status serializes");
            if let Some(plugins) = status.get_mut("plugins").and_then(|p| p.as_array_mut()) {
                for p in plugins {
                    let n = p.get("name").and_then(|n| n.as_str()).and_then(|n| differing.get(n)).copied();
                    p["shadow_hosts_differing"] = n.unwrap_or(0).into();
                }
            }
            Ok(json_response(StatusCode::OK, &status))
        }
        (Method::POST, ["reload"]) => Ok(json_response(StatusCode::OK, &manager.reload().await)),
        (Method::POST, [name, "rollback"]) => match manager.rollback(name) {
            Ok((from, to)) => {
                Ok(json_response(StatusCode::OK, &serde_json::json!({"plugin": name, "from": from, "to": to})))
            }
            Err(e) => Err(ApiError::field("name", e.to_string())),
        },
        _ => Err(ApiError::NotFound("no such plugin route".into())),
    }
}
