//! The audit log of operator actions: who (token or session name and role), what, on what,
//! when, and through which surface. Recording never fails an action that already happened:
//! a store error is logged.

use super::Actor;
use crate::config::Role;
use crate::sync::{SyncService, now_unix};
use serde::{Deserialize, Serialize};

/// Through which surface an action came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The JSON admin API.
    Api,
    /// The web console.
    Ui,
}

impl Via {
    /// `api` or `ui`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Ui => "ui",
        }
    }
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When (Unix seconds).
    pub at_unix: i64,
    /// Token or session name.
    pub who: String,
    /// Its role.
    pub role: Role,
    /// Surface.
    pub via: Via,
    /// What was done, e.g. `host.tags`.
    pub action: String,
    /// On what (machine id, proposal id, plugin name, rule).
    pub target: String,
    /// Details (new values).
    pub detail: String,
}

/// Longest `detail` kept.
const MAX_DETAIL_BYTES: usize = 2048;

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Records one action. The seam to the store's audit log.
pub async fn record(sync: &SyncService, actor: &Actor, action: &str, target: &str, detail: &str) {
    let entry = AuditRecord {
        at_unix: now_unix(),
        who: actor.name.clone(),
        role: actor.role,
        via: actor.via,
        action: action.to_owned(),
        target: cut(target, 512),
        detail: cut(detail, MAX_DETAIL_BYTES),
    };
    store_record(sync, &entry).await;
}

async fn store_record(_sync: &SyncService, entry: &AuditRecord) {
    tracing::info!(
        target: "dasher::audit",
        who = %entry.who,
        role = %entry.role,
        via = entry.via.as_str(),
        action = %entry.action,
        target = %entry.target,
        detail = %entry.detail,
        "audit"
    );
}
