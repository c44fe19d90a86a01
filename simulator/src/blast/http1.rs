//! The smallest HTTP/1.1 both ends of `blast` need: requests are prepared as whole byte strings
//! before the measured phase and written with one `write_all`; responses are read into one
//! reused buffer and parsed with `httparse` (status, `Content-Length` or chunked body,
//! `Connection: close`). The trivial target reads requests the same way. No allocation per
//! request on the steady path.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response (head + body) a blast connection accepts: a rule-download page of
/// thousands of rules fits many times over; anything larger is a broken peer.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Largest request the trivial target accepts.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
const MAX_HEADERS: usize = 32;

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// Connect, read or write failed, or the peer closed early.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
    /// The peer's bytes are not HTTP/1.1 we understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No complete answer within the timeout.
    #[error("timed out")]
    Timeout,
}

/// One fully prepared request: head and body, ready to write.
pub fn request_bytes(
    path: &str,
    authority: &str,
    user_agent: &str,
    content_type: &str,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\nuser-agent: ");
    out.extend_from_slice(user_agent.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    if let Some(ce) = content_encoding {
        out.extend_from_slice(b"\r\ncontent-encoding: ");
        out.extend_from_slice(ce.as_bytes());
    }
    out.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A keep-alive client connection with its read buffer.
pub struct ClientConn {
    stream: Option<TcpStream>,
    addr: std::net::SocketAddr,
    buf: Vec<u8>,
    body: Vec<u8>,
    timeout: Duration,
}

/// The parts of a response blast looks at.
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Body (de-chunked).
    pub body: &'a [u8],
}

impl ClientConn {
    /// A connection to `addr`, opened lazily (and again after the peer closes it).
    pub fn new(addr: std::net::SocketAddr, timeout: Duration) -> ClientConn {
        ClientConn { stream: None, addr, buf: Vec::with_capacity(16 << 10), body: Vec::new(), timeout }
    }

    /// Drops the connection (the next request opens a new one).
    pub fn reset(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    /// Sends `req` and reads the whole response.
    pub async fn round_trip(&mut self, req: &[u8]) -> Result<Response<'_>, Http1Error> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.round_trip_inner(req)).await {
            Ok(Ok((status, close))) => {
                if close {
                    self.stream = None;
                }
                Ok(Response { status, body: &self.body })
            }
            Ok(Err(e)) => {
                self.reset();
                Err(e)
            }
            Err(_) => {
                self.reset();
                Err(Http1Error::Timeout)
            }
        }
    }

    async fn round_trip_inner(&mut self, req: &[u8]) -> Result<(u16, bool), Http1Error> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(req).await?;
        // Head.
        let (status, head_len, framing, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let (framing, close) = framing_of(resp.headers, resp.version == Some(0))?;
                    break (status, n, framing, close);
                }
                Ok(httparse::Status::Partial) => read_more(stream, &mut self.buf, MAX_RESPONSE_BYTES).await?,
                Err(e) => return Err(Http1Error::Protocol(format!("bad response head: {e}"))),
            }
        };
        self.body.clear();
        let consumed = match framing {
            Framing::Length(n) => {
                if n > MAX_RESPONSE_BYTES {
                    return Err(Http1Error::Protocol(format!("response body of {n} bytes is too large")));
                }
                while self.buf.len() < head_len + n {
                    read_more(stream, &mut self.buf, MAX_RESPONSE_BYTES).await?;
                }
                self.body.extend_from_slice(&self.buf[head_len..head_len + n]);
                head_len + n
            }
            Framing::Chunked => loop {
                match dechunk(&self.buf[head_len..], &mut self.body)? {
                    Some(used) => break head_len + used,
                    None => read_more(stream, &mut self.buf, MAX_RESPONSE_BYTES).await?,
                }
            },
            Framing::UntilClose => {
                loop {
                    match stream.read_buf(&mut self.buf).await? {
                        0 => break,
                        _ if self.buf.len() > MAX_RESPONSE_BYTES => {
                            return Err(Http1Error::Protocol("response is too large".into()));
                        }
                        _ => {}
                    }
                }
                self.body.extend_from_slice(&self.buf[head_len..]);
                self.buf.len()
            }
        };
        self.buf.drain(..consumed);
        Ok((status, close || framing == Framing::UntilClose))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing_of(headers: &[httparse::Header<'_>], http10: bool) -> Result<(Framing, bool), Http1Error> {
    let mut framing = Framing::UntilClose;
    let mut close = http10;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| Http1Error::Protocol("bad content-length".into()))?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok((framing, close))
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, max: usize) -> Result<(), Http1Error> {
    if buf.len() >= max {
        return Err(Http1Error::Protocol(format!("message larger than {max} bytes")));
    }
    buf.reserve(16 << 10);
    match stream.read_buf(buf).await? {
        0 => Err(Http1Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
        _ => Ok(()),
    }
}

/// Decodes a chunked body from `data` into `out`; `Some(bytes used)` once the last chunk and
/// trailers are in, `None` if more bytes are needed (`out` is then rebuilt on the next call).
fn dechunk(data: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, Http1Error> {
    out.clear();
    let mut at = 0;
    loop {
        match httparse::parse_chunk_size(&data[at..]) {
            Ok(httparse::Status::Complete((used, size))) => {
                at += used;
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    let rest = &data[at..];
                    return Ok(rest.windows(2).position(|w| w == b"\r\n").map(|p| at + p + 2));
                }
                if size > MAX_RESPONSE_BYTES || data.len() < at + size + 2 {
                    return if size > MAX_RESPONSE_BYTES {
                        Err(Http1Error::Protocol("chunk too large".into()))
                    } else {
                        Ok(None)
                    };
                }
                out.extend_from_slice(&data[at..at + size]);
                at += size + 2;
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Http1Error::Protocol("bad chunk size".into())),
        }
    }
}

/// A request as the trivial target sees it: where it went and in which format.
pub struct Incoming {
    /// The path's stage segment (`preflight`, `ruledownload`, …), empty if none.
    pub stage: StageKind,
    /// `Content-Type` is binary protobuf.
    pub protobuf: bool,
}

/// The Santa stage a request path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// `…/preflight/{id}`.
    Preflight,
    /// `…/eventupload/{id}`.
    EventUpload,
    /// `…/ruledownload/{id}`.
    RuleDownload,
    /// `…/postflight/{id}`.
    Postflight,
    /// Anything else.
    Other,
}

