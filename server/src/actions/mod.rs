//! The writes an operator can make, shared by the admin API ([`crate::http::admin`]) and the
//! web console ([`crate::ui`]): one function per action, so both run the same checks and the
//! same store calls, and every success is recorded in the audit log ([`audit`]).
//!
//! The caller authorizes first: the role an action needs is the role of its admin API route
//! in [`crate::http::admin::ROUTES`] (the console looks it up there too). An [`Actor`] says
//! who acts and through which surface, for the audit record.

pub mod audit;

use crate::config::Role;
use crate::proposals::{self, ReviewError};
use crate::sync::{SyncService, now_unix};
pub use audit::Via;
use dasher_sdk::names::check_tag;
use dasher_store::{Proposal, RuleChange, StoreError};

/// Most tags one host may carry.
pub const MAX_TAGS_PER_HOST: usize = 256;

/// Longest "decided by" name on approve / reject.
pub const MAX_DECIDED_BY_BYTES: usize = 256;

/// Who performs an action (already authorized by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Token (or session) name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Admin API or console.
    pub via: Via,
}

/// Why an action was not done. Mapped to an HTTP status by each edge (`ApiError`, the
/// console's error page).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Bad input; `field` names it.
    #[error("{message}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The thing acted on does not exist (or the feature is not configured).
    #[error("{0}")]
    NotFound(String),
    /// The action conflicts with the current state (e.g. a decided proposal).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("storage unavailable: {0}")]
    Store(#[from] StoreError),
    /// The server could not finish it now; retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::reload::ReloadError> for ActionError {
    fn from(e: crate::reload::ReloadError) -> Self {
        use crate::reload::ReloadError;
        match e {
            ReloadError::NoFile => ActionError::Conflict(e.to_string()),
            ReloadError::Invalid(_) => ActionError::field("config", e.to_string()),
            ReloadError::Plugins(_) => ActionError::field("plugins", e.to_string()),
        }
    }
}

/// Longest plugin name accepted from a caller (names are crate names).
const MAX_PLUGIN_NAME_BYTES: usize = 128;

/// Checks a plugin name taken from a path or a form, for every edge alike.
pub fn plugin_name(name: &str) -> Result<&str, ActionError> {
    if name.is_empty() || name.len() > MAX_PLUGIN_NAME_BYTES || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ActionError::field(
            "name",
            format!("a plugin name is 1 to {MAX_PLUGIN_NAME_BYTES} printable characters"),
        ));
    }
    Ok(name)
}

impl ActionError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ActionError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<ReviewError> for ActionError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound(_) => ActionError::NotFound(e.to_string()),
            ReviewError::AlreadyDecided { .. } => ActionError::Conflict(e.to_string()),
            ReviewError::InvalidRule { ref field, .. } | ReviewError::BadScope { ref field, .. } => {
                ActionError::field(field.clone(), e.to_string())
            }
            ReviewError::Store(e) => ActionError::Store(e),
        }
    }
}

/// Replaces a host's tags (each checked by [`check_tag`], at most [`MAX_TAGS_PER_HOST`],
/// duplicates dropped keeping the first). Returns the tags stored.
pub async fn put_tags(
    sync: &SyncService,
    actor: &Actor,
    machine_id: &str,
    tags: &[String],
) -> Result<Vec<String>, ActionError> {
    if tags.len() > MAX_TAGS_PER_HOST {
        return Err(ActionError::field("tags", format!("at most {MAX_TAGS_PER_HOST} tags per host")));
    }
    let mut kept: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        check_tag(tag).map_err(|e| ActionError::field(format!("tags[{i}]"), e.to_string()))?;
        if !kept.contains(tag) {
            kept.push(tag.clone());
        }
    }
    sync.store.set_host_tags(machine_id, &kept).await?;
    audit::record(sync, actor, "host.tags.set", &format!("host:{machine_id}"), serde_json::json!({"tags": kept})).await;
    Ok(kept)
}

/// Asks for a clean sync at the host's next preflight.
pub async fn clean_sync(sync: &SyncService, actor: &Actor, machine_id: &str) -> Result<(), ActionError> {
    sync.store.set_clean_requested(machine_id, true).await?;
    audit::record(sync, actor, "host.clean_sync", &format!("host:{machine_id}"), serde_json::Value::Null).await;
    Ok(())
}

/// Commits validated rule changes (see `http::admin::parse_rule_changes`); returns the new
/// rule version.
pub async fn post_rules(sync: &SyncService, actor: &Actor, changes: &[RuleChange]) -> Result<u64, ActionError> {
    let max = sync.config.get().limits.max_rules_per_request;
    if changes.len() > max {
        return Err(ActionError::field("rules", format!("at most {max} rules per request")));
    }
    unmanaged(sync, changes.iter().map(|c| c.rule_set.as_str()))?;
    let version = sync.store.commit_rules(changes).await?;
    let target = match changes {
        [one] => format!("rule:{}/{:?}/{}", one.rule_set, one.key.rule_type, one.key.identifier),
        _ => "rules".to_owned(),
    };
    // The first changes in full (the store cuts an oversized detail).
    let shown: Vec<serde_json::Value> = changes
        .iter()
        .take(50)
        .map(|c| serde_json::json!({"rule_set": c.rule_set, "key": c.key, "rule": c.rule}))
        .collect();
    let detail = serde_json::json!({"version": version, "count": changes.len(), "changes": shown});
    audit::record(sync, actor, "rules.commit", &target, detail).await;
    Ok(version)
}

