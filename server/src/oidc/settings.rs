//! `[ui.oidc]`: the identity provider, this client's registration, and how a claim in the
//! ID token maps to a Dasher role. The client secret is never in the file itself: it is read
//! from `client_secret_file` or the environment variable `client_secret_env` at start.

use crate::config::Role;
use openidconnect::url::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Path of the callback route; `redirect_url` must end there.
pub const CALLBACK_PATH: &str = "/ui/oidc/callback";
/// Most values of the role claim looked at (Entra ID sends at most 200 groups in a token).
pub const MAX_CLAIM_VALUES: usize = 1000;

/// The `[ui.oidc]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Issuer URL (`https://…`); discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Client id registered at the identity provider.
    pub client_id: String,
    /// File holding the client secret (surrounding whitespace ignored).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The console's public callback URL, ending in `/ui/oidc/callback`, exactly as registered.
    pub redirect_url: String,
    /// Scopes requested besides `openid` (always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// ID-token claim whose values map to roles, e.g. `groups`, `roles`, or a dotted path into
    /// nested objects such as `realm_access.roles`.
    pub role_claim: String,
    /// Claim value → role; the highest role among the user's values wins.
    pub roles: BTreeMap<String, Role>,
    /// Extra CA certificates (PEM) trusted for the identity provider's TLS, besides the
    /// built-in public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds a sign-in may take between leaving for the identity provider and coming back.
    #[serde(default = "default_flow_ttl")]
    pub flow_ttl_secs: u64,
    /// Seconds the discovery document and signing keys are cached (refetched sooner when a
    /// token is signed by a key not in the cached set).
    #[serde(default = "default_discovery_ttl")]
    pub discovery_ttl_secs: u64,
    /// Seconds each request to the identity provider may take.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn default_flow_ttl() -> u64 {
    600
}
fn default_discovery_ttl() -> u64 {
    3600
}
fn default_timeout() -> u64 {
    10
}

impl OidcSettings {
    /// Checks the section; errors name the key (`ui.oidc.…`) and never show a secret.
    pub fn validate(&self) -> Result<(), String> {
        let issuer =
            Url::parse(&self.issuer).map_err(|e| format!("ui.oidc.issuer {:?} is not a URL: {e}", self.issuer))?;
        if issuer.scheme() != "https" || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(format!("ui.oidc.issuer {:?} must be an https:// URL without query or fragment", self.issuer));
        }
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return Err("ui.oidc.client_id must be 1 to 256 characters".into());
        }
        match (&self.client_secret_file, &self.client_secret_env) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err("set exactly one of ui.oidc.client_secret_file and ui.oidc.client_secret_env \
                     (the secret itself never goes in the configuration file)"
                    .into());
            }
        }
        let redirect = Url::parse(&self.redirect_url)
            .map_err(|e| format!("ui.oidc.redirect_url {:?} is not a URL: {e}", self.redirect_url))?;
        if !matches!(redirect.scheme(), "https" | "http") || redirect.path() != CALLBACK_PATH {
            return Err(format!(
                "ui.oidc.redirect_url {:?} must be the console's public URL of {CALLBACK_PATH}, \
                 e.g. https://dasher.example.com{CALLBACK_PATH}",
                self.redirect_url
            ));
        }
        if self.scopes.len() > 32 {
            return Err("ui.oidc.scopes lists more than 32 scopes".into());
        }
        for (i, s) in self.scopes.iter().enumerate() {
            if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                return Err(format!("ui.oidc.scopes[{i}] {s:?} is not a scope name"));
            }
        }
        if self.role_claim.is_empty() || self.role_claim.len() > 256 {
            return Err("ui.oidc.role_claim must be 1 to 256 characters, e.g. \"groups\"".into());
        }
        if self.roles.is_empty() {
            return Err(format!(
                "ui.oidc.roles is empty, so nobody could sign in; map values of the {:?} claim to roles, \
                 e.g. \"dasher-admins\" = \"admin\"",
                self.role_claim
            ));
        }
        if let Some((bad, _)) = self.roles.iter().find(|(k, _)| k.is_empty() || k.len() > 1024) {
            return Err(format!("ui.oidc.roles key {bad:?} must be 1 to 1024 characters"));
        }
        for (key, v, lo, hi) in [
            ("flow_ttl_secs", self.flow_ttl_secs, 60, 3600),
            ("discovery_ttl_secs", self.discovery_ttl_secs, 60, 86_400),
            ("request_timeout_secs", self.request_timeout_secs, 1, 120),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("ui.oidc.{key} must be between {lo} and {hi} (got {v})"));
            }
        }
        Ok(())
    }

    /// Reads the client secret from its file or environment variable. The error names where
    /// it looked, never what it found.
    pub fn read_client_secret(&self) -> Result<String, String> {
        let secret = match (&self.client_secret_file, &self.client_secret_env) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read ui.oidc.client_secret_file {}: {e}", path.display()))?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!("ui.oidc.client_secret_env names {var:?}, but that environment variable is not set")
            })?,
            (None, None) => return Err("ui.oidc has no client secret source".into()),
        };
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("the ui.oidc client secret is empty".into());
        }
        if secret.len() > 4096 {
            return Err("the ui.oidc client secret is longer than 4096 bytes".into());
        }
        Ok(secret.to_owned())
    }

    /// The highest role mapped from `claim` (a string or an array of strings), if any.
    pub fn role_for(&self, claim: Option<&Value>) -> Option<Role> {
        let values: Vec<&str> = match claim {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().take(MAX_CLAIM_VALUES).filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values.into_iter().filter_map(|v| self.roles.get(v).copied()).max()
    }
}

