//! JSON Schema (draft 2020-12) of the plugin payloads, for plugin authors in other languages.
//! Published as `sdk/schema/dasher-plugin.schema.json`; a test regenerates it and fails if
//! the committed file is stale (`DASHER_BLESS_SCHEMA=1 cargo test -p dasher-sdk` rewrites it).

use crate::plugin::CONTRACT;
use crate::wire::{ClientMode, FileAccessAction, Policy, RuleType, SyncType, WireEnum};
use serde_json::{Value, json};

fn names<E: WireEnum>() -> Value {
    json!({ "type": "string", "enum": E::names() })
}

fn opt(v: Value) -> Value {
    json!({ "anyOf": [v, { "type": "null" }] })
}

fn obj(props: Vec<(&str, Value)>, required: &[&str], closed: bool, doc: &str) -> Value {
    let mut p = serde_json::Map::new();
    for (k, v) in props {
        p.insert(k.to_owned(), v);
    }
    json!({ "type": "object", "description": doc, "properties": p, "required": required, "additionalProperties": !closed })
}

fn s() -> Value {
    json!({ "type": "string" })
}
fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
fn uint() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}
fn int() -> Value {
    json!({ "type": "integer" })
}
fn boolean() -> Value {
    json!({ "type": "boolean" })
}
fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{name}") })
}

