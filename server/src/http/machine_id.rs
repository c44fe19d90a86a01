//! Machine ids: opaque, case-sensitive strings from the URL (reference §1.3). Never required
//! to be UUIDs; bounded in length and limited to a safe character set so they can be used
//! as store keys, log fields and rule-set names without escaping.

/// Why a machine id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MachineIdError {
    /// Empty.
    #[error("machine id is empty")]
    Empty,
    /// Too long.
    #[error("machine id is longer than {0} bytes")]
    TooLong(usize),
    /// Bad character or `..`.
    #[error("machine id contains {0}; allowed are letters, digits and . _ - : @ + ~ (no '..')")]
    BadCharacter(String),
    /// Bad percent-encoding.
    #[error("machine id is not valid percent-encoded UTF-8")]
    BadEncoding,
}

fn percent_decode(s: &str) -> Result<String, MachineIdError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(MachineIdError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| MachineIdError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| MachineIdError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| MachineIdError::BadEncoding)
}

/// Validates a raw (possibly percent-encoded) path segment and returns the machine id.
pub fn parse_machine_id(raw: &str, max_bytes: usize) -> Result<String, MachineIdError> {
    if raw.len() > max_bytes * 3 {
        return Err(MachineIdError::TooLong(max_bytes));
    }
    let id = percent_decode(raw)?;
    if id.is_empty() {
        return Err(MachineIdError::Empty);
    }
    if id.len() > max_bytes {
        return Err(MachineIdError::TooLong(max_bytes));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-:@+~".contains(*c))) {
        return Err(MachineIdError::BadCharacter(format!("{:?}", c)));
    }
    if id.contains("..") {
        return Err(MachineIdError::BadCharacter("'..'".into()));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_custom_ids() {
        for id in ["50C7E1EB-2EF5-42D4-A084-A7966FC45A95", "mac-042.corp", "C02XK1ABCDEF", "user@host", "a"] {
            assert_eq!(parse_machine_id(id, 256).unwrap(), id);
        }
        assert_eq!(parse_machine_id("a%2Db", 256).unwrap(), "a-b");
    }

    #[test]
    fn refuses_hostile_ids() {
        assert_eq!(parse_machine_id("", 256), Err(MachineIdError::Empty));
        assert!(matches!(parse_machine_id("..", 256), Err(MachineIdError::BadCharacter(_))));
        assert!(matches!(parse_machine_id("a%2Fb", 256), Err(MachineIdError::BadCharacter(_))));
        assert!(matches!(parse_machine_id("a%00b", 256), Err(MachineIdError::BadCharacter(_))));
        assert!(matches!(parse_machine_id("a b", 256), Err(MachineIdError::BadCharacter(_))));
        assert_eq!(parse_machine_id(&"x".repeat(10_000), 256), Err(MachineIdError::TooLong(256)));
        assert_eq!(parse_machine_id("%zz", 256), Err(MachineIdError::BadEncoding));
    }
}
