//! Event export end to end: a real server with a `file` sink and an `http` sink posting to
//! a receiver started by the test on 127.0.0.1. Events uploaded by sync requests reach both
//! in id order; a down receiver does not hold up uploads and is caught up with; a record the
//! receiver refuses (400) is dead-lettered while the stream goes on; a restart resumes from
//! the durable cursor without gaps; every record carries the fields the checked-in schema
//! (`docs/export-record.schema.json`) requires. Everything is waited for with bounded polls.

use bytes::Bytes;
use dasher_server::export::{SinkConfig, SinkKind};
use dasher_tests::TestServer;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A receiver: answers `status` (200 unless changed); with 200, a batch holding a record
/// whose file is named `bad` is refused with 400; records of accepted batches are kept.
#[derive(Clone, Default)]
struct Receiver {
    status: Arc<AtomicU16>,
    records: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<u64>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver { status: Arc::new(AtomicU16::new(200)), ..Default::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let rc = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let rc = rc.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let rc = rc.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            *rc.requests.lock().unwrap() += 1;
                            let status = rc.status.load(Ordering::SeqCst);
                            let lines: Vec<Value> = body
                                .split(|b| *b == b'\n')
                                .filter(|l| !l.is_empty())
                                .map(|l| serde_json::from_slice(l).unwrap())
                                .collect();
                            let code = if status != 200 {
                                status
                            } else if lines.iter().any(|l| l["file"]["name"] == "bad") {
                                400
                            } else {
                                rc.records.lock().unwrap().extend(lines);
                                200
                            };
                            let resp = http::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from_static(b"{\"text\":\"field file.name refused\"}")))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (r, url)
    }

    fn ids(&self) -> Vec<u64> {
        self.records.lock().unwrap().iter().map(|r| r["event"]["id"].as_str().unwrap().parse().unwrap()).collect()
    }
}

fn sinks(dir: &Path, url: &str) -> Vec<SinkConfig> {
    let base =
        SinkConfig { settle_secs: 0, flush_interval_ms: 50, batch_size: 7, max_backoff_ms: 200, ..Default::default() };
    vec![
        SinkConfig {
            name: "lines".into(),
            kind: SinkKind::File,
            path: Some(dir.join("export/events.jsonl")),
            rotate_bytes: 4096,
            gzip: true,
            ..base.clone()
        },
        SinkConfig {
            name: "siem".into(),
            kind: SinkKind::Http,
            url: Some(url.into()),
            dead_letter_path: Some(dir.join("export/siem.deadletter.jsonl")),
            ..base
        },
    ]
}

fn event(n: u32, name: &str) -> Value {
    json!({"file_sha256": format!("{n:064x}"), "file_path": "/Applications/Tool.app/Contents/MacOS",
           "file_name": name, "execution_time": 1_767_225_600.0 + f64::from(n), "decision": "BLOCK_BINARY",
           "pid": 1000 + n, "ppid": 1, "parent_name": "launchd", "executing_user": "alice",
           "team_id": "EQHXZ8M8AV", "signing_id": "EQHXZ8M8AV:com.vendor.tool"})
}

