//! Headers on every console response: a Content-Security-Policy that allows only our own
//! scripts and styles (no inline script or style anywhere), no framing, no MIME sniffing,
//! no referrer outside the site, and no caching of pages (static files are cached by hash).

use http::{HeaderMap, HeaderValue, header};

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Adds the security headers; pages (not `static`) also get `Cache-Control: no-store`.
pub fn apply(headers: &mut HeaderMap, is_static: bool) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_static || !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_not_cached_and_static_files_keep_theirs() {
        let mut h = HeaderMap::new();
        apply(&mut h, false);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self';"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
        apply(&mut h, true);
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        // A static 404 (no cache header of its own) is not cached.
        let mut h = HeaderMap::new();
        apply(&mut h, true);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(!CSP.contains("unsafe"), "no unsafe-inline or unsafe-eval");
    }
}
