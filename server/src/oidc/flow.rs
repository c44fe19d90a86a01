//! The sign-in in flight between `/ui/oidc/start` and `/ui/oidc/callback`: `state`, `nonce`,
//! the PKCE verifier and the page to return to, kept in a short-lived signed cookie
//! (`dasher_oidc`, `Path=/ui/oidc`) instead of the store, so an unauthenticated visitor
//! starting sign-ins writes nothing server-side.
//!
//! The cookie is `o1.PAYLOAD.TAG`: base64url JSON and an HMAC-SHA256 over `o1.PAYLOAD` under a
//! key kept in the store ([`SERVER_KV_NAMESPACE`], shared by replicas, made by the first
//! server to need it). It binds the flow to the browser that started it: the callback's
//! `state` must equal the one in the cookie (login CSRF). Must never: accept a cookie whose
//! tag was not checked (constant time) first, or one past its `expires_unix`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dasher_store::{SERVER_KV_NAMESPACE, Store, StoreError};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Name of the flow cookie.
pub const COOKIE: &str = "dasher_oidc";
/// Path of the flow cookie (only the OIDC routes see it).
pub const COOKIE_PATH: &str = "/ui/oidc";
/// Longest flow cookie accepted.
pub const MAX_COOKIE_BYTES: usize = 4096;
const PREFIX: &str = "o1.";
const TAG_BYTES: usize = 32;

/// One sign-in in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The `state` sent to the identity provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Local `/ui/` path to land on once signed in.
    pub next: String,
    /// Unix seconds after which the flow is refused.
    pub expires_unix: u64,
}

/// Why a flow cookie was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFlow {
    /// Not a flow cookie at all, or too long.
    #[error("the sign-in cookie is malformed")]
    Format,
    /// Tag mismatch: not made by this server (or altered).
    #[error("the sign-in cookie was not issued by this server")]
    Signature,
    /// Older than the flow lifetime.
    #[error("the sign-in took too long")]
    Expired,
}

/// Seals and opens flow cookies.
#[derive(Clone)]
pub struct FlowSealer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for FlowSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSealer(..)")
    }
}

impl FlowSealer {
    /// Bytes of the key.
    pub const KEY_BYTES: usize = 32;
    /// The key's name in [`SERVER_KV_NAMESPACE`].
    pub const KEY_NAME: &str = "ui-oidc-flow-hmac-sha256-key";

    /// A sealer with `key` (exactly [`Self::KEY_BYTES`] bytes).
    pub fn new(key: &[u8]) -> Result<FlowSealer, StoreError> {
        if key.len() != Self::KEY_BYTES {
            return Err(StoreError::Corrupt {
                key: format!("{SERVER_KV_NAMESPACE}/{}", Self::KEY_NAME),
                detail: format!("OIDC flow key is {} bytes, expected {}", key.len(), Self::KEY_BYTES),
            });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        Ok(FlowSealer { mac })
    }

    /// The store's flow key, created (random) by the first server to need it; racing
    /// replicas all end with the one key [`Store::kv_put_if_absent`] kept.
    pub async fn load(store: &dyn Store) -> Result<FlowSealer, StoreError> {
        let candidate: [u8; Self::KEY_BYTES] = rand::random();
        let key = store.kv_put_if_absent(SERVER_KV_NAMESPACE, Self::KEY_NAME, &candidate).await?;
        FlowSealer::new(&key)
    }

    /// The flow as a cookie value (URL-safe, no `;` or `,`).
    pub fn seal(&self, flow: &Flow) -> String {
        let mut s = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(flow).expect("flow serializes")));
        let tag = self.tag(&s);
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(tag));
        s
    }

    /// Checks the tag (constant time) and the expiry at `now_unix`, then returns the flow.
    pub fn open(&self, cookie: &str, now_unix: u64) -> Result<Flow, BadFlow> {
        if cookie.len() > MAX_COOKIE_BYTES {
            return Err(BadFlow::Format);
        }
        let (signed, tag_b64) = cookie.rsplit_once('.').ok_or(BadFlow::Format)?;
        let payload_b64 = signed.strip_prefix(PREFIX).ok_or(BadFlow::Format)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| BadFlow::Format)?;
        if tag.len() != TAG_BYTES {
            return Err(BadFlow::Format);
        }
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| BadFlow::Signature)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| BadFlow::Format)?;
        let flow: Flow = serde_json::from_slice(&bytes).map_err(|_| BadFlow::Format)?;
        if now_unix >= flow.expires_unix {
            return Err(BadFlow::Expired);
        }
        Ok(flow)
    }

    fn tag(&self, signed: &str) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The `Set-Cookie` value carrying `sealed` for `max_age_secs` (`Secure` over TLS). `Lax`, not
/// `Strict`: the callback is a top-level navigation coming from the identity provider's site.
pub fn set_cookie(sealed: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={sealed}; HttpOnly; SameSite=Lax; Path={COOKIE_PATH}; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value deleting the flow cookie (a flow is used once).
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            state: "st".into(),
            nonce: "no".into(),
            verifier: "ve".into(),
            next: "/ui/plugins".into(),
            expires_unix: 1000,
        }
    }

    #[test]
    fn round_trips_until_expiry() {
        let s = FlowSealer::new(&[1; 32]).unwrap();
        let sealed = s.seal(&flow());
        assert!(!sealed.contains([';', ',', ' ', '=']), "a plain cookie value: {sealed}");
        assert_eq!(s.open(&sealed, 999).unwrap(), flow());
        assert_eq!(s.open(&sealed, 1000), Err(BadFlow::Expired));
    }

    #[test]
    fn refuses_other_keys_altered_payloads_and_junk() {
        let s = FlowSealer::new(&[1; 32]).unwrap();
        let sealed = s.seal(&flow());
        assert_eq!(FlowSealer::new(&[2; 32]).unwrap().open(&sealed, 0), Err(BadFlow::Signature));
        let tag = sealed.rsplit_once('.').unwrap().1;
        let mut later = flow();
        later.expires_unix = u64::MAX;
        let forged = format!("{PREFIX}{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&later).unwrap()));
        assert_eq!(s.open(&forged, 0), Err(BadFlow::Signature));
        for junk in ["", "o1.", "o1.x.y", "x.y", &"a".repeat(MAX_COOKIE_BYTES + 1)] {
            assert_eq!(s.open(junk, 0), Err(BadFlow::Format), "{junk:?}");
        }
        assert!(FlowSealer::new(&[0; 5]).is_err());
    }

    #[test]
    fn cookies_are_scoped_and_found() {
        let c = set_cookie("v", 600, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/ui/oidc"), "{c}");
        assert!(c.ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
