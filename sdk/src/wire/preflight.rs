//! Preflight: the client reports its state, the server answers with settings (§4.1, §4.2).

use super::enums::{ClientMode, FileAccessAction, SyncType};
use super::lenient::{self, is_default};
use serde::{Deserialize, Serialize};

/// `PreflightRequest`, client → server.
///
/// `Deserialize` accepts every generation (snake_case, lowerCamelCase, 2024.6's proto field
/// names, legacy `fcm_token`, numbers as strings, `null`s). `Serialize` writes the form a
/// current client sends: `json_name` keys, `sipStatus`/`rulesHash` in camelCase, defaults
/// omitted, field-number order.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PreflightRequest {
    /// IOPlatformSerialNumber.
    #[prost(string, tag = "1")]
    #[serde(alias = "serial_number", alias = "serialNumber", alias = "serialNum")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub serial_num: String,
    /// FQDN from `gethostname()`.
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub hostname: String,
    /// `ProductVersion`, e.g. `14.5`.
    #[prost(string, tag = "3")]
    #[serde(alias = "osVersion", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub os_version: String,
    /// `ProductBuildVersion`, e.g. `23F79`.
    #[prost(string, tag = "4")]
    #[serde(alias = "osBuild", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub os_build: String,
    /// `hw.model`, e.g. `Mac15,7`.
    #[prost(string, tag = "5")]
    #[serde(alias = "modelIdentifier", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub model_identifier: String,
    /// `CFBundleVersion`, e.g. `2026.7.123456789`.
    #[prost(string, tag = "6")]
    #[serde(alias = "santaVersion", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub santa_version: String,
    /// `MachineOwner`.
    #[prost(string, tag = "7")]
    #[serde(alias = "primaryUser", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub primary_user: String,
    /// FCM token (legacy key `fcm_token`).
    #[prost(string, tag = "8")]
    #[serde(alias = "fcm_token", alias = "pushNotificationToken", alias = "fcmToken")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub push_notification_token: String,
    /// The mode the client runs in now ([`ClientMode`]).
    #[prost(enumeration = "ClientMode", tag = "9")]
    #[serde(alias = "clientMode")]
    #[serde(deserialize_with = "lenient::enum_i32::<ClientMode, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<ClientMode, _>", skip_serializing_if = "is_default")]
    pub client_mode: i32,
    /// True while the client wants a clean sync.
    #[prost(bool, tag = "10")]
    #[serde(alias = "requestCleanSync", deserialize_with = "lenient::bool", skip_serializing_if = "is_default")]
    pub request_clean_sync: bool,
    /// BINARY rules (includes compiler and transitive rules).
    #[prost(uint32, tag = "11")]
    #[serde(alias = "binaryRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub binary_rule_count: u32,
    /// CERTIFICATE rules.
    #[prost(uint32, tag = "12")]
    #[serde(alias = "certificateRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub certificate_rule_count: u32,
    /// ALLOWLIST_COMPILER rules.
    #[prost(uint32, tag = "13")]
    #[serde(alias = "compilerRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub compiler_rule_count: u32,
    /// Locally created transitive rules.
    #[prost(uint32, tag = "14")]
    #[serde(alias = "transitiveRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub transitive_rule_count: u32,
    /// TEAMID rules.
    #[prost(uint32, tag = "15")]
    #[serde(alias = "teamidRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub teamid_rule_count: u32,
    /// SIGNINGID rules.
    #[prost(uint32, tag = "16")]
    #[serde(alias = "signingidRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub signingid_rule_count: u32,
    /// CDHASH rules.
    #[prost(uint32, tag = "17")]
    #[serde(alias = "cdhashRuleCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub cdhash_rule_count: u32,
    /// Same as the URL's machine id (proto-era only).
    #[prost(string, tag = "18")]
    #[serde(alias = "machineId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub machine_id: String,
    /// Sync triggered by a push notification.
    #[prost(bool, tag = "19")]
    #[serde(alias = "pushNotificationSync", deserialize_with = "lenient::bool", skip_serializing_if = "is_default")]
    pub push_notification_sync: bool,
    /// Raw SIP (csr) flags; sent in camelCase (no `json_name`).
    #[prost(uint32, tag = "20")]
    #[serde(rename(serialize = "sipStatus", deserialize = "sip_status"), alias = "sipStatus")]
    #[serde(deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub sip_status: u32,
    /// `MachineOwnerGroups` (NPS ≥ 2025.6).
    #[prost(string, repeated, tag = "21")]
    #[serde(alias = "primaryUserGroups", deserialize_with = "lenient::strings", skip_serializing_if = "is_default")]
    pub primary_user_groups: Vec<String>,
    /// Opaque hash of the execution rules (NPS ≥ 2025.7); camelCase on the wire.
    #[prost(string, tag = "22")]
    #[serde(rename(serialize = "rulesHash", deserialize = "rules_hash"), alias = "rulesHash")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub rules_hash: String,
}

