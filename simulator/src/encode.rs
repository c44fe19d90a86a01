//! Request encoding per client generation (reference §3.1, §6.1, §2.1–§2.2).
//!
//! The SDK request structs' `Serialize` writes the current client's protobuf-JSON form. Every
//! older form is derived here by transforming that `serde_json::Value` — one function per
//! quirk, each citing the reference — then compressed per the profile. Nothing else in the
//! simulator knows about wire quirks of requests.

use crate::generation::Generation;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;

/// Which request a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `PreflightRequest`.
    Preflight,
    /// `EventUploadRequest`.
    EventUpload,
    /// `RuleDownloadRequest`.
    RuleDownload,
    /// `PostflightRequest`.
    Postflight,
}

/// `SyncClientContentEncoding` (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// zlib (RFC 1950) with `Content-Encoding: deflate` — the default.
    #[default]
    Deflate,
    /// gzip.
    Gzip,
    /// No compression.
    None,
}

impl ContentEncoding {
    /// From the profile value (case-insensitive; anything unknown → deflate).
    pub fn from_profile(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "gzip" => ContentEncoding::Gzip,
            "none" => ContentEncoding::None,
            _ => ContentEncoding::Deflate,
        }
    }
}

/// Transport options of one client (from its profile).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireOptions {
    /// Body compression.
    pub encoding: ContentEncoding,
    /// `SyncEnableProtoTransfer`: binary protobuf bodies (proto-era clients only).
    pub proto_transfer: bool,
}

