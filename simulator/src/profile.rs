//! Santa configuration profiles (reference fleet-data §3): a `.mobileconfig` (NPS payload,
//! or the Google-era MCX `com.apple.ManagedClient.preferences` wrapper) or a plain plist of
//! keys, read the way an admin configures real clients.

use crate::encode::{ContentEncoding, WireOptions};
use plist::{Dictionary, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The client-side keys the simulator honours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// `SyncBaseURL`, with a trailing `/` forced as the client does (§1.2).
    pub sync_base_url: Option<String>,
    /// `MachineID` (overrides the hardware UUID).
    pub machine_id: Option<String>,
    /// `ClientMode`: 1 MONITOR, 2 LOCKDOWN, 3 STANDALONE.
    pub client_mode: Option<i64>,
    /// `SyncClientContentEncoding`.
    pub content_encoding: ContentEncoding,
    /// `SyncExtraHeaders`.
    pub extra_headers: BTreeMap<String, String>,
    /// `SyncEnableProtoTransfer`.
    pub enable_proto_transfer: bool,
    /// `SyncEnableCleanSyncEventUpload`.
    pub clean_sync_event_upload: bool,
    /// `MachineOwner`.
    pub machine_owner: Option<String>,
    /// `MachineOwnerGroups`.
    pub machine_owner_groups: Vec<String>,
}

/// A profile that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not a plist.
    #[error("not a property list: {0}")]
    Plist(#[from] plist::Error),
    /// No Santa payload.
    #[error(
        "no Santa settings found (expected keys at the top level, a com.northpolesec.santa payload or a com.google.santa MCX payload)"
    )]
    NoPayload,
    /// The file cannot be read.
    #[error("cannot read profile: {0}")]
    Io(#[from] std::io::Error),
    /// A key has the wrong type.
    #[error("{key} must be a {kind}")]
    WrongType {
        /// Key.
        key: &'static str,
        /// Expected plist type.
        kind: &'static str,
    },
}

/// Extra headers the client never sends (NPS deny-list, case-insensitive, §2.5).
const DENIED_HEADERS: &[&str] = &[
    "content-encoding",
    "content-length",
    "content-type",
    "connection",
    "host",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
];

