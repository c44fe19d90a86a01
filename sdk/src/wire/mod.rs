//! Santa sync protocol v1 messages (`santa.sync.v1`), as real clients speak them.
//!
//! One struct per message, shared by the server (tolerant parse of requests, strict emit of
//! responses), the simulator (the reverse) and tests. Each struct also derives
//! [`prost::Message`] with the proto field numbers, for clients that set
//! `SyncEnableProtoTransfer` (binary protobuf bodies). Enum fields are raw `i32`s like in
//! prost; typed accessors sit next to the structs.

pub mod enums;
pub mod eventupload;
pub mod lenient;
pub mod postflight;
pub mod preflight;
pub mod ruledownload;

pub use enums::{
    ClientMode, Decision, FileAccessAction, FileAccessDecision, Policy, RuleType, SigningStatus, SyncType, WireEnum,
};
pub use eventupload::{
    Certificate, Entitlement, EntitlementInfo, Event, EventUploadRequest, EventUploadResponse, FileAccessEvent, Process,
};
pub use postflight::{PostflightRequest, PostflightResponse};
pub use preflight::{PreflightRequest, PreflightResponse, RemountFlags, RemovableMediaPolicy};
pub use ruledownload::{Rule, RuleDownloadRequest, RuleDownloadResponse};

/// The four sync stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `preflight`
    Preflight,
    /// `eventupload`
    EventUpload,
    /// `ruledownload`
    RuleDownload,
    /// `postflight`
    Postflight,
}

impl Stage {
    /// Every stage, in sync order.
    pub const ALL: [Stage; 4] = [Stage::Preflight, Stage::EventUpload, Stage::RuleDownload, Stage::Postflight];

    /// The URL path segment.
    pub fn path(self) -> &'static str {
        match self {
            Stage::Preflight => "preflight",
            Stage::EventUpload => "eventupload",
            Stage::RuleDownload => "ruledownload",
            Stage::Postflight => "postflight",
        }
    }

    /// The stage for a URL path segment (lower-case, exact).
    pub fn from_path(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.path() == s)
    }
}

/// How a message body is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON (`application/json`, also `application/octet-stream` from 2024.6/2024.7, or none).
    Json,
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
}

impl Format {
    /// The Content-Type for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Protobuf => "application/x-protobuf",
        }
    }
}

/// A message that can be read and written in both formats.
pub trait WireMessage: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned {
    /// Decodes `body`; an empty body is the default message (§2.3, §4.5).
    fn decode_from(body: &[u8], format: Format) -> Result<Self, DecodeError> {
        if body.is_empty() {
            return Ok(Self::default());
        }
        match format {
            Format::Json => {
                let body = strip_xssi(body);
                serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
            }
            Format::Protobuf => Self::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string())),
        }
    }

    /// Encodes the message.
    fn encode_to(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => serde_json::to_vec(self).expect("wire messages always serialize"),
            Format::Protobuf => self.encode_to_vec(),
        }
    }
}

impl<T: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned> WireMessage for T {}

/// Strips the XSSI prefixes Santa strips from responses (`)]}'\n` or `])}`, §2.3).
pub fn strip_xssi(body: &[u8]) -> &[u8] {
    body.strip_prefix(b")]}'\n").or_else(|| body.strip_prefix(b"])}")).unwrap_or(body)
}

/// A body that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Malformed JSON or a value of the wrong type.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Malformed binary protobuf.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
}
