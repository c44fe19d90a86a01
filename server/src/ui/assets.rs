//! The console's static files, embedded in the binary and served at `/ui/static/NAME` with
//! an `ETag` of their content hash and immutable caching (pages link them as
//! `/ui/static/NAME?v=HASH`, so a new binary's files get new URLs).
//!
//! Vendored: htmx (`htmx.min.js`, 0BSD, `htmx.LICENSE`) and uPlot (`uPlot.iife.min.js`,
//! `uPlot.min.css`, MIT, `uPlot.LICENSE`), as published on npm. Ours: `dasher.css`,
//! `dasher.js`.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
pub struct Asset {
    /// File name (the URL's last segment).
    pub name: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// Content.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:literal) => {
        Asset { name: $name, content_type: $ty, bytes: include_bytes!(concat!("../../assets/", $name)) }
    };
}

/// Every embedded file.
pub static ASSETS: &[Asset] = &[
    asset!("htmx.min.js", "text/javascript; charset=utf-8"),
    asset!("htmx.LICENSE", "text/plain; charset=utf-8"),
    asset!("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("uPlot.min.css", "text/css; charset=utf-8"),
    asset!("uPlot.LICENSE", "text/plain; charset=utf-8"),
    asset!("dasher.css", "text/css; charset=utf-8"),
    asset!("dasher.js", "text/javascript; charset=utf-8"),
];

/// Content hashes (16 hex digits of SHA-256), in [`ASSETS`] order.
static HASHES: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| super::hex(&Sha256::digest(a.bytes)[..8])).collect());

fn index(name: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.name == name)
}

/// The URL of an embedded file, with its content hash (panics on an unknown name: a bug).
pub fn url(name: &str) -> String {
    let i = index(name).unwrap_or_else(|| panic!("no embedded asset {name}"));
    format!("/ui/static/{name}?v={}", HASHES[i])
}

/// Answers `GET /ui/static/NAME` (304 when `If-None-Match` has the hash).
pub fn serve(name: &str, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
    let i = index(name)?;
    let asset = &ASSETS[i];
    let etag = format!("\"{}\"", HASHES[i]);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(asset.bytes)));
        r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(asset.content_type));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.parse().expect("hex etag"));
    h.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=31536000, immutable"));
    Some(resp)
}