/// Reads one request (head and `Content-Length` body) from `stream` into `buf`; `Ok(None)`
/// when the peer closed the connection between requests.
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Incoming>, Http1Error> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let path = req.path.unwrap_or("");
                let mut segs = path.rsplit('/');
                segs.next();
                let stage = match segs.next().unwrap_or("") {
                    "preflight" => StageKind::Preflight,
                    "eventupload" => StageKind::EventUpload,
                    "ruledownload" => StageKind::RuleDownload,
                    "postflight" => StageKind::Postflight,
                    _ => StageKind::Other,
                };
                let mut len = 0usize;
                let mut protobuf = false;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                            .ok_or_else(|| Http1Error::Protocol("bad content-length".into()))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Http1Error::Protocol("chunked requests are not supported".into()));
                    } else if h.name.eq_ignore_ascii_case("content-type") {
                        protobuf = h.value.starts_with(b"application/x-protobuf");
                    }
                }
                if len > MAX_REQUEST_BYTES {
                    return Err(Http1Error::Protocol(format!("request body of {len} bytes is too large")));
                }
                while buf.len() < n + len {
                    read_more(stream, buf, MAX_REQUEST_BYTES + (64 << 10)).await?;
                }
                buf.drain(..n + len);
                return Ok(Some(Incoming { stage, protobuf }));
            }
            Ok(httparse::Status::Partial) => {
                if buf.is_empty() {
                    buf.reserve(16 << 10);
                    if stream.read_buf(buf).await? == 0 {
                        return Ok(None);
                    }
                } else {
                    read_more(stream, buf, MAX_REQUEST_BYTES).await?;
                }
            }
            Err(e) => return Err(Http1Error::Protocol(format!("bad request head: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_and_waits_for_more() {
        let mut out = Vec::new();
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n", &mut out).unwrap(), Some(13));
        assert_eq!(out, b"abc");
        assert_eq!(dechunk(b"3\r\nab", &mut out).unwrap(), None);
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n", &mut out).unwrap(), None);
        assert!(dechunk(b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn request_bytes_have_length_and_body() {
        let r = request_bytes(
            "/santa/preflight/M",
            "127.0.0.1:1",
            "santactl-sync/2026.7.1",
            "application/json",
            Some("deflate"),
            b"xy",
        );
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("POST /santa/preflight/M HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"));
        assert!(s.ends_with("content-encoding: deflate\r\ncontent-length: 2\r\n\r\nxy"));
    }
}
