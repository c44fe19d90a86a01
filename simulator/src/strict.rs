//! Response parsing as strict as the real client (reference §2.3, §3.2).
//!
//! The SDK's response `Deserialize` is looser in some places and stricter in others than
//! protobuf's `JsonStringToMessage` (e.g. it rejects digit strings for integers and `null`
//! lists). So before handing a body to serde, this module walks the JSON against a small
//! per-message schema and applies protobuf's rules exactly: the three name forms of a field,
//! unknown keys skipped, `null` = unset, a wrong JSON type anywhere fails the whole message,
//! unknown enum names ignored. Legacy clients (`NSJSONSerialization`) instead read exact
//! snake_case keys and silently ignore values of the wrong type.

use dasher_sdk::wire::{self, WireEnum};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A field's protobuf type.
#[derive(Clone, Copy)]
enum Ty {
    Bool,
    U32,
    Str,
    Enum(fn(&str) -> bool),
    RepStr,
    RepMsg(&'static [Field]),
    Msg(&'static [Field]),
}

/// A field: canonical key (what the SDK struct reads), other accepted names, type.
struct Field(&'static str, &'static [&'static str], Ty);

fn known<E: WireEnum>(s: &str) -> bool {
    E::from_name(s).is_some()
}

const REMOUNT: &[Field] = &[Field("flags", &[], Ty::RepStr)];
const MEDIA: &[Field] =
    &[Field("allow", &[], Ty::Bool), Field("block", &[], Ty::Bool), Field("remount", &[], Ty::Msg(REMOUNT))];

const PREFLIGHT: &[Field] = &[
    Field("client_mode", &["clientMode"], Ty::Enum(known::<wire::ClientMode>)),
    Field("sync_type", &["syncType"], Ty::Enum(known::<wire::SyncType>)),
    Field("batch_size", &["batchSize"], Ty::U32),
    Field("enable_bundles", &["enableBundles", "bundles_enabled"], Ty::Bool),
    Field(
        "enable_transitive_rules",
        &["enableTransitiveRules", "enabled_transitive_whitelisting", "transitive_whitelisting_enabled"],
        Ty::Bool,
    ),
    Field("enable_all_event_upload", &["enableAllEventUpload"], Ty::Bool),
    Field("disable_unknown_event_upload", &["disableUnknownEventUpload"], Ty::Bool),
    Field("full_sync_interval", &["full_sync_interval_seconds", "fullSyncIntervalSeconds"], Ty::U32),
    Field(
        "push_notification_full_sync_interval",
        &[
            "push_notification_full_sync_interval_seconds",
            "pushNotificationFullSyncIntervalSeconds",
            "fcm_full_sync_interval",
        ],
        Ty::U32,
    ),
    Field(
        "push_notification_global_rule_sync_deadline",
        &[
            "push_notification_global_rule_sync_deadline_seconds",
            "pushNotificationGlobalRuleSyncDeadlineSeconds",
            "fcm_global_rule_sync_deadline",
        ],
        Ty::U32,
    ),
    Field("allowed_path_regex", &["allowedPathRegex", "whitelist_regex"], Ty::Str),
    Field("blocked_path_regex", &["blockedPathRegex", "blacklist_regex"], Ty::Str),
    Field("block_usb_mount", &["blockUsbMount"], Ty::Bool),
    Field("remount_usb_mode", &["remountUsbMode"], Ty::RepStr),
    Field("override_file_access_action", &["overrideFileAccessAction"], Ty::Enum(known::<wire::FileAccessAction>)),
    Field("event_detail_url", &["eventDetailUrl"], Ty::Str),
    Field("event_detail_text", &["eventDetailText"], Ty::Str),
    Field("removable_media_policy", &["removableMediaPolicy"], Ty::Msg(MEDIA)),
    Field("encrypted_removable_media_policy", &["encryptedRemovableMediaPolicy"], Ty::Msg(MEDIA)),
    Field("clean_sync", &["deprecated_clean_sync", "deprecatedCleanSync"], Ty::Bool),
    Field("export_configuration", &["exportConfiguration"], Ty::Msg(&[])),
    Field("push_token", &["pushToken"], Ty::Str),
    Field("push_issuer_token", &["pushIssuerToken"], Ty::Str),
];

const RULE: &[Field] = &[
    Field("identifier", &[], Ty::Str),
    Field("policy", &[], Ty::Enum(known::<wire::Policy>)),
    Field("rule_type", &["ruleType"], Ty::Enum(known::<wire::RuleType>)),
    Field("custom_msg", &["customMsg"], Ty::Str),
    Field("custom_url", &["customUrl"], Ty::Str),
    Field("file_bundle_hash", &["fileBundleHash"], Ty::Str),
    Field("file_bundle_binary_count", &["fileBundleBinaryCount"], Ty::U32),
    Field("notification_app_name", &["notificationAppName"], Ty::Str),
    Field("cel_expr", &["celExpr"], Ty::Str),
    Field("event_detail_button_label", &["eventDetailButtonLabel"], Ty::Str),
    Field("sha256", &["deprecated_sha256", "deprecatedSha256"], Ty::Str),
];

const RULEDOWNLOAD: &[Field] = &[Field("rules", &[], Ty::RepMsg(RULE)), Field("cursor", &[], Ty::Str)];
const EVENTUPLOAD: &[Field] = &[Field("event_upload_bundle_binaries", &["eventUploadBundleBinaries"], Ty::RepStr)];

/// A response the client cannot parse (the stage fails, `SNTErrorCodeFailedToParseJSON`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or the top level is not an object.
    #[error("response is not a JSON object: {0}")]
    NotObject(String),
    /// A field has the wrong JSON type or an out-of-range value.
    #[error("invalid JSON in {message} @ {field}: {why}")]
    Type {
        /// Message name.
        message: &'static str,
        /// Field path.
        field: String,
        /// What was wrong.
        why: String,
    },
    /// Legacy clients require a `rules` array in rule-download responses (§4.4).
    #[error("rule download response has no rules array")]
    NoRulesArray,
    /// Binary protobuf that does not decode.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
}

/// How the client parses: protobuf-JSON (proto-era) or `NSJSONSerialization` (legacy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    /// ≥ 2024.6.
    Proto,
    /// ≤ 2024.5.
    Legacy,
}

/// Which response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// `PreflightResponse`.
    Preflight,
    /// `EventUploadResponse`.
    EventUpload,
    /// `RuleDownloadResponse`.
    RuleDownload,
}

impl Response {
    fn schema(self) -> (&'static str, &'static [Field]) {
        match self {
            Response::Preflight => ("santa.sync.v1.PreflightResponse", PREFLIGHT),
            Response::EventUpload => ("santa.sync.v1.EventUploadResponse", EVENTUPLOAD),
            Response::RuleDownload => ("santa.sync.v1.RuleDownloadResponse", RULEDOWNLOAD),
        }
    }
}

/// Parses a JSON response body into the SDK type `T` like the client would.
pub fn parse_json<T: DeserializeOwned + Default>(
    body: &[u8],
    which: Response,
    parser: Parser,
) -> Result<T, ParseError> {
    let body = wire::strip_xssi(body);
    let (message, schema) = which.schema();
    if body.iter().all(u8::is_ascii_whitespace) {
        // Proto-era: empty 200 body = all defaults (§2.3). Legacy: `{}`, which fails rule download.
        if parser == Parser::Legacy && which == Response::RuleDownload {
            return Err(ParseError::NoRulesArray);
        }
        return Ok(T::default());
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Legacy: a parse failure yields `{}` and the stage continues (except rule download).
        Err(_) if parser == Parser::Legacy && which != Response::RuleDownload => return Ok(T::default()),
        Err(_) if parser == Parser::Legacy => return Err(ParseError::NoRulesArray),
        Err(e) => return Err(ParseError::NotObject(e.to_string())),
    };
    let Value::Object(obj) = v else {
        if parser == Parser::Legacy && which != Response::RuleDownload {
            return Ok(T::default());
        }
        return Err(ParseError::NotObject("top level is not an object".into()));
    };
    if parser == Parser::Legacy && which == Response::RuleDownload && !matches!(obj.get("rules"), Some(Value::Array(_)))
    {
        return Err(ParseError::NoRulesArray);
    }
    let normalized = normalize_message(obj, schema, parser, message, "")?;
    serde_json::from_value(Value::Object(normalized)).map_err(|e| ParseError::Type {
        message,
        field: String::new(),
        why: e.to_string(),
    })
}

/// Parses a binary protobuf response (`SyncEnableProtoTransfer`).
pub fn parse_proto<T: prost::Message + Default>(body: &[u8]) -> Result<T, ParseError> {
    T::decode(body).map_err(|e| ParseError::Protobuf(e.to_string()))
}

fn lower_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn normalize_message(
    obj: Map<String, Value>,
    schema: &[Field],
    parser: Parser,
    message: &'static str,
    path: &str,
) -> Result<Map<String, Value>, ParseError> {
    let mut out = Map::new();
    for (key, value) in obj {
        let field = schema.iter().find(|f| {
            f.0 == key
                || match parser {
                    Parser::Proto => f.1.contains(&key.as_str()) || lower_camel(f.0) == key,
                    // Legacy reads exact snake_case keys (and the old snake_case aliases).
                    Parser::Legacy => f.1.contains(&key.as_str()) && !key.chars().any(|c| c.is_ascii_uppercase()),
                }
        });
        let Some(field) = field else { continue }; // unknown key: skipped
        if value.is_null() {
            continue; // null = unset
        }
        let fpath = if path.is_empty() { field.0.to_owned() } else { format!("{path}.{}", field.0) };
        match normalize_value(value, field.2, parser, message, &fpath) {
            Ok(Some(v)) => {
                out.insert(field.0.to_owned(), v);
            }
            Ok(None) => {}
            Err(e) if parser == Parser::Legacy => {
                // `EnsureType` (≥ 2023.7): a wrong type is ignored, not fatal.
                let _ = e;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn type_err(message: &'static str, field: &str, why: impl Into<String>) -> ParseError {
    ParseError::Type { message, field: field.to_owned(), why: why.into() }
}

fn normalize_value(
    v: Value,
    ty: Ty,
    parser: Parser,
    message: &'static str,
    path: &str,
) -> Result<Option<Value>, ParseError> {
    let err = |why: &str| Err(type_err(message, path, why));
    match ty {
        Ty::Bool => match v {
            Value::Bool(_) => Ok(Some(v)),
            // protobuf legacy-syntax mode accepts "true"/"false" strings; numbers are errors.
            Value::String(s) if parser == Parser::Proto && (s == "true" || s == "false") => {
                Ok(Some(Value::Bool(s == "true")))
            }
            _ => err("expected a boolean"),
        },
        Ty::U32 => {
            let n = match &v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) if parser == Parser::Proto => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                None => err("expected an unsigned integer"),
                Some(n) if n.fract() != 0.0 => err("expected integer, but JSON number had fractional part"),
                Some(n) if !(0.0..=u32::MAX as f64).contains(&n) => err("integer out of range for uint32"),
                Some(n) => Ok(Some(Value::from(n as u64))),
            }
        }
        Ty::Str => match v {
            Value::String(_) => Ok(Some(v)),
            _ => err("string expected '\"'"),
        },
        Ty::Enum(is_known) => match v {
            Value::String(ref s) if is_known(s) => Ok(Some(v)),
            Value::String(ref s) if parser == Parser::Proto && s.parse::<i32>().is_ok() => Ok(Some(v)),
            Value::String(_) => Ok(None), // unknown name: ignored
            Value::Number(ref n) if parser == Parser::Proto && n.is_i64() => Ok(Some(v)),
            _ => err("expected an enum name or number"),
        },
        Ty::RepStr => {
            let items = match v {
                Value::Array(items) => items,
                // legacy-syntax: a bare value is a one-element list (proto-era only).
                Value::String(_) if parser == Parser::Proto => vec![v],
                _ => return err("expected an array of strings"),
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(_) => out.push(item),
                    Value::Null => out.push(Value::String(String::new())),
                    _ => return err("string expected in array"),
                }
            }
            Ok(Some(Value::Array(out)))
        }
        Ty::RepMsg(schema) => {
            let Value::Array(items) = v else { return err("expected an array") };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item {
                    Value::Object(o) => out.push(Value::Object(normalize_message(o, schema, parser, message, &p)?)),
                    Value::Null => out.push(Value::Object(Map::new())),
                    _ => return Err(type_err(message, &p, "expected an object")),
                }
            }
            Ok(Some(Value::Array(out)))
        }
        Ty::Msg(schema) => match v {
            Value::Object(o) if schema.is_empty() => {
                let _ = o;
                Ok(None) // a message the simulator does not model (export_configuration): accepted, ignored
            }
            Value::Object(o) => Ok(Some(Value::Object(normalize_message(o, schema, parser, message, path)?))),
            _ => err("expected an object"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::wire::{EventUploadResponse, PreflightResponse, RuleDownloadResponse};

    fn pre(body: &str) -> Result<PreflightResponse, ParseError> {
        parse_json(body.as_bytes(), Response::Preflight, Parser::Proto)
    }
    fn rules(body: &str, p: Parser) -> Result<RuleDownloadResponse, ParseError> {
        parse_json(body.as_bytes(), Response::RuleDownload, p)
    }

    #[test]
    fn wrong_types_fail_the_stage_for_proto_era_clients() {
        for bad in [
            r#"{"enable_bundles":1}"#,
            r#"{"batch_size":"many"}"#,
            r#"{"batch_size":1.5}"#,
            r#"{"batch_size":-1}"#,
            r#"{"full_sync_interval":4294967296}"#,
            r#"{"allowed_path_regex":["a","b"]}"#,
            r#"{"allowed_path_regex":5}"#,
            r#"{"client_mode":true}"#,
            r#"{"removable_media_policy":"block"}"#,
            r#"[]"#,
            r#"not json"#,
        ] {
            assert!(pre(bad).is_err(), "should fail: {bad}");
        }
        assert!(rules(r#"{"rules":[],"cursor":{"page":2}}"#, Parser::Proto).is_err(), "object cursor (rudolph #52)");
        assert!(rules(r#"{"rules":[{"identifier":7}]}"#, Parser::Proto).is_err());
        assert!(rules(r#"{"rules":{}}"#, Parser::Proto).is_err());
        assert!(
            parse_json::<EventUploadResponse>(
                br#"{"event_upload_bundle_binaries":[1]}"#,
                Response::EventUpload,
                Parser::Proto
            )
            .is_err()
        );
    }

    #[test]
    fn accepts_what_protobuf_accepts() {
        let r = pre(r#")]}'
{"clientMode":"LOCKDOWN","batchSize":"100","enable_bundles":"true","fullSyncIntervalSeconds":600,
 "allowed_path_regex":null,"whitelist_regex":null,"unknown_key":{"x":[1]},"remount_usb_mode":"rdonly",
 "sync_type":"CLEAN_RULES","override_file_access_action":"AuditOnly"}"#)
        .unwrap();
        assert_eq!(r.client_mode, Some(2));
        assert_eq!(r.batch_size, Some(100));
        assert_eq!(r.enable_bundles, Some(true));
        assert_eq!(r.full_sync_interval, Some(600));
        assert_eq!(r.allowed_path_regex, None);
        assert_eq!(r.remount_usb_mode, vec!["rdonly".to_string()]);
        assert_eq!(r.sync_type, None, "unknown enum name is ignored");
        assert_eq!(r.override_file_access_action, Some(2));
        assert_eq!(pre("").unwrap(), PreflightResponse::default(), "empty 200 body = defaults");
        let page = rules(
            r#"{"rules":[{"identifier":"AAAAAAAAAA","policy":"FROBNICATE","ruleType":"TEAMID"}]}"#,
            Parser::Proto,
        )
        .unwrap();
        assert_eq!(page.rules[0].policy, 0, "unknown policy → POLICY_UNKNOWN, dropped later");
        assert_eq!(page.rules[0].rule_type, 3);
        assert_eq!(page.cursor, None);
    }

    #[test]
    fn legacy_clients_ignore_wrong_types_but_need_a_rules_array() {
        let r: PreflightResponse = parse_json(
            br#"{"enable_bundles":1,"batch_size":10,"clientMode":"LOCKDOWN"}"#,
            Response::Preflight,
            Parser::Legacy,
        )
        .unwrap();
        assert_eq!(r.enable_bundles, None);
        assert_eq!(r.batch_size, Some(10));
        assert_eq!(r.client_mode, None, "legacy reads exact snake_case keys only");
        let r: PreflightResponse = parse_json(b"garbage", Response::Preflight, Parser::Legacy).unwrap();
        assert_eq!(r, PreflightResponse::default());
        assert_eq!(rules("{}", Parser::Legacy), Err(ParseError::NoRulesArray));
        assert_eq!(rules("", Parser::Legacy), Err(ParseError::NoRulesArray));
        assert!(rules("{}", Parser::Proto).is_ok(), "proto-era: rules optional");
    }
}
