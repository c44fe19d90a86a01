//! Rule-download cursors: opaque strings (reference §5.3) carrying everything needed to
//! serve the next page from the same snapshot, so any replica can serve any page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dasher_sdk::domain::RuleKey;
use dasher_store::ChangePos;
use serde::{Deserialize, Serialize};

/// Where a download stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub v: u8,
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

/// A cursor this server could not have issued.
#[derive(Debug, thiserror::Error)]
#[error("cursor was not issued by this server")]
pub struct BadCursor;

const PREFIX: &str = "d1.";

impl Cursor {
    /// Encodes the cursor as an opaque URL-safe string.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursor serializes")))
    }

    /// Decodes a cursor string.
    pub fn decode(s: &str) -> Result<Cursor, BadCursor> {
        let b64 = s.strip_prefix(PREFIX).ok_or(BadCursor)?;
        if b64.len() > 64 * 1024 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| BadCursor)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| BadCursor)?;
        if c.v != 1 {
            return Err(BadCursor);
        }
        if let Position::Full { set, .. } = c.pos
            && set > c.sets.len()
        {
            return Err(BadCursor);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::wire::RuleType;

    #[test]
    fn round_trips_and_rejects_forgeries() {
        let c = Cursor {
            v: 1,
            at: 42,
            sets: vec!["host:x".into(), "global".into()],
            pos: Position::Full {
                set: 1,
                after: Some(RuleKey { rule_type: RuleType::TeamId, identifier: "A".into() }),
            },
            sent: 1000,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "p2", "d1.!!!", "d1.e30", "{\"at\":1}"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
