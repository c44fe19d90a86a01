//! The admin rule upsert (`POST /api/v1/rules` body → `dasher_server::http::admin::parse_rule_changes`,
//! which runs `RuleSpec::validate` on every rule). Accepted changes are normalised and unique per
//! (rule set, key); a refused body is a 4xx that names a field or says what is wrong.
#![no_main]

use dasher_server::http::admin::parse_rule_changes;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

const MAX_RULES: usize = 50;

fuzz_target!(|data: &[u8]| {
    match parse_rule_changes(data, MAX_RULES) {
        Ok(changes) => {
            assert!(changes.len() <= MAX_RULES);
            let mut seen = HashSet::new();
            for c in &changes {
                assert!(seen.insert((c.rule_set.clone(), c.key.clone())), "duplicate change {c:?}");
                assert!(!c.key.identifier.is_empty());
                if let Some(rule) = &c.rule {
                    assert_eq!(rule.key(), c.key, "rule and key disagree");
                    // The normalised rule validates again to itself.
                    let spec = serde_json::to_value(rule).expect("rules serialize");
                    let again = parse_rule_changes(
                        serde_json::json!({"rules": [{"rule_set": c.rule_set, "identifier": spec["identifier"], "rule_type": spec["rule_type"], "policy": spec["policy"], "custom_msg": spec.get("custom_msg"), "custom_url": spec.get("custom_url"), "cel_expr": spec.get("cel_expr"), "notification_app_name": spec.get("notification_app_name"), "event_detail_button_label": spec.get("event_detail_button_label"), "comment": spec.get("comment")}]})
                            .to_string()
                            .as_bytes(),
                        MAX_RULES,
                    )
                    .unwrap_or_else(|e| panic!("normalised rule refused ({e}): {spec}"));
                    assert_eq!(again[0].rule.as_ref(), Some(rule));
                }
            }
        }
        Err(e) => {
            let status = e.status();
            assert!(status.is_client_error(), "status {status} for {e}");
        }
    }
});
