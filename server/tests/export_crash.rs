//! Event export across `kill -9`, with the real `dasher` binary and a receiver started here.
//!
//! - `embedded_kill_9`: one server on redb exporting to an http sink is killed with SIGKILL
//!   several times while it exports and restarted on the same data.
//! - `postgres_replicas_kill_9` (needs `DASHER_TEST_POSTGRES_URL`, see `.ci/postgres.sh`): two
//!   replicas on one PostgreSQL database, both configured with the same sink; the replica
//!   exporting (the one whose `X-Dasher-Replica` the receiver last saw) is killed and restarted,
//!   again and again, so the sink changes hands through lease expiry.
//!
//! Both check that every event a server acknowledged (HTTP 200 to the upload) reached the
//! receiver at least once with its content, and duplicates stay within what the kills explain.
//! The replica test also checks that no two replicas ever had a request in flight at the
//! receiver at the same time, and that the admin API names the lease holder. Every wait is a
//! bounded poll, never a timed assertion.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "export-crash-token";
const BATCH: usize = 20;
const EVENTS_PER_UPLOAD: usize = 10;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Records by file hash: every copy received.
    records: BTreeMap<String, Vec<Value>>,
    /// Requests in flight, by replica id.
    in_flight: BTreeMap<String, usize>,
    /// Requests that arrived while another replica had one in flight.
    overlaps: Vec<String>,
    /// Replica ids in the order their batches were accepted.
    senders: Vec<String>,
    requests: u64,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Seen>>);

impl Receiver {
    /// Starts on 127.0.0.1; every fifth request stalls a little (so deliveries overlap if
    /// two replicas ever export at once); every record of an answered batch is kept.
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
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
                        async move { Ok::<_, std::convert::Infallible>(rc.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        (r, url)
    }

    async fn handle(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
        let replica = req.headers().get("x-dasher-replica").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let n = {
            let mut s = self.0.lock().unwrap();
            s.requests += 1;
            let others: Vec<String> =
                s.in_flight.iter().filter(|(r, n)| **r != replica && **n > 0).map(|(r, _)| r.clone()).collect();
            if !others.is_empty() {
                s.overlaps.push(format!("{replica} while {others:?} in flight"));
            }
            *s.in_flight.entry(replica.clone()).or_default() += 1;
            s.requests
        };
        // Leaves the in-flight count however the request ends (the sender may die mid-body).
        struct Done(Receiver, String);
        impl Drop for Done {
            fn drop(&mut self) {
                if let Some(n) = self.0.0.lock().unwrap().in_flight.get_mut(&self.1) {
                    *n -= 1;
                }
            }
        }
        let _done = Done(self.clone(), replica.clone());
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        if n % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let status = match body {
            Ok(body) if !replica.is_empty() => {
                let mut s = self.0.lock().unwrap();
                for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let v: Value = serde_json::from_slice(line).unwrap();
                    let hash = v["file"]["hash"]["sha256"].as_str().unwrap().to_owned();
                    s.records.entry(hash).or_default().push(v);
                }
                s.senders.push(replica);
                200
            }
            Ok(_) => 400,
            Err(_) => 500,
        };
        http::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap()
    }

    fn hashes(&self) -> BTreeSet<String> {
        self.0.lock().unwrap().records.keys().cloned().collect()
    }

    fn last_sender(&self) -> Option<String> {
        self.0.lock().unwrap().senders.last().cloned()
    }
}

/// A `dasher serve` child process.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(config: &Path, data_dir: &Path, store: &str, port: u16) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_dasher"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store", store, "--log", "warn"])
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--admin-token", TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dasher starts");
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL"); // `Child::kill` is SIGKILL on Unix.
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).build(c)
}

async fn call(http: &Http, method: http::Method, url: &str, body: Option<&Value>) -> Option<(u16, Bytes)> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), http.request(req)).await.ok()?.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

