//! Rule-download cursors: opaque strings (reference §5.3) carrying everything needed to
//! serve the next page from the same snapshot, so any replica can serve any page.
//!
//! A cursor is `d2.PAYLOAD.TAG`: the payload is the [`Cursor`] as base64url JSON (it names
//! the machine it was issued to), the tag an HMAC-SHA256 over `d2.PAYLOAD` under the server's
//! cursor key ([`CursorSigner`]). The key is kept in the store ([`SERVER_KV_NAMESPACE`]), so
//! every replica shares it and it survives restarts. Must never: hand out or accept a cursor
//! whose tag was not checked (in constant time) first.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dasher_sdk::domain::RuleKey;
use dasher_store::{ChangePos, SERVER_KV_NAMESPACE, Store, StoreError};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Where a download stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version ([`Cursor::VERSION`]).
    pub v: u8,
    /// The machine the cursor was issued to.
    pub machine: String,
    /// Snapshot: the rule version every page is read at.
    pub at: u64,
    /// Rule sets, in precedence order.
    pub sets: Vec<String>,
    /// Where the next page starts.
    pub pos: Position,
    /// Rules sent so far.
    pub sent: u64,
}

/// The two ways of walking the rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// Full set: set index and last key emitted in that set.
    Full {
        /// Index into `sets`.
        set: usize,
        /// Last key of that set already handled.
        after: Option<RuleKey>,
    },
    /// Changes since the acknowledged version: last change-log position handled.
    Delta {
        /// Last handled position.
        after: ChangePos,
    },
}

/// Why a cursor string was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadCursor {
    /// Not a cursor of this format (garbage, too long, or an unsigned cursor of an older
    /// server version).
    #[error("cursor is not in this server's format")]
    Format,
    /// The tag does not match the payload: edited, or signed under another key.
    #[error("cursor signature does not match (it was altered or not issued by this server)")]
    Signature,
    /// Signed, but its content is inconsistent (a bug, or a key that leaked).
    #[error("cursor content is invalid")]
    Content,
}

/// Format prefix; `d1.` cursors were unsigned and are refused.
const PREFIX: &str = "d2.";
/// Longest cursor string accepted (a full cursor of 64 long set names is far below).
const MAX_CURSOR_BYTES: usize = 64 * 1024;
/// Bytes of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;

impl Cursor {
    /// The format version this server writes and accepts.
    pub const VERSION: u8 = 2;
}

/// Signs and checks cursors with the server's key (HMAC-SHA256). Built once at start.
#[derive(Clone)]
pub struct CursorSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner(..)")
    }
}

impl CursorSigner {
    /// Bytes of the cursor key.
    pub const KEY_BYTES: usize = 32;
    /// The key's name in [`SERVER_KV_NAMESPACE`].
    pub const KEY_NAME: &str = "cursor-hmac-sha256-key";

