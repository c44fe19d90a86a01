//! Admin API authentication and roles. Tokens are configured by their SHA-256 (never in
//! clear) with a role; the legacy single `admin_token` (or the generated
//! `data/admin.token`) is an `admin`-role token named `admin_token`. A presented bearer
//! token is hashed and compared with every configured hash in constant time ([`subtle`]).
//! This module decides who may do what; it must never log a presented token.
//!
//! Roles, each including the ones before it:
//! - `read-only`: every `GET`;
//! - `rules-editor`: also rules, rule sets, host tags, clean-sync requests and proposals;
//! - `admin`: everything, including plugin reload and rollback. Any write route not named
//!   above needs `admin`, so a new endpoint is closed by default.

use crate::http::error::ApiError;
use http::{HeaderMap, Method, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// SHA-256 of `token` as 64 lowercase hex digits (what the config stores).
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into a digest.
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 64 hexadecimal digits (the SHA-256 of the token; see `dasher token hash`)".into());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// True if `presented` hashes to one of `hashes`; every hash is compared, in constant time.
pub fn matches_any(presented: &[u8], hashes: &[[u8; 32]]) -> bool {
    let digest: [u8; 32] = Sha256::digest(presented).into();
    hashes.iter().fold(subtle::Choice::from(0), |acc, h| acc | digest.ct_eq(h)).into()
}

/// Who a request was authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Token name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// The configured tokens, ready to check.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    tokens: Vec<(String, Role, [u8; 32])>,
}

impl AdminAuth {
    /// From the `[admin]` tokens plus the legacy single token (an `admin`).
    pub fn new(settings: &AdminSettings, legacy_token: Option<&str>) -> Result<AdminAuth, String> {
        settings.validate()?;
        let mut tokens = Vec::with_capacity(settings.tokens.len() + 1);
        if let Some(t) = legacy_token.filter(|t| !t.is_empty()) {
            tokens.push(("admin_token".to_owned(), Role::Admin, Sha256::digest(t.as_bytes()).into()));
        }
        for t in &settings.tokens {
            tokens.push((t.name.clone(), t.role, parse_sha256_hex(&t.sha256)?));
        }
        Ok(AdminAuth { tokens })
    }

    /// The identity of the bearer token in `headers`: 401 if missing or unknown. Every
    /// configured hash is compared (constant time), so timing does not tell which matched.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Missing)?;
        // RFC 7235 §2.1: the scheme is case-insensitive and followed by one or more spaces.
        let (scheme, token) = value.trim_start().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<usize> = None;
        for (i, (_, _, hash)) in self.tokens.iter().enumerate() {
            if bool::from(digest.ct_eq(hash)) && found.is_none() {
                found = Some(i);
            }
        }
        let (name, role, _) = &self.tokens[found.ok_or(AuthError::Unknown)?];
        Ok(Identity { name: name.clone(), role: *role })
    }

    /// Authenticates and checks that the role suffices for `method` on `path`.
    pub fn authorize(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let who = self.authenticate(headers)?;
        let needed = required_role(method, path);
        if who.role < needed {
            return Err(AuthError::Forbidden { name: who.name, role: who.role, needed });
        }
        Ok(who)
    }
}

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// A token that matches no configured hash.
    #[error("unknown bearer token")]
    Unknown,
    /// A known token whose role is too low.
    #[error("token {name:?} has role {role}; this request needs role {needed}")]
    Forbidden {
        /// Token name.
        name: String,
        /// Its role.
        role: Role,
        /// The role needed.
        needed: Role,
    },
}

impl AuthError {
    /// The `dasher_auth_failures` reason label.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "admin_missing",
            AuthError::Unknown => "admin_unknown",
            AuthError::Forbidden { .. } => "admin_role",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Unknown => ApiError::Unauthorized,
            AuthError::Forbidden { .. } => ApiError::Forbidden(e.to_string()),
        }
    }
}

/// The least role that may call `method` on `path` (an `/api/v1/...` path or `/metrics`).
pub fn required_role(method: &Method, path: &str) -> Role {
    if method == Method::GET || method == Method::HEAD {
        return Role::ReadOnly;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "rules" | "rule-sets" | "proposals", ..] => Role::RulesEditor,
        ["api", "v1", "hosts", _, "tags" | "clean-sync"] => Role::RulesEditor,
        _ => Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn roles_gate_routes() {
        let settings = AdminSettings {
            listen: None,
            tokens: vec![
                TokenConfig { name: "viewer".into(), role: Role::ReadOnly, sha256: sha256_hex("v-secret") },
                TokenConfig { name: "editor".into(), role: Role::RulesEditor, sha256: sha256_hex("e-secret") },
            ],
        };
        let auth = AdminAuth::new(&settings, Some("root-secret")).unwrap();
        let check = |t: &str, m: Method, p: &str| auth.authorize(&m, p, &headers(t)).map(|i| i.name);
        assert_eq!(check("v-secret", Method::GET, "/api/v1/rules").unwrap(), "viewer");
        assert!(matches!(check("v-secret", Method::POST, "/api/v1/rules"), Err(AuthError::Forbidden { .. })));
        assert_eq!(check("e-secret", Method::POST, "/api/v1/rules").unwrap(), "editor");
        assert_eq!(check("e-secret", Method::PUT, "/api/v1/hosts/m1/tags").unwrap(), "editor");
        assert_eq!(check("e-secret", Method::POST, "/api/v1/proposals/7/approve").unwrap(), "editor");
        let err = check("e-secret", Method::POST, "/api/v1/plugins/reload").unwrap_err();
        assert!(err.to_string().contains("needs role admin"), "{err}");
        assert_eq!(check("root-secret", Method::POST, "/api/v1/plugins/reload").unwrap(), "admin_token");
        assert!(matches!(check("nope", Method::GET, "/api/v1/rules"), Err(AuthError::Unknown)));
        assert!(matches!(auth.authorize(&Method::GET, "/api/v1/rules", &HeaderMap::new()), Err(AuthError::Missing)));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let auth = AdminAuth::new(&AdminSettings::default(), Some("root-secret")).unwrap();
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            auth.authenticate(&h).map(|i| i.name)
        };
        for ok in ["Bearer root-secret", "bearer root-secret", "BEARER root-secret", "bEaReR   root-secret "] {
            assert_eq!(with(ok).unwrap(), "admin_token", "{ok:?}");
        }
        for missing in ["Basic root-secret", "Bearerroot-secret", "Bearer", "root-secret"] {
            assert!(matches!(with(missing), Err(AuthError::Missing)), "{missing:?}");
        }
        assert!(matches!(with("bearer other"), Err(AuthError::Unknown)));
    }

    #[test]
    fn bad_hashes_are_named() {
        let settings = AdminSettings {
            listen: None,
            tokens: vec![TokenConfig { name: "x".into(), role: Role::Admin, sha256: "abc".into() }],
        };
        let err = settings.validate().unwrap_err();
        assert!(err.contains("admin.tokens[0].sha256") && err.contains("64 hexadecimal"), "{err}");
        assert_eq!(parse_sha256_hex(&sha256_hex("t")).unwrap(), <[u8; 32]>::from(Sha256::digest(b"t")));
        assert!(matches_any(b"t", &[[0; 32], parse_sha256_hex(&sha256_hex("t")).unwrap()]));
        assert!(!matches_any(b"u", &[parse_sha256_hex(&sha256_hex("t")).unwrap()]));
    }
}