/// The schema document: one `$defs` entry per payload type.
pub fn schema() -> Value {
    let rule_counts = obj(
        ["binary", "certificate", "compiler", "transitive", "teamid", "signingid", "cdhash"]
            .iter()
            .map(|k| (*k, uint()))
            .collect(),
        &[],
        false,
        "Per-type rule counts as the client reported them.",
    );
    let host_facts = obj(
        vec![
            ("machine_id", s()),
            ("serial_number", s()),
            ("hostname", s()),
            ("os_version", s()),
            ("os_build", s()),
            ("model_identifier", s()),
            ("santa_version", s()),
            ("primary_user", s()),
            ("primary_user_groups", strings()),
            ("client_mode", names::<ClientMode>()),
            ("tags", strings()),
            ("request_clean_sync", boolean()),
            ("rule_counts", r("RuleCounts")),
            ("sip_status", uint()),
            ("first_seen_unix", int()),
            ("now_unix", int()),
        ],
        &[],
        false,
        "Input of configure and select-rules. Unknown fields must be ignored: newer servers send more.",
    );
    let config_decision = obj(
        vec![
            ("client_mode", opt(names::<ClientMode>())),
            ("sync_type", opt(names::<SyncType>())),
            ("batch_size", opt(uint())),
            ("full_sync_interval_seconds", opt(uint())),
            ("push_notification_full_sync_interval_seconds", opt(uint())),
            ("allowed_path_regex", opt(s())),
            ("blocked_path_regex", opt(s())),
            ("block_usb_mount", opt(boolean())),
            ("remount_usb_mode", opt(strings())),
            ("override_file_access_action", opt(names::<FileAccessAction>())),
            ("enable_bundles", opt(boolean())),
            ("enable_transitive_rules", opt(boolean())),
            ("enable_all_event_upload", opt(boolean())),
            ("disable_unknown_event_upload", opt(boolean())),
            ("event_detail_url", opt(s())),
            ("event_detail_text", opt(s())),
        ],
        &[],
        true,
        "Output of configure. Every field optional: absent or null = no opinion. Unknown fields are an error.",
    );
    let rule_spec = obj(
        vec![
            ("identifier", s()),
            ("rule_type", names::<RuleType>()),
            ("policy", names::<Policy>()),
            ("custom_msg", s()),
            ("custom_url", s()),
            ("cel_expr", s()),
            ("notification_app_name", s()),
            ("event_detail_button_label", s()),
        ],
        &["identifier", "rule_type", "policy"],
        false,
        "A rule as a plugin writes it; validated and normalised by the server.",
    );
    let selection = obj(
        vec![
            ("rule_sets", opt(strings())),
            ("mode", opt(json!({ "type": "string", "enum": ["add", "replace"] }))),
            ("host_rules", opt(json!({ "type": "array", "items": r("RuleSpec") }))),
        ],
        &[],
        true,
        "Output of select-rules. rule_sets in precedence order (first wins); null = no opinion. mode: add (default) appends them to the host's default selection, replace drops it.",
    );
    let event = obj(
        vec![
            ("id", uint()),
            ("kind", json!({ "type": "string", "enum": ["execution", "file_access"] })),
            ("decision", s()),
            ("file_sha256", s()),
            ("file_path", s()),
            ("file_name", s()),
            ("file_bundle_id", s()),
            ("file_bundle_hash", s()),
            ("executing_user", s()),
            ("team_id", s()),
            ("signing_id", s()),
            ("cdhash", s()),
            ("certificate_sha256", s()),
            ("certificate_cn", s()),
            ("parent_name", s()),
            ("rule_name", s()),
            ("occurred_at_unix", json!({ "type": "number" })),
            ("received_at_unix", int()),
        ],
        &[],
        false,
        "One stored event, normalised from every client generation.",
    );
    let batch = obj(
        vec![("host", r("HostFacts")), ("events", json!({ "type": "array", "items": r("EventFacts") }))],
        &[],
        false,
        "Input of triage.",
    );
    let scope = json!({
        "description": "Where a proposed rule would go.",
        "oneOf": [
            { "type": "object", "properties": { "kind": { "const": "host" } }, "required": ["kind"], "additionalProperties": false },
            { "type": "object", "properties": { "kind": { "const": "global" } }, "required": ["kind"], "additionalProperties": false },
            { "type": "object", "properties": { "kind": { "const": "rule_set" }, "name": { "type": "string" } }, "required": ["kind", "name"], "additionalProperties": false }
        ]
    });
    let proposal = obj(
        vec![("scope", r("ProposalScope")), ("rule", r("RuleSpec")), ("reason", s())],
        &["scope", "rule"],
        true,
        "A rule the plugin proposes; stored as pending or applied when the server allows.",
    );
    let verdict = obj(
        vec![
            ("event_id", uint()),
            ("action", opt(json!({ "type": "string", "enum": ["keep", "drop"] }))),
            ("labels", strings()),
            ("severity", opt(json!({ "type": "string", "enum": ["info", "low", "medium", "high", "critical"] }))),
            ("proposals", json!({ "type": "array", "items": r("RuleProposal") })),
        ],
        &[],
        true,
        "A verdict on one event of the batch (event_id must be in the batch, at most once).",
    );
    let verdicts = obj(
        vec![("verdicts", json!({ "type": "array", "items": r("Verdict") }))],
        &[],
        true,
        "Output of triage. Events without a verdict get no opinion.",
    );
    let metadata = obj(
        vec![
            ("name", s()),
            ("version", s()),
            ("sdk_version", s()),
            ("contract", s()),
            (
                "hooks",
                json!({ "type": "array", "items": { "type": "string", "enum": ["init", "configure", "select-rules", "triage", "review"] } }),
            ),
            ("min_server_version", s()),
            ("settings_schema", json!({})),
        ],
        &["name", "version", "sdk_version", "contract", "hooks", "min_server_version"],
        false,
        "The dasher:plugin custom section (UTF-8 JSON) every component must carry.",
    );
    let request = obj(
        vec![
            ("source", json!({ "type": "string", "enum": ["triage", "user"] })),
            ("machine_id", s()),
            ("user", s()),
            ("reason", s()),
            ("at_unix", int()),
        ],
        &[],
        false,
        "One request for a proposal: a triage proposal or a user's approval request.",
    );
    let proposal_facts = obj(
        vec![
            ("id", uint()),
            ("scope", r("ProposalScope")),
            ("rule_set", s()),
            ("rule", r("RuleSpec")),
            ("reason", s()),
            ("count", uint()),
            ("hosts", strings()),
            ("first_seen_unix", int()),
            ("last_seen_unix", int()),
        ],
        &[],
        false,
        "The proposal under review; hosts lists every host that raised it.",
    );
    let prevalence = obj(
        vec![("hosts", uint()), ("users", uint()), ("binary_events", uint()), ("binary_hosts", uint())],
        &[],
        false,
        "How widespread.",
    );
    let signer = obj(
        vec![
            ("file_sha256", s()),
            ("file_name", s()),
            ("file_bundle_id", s()),
            ("team_id", s()),
            ("signing_id", s()),
            ("cdhash", s()),
            ("certificate_sha256", s()),
            ("certificate_cn", s()),
        ],
        &[],
        false,
        "The binary's signer, from its newest stored event.",
    );
    let blocking = obj(
        vec![("rule_set", s()), ("rule_type", s()), ("identifier", s()), ("by_proposal", opt(uint()))],
        &[],
        false,
        "A block rule covering the binary; by_proposal null = written by an admin.",
    );
    let review_input = obj(
        vec![
            ("proposal", r("ProposalFacts")),
            ("requests", json!({ "type": "array", "items": r("ProposalRequest") })),
            ("prevalence", r("Prevalence")),
            ("signer", opt(r("SignerFacts"))),
            ("blocking_rules", json!({ "type": "array", "items": r("BlockingRule") })),
            ("now_unix", int()),
        ],
        &[],
        false,
        "Input of review.",
    );
    let approval_scope = json!({
        "description": "Where an approved rule goes.",
        "oneOf": [
            { "type": "object", "properties": { "kind": { "const": "as_proposed" } }, "required": ["kind"], "additionalProperties": false },
            { "type": "object", "properties": { "kind": { "const": "hosts" } }, "required": ["kind"], "additionalProperties": false },
            { "type": "object", "properties": { "kind": { "const": "global" } }, "required": ["kind"], "additionalProperties": false },
            { "type": "object", "properties": { "kind": { "const": "rule_set" }, "name": { "type": "string" } }, "required": ["kind", "name"], "additionalProperties": false }
        ]
    });
    let review_decision = obj(
        vec![
            ("decision", json!({ "type": "string", "enum": ["leave", "approve", "reject"] })),
            ("scope", opt(r("ApprovalScope"))),
            ("rule", opt(r("RuleSpec"))),
            ("reason", s()),
        ],
        &[],
        true,
        "Output of review. decision defaults to leave (the proposal stays pending for an admin).",
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dasher.dev/schema/dasher-plugin.schema.json",
        "title": format!("Payloads of the {CONTRACT} WebAssembly plugin contract"),
        "$defs": {
            "HostFacts": host_facts,
            "RuleCounts": rule_counts,
            "ConfigDecision": config_decision,
            "RuleSpec": rule_spec,
            "SelectionDecision": selection,
            "EventFacts": event,
            "EventBatch": batch,
            "ProposalScope": scope,
            "RuleProposal": proposal,
            "Verdict": verdict,
            "Verdicts": verdicts,
            "ProposalRequest": request,
            "ProposalFacts": proposal_facts,
            "Prevalence": prevalence,
            "SignerFacts": signer,
            "BlockingRule": blocking,
            "ReviewInput": review_input,
            "ApprovalScope": approval_scope,
            "ReviewDecision": review_decision,
            "PluginMetadata": metadata,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConfigDecision, HostFacts};
    use std::collections::BTreeSet;

    fn props(def: &str) -> BTreeSet<String> {
        schema()["$defs"][def]["properties"].as_object().unwrap().keys().cloned().collect()
    }

    fn keys(v: serde_json::Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn schema_covers_every_field() {
        let host = HostFacts { client_mode: Some(ClientMode::Monitor), sip_status: Some(0), ..Default::default() };
        assert_eq!(props("HostFacts"), keys(serde_json::to_value(host).unwrap()));
        let all: ConfigDecision = serde_json::from_value(
            schema()["$defs"]["ConfigDecision"]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| (k.clone(), serde_json::Value::Null))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        )
        .expect("every schema property is a ConfigDecision field");
        assert_eq!(all, ConfigDecision::default());
        assert_eq!(props("EventFacts"), keys(serde_json::to_value(crate::plugin::EventFacts::default()).unwrap()));
    }

    #[test]
    fn published_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/dasher-plugin.schema.json");
        let fresh = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
        if std::env::var_os("DASHER_BLESS_SCHEMA").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == fresh, "{} is stale: run DASHER_BLESS_SCHEMA=1 cargo test -p dasher-sdk", path.display());
    }
}
