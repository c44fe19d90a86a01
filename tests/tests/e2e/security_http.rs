//! Security and observability over real loopback HTTP(S): `/metrics` and `/readyz`,
//! request ids, admin roles, the separate admin listener, the sync shared secret,
//! connection and body limits, and TLS with reload and client certificates.

use bytes::Bytes;
use dasher_server::config::{Role, TokenConfig};
use dasher_server::credentials::sha256_hex;
use dasher_tests::component;
use dasher_tests::{ClientRules, TOKEN, TestServer};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

fn sha(i: u32) -> String {
    format!("{:064x}", 0xfeed_0000u64 + u64::from(i))
}

/// The value of one sample line (`name{labels} value`) in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

fn text(r: &dasher_tests::Reply) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_count_syncs_rules_events_and_requests() {
    let s = TestServer::start().await;
    s.put_rules(json!([
        {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
        {"identifier": sha(1), "rule_type": "BINARY", "policy": "BLOCKLIST"},
    ]))
    .await;
    let mut client = ClientRules::default();
    let (sync_type, n, _) = client.sync(&s, "m1", preflight("m1")).await;
    assert_eq!((sync_type.as_str(), n), ("CLEAN", 2), "a new host starts clean");
    let (sync_type, n, _) = client.sync(&s, "m1", preflight("m1")).await;
    assert_eq!((sync_type.as_str(), n), ("NORMAL", 0));
    let r = s.admin(Method::POST, "/api/v1/hosts/m1/clean-sync", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let (sync_type, _, _) = client.sync(&s, "m1", preflight("m1")).await;
    assert_eq!(sync_type, "CLEAN");
    client.sync(&s, "m2", preflight("m2")).await;
    let events = json!({"events": [
        {"file_sha256": sha(7), "decision": "BLOCK_BINARY"},
        {"file_sha256": sha(8), "decision": "BLOCK_BINARY"},
    ]});
    assert_eq!(s.stage("eventupload", "m1", &events).await.status, StatusCode::OK);
    assert_eq!(s.stage("eventupload", "m1", &events).await.status, StatusCode::OK, "a retried upload");

    let r = s.send(Method::GET, "/metrics", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = text(&r);
    assert!(m.ends_with("# EOF\n"), "OpenMetrics text ends with EOF");
    assert_eq!(sample(&m, r#"dasher_syncs_total{type="normal"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"dasher_syncs_total{type="clean"}"#), Some(3.0));
    assert_eq!(sample(&m, "dasher_rules_sent_total"), Some(6.0), "2 (new) + 0 + 2 (clean) + 2 (new host)");
    assert_eq!(sample(&m, "dasher_events_stored_total"), Some(2.0));
    assert_eq!(sample(&m, "dasher_events_duplicate_total"), Some(2.0));
    assert_eq!(sample(&m, "dasher_hosts"), Some(2.0));
    assert_eq!(sample(&m, r#"dasher_http_requests_total{stage="preflight",status="200"}"#), Some(4.0));
    assert_eq!(sample(&m, r#"dasher_http_requests_total{stage="eventupload",status="200"}"#), Some(2.0));
    assert_eq!(sample(&m, r#"dasher_http_request_duration_seconds_count{stage="postflight",status="200"}"#), Some(4.0));
    assert_eq!(sample(&m, r#"dasher_store_operation_duration_seconds_count{op="insert_events"}"#), Some(2.0));
    assert!(sample(&m, "dasher_connections_open").unwrap() >= 1.0, "this scrape's own connection");
    assert!(!m.contains("dasher_plugin_calls"), "no plugin series without plugins");

    let bad = s.stage("preflight", "m1", &json!({"request_clean_sync": "maybe"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let m = text(&s.send(Method::GET, "/metrics", &[], vec![]).await);
    assert_eq!(sample(&m, r#"dasher_http_requests_total{stage="preflight",status="400"}"#), Some(1.0));
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let s = TestServer::start().await;
    let body = serde_json::to_vec(&preflight("m1")).unwrap();
    let r = s.send(Method::POST, "/santa/preflight/m1", &[("x-request-id", "santa-42.a:b")], body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-request-id"], "santa-42.a:b");
    let a = s.send(Method::POST, "/santa/preflight/m1", &[], body.clone()).await;
    let b = s.send(Method::POST, "/santa/preflight/m1", &[("x-request-id", "bad id; drop table")], body).await;
    let (a, b) = (a.headers["x-request-id"].to_str().unwrap(), b.headers["x-request-id"].to_str().unwrap());
    assert!(!a.is_empty() && a != b && b != "bad id; drop table", "{a} {b}");
    let r = s.send(Method::GET, "/no/such/route", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.contains_key("x-request-id"), "errors carry an id too");
}

#[tokio::test]
async fn readyz_reports_store_and_plugins() {
    let s = TestServer::start().await;
    let r = s.send(Method::GET, "/readyz", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ready", "store": "ok", "plugins": "not configured"}));

    // A plugin file that never loaded means the intended policy is not in force.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    let plugins_dir = dir.path().to_owned();
    let s = TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&plugins_dir);
        p.watch = false;
        c.plugins = Some(p);
    })
    .await;
    let r = s.send(Method::GET, "/readyz", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let v = r.json();
    assert_eq!(v["store"], "ok");
    assert!(v["plugins"].as_str().unwrap().contains("broken.wasm"), "{v}");
    let m = text(&s.send(Method::GET, "/metrics", &[], vec![]).await);
    assert_eq!(sample(&m, "dasher_plugin_load_errors"), Some(1.0), "{m}");
}

fn role_tokens(c: &mut dasher_server::config::Config) {
    c.admin.tokens = vec![
        TokenConfig { name: "dashboard".into(), role: Role::ReadOnly, sha256: sha256_hex("viewer-secret") },
        TokenConfig { name: "ci".into(), role: Role::RulesEditor, sha256: sha256_hex("editor-secret") },
    ];
}

async fn as_token(
    s: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> dasher_tests::Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    s.send(method, path, &headers, body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default()).await
}

#[tokio::test]
async fn admin_roles_gate_the_api() {
    let s = TestServer::start_with(role_tokens).await;
    let rule = json!({"rules": [{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}]});

    let r = as_token(&s, None, Method::GET, "/api/v1/rules", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = as_token(&s, Some("guess"), Method::GET, "/api/v1/rules", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = as_token(&s, Some("viewer-secret"), Method::GET, "/api/v1/rules", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = as_token(&s, Some("viewer-secret"), Method::POST, "/api/v1/rules", Some(rule.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(msg.contains("\"dashboard\"") && msg.contains("needs role rules-editor"), "{msg}");

    let r = as_token(&s, Some("editor-secret"), Method::POST, "/api/v1/rules", Some(rule)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let r =
        as_token(&s, Some("editor-secret"), Method::PUT, "/api/v1/hosts/m1/tags", Some(json!({"tags": ["eng"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = as_token(&s, Some("editor-secret"), Method::POST, "/api/v1/plugins/reload", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("needs role admin"));

    // The legacy single token is an admin: it passes authorization (and then learns that
    // plugins are not configured).
    let r = as_token(&s, Some(TOKEN), Method::POST, "/api/v1/plugins/reload", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].as_str().unwrap().contains("plugins are not configured"));

    let m = text(&s.send(Method::GET, "/metrics", &[], vec![]).await);
    assert_eq!(sample(&m, r#"dasher_auth_failures_total{reason="admin_missing"}"#), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"dasher_auth_failures_total{reason="admin_unknown"}"#), Some(1.0));
    assert_eq!(sample(&m, r#"dasher_auth_failures_total{reason="admin_role"}"#), Some(2.0));
}

#[tokio::test]
async fn role_tokens_alone_mean_no_generated_token_and_metrics_can_need_one() {
    let s = TestServer::start_with(|c| {
        c.admin_token = None;
        c.metrics.require_token = true;
        role_tokens(c);
    })
    .await;
    assert!(s.handle.as_ref().unwrap().admin_token().is_none());
    assert!(!s.dir.join("admin.token").exists(), "no unrequested credential on disk");
    assert_eq!(as_token(&s, Some(TOKEN), Method::GET, "/api/v1/rules", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.send(Method::GET, "/metrics", &[], vec![]).await.status, StatusCode::UNAUTHORIZED);
    let r = as_token(&s, Some("viewer-secret"), Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(text(&r).contains("dasher_http_requests_total"));
}

/// One plain-HTTP request to `addr`.
async fn request_to(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Bytes) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn admin_listener_separates_the_admin_api() {
    let s = TestServer::start_with(|c| c.admin.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = s.handle.as_ref().unwrap().admin_addr().expect("admin listener bound");
    let r = s.admin(Method::GET, "/api/v1/rules", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the main listener does not serve the admin API");
    assert!(text(&r).contains("admin.listen"));
    assert_eq!(s.send(Method::GET, "/metrics", &[], vec![]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.stage("preflight", "m1", &preflight("m1")).await.status, StatusCode::OK);
    let auth = format!("Bearer {TOKEN}");
    let (status, _) = request_to(admin, Method::GET, "/api/v1/rules", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = request_to(admin, Method::GET, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains(r#"dasher_syncs_total{type="clean"} 1"#));
    let (status, _) = request_to(admin, Method::POST, "/santa/preflight/m1", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "sync routes stay off the admin listener");
    assert_eq!(request_to(admin, Method::GET, "/healthz", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn sync_secret_header_is_checked_per_fleet_and_machine() {
    let s = TestServer::start_with(|c| {
        c.sync_auth.header = Some("X-Dasher-Secret".into());
        c.sync_auth.secrets_sha256 = vec![sha256_hex("fleet-2025"), sha256_hex("fleet-2026")];
        c.sync_auth.machines.insert("vip".into(), vec![sha256_hex("vip-secret")]);
    })
    .await;
    let body = serde_json::to_vec(&preflight("m1")).unwrap();
    let post = |id: &'static str, secret: Option<&'static str>| {
        let (s, body) = (&s, body.clone());
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(v) = secret {
                headers.push(("x-dasher-secret", v));
            }
            s.send(Method::POST, &format!("/santa/preflight/{id}"), &headers, body).await
        }
    };
    let r = post("m1", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["error"].as_str().unwrap().contains("x-dasher-secret header"), "{}", text(&r));
    let r = post("m1", Some("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "not 403, which Santa retries via XSRF");
    assert!(r.json()["error"].as_str().unwrap().contains("wrong sync secret"));
    assert_eq!(post("m1", Some("fleet-2025")).await.status, StatusCode::OK, "old secret during rotation");
    assert_eq!(post("m1", Some("fleet-2026")).await.status, StatusCode::OK);
    assert_eq!(post("vip", Some("fleet-2026")).await.status, StatusCode::UNAUTHORIZED, "a machine with its own secret");
    assert_eq!(post("vip", Some("vip-secret")).await.status, StatusCode::OK);
    // The admin API and the doctor probe do not need the sync secret.
    assert_eq!(s.admin(Method::GET, "/api/v1/hosts", None).await.status, StatusCode::OK);
    let r = s.send(Method::GET, "/santa/preflight/santactl-doctor-test", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    let hosts = s.admin(Method::GET, "/api/v1/hosts", None).await.json();
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 2, "only accepted preflights reached the store");
}

#[tokio::test]
async fn slow_bodies_get_408_and_slow_headers_are_dropped() {
    let s = TestServer::start_with(|c| {
        c.limits.body_read_timeout_secs = 1;
        c.limits.header_read_timeout_secs = 1;
    })
    .await;
    let addr = s.handle.as_ref().unwrap().addr();
    // Headers complete, body promised but never finished.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"POST /santa/preflight/m1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"serial\"")
        .await
        .unwrap();
    let reply = read_until_close(&mut conn).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("limits.body_read_timeout_secs"), "{reply}");
    // Headers never finished: the connection is closed without a request reaching a handler.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"POST /santa/preflight/m1 HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let reply = read_until_close(&mut conn).await;
    assert!(!reply.contains("200 OK"), "{reply}");
    let hosts = s.admin(Method::GET, "/api/v1/hosts", None).await.json();
    assert!(hosts["hosts"].as_array().unwrap().is_empty());
}

/// Reads until the server closes (generous bound so a hung server fails the test).
async fn read_until_close(conn: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut out)).await.expect("server closed");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_accept() {
    let s = TestServer::start_with(|c| c.limits.max_connections = 1).await;
    let addr = s.handle.as_ref().unwrap().addr();
    // The one allowed connection, busy: a request whose body never comes (the 100 Continue
    // proves the request is in progress). An idle one would make room instead
    // (tests/idle_connections.rs).
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    held.write_all(
        b"POST /santa/preflight/m1 HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    let n = held.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    // A second one is closed without an answer.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!read_until_close(&mut extra).await.contains("200"), "over the limit");
    // Once the held connection closes, new ones are served again.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        let reply = read_until_close(&mut c).await;
        if reply.starts_with("HTTP/1.1 200") {
            assert!(reply.contains("dasher_connections_refused_total"), "{reply}");
            assert!(!reply.contains("dasher_connections_refused_total 0\n"), "the refusal was counted");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the server never freed the slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_calls_and_faults_are_exported_from_the_plugin_host() {
    let plugins = tempfile::tempdir().unwrap();
    component("staged-rollout", plugins.path());
    component("fault-trap", plugins.path());
    let dir = plugins.path().to_owned();
    let s = TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        p.limits.deadline_ms = 5_000;
        p.order = vec!["staged-rollout".into(), "fault-trap".into()];
        c.plugins = Some(p);
    })
    .await;
    let r = s.admin(Method::PUT, "/api/v1/hosts/lab-1/tags", Some(json!({"tags": ["fault"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(s.stage("preflight", "lab-1", &preflight("lab-1")).await.status, StatusCode::OK);
    }
    assert_eq!(s.send(Method::GET, "/readyz", &[], vec![]).await.status, StatusCode::OK);
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    let m = text(&s.send(Method::GET, "/metrics", &[], vec![]).await);
    // The exported figures are the plugin host's own, series by series.
    for p in status["plugins"].as_array().unwrap() {
        let labels =
            format!(r#"{{plugin="{}",generation="{}"}}"#, p["name"].as_str().unwrap(), p["hash"].as_str().unwrap());
        let calls =
            sample(&m, &format!("dasher_plugin_calls_total{labels}")).unwrap_or_else(|| panic!("{labels}: {m}"));
        assert!(calls >= p["calls"].as_f64().unwrap() && calls >= 2.0, "{labels} {calls}");
        let errors = sample(&m, &format!("dasher_plugin_errors_total{labels}")).unwrap();
        assert!(errors >= p["errors"].as_f64().unwrap());
    }
    let trap = status["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "fault-trap").unwrap();
    let labels = format!(r#"{{plugin="fault-trap",generation="{}",kind="trap"}}"#, trap["hash"].as_str().unwrap());
    assert!(sample(&m, &format!("dasher_plugin_faults_total{labels}")).unwrap() >= 1.0, "{m}");
    assert!(m.contains(r#"dasher_plugin_hook{plugin="staged-rollout",hook="configure""#), "{m}");
    assert!(m.contains("dasher_plugin_call_duration_seconds{"), "{m}");
    assert_eq!(sample(&m, "dasher_plugin_load_errors"), Some(0.0));
}

#[tokio::test]
async fn shutdown_drains_a_request_in_flight() {
    let mut s = TestServer::start().await;
    let addr = s.handle.as_ref().unwrap().addr();
    let body = serde_json::to_vec(&preflight("m1")).unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /santa/preflight/m1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    // Make sure the request reached the server before shutting down: a keep-alive probe on
    // another connection is answered, and the metrics show two open connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = text(&s.send(Method::GET, "/metrics", &[], vec![]).await);
        if sample(&m, "dasher_connections_open").unwrap() >= 2.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slow connection was never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = tokio::spawn(s.handle.take().unwrap().shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopping.is_finished(), "shutdown waits for the request in flight");
    conn.write_all(&body[10..]).await.unwrap();
    let reply = read_until_close(&mut conn).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    tokio::time::timeout(Duration::from_secs(60), stopping).await.expect("shutdown finished").unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_over_its_request_budget_gets_429_and_others_are_served() {
    let s = TestServer::start_with(|c| c.limits.requests_per_machine_per_minute = 5).await;
    for i in 0..5 {
        let r = s.stage("preflight", "greedy", &preflight("greedy")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", text(&r));
    }
    let r = s.stage("preflight", "greedy", &preflight("greedy")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", text(&r));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=13).contains(&retry), "Retry-After {retry}");
    assert!(text(&r).contains("requests_per_machine_per_minute"), "{}", text(&r));
    // The budget is per machine.
    let r = s.stage("preflight", "patient", &preflight("patient")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let m = s.send(Method::GET, "/metrics", &[], vec![]).await;
    assert_eq!(sample(&text(&m), "dasher_auth_failures_total{reason=\"rate_limited\"}"), Some(1.0));
}
