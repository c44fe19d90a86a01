//! Stored events → the plugin payload [`EventFacts`]. The store keeps each event's canonical
//! wire JSON; the wire types' tolerant parsing handles every client generation here, so no
//! wire quirk reaches a plugin.

use dasher_sdk::plugin::{EventFacts, EventKind};
use dasher_sdk::wire::{self, WireEnum};
use dasher_store::model::{EventKind as StoredKind, EventRecord};

/// The plugin's view of a stored event.
pub fn event_facts(record: &EventRecord) -> EventFacts {
    let e = &record.event;
    let mut facts = EventFacts {
        id: record.id,
        decision: e.decision.clone(),
        file_sha256: e.file_sha256.clone(),
        file_bundle_hash: e.file_bundle_hash.clone(),
        occurred_at_unix: e.occurred_at_unix,
        received_at_unix: e.received_at_unix,
        ..EventFacts::default()
    };
    match e.kind {
        StoredKind::Execution => {
            facts.kind = EventKind::Execution;
            if let Ok(w) = serde_json::from_value::<wire::Event>(e.body.clone()) {
                facts.file_path = w.file_path;
                facts.file_name = w.file_name;
                facts.file_bundle_id = w.file_bundle_id;
                facts.executing_user = w.executing_user;
                facts.team_id = w.team_id;
                facts.signing_id = w.signing_id;
                facts.cdhash = w.cdhash;
                facts.parent_name = w.parent_name;
                if let Some(leaf) = w.signing_chain.first() {
                    facts.certificate_sha256 = leaf.sha256.clone();
                    facts.certificate_cn = leaf.cn.clone();
                }
                if facts.decision.is_empty() {
                    facts.decision =
                        wire::Decision::from_number(w.decision).map(|d| d.name().to_owned()).unwrap_or_default();
                }
            }
        }
        StoredKind::FileAccess => {
            facts.kind = EventKind::FileAccess;
            if let Ok(w) = serde_json::from_value::<wire::FileAccessEvent>(e.body.clone()) {
                facts.file_path = w.target;
                facts.rule_name = w.rule_name;
                if let Some(p) = w.process_chain.first() {
                    facts.file_name = p.file_path.rsplit('/').next().unwrap_or_default().to_owned();
                    facts.team_id = p.team_id.clone();
                    facts.signing_id = p.signing_id.clone();
                    facts.cdhash = p.cdhash.clone();
                    if facts.file_sha256.is_empty() {
                        facts.file_sha256 = p.file_sha256.clone();
                    }
                    if let Some(leaf) = p.signing_chain.first() {
                        facts.certificate_sha256 = leaf.sha256.clone();
                        facts.certificate_cn = leaf.cn.clone();
                    }
                }
            }
        }
    }
    facts
}