/// `PreflightResponse`, server → client. Every field is optional: absent = "keep what you
/// have" (on NORMAL syncs of clients ≥ 2023.7). `Serialize` emits only snake_case keys and
/// exact JSON types (§3.3, §6.3). `Deserialize` parses like a proto-era client: the three
/// name forms of each field, `null` = unset, unknown enum names ignored.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PreflightResponse {
    /// Mode to move into at the end of the sync.
    #[prost(enumeration = "ClientMode", optional, tag = "1")]
    #[serde(alias = "clientMode", deserialize_with = "lenient::opt_enum_i32::<ClientMode, _>")]
    #[serde(serialize_with = "lenient::ser_opt_enum_i32::<ClientMode, _>", skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<i32>,
    /// NORMAL / CLEAN / CLEAN_ALL.
    #[prost(enumeration = "SyncType", optional, tag = "2")]
    #[serde(alias = "syncType", deserialize_with = "lenient::opt_enum_i32::<SyncType, _>")]
    #[serde(serialize_with = "lenient::ser_opt_enum_i32::<SyncType, _>", skip_serializing_if = "Option::is_none")]
    pub sync_type: Option<i32>,
    /// Events per eventupload request.
    #[prost(uint32, optional, tag = "3")]
    #[serde(alias = "batchSize", skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Bundle hashing and BUNDLE_BINARY flow.
    #[prost(bool, optional, tag = "4")]
    #[serde(alias = "enableBundles", alias = "bundles_enabled", skip_serializing_if = "Option::is_none")]
    pub enable_bundles: Option<bool>,
    /// Transitive (ALLOWLIST_COMPILER) rules.
    #[prost(bool, optional, tag = "5")]
    #[serde(alias = "enableTransitiveRules", alias = "enabled_transitive_whitelisting")]
    #[serde(alias = "transitive_whitelisting_enabled", skip_serializing_if = "Option::is_none")]
    pub enable_transitive_rules: Option<bool>,
    /// Upload events for all decisions.
    #[prost(bool, optional, tag = "6")]
    #[serde(alias = "enableAllEventUpload", skip_serializing_if = "Option::is_none")]
    pub enable_all_event_upload: Option<bool>,
    /// Suppress ALLOW_UNKNOWN events.
    #[prost(bool, optional, tag = "7")]
    #[serde(alias = "disableUnknownEventUpload", skip_serializing_if = "Option::is_none")]
    pub disable_unknown_event_upload: Option<bool>,
    /// Seconds between full syncs (≥ 60). Always sent: older clients reset to 600 when absent.
    #[prost(uint32, optional, tag = "8")]
    #[serde(alias = "full_sync_interval_seconds", alias = "fullSyncIntervalSeconds")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_sync_interval: Option<u32>,
    /// Full-sync interval when push is active.
    #[prost(uint32, optional, tag = "9")]
    #[serde(alias = "push_notification_full_sync_interval_seconds")]
    #[serde(alias = "pushNotificationFullSyncIntervalSeconds", alias = "fcm_full_sync_interval")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_notification_full_sync_interval: Option<u32>,
    /// Max random delay before a global push-triggered rule sync.
    #[prost(uint32, optional, tag = "10")]
    #[serde(alias = "push_notification_global_rule_sync_deadline_seconds")]
    #[serde(alias = "pushNotificationGlobalRuleSyncDeadlineSeconds", alias = "fcm_global_rule_sync_deadline")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_notification_global_rule_sync_deadline: Option<u32>,
    /// ICU regex of paths to allow (a string, never a list).
    #[prost(string, optional, tag = "11")]
    #[serde(alias = "allowedPathRegex", alias = "whitelist_regex", skip_serializing_if = "Option::is_none")]
    pub allowed_path_regex: Option<String>,
    /// ICU regex of paths to block.
    #[prost(string, optional, tag = "12")]
    #[serde(alias = "blockedPathRegex", alias = "blacklist_regex", skip_serializing_if = "Option::is_none")]
    pub blocked_path_regex: Option<String>,
    /// Block USB mass storage (deprecated by `removable_media_policy`).
    #[prost(bool, optional, tag = "13")]
    #[serde(alias = "blockUsbMount", skip_serializing_if = "Option::is_none")]
    pub block_usb_mount: Option<bool>,
    /// Remount flags for USB volumes.
    #[prost(string, repeated, tag = "14")]
    #[serde(alias = "remountUsbMode", skip_serializing_if = "Vec::is_empty")]
    pub remount_usb_mode: Vec<String>,
    /// FAA override, emitted as `None`/`AuditOnly`/`Disable`.
    #[prost(enumeration = "FileAccessAction", optional, tag = "15")]
    #[serde(alias = "overrideFileAccessAction")]
    #[serde(deserialize_with = "lenient::opt_enum_i32::<FileAccessAction, _>")]
    #[serde(
        serialize_with = "lenient::ser_opt_enum_i32::<FileAccessAction, _>",
        skip_serializing_if = "Option::is_none"
    )]
    pub override_file_access_action: Option<i32>,
    /// "Open" button URL template (NPS ≥ 2025.12).
    #[prost(string, optional, tag = "26")]
    #[serde(alias = "eventDetailUrl", skip_serializing_if = "Option::is_none")]
    pub event_detail_url: Option<String>,
    /// "Open" button text (NPS ≥ 2025.12).
    #[prost(string, optional, tag = "27")]
    #[serde(alias = "eventDetailText", skip_serializing_if = "Option::is_none")]
    pub event_detail_text: Option<String>,
    /// Removable media policy (NPS ≥ 2026.3).
    #[prost(message, optional, tag = "36")]
    #[serde(alias = "removableMediaPolicy", skip_serializing_if = "Option::is_none")]
    pub removable_media_policy: Option<RemovableMediaPolicy>,
    /// Override for encrypted volumes (NPS ≥ 2026.3).
    #[prost(message, optional, tag = "37")]
    #[serde(alias = "encryptedRemovableMediaPolicy", skip_serializing_if = "Option::is_none")]
    pub encrypted_removable_media_policy: Option<RemovableMediaPolicy>,
    /// The only clean-sync signal clients < 2024.1 understand.
    #[prost(bool, optional, tag = "1007")]
    #[serde(alias = "deprecated_clean_sync", alias = "deprecatedCleanSync", skip_serializing_if = "Option::is_none")]
    pub clean_sync: Option<bool>,
}

/// `{"allow":true}` | `{"block":true}` | `{"remount":{"flags":[…]}}` (exactly one).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RemovableMediaPolicy {
    /// Allow mounts.
    #[prost(bool, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<bool>,
    /// Block mounts.
    #[prost(bool, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<bool>,
    /// Remount with flags.
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remount: Option<RemountFlags>,
}

/// Remount flags of a [`RemovableMediaPolicy`].
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RemountFlags {
    /// e.g. `rdonly`, `noexec`.
    #[prost(string, repeated, tag = "1")]
    pub flags: Vec<String>,
}

impl PreflightResponse {
    /// The client mode, if set and known.
    pub fn client_mode_value(&self) -> Option<ClientMode> {
        self.client_mode.and_then(|n| ClientMode::try_from(n).ok())
    }
    /// The sync type, if set and known.
    pub fn sync_type_value(&self) -> Option<SyncType> {
        self.sync_type.and_then(|n| SyncType::try_from(n).ok())
    }
}
