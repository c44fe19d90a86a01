//! Preflights that change nothing but times are not written at once.
//!
//! A host that syncs again with the same inventory and gets the same NORMAL decision would
//! rewrite its record only to move `last_seen_unix`, `last_preflight_unix` and the decision's
//! time. Such a preflight ([`unchanged`]) keeps its record here instead, and the postflight,
//! which writes durably anyway, stores it with the acknowledgement in its one write (times,
//! decision and the activity counter of the preflight included). Nothing the sync depends on
//! is lost if the record is: the stored plan and decision are equal but for times.
//!
//! Granularity: a preflight is deferred only while the stored `last_seen_unix` and
//! `last_preflight_unix` are less than [`MAX_AGE_SECS`] old, so a host whose postflights never
//! come (or a restart, or another server instance answering the postflight) leaves those
//! times at most that much behind. While a deferred sync runs, the stored outcome is the
//! previous sync's (`ok`) rather than `in_progress`.

use dasher_sdk::wire::SyncType;
use dasher_store::{HostInventory, HostSyncState, SyncOutcome};
use std::collections::HashMap;
use std::sync::Mutex;

/// Oldest stored last-seen/last-preflight time (seconds) a preflight may leave unwritten.
pub const MAX_AGE_SECS: i64 = 60;
/// Most deferred preflights kept; beyond it preflights are written at once.
pub const MAX_DEFERRED: usize = 16_384;

/// A preflight not yet written: the host's inventory and sync state as it would have stored them.
#[derive(Clone, Debug)]
pub struct Record {
    /// Inventory as reported (with this preflight's `last_seen_unix`).
    pub inventory: HostInventory,
    /// Sync state as decided.
    pub state: HostSyncState,
}

/// Deferred preflights by machine id (in memory, bounded).
#[derive(Default)]
pub struct Deferred {
    records: Mutex<HashMap<String, Record>>,
}

impl Deferred {
    /// Keeps `record` for its postflight; gives it back if the table is full (write it now).
    pub fn put(&self, record: Record) -> Result<(), Box<Record>> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() >= MAX_DEFERRED && !records.contains_key(&record.inventory.machine_id) {
            // Abandoned syncs: drop records older than any that could still be in use.
            let now = record.inventory.last_seen_unix;
            records.retain(|_, r| now - r.inventory.last_seen_unix < MAX_AGE_SECS);
            if records.len() >= MAX_DEFERRED {
                return Err(Box::new(record));
            }
        }
        records.insert(record.inventory.machine_id.clone(), record);
        Ok(())
    }

    /// Takes the deferred preflight of `machine_id`, if any.
    pub fn take(&self, machine_id: &str) -> Option<Record> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).remove(machine_id)
    }

    /// Drops the deferred preflight of `machine_id` (a newer preflight was written).
    pub fn forget(&self, machine_id: &str) {
        self.take(machine_id);
    }
}

/// Whether storing `inventory` and `state` (a preflight's result) would change nothing in
/// the stored `old_inv` and `old` but times: the previous sync completed, the inventory is the same, the plan is
/// the same NORMAL one, the decision and its provenance are the same, and the stored times
/// are less than [`MAX_AGE_SECS`] old.
pub fn unchanged(
    old_inv: Option<&HostInventory>,
    old: &HostSyncState,
    inventory: &HostInventory,
    state: &HostSyncState,
    now: i64,
) -> bool {
    let Some(old_inv) = old_inv else { return false };
    let fresh = |t: i64| now.saturating_sub(t) < MAX_AGE_SECS;
    if !fresh(old_inv.last_seen_unix) || !fresh(old.last_preflight_unix) {
        return false;
    }
    if old.last_outcome != SyncOutcome::Ok || old.pending.is_some() {
        return false;
    }
    let Some(old_plan) = old.plan.as_ref().filter(|p| p.sync_type == Some(SyncType::Normal)) else { return false };
    let same_inventory = HostInventory { last_seen_unix: old_inv.last_seen_unix, ..inventory.clone() } == *old_inv;
    if !same_inventory {
        return false;
    }
    // The new state with the stored times and outcome must be the stored state.
    let mut normalized = state.clone();
    normalized.last_preflight_unix = old.last_preflight_unix;
    normalized.last_outcome = old.last_outcome.clone();
    if let Some(plan) = normalized.plan.as_mut() {
        plan.started_unix = old_plan.started_unix;
    }
    if let (Some(new), Some(old)) = (normalized.decided.as_mut(), old.decided.as_ref()) {
        new.decided_unix = old.decided_unix;
    }
    normalized == *old
}

/// The postflight's state with a deferred preflight's times and decision.
pub fn merge(state: &mut HostSyncState, preflight: &HostSyncState) {
    state.last_preflight_unix = preflight.last_preflight_unix;
    state.decided = preflight.decided.clone();
    if let (Some(plan), Some(deferred)) = (state.plan.as_mut(), preflight.plan.as_ref()) {
        plan.started_unix = deferred.started_unix;
    }
}

#[cfg(test)]
#[path = "deferred_tests.rs"]
mod tests;