async fn upload(s: &TestServer, id: &str, from: u32, to: u32) {
    let events: Vec<Value> = (from..to).map(|n| event(n, "tool")).collect();
    let r = s.stage("eventupload", id, &json!({"events": events, "machine_id": id})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

async fn preflight(s: &TestServer, id: &str) {
    let body = json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
                      "client_mode": "MONITOR", "os_version": "15.5", "serial_num": "C02XYZ", "primary_user": "alice"});
    let r = s.stage("preflight", id, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

/// Every record line in the file sink's current and rotated (gzipped) files.
fn file_records(dir: &Path) -> Vec<Value> {
    let mut out = vec![];
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir.join("export")).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    paths.sort();
    for p in paths {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // The live file and finished rotations; a rotated file being compressed shows up
        // as `.gz` once it is complete (its records are then read from there).
        let text = if name == "events.jsonl" {
            std::fs::read_to_string(&p).unwrap_or_default()
        } else if name.starts_with("events.jsonl.") && name.ends_with(".gz") {
            use std::io::Read;
            let mut t = String::new();
            let Ok(f) = std::fs::File::open(&p) else { continue };
            flate2::read::GzDecoder::new(f).read_to_string(&mut t).unwrap();
            t
        } else {
            continue;
        };
        out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    out
}

fn ids_of(records: &[Value]) -> BTreeSet<u64> {
    records.iter().map(|r| r["event"]["id"].as_str().unwrap().parse().unwrap()).collect()
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks `v` against the subset of JSON Schema the checked-in schema uses: `$ref` into
/// `$defs`, `anyOf`, `type` (a name or a list), `required`, `properties`, `items`.
fn conforms(schema: &Value, root: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let def = r.trim_start_matches("#/$defs/");
        return conforms(&root["$defs"][def], root, v, at);
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let errors: Vec<String> = any.iter().filter_map(|s| conforms(s, root, v, at).err()).collect();
        if errors.len() == any.len() {
            return Err(format!("{at}: matches none of anyOf: {errors:?}"));
        }
    }
    let ty = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    };
    let ok = match schema.get("type") {
        Some(Value::String(t)) => ty(t),
        Some(Value::Array(ts)) => ts.iter().any(|t| ty(t.as_str().unwrap_or_default())),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: expected type {}, got {v}", schema["type"]));
    }
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if v.get(req.as_str().unwrap_or_default()).is_none() {
            return Err(format!("{at}: required {req} missing"));
        }
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), v.as_object()) {
        for (k, sub) in props {
            if let Some(val) = obj.get(k) {
                conforms(sub, root, val, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, val) in arr.iter().enumerate() {
            conforms(items, root, val, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn the_schema_check_can_fail() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    let bad = json!({"@timestamp": 5, "event": {}, "host": {}, "file": {}, "dasher": {}});
    assert!(conforms(&schema, &schema, &bad, "r").is_err());
    let bad = json!({"@timestamp": "x", "event": {"id": "1"}, "host": {}, "file": {}, "dasher": {}});
    let err = conforms(&schema, &schema, &bad, "r").unwrap_err();
    assert!(err.contains("required"), "{err}");
    let mut good = json!({"@timestamp": "x", "event": {"id": "1", "action": "execution", "outcome": "unknown",
        "category": "process", "ingested": "x", "provider": "santa"},
        "host": {"id": "m", "name": "", "hostname": "", "os": {"family": "macos", "version": ""}},
        "file": {"hash": {"sha256": ""}},
        "dasher": {"schema_version": 1, "sink": "s", "decision": "ALLOW_BINARY", "received_at_unix": 1, "tags": [],
                   "santa": {}}});
    conforms(&schema, &schema, &good, "r").unwrap();
    good["dasher"]["tags"] = json!("not a list");
    assert!(conforms(&schema, &schema, &good, "r").unwrap_err().contains("r.dasher.tags"));
}

fn schema_path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/export-record.schema.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_file_and_http_sinks_in_order_through_outage_rejection_and_restart() {
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (d, u) = (dir.clone(), url.clone());
    let mut s = TestServer::start_with(move |c| c.export.sinks = sinks(&d, &u)).await;
    preflight(&s, "m1").await;

    // 1. Uploaded events reach both sinks, in id order, with their ids and host inventory.
    upload(&s, "m1", 0, 20).await;
    wait_for("20 records at the http sink", || rx.ids().len() >= 20).await;
    wait_for("20 records in the file", || file_records(&dir).len() >= 20).await;
    let first = rx.ids();
    assert!(first.windows(2).all(|w| w[0] < w[1]), "http records in id order: {first:?}");
    let file = file_records(&dir);
    assert_eq!(ids_of(&file).into_iter().collect::<Vec<_>>(), first, "both sinks got the same events");
    let r = rx.records.lock().unwrap()[0].clone();
    assert_eq!(r["host"]["hostname"], "m1.example.com");
    assert_eq!((r["host"]["os"]["version"].as_str(), r["user"]["name"].as_str()), (Some("15.5"), Some("alice")));
    assert_eq!(r["file"]["path"], "/Applications/Tool.app/Contents/MacOS/tool");
    assert_eq!(r["code_signature"]["team_id"], "EQHXZ8M8AV");
    assert_eq!(
        (r["dasher"]["decision"].as_str(), r["event"]["outcome"].as_str()),
        (Some("BLOCK_BINARY"), Some("failure"))
    );

    // The records conform to the checked-in schema.
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    assert_eq!(schema["title"], "Dasher export record");
    let received = rx.records.lock().unwrap().clone();
    for (i, rec) in received.iter().chain(&file).enumerate() {
        conforms(&schema, &schema, rec, &format!("record {i}")).unwrap();
        assert_eq!(rec["dasher"]["schema_version"], 1);
    }

    // 2. The receiver goes down: uploads still succeed; the sink reports its errors and lag,
    // then catches up once the receiver is back.
    rx.status.store(503, Ordering::SeqCst);
    let before = *rx.requests.lock().unwrap();
    upload(&s, "m1", 20, 40).await;
    upload(&s, "m1", 40, 60).await;
    wait_for("the sink retried", || *rx.requests.lock().unwrap() >= before + 2).await;
    let st = s.admin(Method::GET, "/api/v1/export", None).await;
    assert_eq!(st.status, StatusCode::OK);
    let siem = st.json()["sinks"].as_array().unwrap().iter().find(|x| x["name"] == "siem").cloned().unwrap();
    assert!(siem["errors"].as_u64().unwrap() >= 1, "{siem}");
    assert!(siem["last_error"].as_str().unwrap().contains("503"), "{siem}");
    rx.status.store(200, Ordering::SeqCst);
    wait_for("60 records after the outage", || rx.ids().iter().collect::<BTreeSet<_>>().len() >= 60).await;
    let metrics = s.admin(Method::GET, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("dasher_export_delivered_total{sink=\"siem\"}"), "{text}");
    assert!(text.contains("dasher_export_errors_total{sink=\"siem\"}"), "{text}");
    assert!(text.contains("dasher_export_lag_events{sink=\"lines\"}"), "{text}");

    // 3. A record the receiver refuses is dead-lettered with the reason; the stream goes on.
    let bad = json!({"events": [event(60, "tool"), event(61, "bad"), event(62, "tool")], "machine_id": "m1"});
    assert_eq!(s.stage("eventupload", "m1", &bad).await.status, StatusCode::OK);
    upload(&s, "m1", 63, 70).await;
    wait_for("the records after the refused one", || rx.ids().iter().collect::<BTreeSet<_>>().len() >= 69).await;
    let dead = std::fs::read_to_string(dir.join("export/siem.deadletter.jsonl")).unwrap();
    let dead: Vec<Value> = dead.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["file"]["name"], "bad");
    assert!(dead[0]["reason"].as_str().unwrap().contains("400"), "{dead:?}");
    assert!(rx.records.lock().unwrap().iter().all(|r| r["file"]["name"] != "bad"));

    // 4. A restart resumes from the cursor: no gaps (duplicates allowed).
    s.restart().await;
    upload(&s, "m1", 70, 90).await;
    wait_for("90 events in the file after the restart", || ids_of(&file_records(&dir)).len() >= 90).await;
    wait_for("89 events at the http sink", || rx.ids().iter().collect::<BTreeSet<_>>().len() >= 89).await;
    let stored = s.admin(Method::GET, "/api/v1/events?limit=1000&include_dropped=true", None).await.json();
    let all: BTreeSet<u64> = stored["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(all.len(), 90);
    assert_eq!(ids_of(&file_records(&dir)), all, "the file holds every stored event");
    let http: BTreeSet<u64> = rx.ids().into_iter().collect();
    let refused: u64 = dead[0]["event_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(http, all.iter().copied().filter(|id| *id != refused).collect(), "every event but the refused one");
}

/// The console's Export page lists each sink with its cursor and lease holder (this replica,
/// named as in `GET /api/v1/export`), linked from the navigation only when sinks exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_sinks_and_their_lease_holder() {
    use crate::ui_console::Browser;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let d = dir.clone();
    let s = TestServer::start_with(move |c| {
        c.export.sinks = sinks(&d, "http://127.0.0.1:9/ingest").into_iter().filter(|k| k.name == "lines").collect();
    })
    .await;
    preflight(&s, "m1").await;
    upload(&s, "m1", 0, 9).await;
    wait_for("9 records in the file", || file_records(&dir).len() >= 9).await;
    let mut api = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let caught_up = |v: &Value| {
        let k = &v["sinks"][0];
        k["held_here"] == true && k["cursor"].as_u64().unwrap_or(0) > 0 && k["lag_events"] == 0
    };
    while !caught_up(&api) {
        assert!(tokio::time::Instant::now() < deadline, "the sink never showed caught up and held here: {api}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        api = s.admin(Method::GET, "/api/v1/export", None).await.json();
    }
    let replica = api["replica"].as_str().unwrap().to_owned();
    assert_eq!(api["sinks"][0]["holder"].as_str(), Some(replica.as_str()), "{api}");
    assert!(api["sinks"][0]["lease_expires"].as_i64().unwrap() > 1_700_000_000, "{api}");

    let mut b = Browser::new(s.handle.as_ref().unwrap().addr());
    b.sign_in(dasher_tests::TOKEN).await;
    let overview = b.get("/ui/").await;
    assert!(overview.body.contains(r#"href="/ui/export""#), "nav links the Export page");
    let page = b.get("/ui/export").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!page.body.contains(" style=") && !page.body.contains("<script>"), "no inline style or script");
    let row = &page.body[page.body.find("<strong>lines</strong>").expect("the sink's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    let cursor = format!(">{}</td>", api["sinks"][0]["cursor"]);
    for want in ["<td>file</td>", &cursor, &replica, "this replica"] {
        assert!(row.contains(want), "{want:?} not in the row: {row}");
    }

    // Without sinks: no navigation entry, and the page says how to configure export.
    let plain = TestServer::start().await;
    let mut b = Browser::new(plain.handle.as_ref().unwrap().addr());
    b.sign_in(dasher_tests::TOKEN).await;
    assert!(!b.get("/ui/").await.body.contains(r#"href="/ui/export""#), "no Export entry without sinks");
    let page = b.get("/ui/export").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("not configured"), "{}", page.body);
}

/// An `https://` receiver whose certificate comes from a CA made here: a sink trusting that
/// CA (`ca_file`, next to the system store) delivers; a sink trusting only the system store
/// refuses the certificate and says so, delivering nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sinks_trust_the_system_store_plus_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "dasher export test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf_cert = leaf.signed_by(&leaf_key, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/ingest", listener.local_addr().unwrap().port());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, g) = (acceptor.clone(), g.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let g = g.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
                        g.lock().unwrap().extend(lines.map(|l| serde_json::from_slice::<Value>(l).unwrap()));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let base = SinkConfig {
        kind: SinkKind::Http,
        settle_secs: 0,
        flush_interval_ms: 50,
        max_backoff_ms: 200,
        ..Default::default()
    };
    let sinks = vec![
        SinkConfig { name: "private".into(), url: Some(url.clone()), ca_file: Some(ca_file), ..base.clone() },
        SinkConfig { name: "system-only".into(), url: Some(url), ..base },
    ];
    let s = TestServer::start_with(move |c| c.export.sinks = sinks).await;
    preflight(&s, "m1").await;
    upload(&s, "m1", 0, 5).await;
    wait_for("5 records over https", || got.lock().unwrap().len() >= 5).await;
    let mut api = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = |v: &Value| {
        v["sinks"].as_array().into_iter().flatten().any(|k| k["name"] == "system-only" && k["last_error"].is_string())
    };
    while !refused(&api) {
        assert!(tokio::time::Instant::now() < deadline, "the system-only sink never failed: {api}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        api = s.admin(Method::GET, "/api/v1/export", None).await.json();
    }
    let sys = api["sinks"].as_array().unwrap().iter().find(|k| k["name"] == "system-only").unwrap();
    assert!(sys["last_error"].as_str().unwrap().contains("TLS"), "{sys}");
    assert_eq!(sys["delivered"], 0, "{sys}");
    assert_eq!(got.lock().unwrap().len(), 5, "only the sink trusting the CA delivered");
}
