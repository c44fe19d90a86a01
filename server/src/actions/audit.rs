//! The audit log of operator actions: who (token or session name and role), what, on what,
//! when, and through which surface, kept in the store ([`dasher_store::Store::record_audit`])
//! where the console's Audit page reads it. Recording never fails an action that already
//! happened: a store error is logged (and the action is in the server log either way).

use super::Actor;
use crate::sync::{SyncService, now_unix};
use dasher_store::NewAuditEntry;

/// Through which surface an action came (the store's type).
pub use dasher_store::AuditVia as Via;

/// Records one action: `action` like `host.tags.set`, `target` like `host:MACHINE`.
pub async fn record(sync: &SyncService, actor: &Actor, action: &str, target: &str, detail: serde_json::Value) {
    let entry = NewAuditEntry {
        at_unix: now_unix(),
        actor: actor.name.clone(),
        role: actor.role.as_str().to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail,
        via: actor.via,
    };
    tracing::info!(
        target: "dasher::audit",
        actor = %entry.actor,
        role = %entry.role,
        via = ?entry.via,
        action = %entry.action,
        target = %entry.target,
        "audit"
    );
    if let Err(e) = sync.store.record_audit(&entry).await {
        tracing::error!(error = %e, action, target, "could not record an audit entry");
    }
}
