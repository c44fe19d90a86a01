//! Console sessions: a random 32-byte id in the `dasher_session` cookie; the server keeps
//! `{name, role, created_unix, expires_unix, via}` in the store's key/value space
//! ([`SERVER_KV_NAMESPACE`], key `ui-session:<sha256 hex of the id>`), so every replica
//! sharing the store knows it, and a stolen database does not hold usable cookies.
//!
//! A session expires after `[ui] session_ttl_secs`; signing out deletes it. A token-based
//! session is only as strong as its token: if the token is removed from the configuration,
//! or its role lowered, the session follows at its next request.

use super::cookies;
use crate::config::Role;
use crate::http::admin::auth::{AdminAuth, Identity};
use dasher_store::{SERVER_KV_NAMESPACE, Store, StoreError};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// The cookie's name.
pub const COOKIE: &str = "dasher_session";
const KEY_PREFIX: &str = "ui-session:";
const ID_BYTES: usize = 32;

/// What the server keeps about a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Token (or identity) name.
    pub name: String,
    /// Role at sign-in.
    pub role: Role,
    /// Signed in at (Unix seconds).
    pub created_unix: i64,
    /// Expires at (Unix seconds).
    pub expires_unix: i64,
    /// How the user signed in (`token` or `oidc`).
    pub via: String,
}

impl Session {
    /// The admin identity of this session.
    pub fn identity(&self) -> Identity {
        Identity { name: self.name.clone(), role: self.role }
    }
}

fn kv_key(id: &str) -> String {
    format!("{KEY_PREFIX}{}", crate::credentials::sha256_hex(id))
}

fn well_formed(id: &str) -> bool {
    id.len() == 2 * ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Starts a session for `who`; returns the cookie value (the id, never stored in clear).
pub async fn create(store: &dyn Store, who: &Identity, ttl_secs: u64, now: i64) -> Result<String, StoreError> {
    create_via(store, who, ttl_secs, now, "token").await
}

/// [`create`] for a sign-in made `via` another way (`oidc`).
pub async fn create_via(
    store: &dyn Store,
    who: &Identity,
    ttl_secs: u64,
    now: i64,
    via: &str,
) -> Result<String, StoreError> {
    let id = super::random_hex::<ID_BYTES>();
    let session = Session {
        name: who.name.clone(),
        role: who.role,
        created_unix: now,
        expires_unix: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
        via: via.into(),
    };
    let value = serde_json::to_vec(&session).expect("session serializes");
    store.kv_put(SERVER_KV_NAMESPACE, &kv_key(&id), &value).await?;
    Ok(id)
}

/// The live session named by the request's cookie, if any. Expired (deleted on the way),
/// unknown, or malformed ids give `None`; so does a token session whose token is gone.
pub async fn lookup(
    store: &dyn Store,
    auth: &AdminAuth,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let Some(id) = cookies::get(headers, COOKIE).filter(|id| well_formed(id)) else {
        return Ok(None);
    };
    let key = kv_key(id);
    let Some(raw) = store.kv_get(SERVER_KV_NAMESPACE, &key).await? else {
        return Ok(None);
    };
    let Ok(mut session) = serde_json::from_slice::<Session>(&raw) else {
        tracing::warn!("unreadable console session record; deleting it");
        store.kv_delete(SERVER_KV_NAMESPACE, &key).await?;
        return Ok(None);
    };
    if session.expires_unix <= now {
        store.kv_delete(SERVER_KV_NAMESPACE, &key).await?;
        return Ok(None);
    }
    if session.via == "token" {
        match auth.role_of(&session.name) {
            None => return Ok(None),
            Some(role) => session.role = session.role.min(role),
        }
    }
    Ok(Some(session))
}

/// Ends the request's session (if any).
pub async fn delete(store: &dyn Store, headers: &HeaderMap) -> Result<(), StoreError> {
    if let Some(id) = cookies::get(headers, COOKIE).filter(|id| well_formed(id)) {
        store.kv_delete(SERVER_KV_NAMESPACE, &kv_key(id)).await?;
    }
    Ok(())
}

/// The `Set-Cookie` value that carries a new session id.
pub fn set_cookie(id: &str, ttl_secs: u64, secure: bool) -> String {
    cookies::set(COOKIE, id, Some(ttl_secs), secure)
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    cookies::set(COOKIE, "", Some(0), secure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminSettings, TokenConfig};
    use http::header;

    fn headers(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("{COOKIE}={id}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn sessions_live_expire_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let spec: dasher_store::StoreSpec = format!("redb:{}", dir.path().join("s.redb").display()).parse().unwrap();
        let store = dasher_store::connect(&spec).await.unwrap();
        let settings = AdminSettings {
            listen: None,
            tokens: vec![TokenConfig {
                name: "ed".into(),
                role: Role::RulesEditor,
                sha256: crate::credentials::sha256_hex("e"),
            }],
        };
        let auth = AdminAuth::new(&settings, Some("root")).unwrap();
        let ed = Identity { name: "ed".into(), role: Role::RulesEditor };
        let id = create(store.as_ref(), &ed, 60, 1000).await.unwrap();
        assert!(well_formed(&id));
        // The id itself is not what the store holds.
        assert!(store.kv_get(SERVER_KV_NAMESPACE, &format!("{KEY_PREFIX}{id}")).await.unwrap().is_none());
        let s = lookup(store.as_ref(), &auth, &headers(&id), 1059).await.unwrap().expect("live");
        assert_eq!((s.name.as_str(), s.role, s.expires_unix), ("ed", Role::RulesEditor, 1060));
        assert!(lookup(store.as_ref(), &auth, &headers(&"0".repeat(64)), 1000).await.unwrap().is_none());
        assert!(lookup(store.as_ref(), &auth, &headers("not-hex"), 1000).await.unwrap().is_none());
        // Expired: gone, and deleted from the store.
        assert!(lookup(store.as_ref(), &auth, &headers(&id), 1060).await.unwrap().is_none());
        assert!(store.kv_get(SERVER_KV_NAMESPACE, &kv_key(&id)).await.unwrap().is_none());
        // Sign-out deletes.
        let id = create(store.as_ref(), &ed, 60, 1000).await.unwrap();
        delete(store.as_ref(), &headers(&id)).await.unwrap();
        assert!(lookup(store.as_ref(), &auth, &headers(&id), 1001).await.unwrap().is_none());
        // A session of a token no longer configured is refused.
        let gone = Identity { name: "gone".into(), role: Role::Admin };
        let id = create(store.as_ref(), &gone, 60, 1000).await.unwrap();
        assert!(lookup(store.as_ref(), &auth, &headers(&id), 1001).await.unwrap().is_none());
        // A role lowered in the configuration lowers the session.
        let high = Identity { name: "ed".into(), role: Role::Admin };
        let id = create(store.as_ref(), &high, 60, 1000).await.unwrap();
        let s = lookup(store.as_ref(), &auth, &headers(&id), 1001).await.unwrap().unwrap();
        assert_eq!(s.role, Role::RulesEditor);
    }
}
