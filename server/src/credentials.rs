//! Credential hashes: tokens and secrets are configured as SHA-256 (never in clear) and a
//! presented credential is hashed and compared with every configured hash in constant time.
//! A leaf module: used by the config checks, the admin-token and the sync-secret checks.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_and_match() {
        assert_eq!(parse_sha256_hex(&sha256_hex("t")).unwrap(), <[u8; 32]>::from(Sha256::digest(b"t")));
        assert!(parse_sha256_hex("abc").unwrap_err().contains("64 hexadecimal"));
        assert!(matches_any(b"t", &[[0; 32], parse_sha256_hex(&sha256_hex("t")).unwrap()]));
        assert!(!matches_any(b"u", &[parse_sha256_hex(&sha256_hex("t")).unwrap()]));
    }
}