async fn wait_ready(http: &Http, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((200, _)) = call(http, http::Method::GET, &format!("{base}/healthz"), None).await {
            return;
        }
        assert!(Instant::now() < deadline, "{base} did not become ready within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not reached within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("dasher.toml");
    let toml = format!(
        "[export]\nlease_secs = 3\n\n[[export.sinks]]\nname = \"siem\"\nkind = \"http\"\nurl = \"{url}\"\n\
         batch_size = {BATCH}\nflush_interval_ms = 100\nsettle_secs = 0\nmax_backoff_ms = 500\ntimeout_secs = 10\n"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn upload_body(n: usize) -> (Value, Vec<String>) {
    let hashes: Vec<String> = (0..EVENTS_PER_UPLOAD).map(|k| format!("ec{:062x}", n * EVENTS_PER_UPLOAD + k)).collect();
    let events: Vec<Value> = hashes
        .iter()
        .map(|h| {
            json!({"file_sha256": h, "file_path": "/Applications/Export.app/Contents/MacOS", "file_name": format!("tool-{n}"),
                   "execution_time": 1_767_225_600.5, "pid": 4242, "decision": "BLOCK_BINARY", "executing_user": "ci"})
        })
        .collect();
    (json!({ "events": events }), hashes)
}

/// Uploads batches of events to whichever of `bases` answers, in turn, until `stop`; returns
/// the upload number of each acknowledged upload's hashes.
fn uploader(
    http: Http,
    bases: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, usize>> {
    tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            n += 1;
            let targets = bases.lock().unwrap().clone();
            let base = &targets[n % targets.len()];
            let (body, hashes) = upload_body(n);
            let machine = format!("export-crash-{}", n % 3);
            let url = format!("{base}/santa/eventupload/{machine}");
            if let Some((200, _)) = call(&http, http::Method::POST, &url, Some(&body)).await {
                acked.extend(hashes.into_iter().map(|h| (h, n)));
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        acked
    })
}

/// Every acknowledged event arrived with its content; duplicates within what `kills` explain.
fn check_delivery(rx: &Receiver, acked: &BTreeMap<String, usize>, kills: usize) {
    let seen = rx.0.lock().unwrap();
    let mut copies = 0;
    for (hash, n) in acked {
        let recs = seen.records.get(hash).unwrap_or_else(|| panic!("acknowledged event {hash} never arrived"));
        copies += recs.len() - 1;
        for r in recs {
            assert_eq!(r["file"]["name"], format!("tool-{n}"), "{r}");
            assert_eq!(r["host"]["id"], format!("export-crash-{}", n % 3), "{r}");
            assert_eq!(r["dasher"]["decision"], "BLOCK_BINARY", "{r}");
            assert!(r["event"]["id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()), "{r}");
        }
    }
    // A kill or a lost lease re-sends at most the batches in flight (one per sink).
    assert!(copies <= (kills + 1) * BATCH, "{copies} duplicate records for {kills} kills: more than re-sent batches");
    eprintln!("{} events acknowledged, {copies} duplicates, {} requests", acked.len(), seen.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_9() {
    const KILLS: usize = 3;
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &url);
    let data = tmp.path().join("data");
    let store = format!("redb:{}", data.join("dasher.redb").display());
    let port = free_port();
    let http = client();
    let mut server = Server::start(&config, &data, &store, port);
    wait_ready(&http, &server.base).await;
    let bases = Arc::new(Mutex::new(vec![server.base.clone()]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = uploader(http.clone(), bases, stop.clone());
    for kill in 0..KILLS {
        let before = rx.hashes().len();
        wait_for("the sink delivering", 120, || rx.hashes().len() >= before + 2 * BATCH).await;
        server.kill_9();
        eprintln!("kill {kill}: {} events at the receiver", rx.hashes().len());
        server = Server::start(&config, &data, &store, port);
        wait_ready(&http, &server.base).await;
    }
    let n = rx.hashes().len();
    wait_for("deliveries after the last restart", 120, || rx.hashes().len() >= n + BATCH).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = up.await.unwrap();
    assert!(acked.len() >= 4 * BATCH, "only {} events acknowledged", acked.len());
    wait_for("every acknowledged event at the receiver", 180, || {
        let have = rx.hashes();
        acked.keys().all(|h| have.contains(h))
    })
    .await;
    check_delivery(&rx, &acked, KILLS);
    let (status, body) =
        call(&http, http::Method::GET, &format!("{}/api/v1/export", server.base), None).await.expect("export status");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["sinks"][0]["held_here"], true, "{v}");
    assert_eq!(v["sinks"][0]["holder"], v["replica"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_kill_9() {
    use dasher_store::postgres::testing::{TestDatabase, server_url};
    const KILLS: usize = 4;
    let Some(pg) = server_url("postgres_replicas_kill_9") else { return };
    let db = TestDatabase::create(&pg, "export_replicas_kill_9").await;
    let store = db.url.as_str().to_owned();
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &url);
    let http = client();
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    let ports = [free_port(), free_port()];
    let mut servers = vec![];
    for i in 0..2 {
        servers.push(Server::start(&config, &dirs[i], &store, ports[i]));
        wait_ready(&http, &servers[i].base).await;
    }
    let bases = Arc::new(Mutex::new(servers.iter().map(|s| s.base.clone()).collect::<Vec<_>>()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = uploader(http.clone(), bases, stop.clone());

    // Exactly one replica holds the sink, and both say which.
    let holder = |v: &Value| v["sinks"][0]["holder"].as_str().map(str::to_owned);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = vec![];
        for s in &servers {
            if let Some((200, b)) = call(&http, http::Method::GET, &format!("{}/api/v1/export", s.base), None).await {
                views.push(serde_json::from_slice::<Value>(&b).unwrap());
            }
        }
        let here: Vec<bool> = views.iter().map(|v| v["sinks"][0]["held_here"] == true).collect();
        if views.len() == 2 && here.iter().filter(|h| **h).count() == 1 && holder(&views[0]) == holder(&views[1]) {
            let h = holder(&views[0]).unwrap();
            let owner = &views[usize::from(here[1])];
            assert_eq!(owner["replica"].as_str(), Some(h.as_str()), "the holder is the replica saying so");
            assert!(owner["sinks"][0]["lease_expires"].as_i64().unwrap() > 0);
            break;
        }
        assert!(Instant::now() < deadline, "the replicas never agreed on one holder: {views:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for kill in 0..KILLS {
        let before = rx.hashes().len();
        wait_for("the sink delivering", 180, || rx.hashes().len() >= before + 2 * BATCH).await;
        // Kill the replica exporting right now (found by the id on its requests).
        let sender = rx.last_sender().unwrap();
        let mut victim = None;
        for (i, s) in servers.iter().enumerate() {
            let view = call(&http, http::Method::GET, &format!("{}/api/v1/export", s.base), None).await;
            if let Some((200, b)) = view
                && serde_json::from_slice::<Value>(&b).unwrap()["replica"] == sender.as_str()
            {
                victim = Some(i);
            }
        }
        let i = victim.unwrap_or(kill % 2);
        servers[i].kill_9();
        eprintln!("kill {kill}: replica {i} ({sender}), {} events at the receiver", rx.hashes().len());
        // The other replica takes the sink over once the lease expires.
        let after = rx.hashes().len();
        wait_for("the other replica taking over", 180, || {
            rx.hashes().len() > after && rx.last_sender().is_some_and(|s| s != sender)
        })
        .await;
        servers[i] = Server::start(&config, &dirs[i], &store, ports[i]);
        wait_ready(&http, &servers[i].base).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = up.await.unwrap();
    assert!(acked.len() >= 4 * BATCH, "only {} events acknowledged", acked.len());
    wait_for("every acknowledged event at the receiver", 180, || {
        let have = rx.hashes();
        acked.keys().all(|h| have.contains(h))
    })
    .await;
    check_delivery(&rx, &acked, KILLS);
    {
        let seen = rx.0.lock().unwrap();
        assert!(seen.overlaps.is_empty(), "two replicas delivered at once: {:?}", seen.overlaps);
        let distinct: BTreeSet<&String> = seen.senders.iter().collect();
        assert!(distinct.len() > KILLS, "every kill handed the sink to another replica: {distinct:?}");
    }
    drop(servers);
    db.drop_database().await;
}
