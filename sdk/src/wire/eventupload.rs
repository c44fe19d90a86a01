//! Event upload (§4.3): execution events and file-access events, client → server.

use super::enums::{Decision, FileAccessDecision, SigningStatus};
use super::lenient::{self, is_default};
use serde::{Deserialize, Serialize};

/// `EventUploadRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EventUploadRequest {
    /// Execution events.
    #[prost(message, repeated, tag = "1")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub events: Vec<Event>,
    /// Same as the URL's machine id (proto-era only).
    #[prost(string, tag = "2")]
    #[serde(alias = "machineId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub machine_id: String,
    /// File-access events (NPS ≥ 2025.9).
    #[prost(message, repeated, tag = "4")]
    #[serde(alias = "fileAccessEvents", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_access_events: Vec<FileAccessEvent>,
}

/// One execution event. `file_path` is the *directory*; `file_name` the last component.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// SHA-256 of the executable (lower-case hex).
    #[prost(string, tag = "1")]
    #[serde(alias = "fileSha256", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_sha256: String,
    /// Directory containing the binary.
    #[prost(string, tag = "2")]
    #[serde(alias = "filePath", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_path: String,
    /// Binary name.
    #[prost(string, tag = "3")]
    #[serde(alias = "fileName", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_name: String,
    /// User of the real UID.
    #[prost(string, tag = "4")]
    #[serde(alias = "executingUser", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub executing_user: String,
    /// Unix seconds with fraction; absent for BUNDLE_BINARY.
    #[prost(double, tag = "5")]
    #[serde(alias = "executionTime", deserialize_with = "lenient::f64", skip_serializing_if = "is_default")]
    pub execution_time: f64,
    /// Logged-in users.
    #[prost(string, repeated, tag = "6")]
    #[serde(alias = "loggedInUsers", alias = "loggedin_users", deserialize_with = "lenient::strings")]
    #[serde(skip_serializing_if = "is_default")]
    pub logged_in_users: Vec<String>,
    /// Sessions (`user@console`, `user@ttys000`).
    #[prost(string, repeated, tag = "7")]
    #[serde(alias = "currentSessions", deserialize_with = "lenient::strings", skip_serializing_if = "is_default")]
    pub current_sessions: Vec<String>,
    /// The decision ([`Decision`]).
    #[prost(enumeration = "Decision", tag = "8")]
    #[serde(deserialize_with = "lenient::enum_i32::<Decision, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<Decision, _>", skip_serializing_if = "is_default")]
    pub decision: i32,
    /// CFBundleIdentifier.
    #[prost(string, tag = "9")]
    #[serde(alias = "fileBundleId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_bundle_id: String,
    /// Bundle root path.
    #[prost(string, tag = "10")]
    #[serde(alias = "fileBundlePath", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_bundle_path: String,
    /// Path of the binary inside the bundle.
    #[prost(string, tag = "11")]
    #[serde(alias = "fileBundleExecutableRelPath", deserialize_with = "lenient::nullable")]
    #[serde(skip_serializing_if = "is_default")]
    pub file_bundle_executable_rel_path: String,
    /// CFBundleName.
    #[prost(string, tag = "12")]
    #[serde(alias = "fileBundleName", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_bundle_name: String,
    /// CFBundleVersion.
    #[prost(string, tag = "13")]
    #[serde(alias = "fileBundleVersion", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_bundle_version: String,
    /// CFBundleShortVersionString.
    #[prost(string, tag = "14")]
    #[serde(alias = "fileBundleVersionString", deserialize_with = "lenient::nullable")]
    #[serde(skip_serializing_if = "is_default")]
    pub file_bundle_version_string: String,
    /// Bundle hash when bundles are enabled.
    #[prost(string, tag = "15")]
    #[serde(alias = "fileBundleHash", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_bundle_hash: String,
    /// Milliseconds spent hashing the bundle (a string in 2024.6/2024.7).
    #[prost(uint32, tag = "16")]
    #[serde(alias = "fileBundleHashMillis", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub file_bundle_hash_millis: u32,
    /// Binaries in the bundle (a string in 2024.6/2024.7).
    #[prost(uint32, tag = "17")]
    #[serde(alias = "fileBundleBinaryCount", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub file_bundle_binary_count: u32,
    /// Process id.
    #[prost(int32, tag = "18")]
    #[serde(deserialize_with = "lenient::i32", skip_serializing_if = "is_default")]
    pub pid: i32,
    /// Parent process id.
    #[prost(int32, tag = "19")]
    #[serde(deserialize_with = "lenient::i32", skip_serializing_if = "is_default")]
    pub ppid: i32,
    /// Parent process name.
    #[prost(string, tag = "20")]
    #[serde(alias = "parentName", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub parent_name: String,
    /// 10-character Team ID.
    #[prost(string, tag = "21")]
    #[serde(alias = "teamId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub team_id: String,
    /// `TEAMID:com.x` or `platform:com.apple.x`.
    #[prost(string, tag = "22")]
    #[serde(alias = "signingId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub signing_id: String,
    /// 40-hex CD hash.
    #[prost(string, tag = "23")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub cdhash: String,
    /// Deprecated quarantine data URL.
    #[prost(string, tag = "24")]
    #[serde(alias = "quarantineDataUrl", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub quarantine_data_url: String,
    /// Deprecated quarantine referrer URL.
    #[prost(string, tag = "25")]
    #[serde(
        alias = "quarantineRefererUrl",
        deserialize_with = "lenient::nullable",
        skip_serializing_if = "is_default"
    )]
    pub quarantine_referer_url: String,
    /// Unix seconds (legacy: a double, always present).
    #[prost(uint32, tag = "26")]
    #[serde(alias = "quarantineTimestamp", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub quarantine_timestamp: u32,
    /// Bundle id of the downloading agent.
    #[prost(string, tag = "27")]
    #[serde(alias = "quarantineAgentBundleId", deserialize_with = "lenient::nullable")]
    #[serde(skip_serializing_if = "is_default")]
    pub quarantine_agent_bundle_id: String,
    /// Leaf → root.
    #[prost(message, repeated, tag = "28")]
    #[serde(alias = "signingChain", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub signing_chain: Vec<Certificate>,
    /// Entitlements (NPS ≥ 2025.1); camelCase on the wire.
    #[prost(message, optional, tag = "29")]
    #[serde(rename(serialize = "entitlementInfo", deserialize = "entitlement_info"), alias = "entitlementInfo")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement_info: Option<EntitlementInfo>,
    /// Raw code-signing flags; camelCase on the wire.
    #[prost(uint32, tag = "30")]
    #[serde(rename(serialize = "csFlags", deserialize = "cs_flags"), alias = "csFlags")]
    #[serde(deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub cs_flags: u32,
    /// [`SigningStatus`]; camelCase on the wire.
    #[prost(enumeration = "SigningStatus", tag = "31")]
    #[serde(rename(serialize = "signingStatus", deserialize = "signing_status"), alias = "signingStatus")]
    #[serde(deserialize_with = "lenient::enum_i32::<SigningStatus, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<SigningStatus, _>", skip_serializing_if = "is_default")]
    pub signing_status: i32,
    /// Secure signing timestamp (NPS ≥ 2025.6); camelCase on the wire.
    #[prost(uint32, tag = "32")]
    #[serde(rename(serialize = "secureSigningTime", deserialize = "secure_signing_time"), alias = "secureSigningTime")]
    #[serde(deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub secure_signing_time: u32,
    /// Developer signing timestamp (NPS ≥ 2025.6); camelCase on the wire.
    #[prost(uint32, tag = "33")]
    #[serde(rename(serialize = "signingTime", deserialize = "signing_time"), alias = "signingTime")]
    #[serde(deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub signing_time: u32,
    /// Decision came from a profile static rule (NPS ≥ 2026.2).
    #[prost(bool, tag = "34")]
    #[serde(alias = "staticRule", deserialize_with = "lenient::bool", skip_serializing_if = "is_default")]
    pub static_rule: bool,
}