    /// A signer with `key` (exactly [`Self::KEY_BYTES`] bytes).
    pub fn new(key: &[u8]) -> Result<CursorSigner, StoreError> {
        if key.len() != Self::KEY_BYTES {
            return Err(StoreError::Corrupt {
                key: format!("{SERVER_KV_NAMESPACE}/{}", Self::KEY_NAME),
                detail: format!("cursor key is {} bytes, expected {}", key.len(), Self::KEY_BYTES),
            });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        Ok(CursorSigner { mac })
    }

    /// The store's cursor key, created (random) by the first server to start. Racing replicas
    /// all end with the one key [`Store::kv_put_if_absent`] kept.
    pub async fn load(store: &dyn Store) -> Result<CursorSigner, StoreError> {
        let candidate: [u8; Self::KEY_BYTES] = rand::random();
        let key = store.kv_put_if_absent(SERVER_KV_NAMESPACE, Self::KEY_NAME, &candidate).await?;
        CursorSigner::new(&key)
    }

    /// The cursor as a signed, opaque, URL-safe string.
    pub fn encode(&self, cursor: &Cursor) -> String {
        self.seal(&serde_json::to_vec(cursor).expect("cursor serializes"))
    }

    /// Signs raw payload bytes into a cursor string ([`Self::encode`] is this over the
    /// cursor's JSON; fuzzing uses it to reach the payload parser).
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut s = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = self.tag(&s);
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(tag));
        s
    }

    /// Checks the tag (constant time), then parses the payload.
    pub fn decode(&self, s: &str) -> Result<Cursor, BadCursor> {
        if s.len() > MAX_CURSOR_BYTES {
            return Err(BadCursor::Format);
        }
        let (signed, tag_b64) = s.rsplit_once('.').ok_or(BadCursor::Format)?;
        let payload_b64 = signed.strip_prefix(PREFIX).ok_or(BadCursor::Format)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| BadCursor::Format)?;
        if tag.len() != TAG_BYTES {
            return Err(BadCursor::Format);
        }
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| BadCursor::Signature)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| BadCursor::Content)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| BadCursor::Content)?;
        if c.v != Cursor::VERSION {
            return Err(BadCursor::Content);
        }
        if let Position::Full { set, .. } = c.pos
            && set > c.sets.len()
        {
            return Err(BadCursor::Content);
        }
        Ok(c)
    }

    fn tag(&self, signed: &str) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::wire::RuleType;

    fn cursor() -> Cursor {
        Cursor {
            v: Cursor::VERSION,
            machine: "m1".into(),
            at: 42,
            sets: vec!["host:m1".into(), "global".into()],
            pos: Position::Full {
                set: 1,
                after: Some(RuleKey { rule_type: RuleType::TeamId, identifier: "A".into() }),
            },
            sent: 1000,
        }
    }

    fn signer(byte: u8) -> CursorSigner {
        CursorSigner::new(&[byte; CursorSigner::KEY_BYTES]).unwrap()
    }

    /// Replaces the payload of `s` by `payload`, keeping the old tag.
    fn with_payload(s: &str, payload: &serde_json::Value) -> String {
        let tag = s.rsplit_once('.').unwrap().1;
        format!("{PREFIX}{}.{tag}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap()))
    }

    #[test]
    fn round_trips() {
        let (s, c) = (signer(7), cursor());
        assert_eq!(s.decode(&s.encode(&c)).unwrap(), c);
        let delta = Cursor { pos: Position::Delta { after: ChangePos { version: 3, seq: u32::MAX } }, ..c };
        assert_eq!(s.decode(&s.encode(&delta)).unwrap(), delta);
    }

    #[test]
    fn refuses_malformed_and_unsigned_cursors() {
        let s = signer(7);
        let unsigned_v1 = format!(
            "d1.{}",
            URL_SAFE_NO_PAD.encode(br#"{"v":1,"at":1,"sets":[],"pos":{"Full":{"set":0,"after":null}},"sent":0}"#)
        );
        let long = format!("{PREFIX}{}", "A".repeat(MAX_CURSOR_BYTES));
        for bad in ["", "d2", "d2.", "d2..", "d2.e30", "d2.e30.!!!", "d2.e30.AAAA", "{\"at\":1}", &unsigned_v1, &long] {
            assert_eq!(s.decode(bad).unwrap_err(), BadCursor::Format, "{bad}");
        }
    }

    #[test]
    fn refuses_edited_payloads_and_other_keys() {
        let (s, c) = (signer(7), cursor());
        let good = s.encode(&c);
        let mut edited = serde_json::to_value(&c).unwrap();
        edited["sets"] = serde_json::json!(["host:m1", "host:m2", "global"]);
        assert_eq!(s.decode(&with_payload(&good, &edited)).unwrap_err(), BadCursor::Signature, "sets");
        let mut edited = serde_json::to_value(&c).unwrap();
        edited["at"] = 41.into();
        assert_eq!(s.decode(&with_payload(&good, &edited)).unwrap_err(), BadCursor::Signature, "snapshot");
        let mut edited = serde_json::to_value(&c).unwrap();
        edited["machine"] = "m2".into();
        assert_eq!(s.decode(&with_payload(&good, &edited)).unwrap_err(), BadCursor::Signature, "machine");
        assert_eq!(signer(8).decode(&good).unwrap_err(), BadCursor::Signature, "another server's key");
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(s.decode(&flipped).is_err(), "a changed tag");
    }

    #[test]
    fn refuses_signed_but_inconsistent_content() {
        let s = signer(7);
        let bad_set = Cursor { pos: Position::Full { set: 3, after: None }, ..cursor() };
        assert_eq!(s.decode(&s.encode(&bad_set)).unwrap_err(), BadCursor::Content, "set index past the sets");
        let old_version = Cursor { v: 1, ..cursor() };
        assert_eq!(s.decode(&s.encode(&old_version)).unwrap_err(), BadCursor::Content);
        assert_eq!(s.decode(&s.seal(b"not json")).unwrap_err(), BadCursor::Content);
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(CursorSigner::new(&[1; 16]).is_err());
        assert!(CursorSigner::new(&[]).is_err());
    }
}
