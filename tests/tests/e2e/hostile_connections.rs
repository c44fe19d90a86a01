//! Hostile connections against the real server: half-open requests, thousands of idle
//! connections, garbage instead of HTTP, bodies and headers that never finish, a stalled HTTP/2
//! preface. While each kind is held open, a normal client still completes a full sync; afterwards
//! the server is still up.
//!
//! The assertions hold whether or not the server closes stalled connections early (header read
//! timeout) — what must hold is that nobody else is kept waiting.

use dasher_tests::{ClientRules, TestServer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections wanted; fewer when the file-descriptor limit cannot hold them.
const IDLE_CONNECTIONS_WANTED: u64 = 10_000;
/// Fewest idle connections the test accepts as meaningful.
const IDLE_CONNECTIONS_MIN: u64 = 2_000;

fn preflight(id: &str) -> Value {
    json!({"serial_num":"C02HOSTILE01","hostname":"ok.example.com","os_version":"15.5","os_build":"24F74",
           "santa_version":"2026.7.123456789","client_mode":"MONITOR","machine_id":id})
}

/// A well-behaved client completes a full sync and gets every rule.
async fn normal_client_is_served(s: &TestServer, id: &str) {
    let mut client = ClientRules::default();
    let sync = tokio::time::timeout(Duration::from_secs(120), client.sync(s, id, preflight(id)));
    let (_, received, _) = sync.await.unwrap_or_else(|_| panic!("{id}: a normal sync got no answer within 120 s"));
    assert_eq!(received, 3, "{id}: all rules delivered");
    client.assert_matches_server(s, id).await;
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Opens a connection and sends `prefix`, then stalls (the caller keeps the stream).
async fn stalled(addr: SocketAddr, prefix: &[u8]) -> TcpStream {
    let mut c = connect(addr).await;
    // The server may already have answered and closed (e.g. 400 on garbage): that is fine.
    let _ = c.write_all(prefix).await;
    c
}

/// Raises the soft open-files limit as far as allowed; returns how many idle connections fit
/// (each takes two descriptors here: client and server live in this process).
fn idle_connection_budget() -> u64 {
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("reading RLIMIT_NOFILE");
    let budget = (limit.saturating_sub(4096) / 2).min(IDLE_CONNECTIONS_WANTED);
    assert!(
        budget >= IDLE_CONNECTIONS_MIN,
        "open-files limit {limit} is too low for {IDLE_CONNECTIONS_MIN} idle connections; raise `ulimit -n`"
    );
    budget
}

async fn server_with_rules() -> TestServer {
    let s = TestServer::start().await;
    s.put_rules(json!([
        {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
        {"identifier": format!("{:064x}", 1), "rule_type": "BINARY", "policy": "BLOCKLIST"},
        {"identifier": format!("{:064x}", 2), "rule_type": "BINARY", "policy": "ALLOWLIST"},
    ]))
    .await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_and_endless_headers_and_bodies_do_not_block_others() {
    let s = server_with_rules().await;
    let addr = s.handle.as_ref().unwrap().addr();
    let mut held = Vec::new();
    for i in 0..50 {
        // Half a request line / half the headers.
        held.push(stalled(addr, b"POST /santa/preflight/half-open HTTP/1.1\r\nHost: dasher\r\nContent-Le").await);
        // Headers that never end: a valid start and one more header now and then (slowloris).
        held.push(
            stalled(addr, format!("POST /santa/preflight/slow{i} HTTP/1.1\r\nHost: d\r\nX-1: a\r\n").as_bytes()).await,
        );
        // A body that never finishes: 1 MB announced, 10 bytes sent.
        held.push(
            stalled(
                addr,
                b"POST /santa/eventupload/stall HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"events\":",
            )
            .await,
        );
        // A chunked body whose next chunk never comes.
        held.push(
            stalled(
                addr,
                b"POST /api/v1/rules HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer test-token\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"rul\r\n",
            )
            .await,
        );
        // An HTTP/2 connection preface with no frames after it.
        held.push(stalled(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await);
    }
    normal_client_is_served(&s, "while-stalled-1").await;
    // Keep the slowloris connections dribbling while another client syncs.
    for (i, c) in held.iter_mut().enumerate().filter(|(i, _)| i % 5 == 1) {
        let _ = c.write_all(format!("X-more-{i}: b\r\n").as_bytes()).await;
    }
    normal_client_is_served(&s, "while-stalled-2").await;
    drop(held);
    normal_client_is_served(&s, "after-stalled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_http_is_refused_and_others_are_served() {
    let s = server_with_rules().await;
    let addr = s.handle.as_ref().unwrap().addr();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut garbage = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut payloads: Vec<Vec<u8>> = vec![
        garbage(64 * 1024),
        garbage(7),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), // a TLS ClientHello to a plain-HTTP port
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"\r\n\r\n\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: d\r\n\r\n", "a".repeat(1 << 20)).into_bytes(), // 1 MiB request line
        format!("GET /healthz HTTP/1.1\r\nHost: d\r\nX-big: {}\r\n\r\n", "b".repeat(1 << 20)).into_bytes(), // 1 MiB header
        b"POST /santa/preflight/x HTTP/1.1\r\nHost: d\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /santa/preflight/x HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            .to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage-frames-follow".to_vec(),
    ];
    for _ in 0..20 {
        payloads.push(garbage(4096));
    }
    let mut answered = 0;
    for p in &payloads {
        let mut c = connect(addr).await;
        let _ = c.write_all(p).await;
        let _ = c.shutdown().await;
        // Whatever the server says (400, 431, a GOAWAY) or nothing: it must end the exchange.
        let mut reply = Vec::new();
        match tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut reply)).await {
            Ok(_) => answered += 1,
            Err(_) => panic!("the server kept a garbage connection open for 60 s after the client finished sending"),
        }
        assert!(
            !reply.starts_with(b"HTTP/1.1 2"),
            "garbage got a success answer: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        );
    }
    assert_eq!(answered, payloads.len());
    normal_client_is_served(&s, "after-garbage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_block_others() {
    let budget = idle_connection_budget();
    let s = server_with_rules().await;
    let addr = s.handle.as_ref().unwrap().addr();
    let mut idle = Vec::with_capacity(budget as usize);
    for _ in 0..budget {
        idle.push(connect(addr).await);
    }
    normal_client_is_served(&s, "among-idle").await;
    // Every idle connection is still a live socket on our side or was closed by the server
    // (header read timeout); neither may disturb a new client.
    drop(idle);
    normal_client_is_served(&s, "after-idle").await;
    eprintln!("held {budget} idle connections");
}
