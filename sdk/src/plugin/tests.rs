use super::*;

#[test]
fn outputs_are_strict_and_inputs_tolerant() {
    assert!(serde_json::from_str::<Verdicts>(r#"{"verdicts":[],"extra":1}"#).is_err());
    assert!(serde_json::from_str::<SelectionDecision>(r#"{"rulesets":["a"]}"#).is_err());
    let batch: EventBatch = serde_json::from_str(r#"{"host":{"hostname":"h","new":1},"events":[{"id":3}]}"#)
        .expect("unknown input fields are ignored");
    assert_eq!(batch.events[0].id, 3);
}

#[test]
fn event_decisions_are_typed() {
    use crate::wire::{Decision, FileAccessDecision};
    let event = |d: &str| EventFacts { decision: d.into(), ..Default::default() };
    assert_eq!(event("BLOCK_SIGNINGID").decision(), EventDecision::Execution(Decision::BlockSigningId));
    assert!(event("BLOCK_BINARY_MISMATCH").is_block());
    assert!(!event("ALLOW_PLATFORM").is_block());
    assert_eq!(event("FILE_ACCESS_DECISION_DENIED").decision(), EventDecision::FileAccess(FileAccessDecision::Denied));
    assert!(event("FILE_ACCESS_DECISION_DENIED_INVALID_SIGNATURE").is_block());
    assert!(!event("FILE_ACCESS_DECISION_AUDIT_ONLY").is_block());
    assert_eq!(event("BLOCK_SOMETHING_NEW").decision(), EventDecision::Other("BLOCK_SOMETHING_NEW".into()));
    assert!(!event("BLOCK_SOMETHING_NEW").is_block(), "unknown names are not guessed");
}

#[test]
fn host_version_helpers() {
    let host = HostFacts { os_version: "14.6.1".into(), santa_version: "2025.7.1".into(), ..Default::default() };
    assert!(host.macos_at_least(14, 6) && !host.macos_at_least(14, 7) && !host.macos_at_least(15, 0));
    assert!(host.santa_at_least(2025, 7) && !host.santa_at_least(2026, 1));
    let unknown = HostFacts::default();
    assert!(!unknown.macos_at_least(0, 0) && !unknown.santa_at_least(0, 0));
}

#[test]
fn rule_spec_builders() {
    use crate::wire::{Policy, RuleType};
    let r = RuleSpec::block(RuleType::TeamId, "EQHXZ8M8AV").with_message("no").with_url("https://x.example");
    assert_eq!(
        (r.policy, r.custom_msg.as_deref(), r.custom_url.as_deref()),
        (Policy::Blocklist, Some("no"), Some("https://x.example"))
    );
    assert_eq!(RuleSpec::allow(RuleType::Binary, "ab").policy, Policy::Allowlist);
    let c = RuleSpec::cel(RuleType::SigningId, "T:x", "target.signing_time > 0");
    assert_eq!((c.policy, c.cel_expr.as_deref()), (Policy::Cel, Some("target.signing_time > 0")));
    assert_eq!(RuleSpec::remove(RuleType::CdHash, "c").policy, Policy::Remove);
}

#[test]
fn metadata_round_trips() {
    let m = PluginMetadata {
        name: "x".into(),
        version: "1.0.0".into(),
        sdk_version: SDK_VERSION.into(),
        contract: CONTRACT.into(),
        hooks: vec![Hook::Init, Hook::SelectRules],
        min_server_version: MIN_SERVER_VERSION.into(),
        settings_schema: None,
    };
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains(r#""hooks":["init","select-rules"]"#), "{json}");
    assert_eq!(serde_json::from_str::<PluginMetadata>(&json).unwrap(), m);
}

#[test]
fn proposal_scope_is_tagged() {
    let s = serde_json::to_string(&ProposalScope::RuleSet { name: "dev".into() }).unwrap();
    assert_eq!(s, r#"{"kind":"rule_set","name":"dev"}"#);
}

#[test]
fn native_kv_counters_match_the_server_encoding() {
    kv::native_clear();
    assert_eq!(kv::get_counter("n").unwrap(), 0, "absent is 0");
    assert_eq!(kv::increment("n", 41).unwrap(), 41);
    assert_eq!(kv::increment("n", 1).unwrap(), 42);
    assert_eq!(kv::get("n").as_deref(), Some(&b"42"[..]), "ASCII decimal");
    assert_eq!(kv::get_json::<i64>("n"), Some(42), "also readable as JSON");
    kv::set("s", b"x").unwrap();
    let err = kv::increment("s", 1).unwrap_err().message;
    assert!(err.contains(r#""s""#) && err.contains("not a decimal"), "{err}");
    assert!(kv::get_counter("s").is_err());
    kv::set("max", &kv::encode_counter(i64::MAX)).unwrap();
    assert!(kv::increment("max", 1).unwrap_err().message.contains("outside the signed 64-bit range"));
    assert_eq!(kv::decode_counter(b"-7"), Some(-7));
    assert_eq!(kv::decode_counter(b" 7"), None);
    assert_eq!(kv::next_counter(None, -3), Ok(-3));
    assert!(kv::compare_and_swap(&"k".repeat(257), None, Some(b"v")).is_err());
    assert!(kv::compare_and_swap("k", None, Some(&vec![0; 64 * 1024 + 1])).is_err());
}
