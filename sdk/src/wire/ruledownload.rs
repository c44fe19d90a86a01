//! Rule download (§4.4, §5.3): paged by an opaque string cursor.

use super::enums::{Policy, RuleType};
use super::lenient::{self, is_default};
use serde::{Deserialize, Serialize};

/// `RuleDownloadRequest`. Legacy clients echo the cursor back as whatever JSON value the
/// server sent; Dasher only ever sends strings, so anything else is a cursor it never issued.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleDownloadRequest {
    /// The previous page's cursor; absent on the first request.
    #[prost(string, tag = "1")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub cursor: String,
    /// Same as the URL's machine id (proto-era only).
    #[prost(string, tag = "2")]
    #[serde(alias = "machineId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub machine_id: String,
}

/// `RuleDownloadResponse`. `rules` is always emitted (legacy clients fail without it);
/// `cursor` is omitted on the last page (legacy clients loop on `""`/`null`).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleDownloadResponse {
    /// Rules of this page, applied in order.
    #[prost(message, repeated, tag = "1")]
    pub rules: Vec<Rule>,
    /// Present iff more pages follow.
    #[prost(string, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A rule as sent to clients. Optional strings are omitted when unset.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Rule {
    /// Identifier; format depends on `rule_type`.
    #[prost(string, tag = "1")]
    pub identifier: String,
    /// [`Policy`].
    #[prost(enumeration = "Policy", tag = "2")]
    #[serde(deserialize_with = "lenient::enum_i32::<Policy, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<Policy, _>")]
    pub policy: i32,
    /// [`RuleType`].
    #[prost(enumeration = "RuleType", tag = "3")]
    #[serde(alias = "ruleType", deserialize_with = "lenient::enum_i32::<RuleType, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<RuleType, _>")]
    pub rule_type: i32,
    /// Block-dialog message.
    #[prost(string, optional, tag = "4")]
    #[serde(alias = "customMsg", skip_serializing_if = "Option::is_none")]
    pub custom_msg: Option<String>,
    /// "Open" button URL.
    #[prost(string, optional, tag = "5")]
    #[serde(alias = "customUrl", skip_serializing_if = "Option::is_none")]
    pub custom_url: Option<String>,
    /// Deprecated bundle notification helper.
    #[prost(string, optional, tag = "6")]
    #[serde(alias = "fileBundleHash", skip_serializing_if = "Option::is_none")]
    pub file_bundle_hash: Option<String>,
    /// Deprecated bundle notification helper.
    #[prost(uint32, optional, tag = "7")]
    #[serde(alias = "fileBundleBinaryCount", skip_serializing_if = "Option::is_none")]
    pub file_bundle_binary_count: Option<u32>,
    /// "App allowed" notification (NPS ≥ 2025.4).
    #[prost(string, optional, tag = "8")]
    #[serde(alias = "notificationAppName", skip_serializing_if = "Option::is_none")]
    pub notification_app_name: Option<String>,
    /// CEL expression, iff policy is CEL (NPS ≥ 2025.6).
    #[prost(string, optional, tag = "9")]
    #[serde(alias = "celExpr", skip_serializing_if = "Option::is_none")]
    pub cel_expr: Option<String>,
    /// Button label (NPS ≥ 2026.7).
    #[prost(string, optional, tag = "12")]
    #[serde(alias = "eventDetailButtonLabel", skip_serializing_if = "Option::is_none")]
    pub event_detail_button_label: Option<String>,
    /// Deprecated identifier alias read by pre-2022.1 clients.
    #[prost(string, optional, tag = "1000")]
    #[serde(alias = "deprecated_sha256", alias = "deprecatedSha256", skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Rule {
    /// The policy, `Policy::Unknown` if not known to this build.
    pub fn policy_value(&self) -> Policy {
        Policy::try_from(self.policy).unwrap_or(Policy::Unknown)
    }
    /// The rule type, `RuleType::Unknown` if not known to this build.
    pub fn rule_type_value(&self) -> RuleType {
        RuleType::try_from(self.rule_type).unwrap_or(RuleType::Unknown)
    }
}
