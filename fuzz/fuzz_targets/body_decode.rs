//! Request-body decoding (`dasher_server::http::body::decode_body`) for every Content-Encoding
//! a client may declare, truthfully or not. The first byte picks the header; the rest is the
//! body. Must never panic, and never return more than the inflated-size limit.
#![no_main]

use dasher_server::http::body::{BodyError, decode_body};
use libfuzzer_sys::fuzz_target;

/// Small so that inflating past it is cheap to reach.
const MAX_INFLATED_BYTES: usize = 64 * 1024;

const ENCODINGS: [Option<&str>; 10] = [
    None,
    Some(""),
    Some("identity"),
    Some("none"),
    Some("deflate"),
    Some("zlib"),
    Some("gzip"),
    Some(" GZIP "),
    Some("x-gzip"),
    Some("br"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let encoding = ENCODINGS[usize::from(selector) % ENCODINGS.len()];
    match decode_body(encoding, body, MAX_INFLATED_BYTES) {
        Ok(out) => assert!(out.len() <= MAX_INFLATED_BYTES.max(body.len()), "{} bytes out", out.len()),
        Err(BodyError::UnsupportedEncoding(_)) => assert_eq!(encoding, Some("br")),
        Err(BodyError::TooLargeInflated(n)) => assert_eq!(n, MAX_INFLATED_BYTES),
        Err(BodyError::Corrupt(_)) => {}
    }
});