impl Event {
    /// The decision, or `Decision::Unknown` for numbers this build does not know.
    pub fn decision_value(&self) -> Decision {
        Decision::try_from(self.decision).unwrap_or(Decision::Unknown)
    }
}

/// One certificate of a signing chain.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Certificate {
    /// SHA-256 of the certificate DER.
    #[prost(string, tag = "1")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub sha256: String,
    /// Common name.
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub cn: String,
    /// Organization.
    #[prost(string, tag = "3")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub org: String,
    /// Organizational unit.
    #[prost(string, tag = "4")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub ou: String,
    /// Unix seconds (legacy may send a double).
    #[prost(uint32, tag = "5")]
    #[serde(alias = "validFrom", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub valid_from: u32,
    /// Unix seconds (legacy may send a double).
    #[prost(uint32, tag = "6")]
    #[serde(alias = "validUntil", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub valid_until: u32,
}

/// Entitlements of the executable.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EntitlementInfo {
    /// True if the list was truncated or filtered.
    #[prost(bool, optional, tag = "1")]
    #[serde(rename(serialize = "entitlementsFiltered", deserialize = "entitlements_filtered"))]
    #[serde(alias = "entitlementsFiltered", skip_serializing_if = "Option::is_none")]
    pub entitlements_filtered: Option<bool>,
    /// Top-level entitlement keys with JSON-serialised values.
    #[prost(message, repeated, tag = "2")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub entitlements: Vec<Entitlement>,
}

