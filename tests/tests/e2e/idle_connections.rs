//! Every connection state has an idle bound, and idle connections never lock other clients
//! out: a silent TCP connection, a partial HTTP/2 preface, HTTP/2 after SETTINGS, HTTP/2 and
//! HTTP/1 kept alive after a request are all closed by the server; at `max_connections` or
//! `max_connections_per_peer` the longest-idle connection makes room for a new client. Also the
//! small protocol points: the `Bearer` scheme in any case, `HEAD` wherever `GET` works, and a
//! 429 that keeps its keep-alive connection.
//!
//! Timeouts are configured at 1–2 s; assertions only say "closed within 30 s" (no timing).

use bytes::Bytes;
use dasher_tests::{TOKEN, TestServer};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound on "the server closes it" (the configured timeouts are 1–2 s).
const CLOSED_WITHIN: Duration = Duration::from_secs(30);

/// A server whose idle bounds are short: 1 s for the first request, 2 s between requests.
async fn server_with_short_idle_bounds() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.header_read_timeout_secs = 1;
        c.limits.idle_connection_timeout_secs = 2;
    })
    .await
}

fn addr(s: &TestServer) -> SocketAddr {
    s.handle.as_ref().unwrap().addr()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
/// Panics if it is still open after [`CLOSED_WITHIN`].
async fn closed_by_server(c: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(CLOSED_WITHIN, read).await.is_err() {
        panic!("{what}: the server kept the connection open for {} s", CLOSED_WITHIN.as_secs());
    }
    got
}

/// HTTP/1.1 over a raw socket, one request at a time, so the test controls the connection.
struct RawHttp {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A parsed HTTP/1 response.
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawHttp {
    async fn connect(addr: SocketAddr) -> RawHttp {
        RawHttp { stream: connect(addr).await, buf: Vec::new() }
    }

    /// Sends one request (a `Content-Length` is added when there is a body).
    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: dasher\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        // A server that closed early shows up as a missing reply; the caller asserts on that.
        let _ = self.stream.write_all(&bytes).await;
    }

    /// Reads one response (`Content-Length` bodies; `None` for a body-less `HEAD` answer is
    /// handled by `head_only`). `None` if the connection closed first.
    async fn reply(&mut self, head_only: bool) -> Option<RawReply> {
        let read = async {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if !self.fill().await {
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len = if head_only { 0 } else { content_length(&head).unwrap_or(0) };
            while self.buf.len() < end + len {
                if !self.fill().await {
                    return None;
                }
            }
            let body = self.buf[end..end + len].to_vec();
            self.buf.drain(..end + len);
            Some(RawReply { status, head, body })
        };
        tokio::time::timeout(CLOSED_WITHIN, read).await.expect("a reply or a close within 30 s")
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
    })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends `GET /healthz` on a fresh connection and returns the status (`None`: closed unanswered).
async fn healthz_status(addr: SocketAddr) -> Option<u16> {
    let mut c = RawHttp::connect(addr).await;
    c.send("GET", "/healthz", &[], b"").await;
    c.reply(false).await.map(|r| r.status)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The frame types in a stream of HTTP/2 frames (a truncated last frame is ignored).
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let s = server_with_short_idle_bounds().await;
    let mut c = connect(addr(&s)).await;
    let got = closed_by_server(&mut c, "silent TCP connection").await;
    assert!(got.is_empty(), "nothing was asked, nothing is answered: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_http2_preface_is_closed() {
    let s = server_with_short_idle_bounds().await;
    let mut c = connect(addr(&s)).await;
    c.write_all(&H2_PREFACE[..16]).await.unwrap();
    closed_by_server(&mut c, "partial HTTP/2 preface").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_idle_after_settings_is_closed_with_goaway() {
    let s = server_with_short_idle_bounds().await;
    let mut c = connect(addr(&s)).await;
    c.write_all(H2_PREFACE).await.unwrap();
    c.write_all(H2_EMPTY_SETTINGS).await.unwrap();
    // The client never acknowledges anything (not even the server's PING): the close must
    // not depend on the peer's cooperation.
    let got = closed_by_server(&mut c, "HTTP/2 connection idle after SETTINGS").await;
    let types = h2_frame_types(&got);
    assert_eq!(types.first(), Some(&4), "the server's SETTINGS come first: {types:?}");
    assert!(types.contains(&7), "the server says GOAWAY before closing: {types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_idle_after_a_request_is_closed() {
    let s = server_with_short_idle_bounds().await;
    let io = TokioIo::new(connect(addr(&s)).await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), io).await.unwrap();
    let driver = tokio::spawn(conn);
    let get = |method: Method| {
        Request::builder().method(method).uri(format!("http://{}/healthz", addr(&s))).body(Empty::new()).unwrap()
    };
    let r = send.send_request(get(Method::GET)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let get_len = r.into_body().collect().await.unwrap().to_bytes().len();
    // HEAD over HTTP/2 too: the GET's length, no body.
    let r = send.send_request(get(Method::HEAD)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"].to_str().unwrap(), get_len.to_string());
    assert!(r.into_body().collect().await.unwrap().to_bytes().is_empty());
    // Now idle: the server ends the connection (GOAWAY, then close), and the client's
    // connection task finishes.
    let ended = tokio::time::timeout(CLOSED_WITHIN, driver).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open for {} s", CLOSED_WITHIN.as_secs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let s = server_with_short_idle_bounds().await;
    let mut c = RawHttp::connect(addr(&s)).await;
    for i in 0..2 {
        c.send("GET", "/healthz", &[], b"").await;
        let r = c.reply(false).await.unwrap_or_else(|| panic!("request {i} on the kept-alive connection"));
        assert_eq!(r.status, 200, "{}", r.head);
        assert_ne!(header(&r.head, "connection"), Some("close"), "{}", r.head);
    }
    let got = closed_by_server(&mut c.stream, "idle HTTP/1.1 keep-alive connection").await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_max_connections_make_room_for_a_new_client() {
    // Long idle bounds: here the new client must get in because an idle connection makes
    // room, not because the idle ones timed out.
    let s = TestServer::start_with(|c| {
        c.limits.max_connections = 50;
        c.limits.max_connections_per_peer = 0;
        c.limits.header_read_timeout_secs = 600;
        c.limits.idle_connection_timeout_secs = 600;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(connect(addr(&s)).await);
    }
    // One of them is a partial HTTP/2 preface, one a kept-alive HTTP/1 connection.
    idle[1].write_all(&H2_PREFACE[..10]).await.unwrap();
    let mut kept = RawHttp { stream: idle.remove(2), buf: Vec::new() };
    kept.send("GET", "/healthz", &[], b"").await;
    assert_eq!(kept.reply(false).await.map(|r| r.status), Some(200), "the kept-alive connection is served");
    for i in 0..5 {
        assert_eq!(healthz_status(addr(&s)).await, Some(200), "new client {i} is served while 50 connections idle");
    }
    // The longest-idle ones made room (accept order: the silent first connection goes first).
    closed_by_server(&mut idle[0], "the longest-idle connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_place_and_busy_ones_are_kept() {
    let s = TestServer::start_with(|c| {
        c.limits.max_connections_per_peer = 8;
        c.limits.header_read_timeout_secs = 600;
        c.limits.idle_connection_timeout_secs = 600;
        c.limits.body_read_timeout_secs = 600;
    })
    .await;
    let a = addr(&s);
    // 8 idle connections from 127.0.0.1: a 9th from the same address replaces the oldest.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(a).await);
    }
    assert_eq!(healthz_status(a).await, Some(200), "a new client from the same address is served");
    closed_by_server(&mut idle[0], "the address's longest-idle connection").await;
    drop(idle);
    // 8 busy connections (a body that never finishes): nothing to replace, the next is refused
    // and the busy ones are kept. `Expect: 100-continue` tells us when each request is in
    // progress (the server asks for the body only then).
    let mut busy = Vec::new();
    for i in 0..8 {
        let mut c = RawHttp::connect(a).await;
        let head = format!(
            "POST /santa/preflight/busy{i} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
        );
        c.stream.write_all(head.as_bytes()).await.unwrap();
        let r = c.reply(false).await.unwrap_or_else(|| panic!("busy {i}: connection closed"));
        assert_eq!(r.status, 100, "busy {i}: {}", r.head);
        c.stream.write_all(b"{").await.unwrap();
        busy.push(c);
    }
    // Connections dropped above may still be closing on the server's side; each probe that is
    // served replaces one of them, so within a bounded number of probes only busy ones remain.
    let mut refused = false;
    for _ in 0..300 {
        if healthz_status(a).await.is_none() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "with every connection of the address busy, a new one is refused");
    // A finished request leaves its connection idle: that one makes room for the next client.
    let last = busy.last_mut().unwrap();
    last.stream.write_all(&[b' '; 999]).await.unwrap();
    let r = last.reply(false).await.expect("the busy request is answered");
    assert_eq!(r.status, 400, "a lone brace is not a preflight: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(healthz_status(a).await, Some(200), "the idle connection made room");
    drop(busy);
    let m = s.send(Method::GET, "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&m.body);
    let refused_total = text
        .lines()
        .find_map(|l| l.strip_prefix("dasher_connections_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("dasher_connections_refused_total in /metrics");
    assert!(refused_total >= 1.0, "every refusal is counted: {refused_total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = TestServer::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {TOKEN}");
        let r = s.send(Method::GET, "/api/v1/rules", &[("authorization", &auth)], vec![]).await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", String::from_utf8_lossy(&r.body));
    }
    let r = s.send(Method::GET, "/api/v1/rules", &[("authorization", &format!("Basic {TOKEN}"))], vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_wherever_get_does_without_a_body() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {TOKEN}");
    s.put_rules(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}])).await;
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/rules", "/api/v1/hosts"] {
        let get = s.send(Method::GET, path, &[("authorization", &auth)], vec![]).await;
        assert_eq!(get.status, StatusCode::OK, "GET {path}");
        // Over a raw socket, so a body sent by mistake would show up before the next reply.
        let mut c = RawHttp::connect(addr(&s)).await;
        c.send("HEAD", path, &[("Authorization", &auth)], b"").await;
        let head = c.reply(true).await.unwrap_or_else(|| panic!("HEAD {path} answered"));
        assert_eq!(head.status, 200, "HEAD {path}: {}", head.head);
        assert_eq!(header(&head.head, "content-type"), get.headers["content-type"].to_str().ok(), "HEAD {path}");
        if path != "/metrics" {
            // (/metrics changes between the two requests.)
            assert_eq!(content_length(&head.head), Some(get.body.len()), "HEAD {path}: {}", head.head);
        }
        c.send("GET", "/healthz", &[], b"").await;
        let next = c.reply(false).await.expect("the connection serves the next request");
        assert_eq!(next.status, 200, "no stray body bytes after HEAD {path}: {}", next.head);
    }
    // HEAD is authorized like GET.
    let r = s.send(Method::HEAD, "/api/v1/rules", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_keeps_the_keep_alive_connection() {
    let s = TestServer::start_with(|c| c.limits.requests_per_machine_per_minute = 1).await;
    let preflight = json!({"serial_num":"C02IDLE0001","hostname":"h.example.com","os_version":"15.5",
        "os_build":"24F74","santa_version":"2026.7.1","client_mode":"MONITOR","machine_id":"greedy"});
    let body = serde_json::to_vec(&preflight).unwrap();
    let mut c = RawHttp::connect(addr(&s)).await;
    let json = [("Content-Type", "application/json")];
    c.send("POST", "/santa/preflight/greedy", &json, &body).await;
    assert_eq!(c.reply(false).await.map(|r| r.status), Some(200));
    // Over budget, with a body far larger than one read (1 MiB of trailing whitespace): the
    // server answers 429 without using it, and must still read past it to keep the connection.
    let mut big = body.clone();
    big.resize(body.len() + (1 << 20), b' ');
    c.send("POST", "/santa/preflight/greedy", &json, &big).await;
    let r = c.reply(false).await.expect("the 429 arrives");
    assert_eq!(r.status, 429, "{}", r.head);
    assert_ne!(header(&r.head, "connection"), Some("close"), "{}", r.head);
    c.send("GET", "/healthz", &[], b"").await;
    let r = c.reply(false).await.expect("the connection serves a request after the 429");
    assert_eq!(r.status, 200, "{}", r.head);
}