fn santa_payload(root: &Dictionary) -> Option<&Dictionary> {
    if root.contains_key("SyncBaseURL") || root.contains_key("ClientMode") || root.contains_key("MachineID") {
        return Some(root);
    }
    for p in root.get("PayloadContent").and_then(Value::as_array).into_iter().flatten() {
        let Some(d) = p.as_dictionary() else { continue };
        match d.get("PayloadType").and_then(Value::as_string) {
            Some("com.northpolesec.santa" | "com.google.santa") => return Some(d),
            Some("com.apple.ManagedClient.preferences") => {
                let content = d.get("PayloadContent").and_then(Value::as_dictionary)?;
                for domain in ["com.northpolesec.santa", "com.google.santa"] {
                    let forced = content
                        .get(domain)
                        .and_then(Value::as_dictionary)
                        .and_then(|x| x.get("Forced"))
                        .and_then(Value::as_array);
                    for f in forced.into_iter().flatten() {
                        if let Some(s) = f
                            .as_dictionary()
                            .and_then(|x| x.get("mcx_preference_settings"))
                            .and_then(Value::as_dictionary)
                        {
                            return Some(s);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

impl Profile {
    /// Parses profile bytes (XML or binary plist).
    pub fn parse(bytes: &[u8]) -> Result<Profile, ProfileError> {
        let v = Value::from_reader(std::io::Cursor::new(bytes))?;
        let root = v.as_dictionary().ok_or(ProfileError::NoPayload)?;
        let d = santa_payload(root).ok_or(ProfileError::NoPayload)?;
        let string = |key: &'static str| -> Result<Option<String>, ProfileError> {
            match d.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ProfileError::WrongType { key, kind: "string" }),
            }
        };
        let boolean = |key: &'static str| -> Result<bool, ProfileError> {
            match d.get(key) {
                None => Ok(false),
                Some(Value::Boolean(b)) => Ok(*b),
                Some(_) => Err(ProfileError::WrongType { key, kind: "bool" }),
            }
        };
        let mut p = Profile {
            sync_base_url: string("SyncBaseURL")?.map(|u| if u.ends_with('/') { u } else { format!("{u}/") }),
            machine_id: string("MachineID")?.filter(|m| !m.is_empty()),
            content_encoding: string("SyncClientContentEncoding")?
                .map(|s| ContentEncoding::from_profile(&s))
                .unwrap_or_default(),
            enable_proto_transfer: boolean("SyncEnableProtoTransfer")?,
            clean_sync_event_upload: boolean("SyncEnableCleanSyncEventUpload")?,
            machine_owner: string("MachineOwner")?,
            ..Default::default()
        };
        p.client_mode = match d.get("ClientMode") {
            None => None,
            Some(Value::Integer(i)) => i.as_signed(),
            Some(_) => return Err(ProfileError::WrongType { key: "ClientMode", kind: "integer" }),
        };
        if let Some(h) = d.get("SyncExtraHeaders") {
            let h = h.as_dictionary().ok_or(ProfileError::WrongType { key: "SyncExtraHeaders", kind: "dict" })?;
            for (k, v) in h {
                // Non-string values are ignored; denied names are dropped (§2.5).
                if let Some(v) = v.as_string()
                    && !DENIED_HEADERS.contains(&k.to_ascii_lowercase().as_str())
                {
                    p.extra_headers.insert(k.clone(), v.to_owned());
                }
            }
        }
        if let Some(Value::Array(groups)) = d.get("MachineOwnerGroups") {
            p.machine_owner_groups = groups.iter().filter_map(Value::as_string).map(str::to_owned).collect();
        }
        Ok(p)
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let bytes = std::fs::read(path)?;
        Profile::parse(&bytes)
    }

    /// Transport options for clients configured by this profile.
    pub fn wire_options(&self) -> WireOptions {
        WireOptions { encoding: self.content_encoding, proto_transfer: self.enable_proto_transfer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOBILECONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>PayloadContent</key><array><dict>
  <key>PayloadType</key><string>com.northpolesec.santa</string>
  <key>ClientMode</key><integer>2</integer>
  <key>SyncBaseURL</key><string>https://santa-sync.example.com/api/santa</string>
  <key>SyncClientContentEncoding</key><string>GZIP</string>
  <key>SyncExtraHeaders</key><dict>
    <key>X-Fleet-Tenant</key><string>example-corp</string>
    <key>Content-Type</key><string>text/plain</string>
    <key>X-Number</key><integer>5</integer>
  </dict>
  <key>SyncEnableProtoTransfer</key><true/>
  <key>MachineOwnerGroups</key><array><string>eng</string></array>
</dict></array>
<key>PayloadType</key><string>Configuration</string>
</dict></plist>"#;

    #[test]
    fn reads_an_nps_mobileconfig() {
        let p = Profile::parse(MOBILECONFIG.as_bytes()).unwrap();
        assert_eq!(p.sync_base_url.as_deref(), Some("https://santa-sync.example.com/api/santa/"));
        assert_eq!(p.client_mode, Some(2));
        assert_eq!(p.content_encoding, ContentEncoding::Gzip);
        assert!(p.enable_proto_transfer);
        assert_eq!(p.extra_headers.len(), 1, "deny-listed and non-string headers dropped");
        assert_eq!(p.extra_headers["X-Fleet-Tenant"], "example-corp");
        assert_eq!(p.machine_owner_groups, ["eng"]);
    }

    #[test]
    fn reads_mcx_and_plain_plists() {
        let mcx = r#"<plist version="1.0"><dict><key>PayloadContent</key><array><dict>
<key>PayloadType</key><string>com.apple.ManagedClient.preferences</string>
<key>PayloadContent</key><dict><key>com.google.santa</key><dict><key>Forced</key><array><dict>
<key>mcx_preference_settings</key><dict><key>SyncBaseURL</key><string>http://127.0.0.1:8080/santa/</string>
<key>MachineID</key><string>custom-id</string><key>SyncClientContentEncoding</key><string>none</string></dict>
</dict></array></dict></dict></dict></array></dict></plist>"#;
        let p = Profile::parse(mcx.as_bytes()).unwrap();
        assert_eq!(p.machine_id.as_deref(), Some("custom-id"));
        assert_eq!(p.content_encoding, ContentEncoding::None);
        let plain = r#"<plist version="1.0"><dict><key>SyncBaseURL</key><string>http://localhost/x</string>
<key>SyncClientContentEncoding</key><string>brotli</string></dict></plist>"#;
        let p = Profile::parse(plain.as_bytes()).unwrap();
        assert_eq!(p.content_encoding, ContentEncoding::Deflate, "unknown encodings fall back to deflate");
        assert!(Profile::parse(b"<plist version=\"1.0\"><dict/></plist>").is_err());
    }
}