/// An encoded request body with its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes on the wire (compressed when `content_encoding` is set).
    pub body: Vec<u8>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Content-Encoding`, if compressed.
    pub content_encoding: Option<&'static str>,
    /// The JSON before compression (`None` for protobuf or empty bodies), for tests and replay.
    pub json: Option<Value>,
}

/// Encodes `msg` as generation `generation` would send it.
pub fn encode<M: Serialize + prost::Message>(
    msg: &M,
    kind: Kind,
    generation: Generation,
    opts: WireOptions,
) -> Encoded {
    encode_patched(msg, kind, generation, opts, |_| {})
}

/// A rule-download request. `cursor` is what the previous page said (`None` on the first).
/// Legacy clients echo the value back even when it is `""` (§4.4), which the SDK struct
/// (proto semantics: empty = absent) cannot express, so it is patched in here.
pub fn rule_download(cursor: Option<&str>, machine_id: &str, generation: Generation, opts: WireOptions) -> Encoded {
    let msg = dasher_sdk::wire::RuleDownloadRequest {
        cursor: cursor.unwrap_or_default().to_owned(),
        machine_id: machine_id.to_owned(),
    };
    let legacy_empty = cursor == Some("") && !generation.is_proto_era();
    encode_patched(&msg, Kind::RuleDownload, generation, opts, |v| {
        if legacy_empty && let Some(o) = v.as_object_mut() {
            o.insert("cursor".into(), Value::String(String::new()));
        }
    })
}

fn encode_patched<M: Serialize + prost::Message>(
    msg: &M,
    kind: Kind,
    generation: Generation,
    opts: WireOptions,
    patch: impl FnOnce(&mut Value),
) -> Encoded {
    if opts.proto_transfer && generation.is_proto_era() {
        return compress(msg.encode_to_vec(), "application/x-protobuf", None, generation, opts);
    }
    // Before 2023.8 the postflight body is empty: no JSON, no Content-Encoding (§4.5).
    if kind == Kind::Postflight && !generation.at_least(2023, 8) {
        return Encoded { body: Vec::new(), content_type: "application/json", content_encoding: None, json: None };
    }
    let mut v = serde_json::to_value(msg).expect("wire messages serialize");
    drop_unsupported_fields(&mut v, kind, generation);
    patch(&mut v);
    let json_bytes = if generation.is_proto_era() {
        if matches!(generation, Generation::Gs2024_6 | Generation::Gs2024_7) {
            uint64_counters_as_strings(&mut v, kind);
        }
        if generation == Generation::Gs2024_6 {
            proto_field_names(&mut v, kind);
        }
        to_vec_in_field_order(&v, kind)
    } else {
        legacy_dictionary(&mut v, kind, generation);
        escape_slashes(to_vec_in_field_order(&v, kind))
    };
    // 2024.6/2024.7 labelled JSON bodies `application/octet-stream` (§2.1, GS commit 341abf04).
    let ct = if matches!(generation, Generation::Gs2024_6 | Generation::Gs2024_7) {
        "application/octet-stream"
    } else {
        "application/json"
    };
    compress(json_bytes, ct, Some(v), generation, opts)
}

fn compress(
    raw: Vec<u8>,
    content_type: &'static str,
    json: Option<Value>,
    generation: Generation,
    opts: WireOptions,
) -> Encoded {
    // An empty body is never compressed (§2.2). Before 2023.4 clients always used zlib.
    let encoding = if !generation.at_least(2023, 4) { ContentEncoding::Deflate } else { opts.encoding };
    if raw.is_empty() || encoding == ContentEncoding::None {
        return Encoded { body: raw, content_type, content_encoding: None, json };
    }
    let (body, header) = match encoding {
        ContentEncoding::Deflate => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(&raw).expect("in-memory write");
            (e.finish().expect("in-memory write"), "deflate")
        }
        ContentEncoding::Gzip => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(&raw).expect("in-memory write");
            (e.finish().expect("in-memory write"), "gzip")
        }
        ContentEncoding::None => unreachable!("handled above"),
    };
    Encoded { body, content_type, content_encoding: Some(header), json }
}

/// Fields a generation did not have yet (§6.1 timeline) are never sent by it.
fn drop_unsupported_fields(v: &mut Value, kind: Kind, g: Generation) {
    let gates: &[(&str, u32, u32)] = match kind {
        Kind::Preflight => &[
            ("signingid_rule_count", 2023, 5),
            ("cdhash_rule_count", 2024, 3),
            ("machine_id", 2024, 6),
            ("push_notification_sync", 2025, 1),
            ("sipStatus", 2025, 5),
            ("primary_user_groups", 2025, 6),
            ("rulesHash", 2025, 7),
        ],
        Kind::Postflight => &[("machine_id", 2024, 6), ("syncType", 2025, 1), ("rulesHash", 2025, 7)],
        Kind::RuleDownload => &[("machine_id", 2024, 6)],
        Kind::EventUpload => &[("machine_id", 2024, 6), ("file_access_events", 2025, 9)],
    };
    let Some(obj) = v.as_object_mut() else { return };
    for (key, y, r) in gates {
        if !g.at_least(*y, *r) {
            obj.remove(*key);
        }
    }
    if kind == Kind::EventUpload {
        let event_gates: &[(&str, u32, u32)] = &[
            ("signing_id", 2023, 5),
            ("cdhash", 2024, 3),
            ("entitlementInfo", 2025, 1),
            ("csFlags", 2025, 1),
            ("signingStatus", 2025, 1),
            ("secureSigningTime", 2025, 6),
            ("signingTime", 2025, 6),
            ("static_rule", 2026, 2),
        ];
        for e in events_mut(obj) {
            for (key, y, r) in event_gates {
                if !g.at_least(*y, *r) {
                    e.remove(*key);
                }
            }
        }
    }
}

fn events_mut(obj: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    obj.get_mut("events").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn stringify(obj: &mut Map<String, Value>, key: &str) {
    if let Some(n @ Value::Number(_)) = obj.get(key) {
        let s = n.to_string();
        obj.insert(key.to_owned(), Value::String(s));
    }
}

/// 2024.6/2024.7 declared some counters `uint64`, which protobuf-JSON writes as strings (§6.1).
fn uint64_counters_as_strings(v: &mut Value, kind: Kind) {
    let Some(obj) = v.as_object_mut() else { return };
    match kind {
        Kind::Postflight => {
            stringify(obj, "rules_received");
            stringify(obj, "rules_processed");
        }
        Kind::EventUpload => {
            for e in events_mut(obj) {
                stringify(e, "file_bundle_hash_millis");
                stringify(e, "file_bundle_binary_count");
            }
        }
        _ => {}
    }
}

/// 2024.6 printed proto field names: `serial_number` instead of `serial_num` (§3.1).
fn proto_field_names(v: &mut Value, kind: Kind) {
    if kind != Kind::Preflight {
        return;
    }
    if let Some(obj) = v.as_object_mut()
        && let Some(s) = obj.remove("serial_num")
    {
        obj.insert("serial_number".into(), s);
    }
}

/// Legacy (≤ 2024.5) `NSJSONSerialization` dictionaries (§3.1, §4.3, §4.5, §7.1): zero counts,
/// `primary_user`, `client_mode`, `signing_chain: []`, `quarantine_timestamp: 0` present; no
/// `machine_id`; `fcm_token` instead of `push_notification_token`.
fn legacy_dictionary(v: &mut Value, kind: Kind, g: Generation) {
    let Some(obj) = v.as_object_mut() else { return };
    match kind {
        Kind::Preflight => {
            for key in [
                "binary_rule_count",
                "certificate_rule_count",
                "compiler_rule_count",
                "transitive_rule_count",
                "teamid_rule_count",
                "signingid_rule_count",
                "cdhash_rule_count",
            ] {
                let supported = match key {
                    "signingid_rule_count" => g.at_least(2023, 5),
                    "cdhash_rule_count" => g.at_least(2024, 3),
                    _ => true,
                };
                if supported {
                    obj.entry(key).or_insert(Value::from(0));
                }
            }
            obj.entry("primary_user").or_insert(Value::from(""));
            obj.entry("client_mode").or_insert(Value::from("MONITOR"));
            if let Some(t) = obj.remove("push_notification_token") {
                obj.insert("fcm_token".into(), t);
            }
        }
        Kind::Postflight => {
            obj.entry("rules_received").or_insert(Value::from(0));
            obj.entry("rules_processed").or_insert(Value::from(0));
        }
        Kind::EventUpload => {
            for e in events_mut(obj) {
                e.entry("signing_chain").or_insert(Value::Array(Vec::new()));
                e.entry("quarantine_timestamp").or_insert(Value::from(0));
            }
        }
        Kind::RuleDownload => {}
    }
}

const PREFLIGHT_ORDER: &[&str] = &[
    "serial_num",
    "serial_number",
    "hostname",
    "os_version",
    "os_build",
    "model_identifier",
    "santa_version",
    "primary_user",
    "push_notification_token",
    "fcm_token",
    "client_mode",
    "request_clean_sync",
    "binary_rule_count",
    "certificate_rule_count",
    "compiler_rule_count",
    "transitive_rule_count",
    "teamid_rule_count",
    "signingid_rule_count",
    "cdhash_rule_count",
    "machine_id",
    "push_notification_sync",
    "sipStatus",
    "primary_user_groups",
    "rulesHash",
];
const EVENTUPLOAD_ORDER: &[&str] = &["events", "machine_id", "file_access_events"];
const RULEDOWNLOAD_ORDER: &[&str] = &["cursor", "machine_id"];
const POSTFLIGHT_ORDER: &[&str] = &["rules_received", "rules_processed", "machine_id", "syncType", "rulesHash"];
const EVENT_ORDER: &[&str] = &[
    "file_sha256",
    "file_path",
    "file_name",
    "executing_user",
    "execution_time",
    "logged_in_users",
    "current_sessions",
    "decision",
    "file_bundle_id",
    "file_bundle_path",
    "file_bundle_executable_rel_path",
    "file_bundle_name",
    "file_bundle_version",
    "file_bundle_version_string",
    "file_bundle_hash",
    "file_bundle_hash_millis",
    "file_bundle_binary_count",
    "pid",
    "ppid",
    "parent_name",
    "team_id",
    "signing_id",
    "cdhash",
    "quarantine_data_url",
    "quarantine_referer_url",
    "quarantine_timestamp",
    "quarantine_agent_bundle_id",
    "signing_chain",
    "entitlementInfo",
    "csFlags",
    "signingStatus",
    "secureSigningTime",
    "signingTime",
    "static_rule",
];
const CERT_ORDER: &[&str] = &["sha256", "cn", "org", "ou", "valid_from", "valid_until"];

/// Writes `v` compactly with object keys in proto field-number order (§3.1: "fields are
/// written in field-number order"); `serde_json::Map` itself sorts keys alphabetically.
fn to_vec_in_field_order(v: &Value, kind: Kind) -> Vec<u8> {
    let top = match kind {
        Kind::Preflight => PREFLIGHT_ORDER,
        Kind::EventUpload => EVENTUPLOAD_ORDER,
        Kind::RuleDownload => RULEDOWNLOAD_ORDER,
        Kind::Postflight => POSTFLIGHT_ORDER,
    };
    let mut out = Vec::with_capacity(256);
    write_ordered(&mut out, v, top);
    out
}

fn write_ordered(out: &mut Vec<u8>, v: &Value, order: &[&str]) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| (order.iter().position(|o| o == k).unwrap_or(usize::MAX), k.as_str()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("in-memory write");
                out.push(b':');
                let child: &[&str] = match k.as_str() {
                    "events" => EVENT_ORDER,
                    "signing_chain" => CERT_ORDER,
                    _ => &[],
                };
                write_ordered(out, &map[k], child);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_ordered(out, item, order);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("in-memory write"),
    }
}

/// `NSJSONSerialization` escapes `/` as `\/` (§3.1). `/` only occurs inside strings in JSON.
fn escape_slashes(raw: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    for b in raw {
        if b == b'/' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::wire::{Event, EventUploadRequest, PostflightRequest, PreflightRequest, RuleDownloadRequest};
    use flate2::read::ZlibDecoder;
    use serde_json::json;
    use std::io::Read;

    fn preflight() -> PreflightRequest {
        PreflightRequest {
            serial_num: "QYGF4QM373".into(),
            hostname: "full-hostname.example.com".into(),
            os_version: "14.5".into(),
            os_build: "23F79".into(),
            model_identifier: "MacBookPro18,3".into(),
            santa_version: "2024.6.655965194".into(),
            primary_user: "username1".into(),
            client_mode: 1,
            machine_id: "50C7E1EB-2EF5-42D4-A084-A7966FC45A95".into(),
            sip_status: 111,
            rules_hash: "the-hash".into(),
            ..Default::default()
        }
    }

    const PLAIN: WireOptions = WireOptions { encoding: ContentEncoding::None, proto_transfer: false };

    fn check(g: Generation, kind: Kind, msg: &impl EncodeTest, expected_body: &str, expected_ct: &str) {
        let e = msg.enc(kind, g, PLAIN);
        assert_eq!(std::str::from_utf8(&e.body).unwrap(), expected_body, "{g} {kind:?}");
        assert_eq!(e.content_type, expected_ct, "{g} {kind:?}");
    }

    trait EncodeTest {
        fn enc(&self, kind: Kind, g: Generation, o: WireOptions) -> Encoded;
    }
    impl<M: Serialize + prost::Message> EncodeTest for M {
        fn enc(&self, kind: Kind, g: Generation, o: WireOptions) -> Encoded {
            encode(self, kind, g, o)
        }
    }

    #[test]
    fn current_preflight_matches_the_nps_fixture_byte_for_byte() {
        check(
            Generation::Nps2026_7,
            Kind::Preflight,
            &preflight(),
            r#"{"serial_num":"QYGF4QM373","hostname":"full-hostname.example.com","os_version":"14.5","os_build":"23F79","model_identifier":"MacBookPro18,3","santa_version":"2024.6.655965194","primary_user":"username1","client_mode":"MONITOR","machine_id":"50C7E1EB-2EF5-42D4-A084-A7966FC45A95","sipStatus":111,"rulesHash":"the-hash"}"#,
            "application/json",
        );
    }

    #[test]
    fn preflight_per_generation() {
        let p = preflight();
        let e = p.enc(Kind::Preflight, Generation::Gs2024_6, PLAIN);
        let v = e.json.unwrap();
        assert_eq!(e.content_type, "application/octet-stream");
        assert_eq!(v["serial_number"], "QYGF4QM373");
        assert!(v.get("serial_num").is_none() && v.get("sipStatus").is_none() && v.get("rulesHash").is_none());
        assert!(v.get("binary_rule_count").is_none(), "proto-era omits zero counts");

        let v = p.enc(Kind::Preflight, Generation::Gs2024_7, PLAIN).json.unwrap();
        assert_eq!(v["serial_num"], "QYGF4QM373");

        let v = p.enc(Kind::Preflight, Generation::Nps2025_6, PLAIN).json.unwrap();
        assert_eq!(v["sipStatus"], 111);
        assert!(v.get("rulesHash").is_none(), "rulesHash is 2025.7+");

        let e = p.enc(Kind::Preflight, Generation::Gs2024_5, PLAIN);
        assert_eq!(e.content_type, "application/json");
        let v = e.json.unwrap();
        assert_eq!(v["binary_rule_count"], 0);
        assert_eq!(v["cdhash_rule_count"], 0);
        assert!(v.get("machine_id").is_none(), "legacy never sends machine_id in bodies");

        let v = p.enc(Kind::Preflight, Generation::Gs2023_6, PLAIN).json.unwrap();
        assert!(v.get("cdhash_rule_count").is_none(), "CDHASH counts are 2024.3+");
        assert_eq!(v["signingid_rule_count"], 0);
    }

    #[test]
    fn postflight_per_generation() {
        let p = PostflightRequest {
            rules_received: 3,
            rules_processed: 3,
            machine_id: "M".into(),
            sync_type: 2,
            rules_hash: "h".into(),
        };
        check(
            Generation::Nps2026_7,
            Kind::Postflight,
            &p,
            r#"{"rules_received":3,"rules_processed":3,"machine_id":"M","syncType":"CLEAN","rulesHash":"h"}"#,
            "application/json",
        );
        check(
            Generation::Gs2024_7,
            Kind::Postflight,
            &p,
            r#"{"rules_received":"3","rules_processed":"3","machine_id":"M"}"#,
            "application/octet-stream",
        );
        check(
            Generation::Gs2024_5,
            Kind::Postflight,
            &p,
            r#"{"rules_received":3,"rules_processed":3}"#,
            "application/json",
        );
        let zero = PostflightRequest::default();
        let v = zero.enc(Kind::Postflight, Generation::Gs2024_5, PLAIN).json.unwrap();
        assert_eq!(v, json!({"rules_received":0,"rules_processed":0}));
        let e = p.enc(Kind::Postflight, Generation::Gs2023_6, WireOptions::default());
        assert!(e.body.is_empty() && e.content_encoding.is_none(), "pre-2023.8 postflight is empty");
    }

    #[test]
    fn ruledownload_and_events_per_generation() {
        let r = RuleDownloadRequest { cursor: String::new(), machine_id: "M".into() };
        check(Generation::Nps2026_7, Kind::RuleDownload, &r, r#"{"machine_id":"M"}"#, "application/json");
        check(Generation::Gs2024_5, Kind::RuleDownload, &r, "{}", "application/json");
        let r = RuleDownloadRequest { cursor: "p2".into(), machine_id: "M".into() };
        check(Generation::Nps2026_7, Kind::RuleDownload, &r, r#"{"cursor":"p2","machine_id":"M"}"#, "application/json");

        let ev = EventUploadRequest {
            events: vec![Event {
                file_sha256: "ab".into(),
                file_path: "/usr/bin".into(),
                file_name: "yes".into(),
                decision: 8,
                file_bundle_binary_count: 7,
                cdhash: "cd".into(),
                cs_flags: 1,
                ..Default::default()
            }],
            machine_id: "M".into(),
            ..Default::default()
        };
        let e = ev.enc(Kind::EventUpload, Generation::Gs2024_5, PLAIN);
        let s = std::str::from_utf8(&e.body).unwrap();
        assert!(s.contains(r#""file_path":"\/usr\/bin""#), "NSJSONSerialization escapes '/': {s}");
        let v = e.json.unwrap();
        assert_eq!(v["events"][0]["signing_chain"], json!([]));
        assert_eq!(v["events"][0]["quarantine_timestamp"], 0);
        assert!(v["events"][0].get("csFlags").is_none());
        let v = ev.enc(Kind::EventUpload, Generation::Gs2024_6, PLAIN).json.unwrap();
        assert_eq!(v["events"][0]["file_bundle_binary_count"], "7");
        let v = ev.enc(Kind::EventUpload, Generation::Nps2026_7, PLAIN).json.unwrap();
        assert_eq!(v["events"][0]["file_bundle_binary_count"], 7);
        assert_eq!(v["events"][0]["csFlags"], 1);
        assert!(v["events"][0].get("signing_chain").is_none());
    }

    #[test]
    fn compression_is_zlib_for_deflate_and_binary_proto_when_enabled() {
        let p = preflight();
        let e = p.enc(Kind::Preflight, Generation::Nps2026_7, WireOptions::default());
        assert_eq!(e.content_encoding, Some("deflate"));
        assert_eq!(&e.body[..2], &[0x78, 0x9c], "zlib header, not raw deflate");
        let mut out = String::new();
        ZlibDecoder::new(&e.body[..]).read_to_string(&mut out).unwrap();
        assert!(out.starts_with(r#"{"serial_num""#));
        let g = p.enc(Kind::Preflight, Generation::Nps2026_7, WireOptions { encoding: ContentEncoding::Gzip, ..PLAIN });
        assert_eq!(&g.body[..2], &[0x1f, 0x8b]);
        // 2023.4+ honours SyncClientContentEncoding=none.
        let l = p.enc(Kind::Preflight, Generation::Gs2023_6, PLAIN);
        assert_eq!(l.content_encoding, None);
        let b = p.enc(Kind::Preflight, Generation::Nps2026_7, WireOptions { proto_transfer: true, ..PLAIN });
        assert_eq!(b.content_type, "application/x-protobuf");
        assert_eq!(<PreflightRequest as prost::Message>::decode(&b.body[..]).unwrap(), p);
        // Legacy clients cannot do binary transfer.
        let l = p.enc(Kind::Preflight, Generation::Gs2024_5, WireOptions { proto_transfer: true, ..PLAIN });
        assert_eq!(l.content_type, "application/json");
    }
}
