//! Admin API authentication and roles. Tokens are configured by their SHA-256 (never in
//! clear) with a role; the legacy single `admin_token` (or the generated
//! `data/admin.token`) is an `admin`-role token named `admin_token`. A presented bearer
//! token is hashed and compared with every configured hash in constant time ([`subtle`]).
//! This module decides who may do what; it must never log a presented token.
//!
//! Roles, each including the ones before it:
//! - `read-only`: every `GET`;
//! - `rules-editor`: also rules, rule sets, host tags, clean-sync requests and proposals;
//! - `admin`: everything, including plugin reload and rollback.
//!
//! Each route's role is in the one route table, [`super::ROUTES`].

use crate::config::{AdminSettings, Role};
use crate::credentials::parse_sha256_hex;
use crate::http::error::ApiError;
use http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who a request was authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Token name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Identity {
    /// Checks that this identity's role is at least `needed`.
    pub fn may(&self, needed: Role) -> Result<(), AuthError> {
        if self.role < needed {
            return Err(AuthError::Forbidden { name: self.name.clone(), role: self.role, needed });
        }
        Ok(())
    }
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
        self.authenticate_token(token.trim())
    }

    /// The identity of a presented token (e.g. typed into the console's sign-in form): 401
    /// if unknown; compared like [`Self::authenticate`].
    pub fn authenticate_token(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
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

    /// The role of the configured token named `name`, if there is one (a console session
    /// checks that its token still exists).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.tokens.iter().find(|(n, _, _)| n == name).map(|(_, role, _)| *role)
    }

    /// Authenticates and checks that the token's role is at least `needed` (the route's,
    /// from [`super::ROUTES`]).
    pub fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<Identity, AuthError> {
        let who = self.authenticate(headers)?;
        who.may(needed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;
    use crate::credentials::sha256_hex;
    use http::Method;

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
        let check = |t: &str, m: Method, p: &str| {
            let (route, _) = super::super::find(&m, p).expect("a route");
            auth.authorize(&headers(t), route.role).map(|i| i.name)
        };
        assert_eq!(check("v-secret", Method::GET, "/api/v1/rules").unwrap(), "viewer");
        assert!(matches!(check("v-secret", Method::POST, "/api/v1/rules"), Err(AuthError::Forbidden { .. })));
        assert_eq!(check("e-secret", Method::POST, "/api/v1/rules").unwrap(), "editor");
        assert_eq!(check("e-secret", Method::PUT, "/api/v1/hosts/m1/tags").unwrap(), "editor");
        assert_eq!(check("e-secret", Method::POST, "/api/v1/proposals/7/approve").unwrap(), "editor");
        let err = check("e-secret", Method::POST, "/api/v1/plugins/reload").unwrap_err();
        assert!(err.to_string().contains("needs role admin"), "{err}");
        assert_eq!(check("root-secret", Method::POST, "/api/v1/plugins/reload").unwrap(), "admin_token");
        assert!(matches!(check("nope", Method::GET, "/api/v1/rules"), Err(AuthError::Unknown)));
        assert!(matches!(auth.authorize(&HeaderMap::new(), Role::ReadOnly), Err(AuthError::Missing)));
        assert_eq!(check("v-secret", Method::HEAD, "/api/v1/hosts/m1").unwrap(), "viewer", "HEAD is a GET");
        assert!(matches!(
            check("e-secret", Method::POST, "/api/v1/maintenance/compact-history"),
            Err(AuthError::Forbidden { .. })
        ));
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
    }
}
