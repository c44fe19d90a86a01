//! Fixtures shared by the store bench and the `event_size` example.

use dasher_sdk::wire::Event;
use dasher_store::{EventKind, NewEvent};

/// What the server stores for an uploaded event received at `received` (see
/// `SyncService::event_upload`).
pub fn new_event(e: &Event, received: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Execution,
        dedupe_key: format!("{}|{}|{}|{}|{}", e.file_sha256, e.execution_time, e.pid, e.decision, e.file_bundle_hash),
        decision: e.decision_value().to_string(),
        file_sha256: e.file_sha256.clone(),
        file_bundle_hash: e.file_bundle_hash.clone(),
        occurred_at_unix: e.execution_time,
        received_at_unix: received,
        body: serde_json::to_value(e).expect("event serializes"),
    }
}
