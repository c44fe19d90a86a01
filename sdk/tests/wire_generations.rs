//! Parsing requests and emitting responses for each client generation, from payloads
//! written after the reference (santa-sync-protocol.md §4, §6, §7.1). One `check` helper,
//! one case per generation.

use dasher_sdk::wire::*;
use serde_json::{Value, json};

fn parse<T: WireMessage>(body: &str) -> T {
    T::decode_from(body.as_bytes(), Format::Json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn check_preflight(body: &str, serial: &str, version: &str, mode: ClientMode, binary: u32, clean: bool) {
    let req: PreflightRequest = parse(body);
    assert_eq!(req.serial_num, serial, "{body}");
    assert_eq!(req.santa_version, version);
    assert_eq!(ClientMode::try_from(req.client_mode).unwrap(), mode);
    assert_eq!(req.binary_rule_count, binary);
    assert_eq!(req.request_clean_sync, clean);
}

#[test]
fn preflight_requests_of_every_generation() {
    // Legacy ≤ 2024.5 (NSJSONSerialization: all counts, empty primary_user, fcm_token, escaped slashes).
    check_preflight(
        r#"{"primary_user":"","client_mode":"MONITOR","serial_num":"C02ABC","santa_version":"2023.10.1","binary_rule_count":3,"certificate_rule_count":0,"compiler_rule_count":0,"transitive_rule_count":0,"teamid_rule_count":0,"signingid_rule_count":0,"cdhash_rule_count":0,"request_clean_sync":true,"fcm_token":"a\/b","os_version":"13.6"}"#,
        "C02ABC",
        "2023.10.1",
        ClientMode::Monitor,
        3,
        true,
    );
    // google/santa 2024.6: proto field names and uint64 strings.
    check_preflight(
        r#"{"serial_number":"C02DEF","santa_version":"2024.6.655965194","client_mode":"LOCKDOWN","binary_rule_count":"12","machine_id":"X"}"#,
        "C02DEF",
        "2024.6.655965194",
        ClientMode::Lockdown,
        12,
        false,
    );
    // google/santa 2024.7 and NPS 2024.10: json_name keys, defaults omitted.
    check_preflight(
        r#"{"serial_num":"C02GHI","santa_version":"2024.10.1","machine_id":"X"}"#,
        "C02GHI",
        "2024.10.1",
        ClientMode::Unknown,
        0,
        false,
    );
    // NPS 2026.x: camelCase stragglers, groups, STANDALONE.
    let body = r#"{"serial_num":"C02JKL","santa_version":"2026.7.123456789","client_mode":"STANDALONE","machine_id":"X","sipStatus":111,"primary_user_groups":["eng"],"rulesHash":"abc"}"#;
    check_preflight(body, "C02JKL", "2026.7.123456789", ClientMode::Standalone, 0, false);
    let req: PreflightRequest = parse(body);
    assert_eq!((req.sip_status, req.rules_hash.as_str(), req.primary_user_groups.len()), (111, "abc", 1));
    // Unknown keys, nulls and unknown enum names are tolerated.
    let req: PreflightRequest = parse(r#"{"client_mode":"TURBO","hostname":null,"future_field":{"x":1}}"#);
    assert_eq!((req.client_mode, req.hostname.as_str()), (0, ""));
}

#[test]
fn the_reference_full_sync_example_round_trips() {
    // §7.1, current client.
    let pre = r#"{"serial_num":"C02XXXXXXXXX","hostname":"mac1.example.com","os_version":"15.5","os_build":"24F74","model_identifier":"Mac15,7","santa_version":"2026.7.123456789","primary_user":"alice","client_mode":"MONITOR","request_clean_sync":true,"binary_rule_count":12,"teamid_rule_count":3,"machine_id":"50C7E1EB-2EF5-42D4-A084-A7966FC45A95","sipStatus":111,"primary_user_groups":["eng"],"rulesHash":"0123456789abcdef0123456789abcdef"}"#;
    let req: PreflightRequest = parse(pre);
    assert_eq!(serde_json::to_string(&req).unwrap(), pre, "a current client's bytes are reproduced exactly");
    let post: PostflightRequest =
        parse(r#"{"rules_received":3,"rules_processed":3,"machine_id":"m","syncType":"CLEAN","rulesHash":"h"}"#);
    assert_eq!((post.rules_received, post.sync_type, post.rules_hash.as_str()), (3, SyncType::Clean as i32, "h"));
    let legacy_post: PostflightRequest = parse(r#"{"rules_received":"3","rules_processed":"2"}"#);
    assert_eq!((legacy_post.rules_received, legacy_post.rules_processed), (3, 2));
    let empty: PostflightRequest = PostflightRequest::decode_from(b"", Format::Json).unwrap();
    assert_eq!(empty, PostflightRequest::default());
}

#[test]
fn events_of_every_generation() {
    let legacy = r#"{"events":[{"file_sha256":"fb2c","file_path":"\/usr\/bin","file_name":"yes","decision":"UNKNOWN","execution_time":1751111111.25,"quarantine_timestamp":0,"signing_chain":[{"sha256":"d84d","cn":"Software Signing","valid_from":1603996358.0,"valid_until":1792863581}],"logged_in_users":["foo"],"pid":2222}]}"#;
    let req: EventUploadRequest = parse(legacy);
    let e = &req.events[0];
    assert_eq!((e.decision_value(), e.file_path.as_str(), e.pid), (Decision::Unknown, "/usr/bin", 2222));
    assert_eq!(e.signing_chain[0].valid_from, 1603996358);
    let v2024_6 = r#"{"events":[{"file_sha256":"ab","decision":"BLOCK_BINARY","file_bundle_hash_millis":"15","file_bundle_binary_count":"3"}],"machine_id":"m"}"#;
    let req: EventUploadRequest = parse(v2024_6);
    assert_eq!((req.events[0].file_bundle_hash_millis, req.events[0].file_bundle_binary_count), (15, 3));
    let nps = r#"{"events":[{"file_sha256":"ab","decision":"ALLOW_PLATFORM","entitlementInfo":{"entitlementsFiltered":false,"entitlements":[{"key":"k","value":"true"}]},"csFlags":603980545,"signingStatus":"SIGNING_STATUS_PRODUCTION","secureSigningTime":1,"signingTime":2,"static_rule":true}],"file_access_events":[{"rule_name":"MyRule","target":"/x","decision":"FILE_ACCESS_DECISION_DENIED","process_chain":[{"file_path":"/bin/mkdir","pid":123}]}]}"#;
    let req: EventUploadRequest = parse(nps);
    let e = &req.events[0];
    assert_eq!(e.decision_value(), Decision::AllowPlatform);
    assert_eq!((e.cs_flags, e.signing_status, e.static_rule), (603980545, SigningStatus::Production as i32, true));
    assert_eq!(e.entitlement_info.as_ref().unwrap().entitlements_filtered, Some(false));
    assert_eq!(req.file_access_events[0].process_chain[0].pid, 123);
    // Wrong types are errors, with a message.
    let err = EventUploadRequest::decode_from(br#"{"events":[{"pid":"abc"}]}"#, Format::Json).unwrap_err();
    assert!(err.to_string().contains("not a number"), "{err}");
}

#[test]
fn responses_are_emitted_strictly() {
    let resp = PreflightResponse {
        client_mode: Some(ClientMode::Lockdown as i32),
        sync_type: Some(SyncType::CleanAll as i32),
        batch_size: Some(100),
        full_sync_interval: Some(600),
        enable_bundles: Some(true),
        override_file_access_action: Some(FileAccessAction::AuditOnly as i32),
        remount_usb_mode: vec!["rdonly".into()],
        clean_sync: Some(true),
        ..Default::default()
    };
    let v: Value = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        v,
        json!({"client_mode":"LOCKDOWN","sync_type":"CLEAN_ALL","batch_size":100,"full_sync_interval":600,
               "enable_bundles":true,"remount_usb_mode":["rdonly"],"override_file_access_action":"AuditOnly","clean_sync":true})
    );
    // rules always an array; cursor a string, omitted on the last page.
    let last = serde_json::to_value(RuleDownloadResponse::default()).unwrap();
    assert_eq!(last, json!({"rules": []}));
    let page = RuleDownloadResponse {
        rules: vec![Rule {
            identifier: "EQHXZ8M8AV".into(),
            policy: Policy::Allowlist as i32,
            rule_type: RuleType::TeamId as i32,
            ..Default::default()
        }],
        cursor: Some("p2".into()),
    };
    assert_eq!(
        serde_json::to_value(&page).unwrap(),
        json!({"rules":[{"identifier":"EQHXZ8M8AV","policy":"ALLOWLIST","rule_type":"TEAMID"}],"cursor":"p2"})
    );
    // The reference's rule-download fixture (batch1) parses like a proto-era client reads it.
    let batch1: RuleDownloadResponse = parse(
        r#"{"rules":[{"sha256":"ee382e19","policy":"BLOCKLIST","rule_type":"BINARY","custom_msg":""},{"identifier":"platform:com.apple.yes","policy":"ALLOWLIST","rule_type":"SIGNINGID","notification_app_name":"yes"},{"identifier":"x","policy":"BLACKLIST","rule_type":"CERTIFICATE"}],"cursor":"this-is-a-cursor="}"#,
    );
    assert_eq!(batch1.rules[0].sha256.as_deref(), Some("ee382e19"));
    assert_eq!(batch1.rules[2].policy_value(), Policy::Blocklist);
    assert_eq!(batch1.cursor.as_deref(), Some("this-is-a-cursor="));
}

#[test]
fn protobuf_round_trips_with_the_same_types() {
    let req = PreflightRequest {
        serial_num: "C02".into(),
        client_mode: ClientMode::Monitor as i32,
        sip_status: 111,
        ..Default::default()
    };
    let bytes = req.encode_to(Format::Protobuf);
    assert_eq!(PreflightRequest::decode_from(&bytes, Format::Protobuf).unwrap(), req);
    assert!(PreflightRequest::decode_from(b"\xff\xff\xff", Format::Protobuf).is_err());
}
