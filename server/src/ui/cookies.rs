//! Reading the `Cookie` header and writing `Set-Cookie` for the console's cookies (always
//! `HttpOnly; SameSite=Strict; Path=/ui`, `Secure` over TLS).

use http::{HeaderMap, header};

/// The value of cookie `name` (the first one, if several `Cookie` headers or pairs name it).
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value; `max_age` `Some(0)` deletes the cookie, `None` makes a browser-session
/// cookie.
pub fn set(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut s = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/ui");
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_writes_flags() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; dasher_session=xyz".parse().unwrap());
        h.append(header::COOKIE, "b=\"2\"".parse().unwrap());
        assert_eq!(get(&h, "dasher_session"), Some("xyz"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "dasher"), None);
        assert_eq!(set("k", "v", Some(0), true), "k=v; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0; Secure");
        assert_eq!(set("k", "v", None, false), "k=v; HttpOnly; SameSite=Strict; Path=/ui");
    }
}
