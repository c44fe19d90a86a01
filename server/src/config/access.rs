//! The sections that say who may reach what: `[admin]` tokens and roles, `[sync_auth]`
//! secrets, `[tls]`, `[metrics]`. Plain data plus their checks; the servers that use them
//! live in `http` and `tls`.

use crate::credentials::parse_sha256_hex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// What a token may do. Ordered: a higher role includes the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `GET` only.
    ReadOnly,
    /// Rules, rule sets, tags, clean-sync, proposals.
    RulesEditor,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in the configuration and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::RulesEditor => "rules-editor",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured token: `[[admin.tokens]] name = "ci", role = "rules-editor", sha256 = "…"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logged on use; never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits (`dasher token hash` prints it).
    pub sha256: String,
}

/// The `[admin]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Serve the admin API (and `/metrics`) on this address only; the main listener then
    /// answers only sync routes and `/healthz`/`/readyz`.
    pub listen: Option<std::net::SocketAddr>,
    /// Role tokens, stored hashed.
    pub tokens: Vec<TokenConfig>,
}

impl AdminSettings {
    /// Checks names, hashes and uniqueness.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.is_empty() || t.name.len() > 64 {
                return Err(format!("admin.tokens[{i}].name must be 1 to 64 characters"));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(format!("admin.tokens[{i}].name {:?} is used twice", t.name));
            }
            parse_sha256_hex(&t.sha256).map_err(|e| format!("admin.tokens[{i}].sha256 ({}): {e}", t.name))?;
        }
        Ok(())
    }
}

/// The `[sync_auth]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncAuthSettings {
    /// Header carrying the secret, e.g. `X-Dasher-Secret`. The check is off unless set.
    pub header: Option<String>,
    /// SHA-256 (hex) of the accepted fleet-wide secrets; list two while rotating.
    pub secrets_sha256: Vec<String>,
    /// Per-machine secrets: machine id → SHA-256 list. A listed machine must present one
    /// of its own secrets; the fleet secrets are not accepted for it.
    pub machines: BTreeMap<String, Vec<String>>,
}

/// The `[sync_auth]` secrets, parsed.
#[derive(Clone, Debug)]
pub struct SyncSecrets {
    /// Header carrying the secret.
    pub header: http::HeaderName,
    /// Fleet-wide secret digests.
    pub fleet: Vec<[u8; 32]>,
    /// Per-machine secret digests.
    pub machines: HashMap<String, Vec<[u8; 32]>>,
}

impl SyncAuthSettings {
    /// The parsed secrets; `None` when the check is off, an error naming the bad key otherwise.
    pub fn secrets(&self) -> Result<Option<SyncSecrets>, String> {
        let settings = self;
        let Some(name) = &settings.header else {
            if !settings.secrets_sha256.is_empty() || !settings.machines.is_empty() {
                return Err("sync_auth has secrets but no header; set sync_auth.header".into());
            }
            return Ok(None);
        };
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("sync_auth.header {name:?} is not a valid header name"))?;
        let fleet = settings
            .secrets_sha256
            .iter()
            .enumerate()
            .map(|(i, h)| parse_sha256_hex(h).map_err(|e| format!("sync_auth.secrets_sha256[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut machines = HashMap::new();
        for (id, hashes) in &settings.machines {
            let parsed = hashes
                .iter()
                .enumerate()
                .map(|(i, h)| parse_sha256_hex(h).map_err(|e| format!("sync_auth.machines.{id}[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err(format!("sync_auth.machines.{id} lists no secret"));
            }
            machines.insert(id.clone(), parsed);
        }
        if fleet.is_empty() && machines.is_empty() {
            return Err("sync_auth.header is set but no secret is configured (secrets_sha256 or machines)".into());
        }
        Ok(Some(SyncSecrets { header, fleet, machines }))
    }

    /// Checks the section (see [`SyncAuthSettings::secrets`]).
    pub fn validate(&self) -> Result<(), String> {
        self.secrets().map(|_| ())
    }
}

/// The `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain, PEM (leaf first).
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to; enables mTLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse the handshake without a valid client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Sync requests need a client certificate whose CN or a SAN equals the machine id in
    /// the URL; 401 otherwise (needs `client_ca`).
    #[serde(default)]
    pub bind_identity: bool,
}

impl TlsSettings {
    /// Checks that the mTLS options have a CA.
    pub fn validate(&self) -> Result<(), String> {
        if self.client_ca.is_none() && (self.require_client_cert || self.bind_identity) {
            return Err("tls.require_client_cert and tls.bind_identity need tls.client_ca".into());
        }
        Ok(())
    }
}

/// The `[metrics]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// Require an admin bearer token (any role) to scrape: the output names plugins and
    /// shows traffic volumes. Off by default, as for most exporters; with
    /// `admin.listen` set, `/metrics` is on the admin listener only.
    pub require_token: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { enabled: true, require_token: false }
    }
}
