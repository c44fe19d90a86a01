//! Shared-secret check on sync requests: Santa sends fixed extra headers on every sync
//! request (`SyncExtraHeaders` in its configuration profile), so a fleet can carry a
//! secret that a random client on the network does not know. Secrets are configured by
//! their SHA-256, compared in constant time; per-machine secrets, when configured for a
//! machine, replace the fleet secrets for that machine (a leaked fleet secret then does
//! not let a client speak for it). Must never log a presented secret.
//!
//! Missing header and wrong secret both answer 401 (the message says which). Not 403: Santa
//! answers a 403 by fetching an XSRF token and retrying the request up to five times
//! (reference §2.4, §2.6), while any other 4xx makes NPS ≥ 2026.4 stop at once; the host
//! keeps its rules and tries again at its next sync interval.

use crate::config::SyncAuthSettings;
use crate::credentials::matches_any;
use crate::http::error::ApiError;
use http::HeaderMap;
use std::collections::HashMap;

/// Why a sync request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncAuthError {
    /// The header is absent.
    #[error("missing sync secret: send the {0} header (Santa: SyncExtraHeaders)")]
    Missing(String),
    /// The header does not carry an accepted secret.
    #[error("wrong sync secret in the {header} header for machine {machine_id}")]
    Wrong {
        /// Header name.
        header: String,
        /// Machine the request was for.
        machine_id: String,
    },
}

impl From<SyncAuthError> for ApiError {
    fn from(e: SyncAuthError) -> Self {
        match e {
            SyncAuthError::Missing(_) | SyncAuthError::Wrong { .. } => ApiError::Unauthenticated(e.to_string()),
        }
    }
}

/// The configured secrets, ready to check.
#[derive(Clone, Debug)]
pub struct SyncAuth {
    header: http::HeaderName,
    fleet: Vec<[u8; 32]>,
    machines: HashMap<String, Vec<[u8; 32]>>,
}

impl SyncAuth {
    /// `None` when the check is off; an error naming the bad key otherwise.
    pub fn new(settings: &SyncAuthSettings) -> Result<Option<SyncAuth>, String> {
        Ok(settings.secrets()?.map(|s| SyncAuth { header: s.header, fleet: s.fleet, machines: s.machines }))
    }

    /// Checks the request of `machine_id`. A machine without its own secrets needs a
    /// fleet secret (and is refused if there are none).
    pub fn check(&self, machine_id: &str, headers: &HeaderMap) -> Result<(), SyncAuthError> {
        let Some(value) = headers.get(&self.header) else {
            return Err(SyncAuthError::Missing(self.header.to_string()));
        };
        let accepted = self.machines.get(machine_id).unwrap_or(&self.fleet);
        if matches_any(value.as_bytes(), accepted) {
            Ok(())
        } else {
            Err(SyncAuthError::Wrong { header: self.header.to_string(), machine_id: machine_id.to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::sha256_hex;

    #[test]
    fn fleet_and_machine_secrets() {
        let settings = SyncAuthSettings {
            header: Some("X-Dasher-Secret".into()),
            secrets_sha256: vec![sha256_hex("old"), sha256_hex("new")],
            machines: [("vip".to_owned(), vec![sha256_hex("vip-only")])].into(),
        };
        let auth = SyncAuth::new(&settings).unwrap().unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-dasher-secret", v.parse().unwrap());
            h
        };
        assert_eq!(auth.check("m1", &with("old")), Ok(()));
        assert_eq!(auth.check("m1", &with("new")), Ok(()));
        assert!(matches!(auth.check("m1", &with("nope")), Err(SyncAuthError::Wrong { .. })));
        assert!(matches!(auth.check("vip", &with("new")), Err(SyncAuthError::Wrong { .. })));
        assert_eq!(auth.check("vip", &with("vip-only")), Ok(()));
        assert!(matches!(auth.check("m1", &HeaderMap::new()), Err(SyncAuthError::Missing(_))));
    }

    #[test]
    fn bad_settings_are_named() {
        let no_header = SyncAuthSettings { secrets_sha256: vec![sha256_hex("x")], ..Default::default() };
        assert!(SyncAuth::new(&no_header).unwrap_err().contains("sync_auth.header"));
        let bad_hash =
            SyncAuthSettings { header: Some("X-S".into()), secrets_sha256: vec!["zz".into()], ..Default::default() };
        assert!(SyncAuth::new(&bad_hash).unwrap_err().contains("sync_auth.secrets_sha256[0]"));
        assert!(SyncAuth::new(&SyncAuthSettings::default()).unwrap().is_none());
    }
}