/// The value of `name` among `claims`: the key itself if present (claim names may contain dots,
/// e.g. Auth0's `https://example.com/groups`), otherwise a dotted path into nested objects
/// (Keycloak's `realm_access.roles`).
pub fn find_claim<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> OidcSettings {
        toml::from_str(
            r#"
            issuer = "https://idp.example.com/realms/corp"
            client_id = "dasher"
            client_secret_env = "DASHER_TEST_NEVER_SET"
            redirect_url = "https://dasher.example.com/ui/oidc/callback"
            role_claim = "groups"
            [roles]
            "it" = "read-only"
            "secops" = "rules-editor"
            "dasher-admins" = "admin"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let s = settings();
        s.validate().unwrap();
        assert_eq!(s.scopes, ["email", "profile"]);
        assert_eq!((s.flow_ttl_secs, s.discovery_ttl_secs, s.request_timeout_secs), (600, 3600, 10));
        let bad = |f: &dyn Fn(&mut OidcSettings), needle: &str| {
            let mut s = settings();
            f(&mut s);
            let err = s.validate().unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        };
        bad(&|s| s.issuer = "http://idp.example.com".into(), "ui.oidc.issuer");
        bad(&|s| s.issuer = "idp".into(), "ui.oidc.issuer");
        bad(&|s| s.client_id.clear(), "ui.oidc.client_id");
        bad(&|s| s.client_secret_file = Some("/x".into()), "exactly one");
        bad(&|s| s.client_secret_env = None, "exactly one");
        bad(&|s| s.redirect_url = "https://dasher.example.com/callback".into(), "ui.oidc.redirect_url");
        bad(&|s| s.scopes = vec!["a b".into()], "ui.oidc.scopes[0]");
        bad(&|s| s.roles.clear(), "nobody could sign in");
        bad(&|s| s.flow_ttl_secs = 0, "ui.oidc.flow_ttl_secs");
        bad(&|s| s.request_timeout_secs = 1000, "ui.oidc.request_timeout_secs");
        assert!(
            toml::from_str::<OidcSettings>("client_secret = \"x\"").unwrap_err().to_string().contains("client_secret")
        );
    }

    #[test]
    fn the_secret_comes_from_a_file_and_is_never_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret-value\n").unwrap();
        let mut s = settings();
        s.client_secret_env = None;
        s.client_secret_file = Some(path.clone());
        assert_eq!(s.read_client_secret().unwrap(), "s3cret-value");
        std::fs::write(&path, "  \n").unwrap();
        assert!(s.read_client_secret().unwrap_err().contains("empty"));
        s.client_secret_file = Some(dir.path().join("missing"));
        assert!(s.read_client_secret().unwrap_err().contains("client_secret_file"));
        let err = settings().read_client_secret().unwrap_err();
        assert!(err.contains("DASHER_TEST_NEVER_SET") && err.contains("not set"), "{err}");
    }

    #[test]
    fn the_highest_mapped_role_wins() {
        let s = settings();
        assert_eq!(s.role_for(Some(&json!(["x", "it", "dasher-admins", "secops"]))), Some(Role::Admin));
        assert_eq!(s.role_for(Some(&json!(["it", "secops"]))), Some(Role::RulesEditor));
        assert_eq!(s.role_for(Some(&json!("it"))), Some(Role::ReadOnly));
        assert_eq!(s.role_for(Some(&json!(["other", 3, null]))), None);
        assert_eq!(s.role_for(Some(&json!({"it": true}))), None);
        assert_eq!(s.role_for(None), None);
    }

    #[test]
    fn claims_are_found_by_name_or_dotted_path() {
        let claims = json!({
            "groups": ["a"],
            "https://example.com/groups": ["b"],
            "realm_access": {"roles": ["c"]},
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(find_claim(claims, "groups"), Some(&json!(["a"])));
        assert_eq!(find_claim(claims, "https://example.com/groups"), Some(&json!(["b"])));
        assert_eq!(find_claim(claims, "realm_access.roles"), Some(&json!(["c"])));
        assert_eq!(find_claim(claims, "realm_access.missing"), None);
        assert_eq!(find_claim(claims, "groups.x"), None);
    }
}