/// One entitlement.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Entitlement {
    /// Entitlement name.
    #[prost(string, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// JSON-serialised value.
    #[prost(string, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A file-access-authorization event (NPS ≥ 2025.9).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FileAccessEvent {
    /// Version of the FAA rule.
    #[prost(string, tag = "1")]
    #[serde(alias = "ruleVersion", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub rule_version: String,
    /// FAA rule name.
    #[prost(string, tag = "2")]
    #[serde(alias = "ruleName", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub rule_name: String,
    /// Accessed path.
    #[prost(string, tag = "3")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub target: String,
    /// Offending process first, then parents.
    #[prost(message, repeated, tag = "4")]
    #[serde(alias = "processChain", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub process_chain: Vec<Process>,
    /// Unix seconds.
    #[prost(double, tag = "5")]
    #[serde(alias = "accessTime", deserialize_with = "lenient::f64", skip_serializing_if = "is_default")]
    pub access_time: f64,
    /// [`FileAccessDecision`].
    #[prost(enumeration = "FileAccessDecision", tag = "6")]
    #[serde(deserialize_with = "lenient::enum_i32::<FileAccessDecision, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<FileAccessDecision, _>", skip_serializing_if = "is_default")]
    pub decision: i32,
}

/// A process in a [`FileAccessEvent`]'s chain (`file_path` is the full path here).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Full path.
    #[prost(string, tag = "1")]
    #[serde(alias = "filePath", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_path: String,
    /// CD hash.
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub cdhash: String,
    /// SHA-256.
    #[prost(string, tag = "3")]
    #[serde(alias = "fileSha256", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub file_sha256: String,
    /// Signing id.
    #[prost(string, tag = "4")]
    #[serde(alias = "signingId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub signing_id: String,
    /// Team id.
    #[prost(string, tag = "5")]
    #[serde(alias = "teamId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub team_id: String,
    /// Process id.
    #[prost(int32, tag = "6")]
    #[serde(deserialize_with = "lenient::i32", skip_serializing_if = "is_default")]
    pub pid: i32,
    /// Signing chain.
    #[prost(message, repeated, tag = "7")]
    #[serde(alias = "signingChain", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub signing_chain: Vec<Certificate>,
}

/// `EventUploadResponse`: bundle hashes whose binaries the server wants (§5.4).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EventUploadResponse {
    /// Bundle hashes to upload BUNDLE_BINARY events for.
    #[prost(string, repeated, tag = "1")]
    #[serde(alias = "eventUploadBundleBinaries", skip_serializing_if = "Vec::is_empty")]
    pub event_upload_bundle_binaries: Vec<String>,
}
