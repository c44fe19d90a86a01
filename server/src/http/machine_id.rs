//! The machine id of a sync URL: one percent-encoded path segment, decoded with
//! `percent-encoding` and validated by [`MachineId::parse`] (charset, length, reserved names;
//! reference §1.3).

use dasher_sdk::names::{MachineId, NameError};

/// Why a machine id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MachineIdError {
    /// Not UTF-8 once percent-decoded.
    #[error("machine id is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// Decoded, but not an acceptable id.
    #[error(transparent)]
    Invalid(#[from] NameError),
}

/// Validates a raw (possibly percent-encoded) path segment and returns the machine id.
pub fn parse_machine_id(raw: &str, max_bytes: usize) -> Result<MachineId, MachineIdError> {
    // Decoding never lengthens a segment: refuse absurd input before allocating for it.
    if raw.len() > max_bytes.saturating_mul(3) {
        return Err(NameError::TooLong { what: "machine id", max: max_bytes }.into());
    }
    // A stray '%' is passed through undecoded, and then refused as a character.
    let id = percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| MachineIdError::BadEncoding)?;
    Ok(MachineId::parse(&id, max_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_custom_ids() {
        for id in ["50C7E1EB-2EF5-42D4-A084-A7966FC45A95", "mac-042.corp", "C02XK1ABCDEF", "user@host", "a"] {
            assert_eq!(parse_machine_id(id, 256).unwrap().as_str(), id);
        }
        assert_eq!(parse_machine_id("a%2Db", 256).unwrap().as_str(), "a-b");
    }

    #[test]
    fn refuses_hostile_ids() {
        let invalid = |raw: &str| match parse_machine_id(raw, 256) {
            Err(MachineIdError::Invalid(e)) => e,
            other => panic!("{raw:?}: {other:?}"),
        };
        assert_eq!(invalid(""), NameError::Empty("machine id"));
        assert!(matches!(invalid(".."), NameError::BadCharacter { .. }));
        assert!(matches!(invalid("a%2Fb"), NameError::BadCharacter { .. }));
        assert!(matches!(invalid("a%00b"), NameError::BadCharacter { .. }));
        assert!(matches!(invalid("a b"), NameError::BadCharacter { .. }));
        assert_eq!(invalid(&"x".repeat(10_000)), NameError::TooLong { what: "machine id", max: 256 });
        for reserved in ["global", ".", "host:B", "host%3AB", "plugin-host:B"] {
            assert!(matches!(invalid(reserved), NameError::Reserved { .. }), "{reserved}");
        }
        for bad in ["%zz", "a%", "a%4"] {
            assert!(matches!(invalid(bad), NameError::BadCharacter { .. }), "{bad}");
        }
        assert_eq!(parse_machine_id("%ff%fe", 256), Err(MachineIdError::BadEncoding));
    }
}
