//! Request-body decoding: `Content-Encoding` (deflate = zlib!, zlib, gzip, none) with
//! sniffing when the header lies, and a bound on the inflated size checked *while*
//! inflating, so a decompression bomb costs at most `max_inflated_bytes` (reference §2.2).

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Inflates past the limit.
    #[error("request body inflates to more than {0} bytes")]
    TooLargeInflated(usize),
    /// Not valid in any supported encoding.
    #[error("request body is not valid {0} data and matches no other supported encoding")]
    Corrupt(String),
    /// An encoding we do not support.
    #[error("unsupported Content-Encoding {0:?} (supported: deflate, zlib, gzip, identity)")]
    UnsupportedEncoding(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Zlib,
    Gzip,
    RawDeflate,
    Identity,
}

fn inflate(codec: Codec, body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let limit = max as u64 + 1;
    let result = match codec {
        Codec::Zlib => ZlibDecoder::new(body).take(limit).read_to_end(&mut out),
        Codec::Gzip => MultiGzDecoder::new(body).take(limit).read_to_end(&mut out),
        Codec::RawDeflate => DeflateDecoder::new(body).take(limit).read_to_end(&mut out),
        Codec::Identity => {
            out.extend_from_slice(body);
            Ok(out.len())
        }
    };
    result.map_err(|e| BodyError::Corrupt(format!("{codec:?} ({e})")))?;
    if out.len() > max {
        return Err(BodyError::TooLargeInflated(max));
    }
    Ok(out)
}

fn sniff(body: &[u8]) -> Option<Codec> {
    match body {
        [0x78, b, ..] if (u16::from(0x78u8) << 8 | u16::from(*b)) % 31 == 0 => Some(Codec::Zlib),
        [0x1f, 0x8b, ..] => Some(Codec::Gzip),
        _ => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
            matches!(first, b'{' | b'[').then_some(Codec::Identity)
        }
    }
}

/// Decodes `body` per the `Content-Encoding` header value. Empty bodies are never
/// compressed. If the declared encoding fails, the bytes are sniffed (zlib `78 xx`, gzip
/// `1F 8B`, plain JSON); binary protobuf bodies are only accepted as declared.
pub fn decode_body(content_encoding: Option<&str>, body: &[u8], max_inflated: usize) -> Result<Vec<u8>, BodyError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let declared = match content_encoding.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") | Some("none") => Codec::Identity,
        Some("deflate") | Some("zlib") => Codec::Zlib,
        Some("gzip") | Some("x-gzip") => Codec::Gzip,
        Some(other) => return Err(BodyError::UnsupportedEncoding(other.chars().take(40).collect())),
    };
    // A body that looks compressed but was declared identity is decoded as what it is.
    let first_try = match (declared, sniff(body)) {
        (Codec::Identity, Some(c @ (Codec::Zlib | Codec::Gzip))) => c,
        _ => declared,
    };
    match inflate(first_try, body, max_inflated) {
        Ok(out) => Ok(out),
        Err(e @ BodyError::TooLargeInflated(_)) => Err(e),
        Err(first_err) => {
            let fallback = match sniff(body) {
                Some(c) if c != first_try => Some(c),
                _ if first_try == Codec::Zlib => Some(Codec::RawDeflate),
                _ => None,
            };
            match fallback {
                Some(c) => inflate(c, body, max_inflated).map_err(|e| match e {
                    BodyError::TooLargeInflated(n) => BodyError::TooLargeInflated(n),
                    _ => first_err,
                }),
                None if declared == Codec::Identity => Ok(body.to_vec()),
                None => Err(first_err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    const JSON: &[u8] = br#"{"serial_num":"C02X","client_mode":"MONITOR"}"#;

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }
    fn raw(b: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn check(encoding: Option<&str>, body: &[u8]) {
        assert_eq!(decode_body(encoding, body, 1 << 20).unwrap(), JSON, "encoding {encoding:?}");
    }

    #[test]
    fn decodes_every_declared_encoding() {
        check(Some("deflate"), &zlib(JSON));
        check(Some("zlib"), &zlib(JSON));
        check(Some("gzip"), &gzip(JSON));
        check(None, JSON);
        check(Some("identity"), JSON);
        check(Some("deflate"), &raw(JSON));
    }

    #[test]
    fn sniffs_when_the_header_lies() {
        check(Some("gzip"), &zlib(JSON));
        check(Some("deflate"), &gzip(JSON));
        check(None, &zlib(JSON));
        check(Some("deflate"), JSON);
        assert!(zlib(JSON).starts_with(&[0x78, 0x9c]));
    }

    #[test]
    fn rejects_garbage_truncation_and_unknown_encodings() {
        let mut truncated = zlib(JSON);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(decode_body(Some("deflate"), &truncated, 1 << 20), Err(BodyError::Corrupt(_))));
        assert!(matches!(decode_body(Some("gzip"), b"\x01\x02garbage", 1 << 20), Err(BodyError::Corrupt(_))));
        assert!(matches!(decode_body(Some("br"), JSON, 1 << 20), Err(BodyError::UnsupportedEncoding(_))));
        assert_eq!(decode_body(Some("deflate"), b"", 10).unwrap(), b"");
    }

    #[test]
    fn stops_decompression_bombs_at_the_limit() {
        let bomb = zlib(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100_000);
        assert_eq!(decode_body(Some("deflate"), &bomb, 1 << 20), Err(BodyError::TooLargeInflated(1 << 20)));
        assert_eq!(
            decode_body(Some("gzip"), &gzip(&vec![0; 10 << 20]), 1 << 20),
            Err(BodyError::TooLargeInflated(1 << 20))
        );
    }
}