/// Refuses a write into a set a rules directory owns (GitOps mode: the files are the truth).
pub fn unmanaged<'a>(sync: &SyncService, sets: impl IntoIterator<Item = &'a str>) -> Result<(), ActionError> {
    match sync.rules_owners.first_owned(sets) {
        Some((set, file)) => Err(ActionError::Conflict(crate::rules::dir::Owners::refusal(&set, &file))),
        None => Ok(()),
    }
}

fn decided_by(actor: &Actor, by: Option<&str>) -> Result<String, ActionError> {
    let by = by.unwrap_or(&actor.name);
    if by.is_empty() || by.len() > MAX_DECIDED_BY_BYTES {
        return Err(ActionError::field("by", format!("by must be 1 to {MAX_DECIDED_BY_BYTES} bytes")));
    }
    Ok(by.to_owned())
}

/// Approves a pending proposal (its rule is committed into the set `scope` names, its own
/// by default). `by` defaults to the actor's name.
pub async fn approve_proposal(
    sync: &SyncService,
    actor: &Actor,
    id: u64,
    by: Option<&str>,
    scope: &proposals::ApproveScope,
) -> Result<Proposal, ActionError> {
    let by = decided_by(actor, by)?;
    if let Some(p) = sync.store.get_proposal(id).await?
        && let Ok(target) = scope.target(&p)
    {
        unmanaged(sync, [target.as_str()])?;
    }
    let p = proposals::approve(sync.store.as_ref(), id, &by, scope, now_unix()).await?;
    let into = p.applied_rule_set.as_deref().unwrap_or(&p.rule_set);
    let detail = serde_json::json!({"by": by, "rule_set": into, "proposed_rule_set": p.rule_set, "rule": p.rule});
    audit::record(sync, actor, "proposal.approve", &format!("proposal:{id}"), detail).await;
    Ok(p)
}

/// Rejects a pending proposal. `by` defaults to the actor's name.
pub async fn reject_proposal(
    sync: &SyncService,
    actor: &Actor,
    id: u64,
    by: Option<&str>,
) -> Result<Proposal, ActionError> {
    let by = decided_by(actor, by)?;
    let p = proposals::reject(sync.store.as_ref(), id, &by, now_unix()).await?;
    let detail = serde_json::json!({"by": by, "rule_set": p.rule_set, "rule": p.rule});
    audit::record(sync, actor, "proposal.reject", &format!("proposal:{id}"), detail).await;
    Ok(p)
}

fn manager(plugins: Option<&dasher_policy::PluginManager>) -> Result<&dasher_policy::PluginManager, ActionError> {
    plugins.ok_or_else(not_configured)
}

fn not_configured() -> ActionError {
    ActionError::NotFound("plugins are not configured (set [plugins] or --plugins-dir)".into())
}

/// Re-reads the config file when the server has one (plugin settings, modes, order and
/// fallbacks change with it) and rescans the plugin directory. The answer is the rescan's
/// report, with `config` saying what the file changed.
pub async fn reload_plugins(
    sync: &SyncService,
    plugins: Option<&dasher_policy::PluginManager>,
    reloader: &crate::reload::ConfigReloader,
    actor: &Actor,
) -> Result<serde_json::Value, ActionError> {
    use dasher_policy::Trigger;
    let manager = manager(plugins)?;
    let by = actor.name.clone();
    let body = if reloader.has_file() {
        let report = reloader.reload(&by, Trigger::ReloadApi).await.map_err(ActionError::from)?;
        let rescan = match report.plugins.clone() {
            Some(p) => p,
            None => manager.reload_as(Trigger::ReloadApi, Some(by)).await,
        };
        let mut body = serde_json::to_value(&rescan).unwrap_or_default();
        body["config"] = serde_json::json!({
            "file": report.file,
            "applied": report.applied,
            "needs_restart": report.needs_restart,
        });
        body
    } else {
        serde_json::to_value(manager.reload_as(Trigger::ReloadApi, Some(by)).await).unwrap_or_default()
    };
    audit::record(sync, actor, "plugins.reload", "plugins", body.clone()).await;
    Ok(body)
}

/// Rolls a plugin back to generation `to` (a number or 8+ hex digits of its SHA-256; default
/// the previous one), pinned in the store so it survives restarts; returns (from, to).
pub async fn rollback_plugin(
    sync: &SyncService,
    plugins: Option<&std::sync::Arc<dasher_policy::PluginManager>>,
    actor: &Actor,
    name: &str,
    to: Option<String>,
) -> Result<(String, String), ActionError> {
    use dasher_policy::PolicyError;
    plugin_name(name)?;
    let manager = std::sync::Arc::clone(plugins.ok_or_else(not_configured)?);
    let (plugin, by) = (name.to_owned(), actor.name.clone());
    // Blocking: the store-backed kv, and a compile when the target comes from the store.
    let result = tokio::task::spawn_blocking(move || manager.rollback_to(&plugin, to.as_deref(), Some(&by)))
        .await
        .map_err(|e| ActionError::Unavailable(format!("rollback did not finish: {e}")))?;
    let (from, to) = result.map_err(|e| match e {
        e @ PolicyError::UnknownPlugin(_) => ActionError::NotFound(e.to_string()),
        e @ PolicyError::Generation { .. } => ActionError::field("to", e.to_string()),
        e => ActionError::field("name", e.to_string()),
    })?;
    let detail = serde_json::json!({"from": from, "to": to});
    audit::record(sync, actor, "plugin.rollback", &format!("plugin:{name}"), detail).await;
    Ok((from, to))
}
