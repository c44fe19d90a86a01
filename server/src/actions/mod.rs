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
            ReviewError::InvalidRule { ref field, .. } => ActionError::field(field.clone(), e.to_string()),
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
    let max = sync.config.limits.max_rules_per_request;
    if changes.len() > max {
        return Err(ActionError::field("rules", format!("at most {max} rules per request")));
    }
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

fn decided_by(actor: &Actor, by: Option<&str>) -> Result<String, ActionError> {
    let by = by.unwrap_or(&actor.name);
    if by.is_empty() || by.len() > MAX_DECIDED_BY_BYTES {
        return Err(ActionError::field("by", format!("by must be 1 to {MAX_DECIDED_BY_BYTES} bytes")));
    }
    Ok(by.to_owned())
}

/// Approves a pending proposal (its rule is committed). `by` defaults to the actor's name.
pub async fn approve_proposal(
    sync: &SyncService,
    actor: &Actor,
    id: u64,
    by: Option<&str>,
) -> Result<Proposal, ActionError> {
    let by = decided_by(actor, by)?;
    let p = proposals::approve(sync.store.as_ref(), id, &by, now_unix()).await?;
    let detail = serde_json::json!({"by": by, "rule_set": p.rule_set, "rule": p.rule});
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
    plugins.ok_or_else(|| ActionError::NotFound("plugins are not configured (set [plugins] or --plugins-dir)".into()))
}

/// Rescans the plugin directory now.
pub async fn reload_plugins(
    sync: &SyncService,
    plugins: Option<&dasher_policy::PluginManager>,
    actor: &Actor,
) -> Result<dasher_policy::ReloadReport, ActionError> {
    let report = manager(plugins)?.reload().await;
    let detail = serde_json::to_value(&report).unwrap_or_default();
    audit::record(sync, actor, "plugins.reload", "plugins", detail).await;
    Ok(report)
}

/// Rolls a plugin back to its previous generation; returns (from, to) generations.
pub async fn rollback_plugin(
    sync: &SyncService,
    plugins: Option<&dasher_policy::PluginManager>,
    actor: &Actor,
    name: &str,
) -> Result<(String, String), ActionError> {
    let (from, to) = manager(plugins)?.rollback(name).map_err(|e| ActionError::field("name", e.to_string()))?;
    let detail = serde_json::json!({"from": from, "to": to});
    audit::record(sync, actor, "plugin.rollback", &format!("plugin:{name}"), detail).await;
    Ok((from, to))
}
