//! Postflight (§4.5): the client reports what it applied. The response is ignored by clients.

use super::enums::SyncType;
use super::lenient::{self, is_default};
use serde::{Deserialize, Serialize};

/// `PostflightRequest`. Before 2023.8 the body is empty; 2024.6/2024.7 send counts as strings.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PostflightRequest {
    /// Rules received across all pages of this sync.
    #[prost(uint32, tag = "1")]
    #[serde(alias = "rulesReceived", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub rules_received: u32,
    /// Rules that validated client-side.
    #[prost(uint32, tag = "2")]
    #[serde(alias = "rulesProcessed", deserialize_with = "lenient::u32", skip_serializing_if = "is_default")]
    pub rules_processed: u32,
    /// Same as the URL's machine id (proto-era only).
    #[prost(string, tag = "3")]
    #[serde(alias = "machineId", deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub machine_id: String,
    /// The sync type performed (NPS ≥ 2025.1); camelCase on the wire.
    #[prost(enumeration = "SyncType", tag = "4")]
    #[serde(rename(serialize = "syncType", deserialize = "sync_type"), alias = "syncType")]
    #[serde(deserialize_with = "lenient::enum_i32::<SyncType, _>")]
    #[serde(serialize_with = "lenient::ser_enum_i32::<SyncType, _>", skip_serializing_if = "is_default")]
    pub sync_type: i32,
    /// Rules hash after applying (NPS ≥ 2025.7); camelCase on the wire.
    #[prost(string, tag = "5")]
    #[serde(rename(serialize = "rulesHash", deserialize = "rules_hash"), alias = "rulesHash")]
    #[serde(deserialize_with = "lenient::nullable", skip_serializing_if = "is_default")]
    pub rules_hash: String,
}

/// `PostflightResponse`: always `{}`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct PostflightResponse {}
