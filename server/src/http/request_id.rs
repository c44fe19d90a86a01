//! Request ids: taken from the client's `X-Request-Id` when it is sane, otherwise made
//! here; recorded in the request's tracing span and echoed in the response header so a
//! log line and a client report can be matched.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header carrying the id both ways.
pub const HEADER: &str = "x-request-id";

/// Longest client-supplied id accepted.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The client's id if it is 1–128 visible ASCII characters from a conservative set
/// (letters, digits, `-_.:+=/`), so it is safe to log and echo; otherwise a new one.
pub fn from_header(value: Option<&http::HeaderValue>) -> String {
    value.and_then(|v| v.to_str().ok()).filter(|s| is_sane(s)).map(str::to_owned).unwrap_or_else(generate)
}

fn is_sane(s: &str) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:+=/".contains(&b))
}

/// A new id: a per-process random prefix and a counter, unique within the process and
/// very unlikely to collide across restarts.
pub fn generate() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        h.finish()
    });
    format!("{:08x}-{:06x}", prefix >> 32, NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let keep = http::HeaderValue::from_static("abc-123_X.y:z");
        assert_eq!(from_header(Some(&keep)), "abc-123_X.y:z");
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let v = http::HeaderValue::from_str(bad).unwrap();
            let got = from_header(Some(&v));
            assert_ne!(got, bad);
            assert!(is_sane(&got), "{got}");
        }
        assert_ne!(generate(), generate());
    }
}
