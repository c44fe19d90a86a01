//! Background housekeeping: event retention and rule-history compaction.
//!
//! Rule history (old versions and the change log) is what delta syncs read, so it can only be
//! dropped below the oldest version some host still builds on. The floor is the oldest
//! acknowledged version among hosts seen within `sync.rule_history_days`, but never above the
//! head of the *previous* run: a download snapshot is taken at the head when it starts, and
//! every download that started before the previous run has long finished (or will restart).
//! A host that returns after longer than the window, or whose download outlived the window,
//! gets a clean sync — the same path as any host whose acknowledged version was compacted.

use crate::config::Config;
use crate::sync::now_unix;
use dasher_store::{Store, StoreError};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Hosts listed per store call while looking for the oldest acknowledged version.
const HOST_PAGE: usize = 1000;

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CompactionReport {
    /// Head rule version when the run started.
    pub head: u64,
    /// History floor before the run.
    pub floor_before: u64,
    /// History floor after the run.
    pub floor_after: u64,
    /// Stored history entries removed.
    pub removed: u64,
    /// The host whose acknowledged version held the floor down, if one did.
    pub held_by: Option<String>,
}

/// The oldest version a host seen at or after `active_since_unix` still builds on, and which
/// host that is. Hosts without an acknowledged download don't pin anything: they get a full
/// sync anyway.
pub async fn oldest_needed_version(
    store: &dyn Store,
    active_since_unix: i64,
) -> Result<Option<(u64, String)>, StoreError> {
    let mut oldest: Option<(u64, String)> = None;
    let mut after: Option<String> = None;
    loop {
        let page = store.list_hosts(after.as_deref(), HOST_PAGE).await?;
        for host in &page {
            let seen = host.sync.last_preflight_unix.max(host.sync.last_postflight_unix);
            if seen < active_since_unix {
                continue;
            }
            let versions = [&host.sync.acked, &host.sync.pending].into_iter().flatten().map(|a| a.version);
            if let Some(v) = versions.min()
                && oldest.as_ref().is_none_or(|(o, _)| v < *o)
            {
                oldest = Some((v, host.machine_id.clone()));
            }
        }
        match page.last() {
            Some(last) if page.len() == HOST_PAGE => after = Some(last.machine_id.clone()),
            _ => return Ok(oldest),
        }
    }
}

/// Compacts rule history up to `keep_from`, or — when `None` — up to the oldest version a
/// host active since `active_since_unix` needs, capped at `cap` (the head of the previous run;
/// the current head when `None`).
pub async fn compact_rule_history(
    store: &dyn Store,
    keep_from: Option<u64>,
    active_since_unix: i64,
    cap: Option<u64>,
) -> Result<CompactionReport, StoreError> {
    let head = store.head_version().await?;
    let floor_before = store.history_floor().await?;
    let (target, held_by) = match keep_from {
        Some(v) => (v, None),
        None => {
            let cap = cap.unwrap_or(head).min(head);
            match oldest_needed_version(store, active_since_unix).await? {
                Some((v, host)) if v < cap => (v, Some(host)),
                _ => (cap, None),
            }
        }
    };
    let removed = if target > floor_before { store.compact_history(target).await? } else { 0 };
    let floor_after = store.history_floor().await?;
    Ok(CompactionReport { head, floor_before, floor_after, removed, held_by })
}

/// Runs retention and compaction hourly until `stop` changes. `None` when both are off.
pub fn spawn(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let days = config.sync.event_retention_days;
    let max = config.sync.event_retention_max;
    let history_days = config.sync.rule_history_days;
    if days == 0 && max == 0 && history_days == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        // Head at the previous run: downloads started before it have finished.
        let mut previous_head: Option<u64> = None;
        loop {
            if days > 0 || max > 0 {
                let before = (days > 0).then(|| now_unix() - (days as i64) * 86_400);
                match store.prune_events(before, (max > 0).then_some(max)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "event retention"),
                    Err(e) => tracing::warn!(error = %e, "event retention failed"),
                }
            }
            if history_days > 0 {
                let head = store.head_version().await.ok();
                if let Some(cap) = previous_head {
                    let since = now_unix() - (history_days as i64) * 86_400;
                    match compact_rule_history(store.as_ref(), None, since, Some(cap)).await {
                        Ok(r) if r.removed > 0 => tracing::info!(?r, "rule history compacted"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "rule history compaction failed"),
                    }
                }
                previous_head = head.or(previous_head);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.changed() => return,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::domain::RuleSpec;
    use dasher_store::{HostSyncState, RuleAck, RuleChange, StoreSpec};

    async fn commit(store: &dyn Store, n: u32) -> u64 {
        let spec: RuleSpec = serde_json::from_value(serde_json::json!({
            "identifier": format!("{n:064x}"), "rule_type": "BINARY", "policy": "BLOCKLIST"
        }))
        .unwrap();
        let (key, rule) = spec.validate().unwrap();
        store.commit_rules(&[RuleChange { rule_set: "global".into(), key, rule }]).await.unwrap()
    }

    async fn host_at(store: &dyn Store, id: &str, version: u64, seen_unix: i64) {
        let state = HostSyncState {
            acked: Some(RuleAck { version, ..Default::default() }),
            last_preflight_unix: seen_unix,
            ..Default::default()
        };
        store.put_sync_state(id, &state).await.unwrap();
    }

    #[tokio::test]
    async fn the_floor_is_the_oldest_active_host_capped_by_the_previous_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = dasher_store::open(&StoreSpec::Redb(dir.path().join("db.redb"))).unwrap();
        for n in 1..=6 {
            commit(store.as_ref(), n).await;
        }
        host_at(store.as_ref(), "active-old", 2, 1_000).await;
        host_at(store.as_ref(), "active-new", 5, 1_000).await;
        host_at(store.as_ref(), "gone", 1, 10).await;

        // The host gone since before the window doesn't count; the oldest active one does.
        let r = compact_rule_history(store.as_ref(), None, 500, None).await.unwrap();
        assert_eq!((r.floor_after, r.held_by.as_deref()), (2, Some("active-old")));
        // Every host inactive: the floor may rise to the cap, never above it.
        let r = compact_rule_history(store.as_ref(), None, 5_000, Some(4)).await.unwrap();
        assert_eq!((r.floor_after, r.held_by), (4, None));
        assert!(r.removed > 0);
        // A lower target never lowers the floor.
        let r = compact_rule_history(store.as_ref(), None, 0, None).await.unwrap();
        assert_eq!((r.floor_before, r.floor_after, r.removed), (4, 4, 0));
    }
}
