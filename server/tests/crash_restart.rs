//! Crash safety of the whole server: the real `dasher` binary, loaded by a simulated fleet, event
//! uploads and admin rule edits, is `kill -9`ed at random moments and restarted on the same data.
//! After every restart everything it acknowledged is still there — each event that got a 200 and
//! each rule edit whose version the admin API returned (edits are atomic: an unacknowledged one is
//! all there or not at all, and versions never go back) — and at the end one fault-free sync per
//! host converges the whole fleet.
//!
//! The kill moments come from a seed printed at the start (set `DASHER_CRASH_SEED` to replay one).

use dasher_sim::Generation;
use dasher_sim::runner::{self, Fleet, RunConfig};
use http::Method;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TOKEN: &str = "crash-test-token";
/// Server lives that end in `kill -9`.
const KILLS: usize = 5;
const HOSTS: usize = 60;
/// Rules added by each admin edit (plus one removal of an earlier edit's rule).
const RULES_PER_EDIT: usize = 5;
const EVENTS_PER_UPLOAD: usize = 4;
/// Machines uploading events next to the fleet, one request at a time each.
const UPLOADERS: usize = 2;

/// The `dasher serve` child process on a fixed loopback port.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path, store: &str, port: u16) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_dasher"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store", store, "--log", "warn"])
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

    /// Waits for `/healthz`; restarts the process if it exited (the port may still be held).
    async fn ready(&mut self, fleet: &Fleet, data_dir: &Path, store: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "dasher did not become ready within 120 s");
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("dasher exited with {status} while starting; starting it again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                *self = Server::start(data_dir, store, port);
                continue;
            }
            if fleet.ctx.transport.get_json(&format!("{}/healthz", self.base), TOKEN).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_9(mut self) {
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

fn rule_id(edit: usize, j: usize) -> String {
    format!("c0ffee{:058x}", edit * 1000 + j)
}

/// What the admin API acknowledged, and the one edit that may have been cut off by a kill.
#[derive(Default)]
struct RuleModel {
    /// Acknowledged edits: edit number → version.
    acked: BTreeMap<usize, u64>,
    /// Edits sent but not acknowledged (killed in flight).
    unacked: BTreeSet<usize>,
    next_edit: usize,
}

impl RuleModel {
    /// The edit whose first rule `edit` removes.
    fn removes(edit: usize) -> Option<usize> {
        edit.checked_sub(2)
    }

    fn body(edit: usize) -> Value {
        let mut rules: Vec<Value> = (0..RULES_PER_EDIT)
            .map(|j| json!({"identifier": rule_id(edit, j), "rule_type": "BINARY", "policy": "BLOCKLIST", "custom_msg": format!("edit {edit}")}))
            .collect();
        if let Some(old) = RuleModel::removes(edit) {
            rules.push(json!({"identifier": rule_id(old, 0), "rule_type": "BINARY", "policy": "REMOVE"}));
        }
        json!({ "rules": rules })
    }

    /// Checks the global rule set (`identifier → custom_msg`) against what was acknowledged:
    /// an acknowledged edit is fully there; an unacknowledged one fully or not at all (rules
    /// 1.. of an edit are never removed, so they witness whether it was applied); rule 0 of an
    /// applied edit is there exactly when the edit two later, which removes it, was not applied.
    fn check(&self, rules: &BTreeMap<String, String>, head: u64, context: &str) {
        let max_acked = self.acked.values().copied().max().unwrap_or(0);
        assert!(head >= max_acked, "{context}: head version {head} is behind acknowledged version {max_acked}");
        let mut applied = BTreeMap::new();
        for &edit in self.acked.keys() {
            applied.insert(edit, true);
        }
        for &edit in &self.unacked {
            let present = (1..RULES_PER_EDIT).filter(|&j| rules.contains_key(&rule_id(edit, j))).count();
            assert!(
                present == 0 || present == RULES_PER_EDIT - 1,
                "{context}: unacknowledged edit {edit} is half applied ({present} of {} rules)",
                RULES_PER_EDIT - 1
            );
            applied.insert(edit, present > 0);
        }
        for (&edit, &is_applied) in &applied {
            let ack = self.acked.get(&edit).map_or("unacknowledged".to_owned(), |v| format!("version {v}"));
            for j in 0..RULES_PER_EDIT {
                let id = rule_id(edit, j);
                let removed = j == 0 && applied.get(&(edit + 2)).copied().unwrap_or(false);
                match (is_applied && !removed, rules.get(&id)) {
                    (true, None) => panic!("{context}: rule {id} of edit {edit} ({ack}) is lost"),
                    (true, Some(msg)) => assert_eq!(msg, &format!("edit {edit}"), "{context}: rule {id}"),
                    (false, Some(_)) => panic!("{context}: rule {id} of edit {edit} ({ack}) should not be there"),
                    (false, None) => {}
                }
            }
        }
    }
}

async fn admin_get(fleet: &Fleet, base: &str, path: &str) -> Value {
    fleet.ctx.transport.get_json(&format!("{base}{path}"), TOKEN).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn global_rules(fleet: &Fleet, base: &str) -> (BTreeMap<String, String>, u64) {
    let v = admin_get(fleet, base, "/api/v1/rules?rule_set=global&limit=100000").await;
    let rules = v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| (r["identifier"].as_str().unwrap().to_owned(), r["custom_msg"].as_str().unwrap_or("").to_owned()))
        .collect();
    (rules, v["version"].as_u64().expect("version"))
}

/// Every file hash stored for `machine_id`, paging through the events API.
async fn stored_event_hashes(fleet: &Fleet, base: &str, machine_id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut before: Option<u64> = None;
    loop {
        let mut path = format!("/api/v1/events?machine_id={machine_id}&limit=10000");
        if let Some(b) = before {
            path.push_str(&format!("&before_id={b}"));
        }
        let events = admin_get(fleet, base, &path).await["events"].as_array().expect("events").clone();
        if events.is_empty() {
            return out;
        }
        for e in &events {
            out.insert(e["file_sha256"].as_str().expect("file_sha256").to_owned());
        }
        before = events.iter().filter_map(|e| e["id"].as_u64()).min();
    }
}

fn upload_body(uploader: usize, n: usize) -> (Value, Vec<String>) {
    let hashes: Vec<String> =
        (0..EVENTS_PER_UPLOAD).map(|k| format!("e0{uploader:02x}{:060x}", n * EVENTS_PER_UPLOAD + k)).collect();
    let events: Vec<Value> = hashes
        .iter()
        .map(|h| {
            json!({"file_sha256": h, "file_path": "/Applications/Crash.app/Contents/MacOS", "file_name": "Crash",
                   "execution_time": 1_767_225_600.5, "pid": 4242, "decision": "BLOCK_BINARY", "executing_user": "ci"})
        })
        .collect();
    (json!({ "events": events }), hashes)
}

/// Load for one server life: the fleet syncs, uploaders upload, the editor edits rules, until `stop`.
async fn one_life(
    fleet: Arc<Fleet>,
    cfg: RunConfig,
    base: String,
    stop: Arc<AtomicBool>,
    model: Arc<Mutex<RuleModel>>,
    events: Arc<Mutex<Vec<BTreeSet<String>>>>,
    uploads: Arc<Mutex<Vec<usize>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let fleet = fleet.clone();
        async move { runner::drive(&fleet, &cfg).await }
    }));
    tasks.push(tokio::spawn({
        let (fleet, stop, base) = (fleet.clone(), stop.clone(), base.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let edit = {
                    let mut m = model.lock().await;
                    m.next_edit += 1;
                    let edit = m.next_edit;
                    m.unacked.insert(edit);
                    edit
                };
                let url = format!("{base}/api/v1/rules");
                match fleet.ctx.transport.send_json(Method::POST, &url, TOKEN, &RuleModel::body(edit)).await {
                    Ok((200, body)) => {
                        let version = serde_json::from_slice::<Value>(&body).unwrap()["version"].as_u64().unwrap();
                        let mut m = model.lock().await;
                        if let Some((&prev_edit, &prev)) = m.acked.iter().next_back() {
                            assert!(
                                version > prev,
                                "edit {edit} got version {version}, not after edit {prev_edit}'s {prev}"
                            );
                        }
                        m.unacked.remove(&edit);
                        m.acked.insert(edit, version);
                    }
                    Ok((status, body)) => panic!("rule edit {edit}: HTTP {status}: {}", String::from_utf8_lossy(&body)),
                    Err(_) => return, // killed: the edit stays unacknowledged
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    }));
    for uploader in 0..UPLOADERS {
        let (fleet, stop, base, events, uploads) =
            (fleet.clone(), stop.clone(), base.clone(), events.clone(), uploads.clone());
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/santa/eventupload/crash-uploader-{uploader}");
            while !stop.load(Ordering::SeqCst) {
                let n = {
                    let mut u = uploads.lock().await;
                    u[uploader] += 1;
                    u[uploader]
                };
                let (body, hashes) = upload_body(uploader, n);
                match fleet.ctx.transport.send_json(Method::POST, &url, TOKEN, &body).await {
                    Ok((200, _)) => events.lock().await[uploader].extend(hashes),
                    Ok((status, body)) => panic!("event upload: HTTP {status}: {}", String::from_utf8_lossy(&body)),
                    Err(_) => return,
                }
            }
        }));
    }
    tasks
}

async fn verify(fleet: &Fleet, base: &str, model: &Mutex<RuleModel>, events: &Mutex<Vec<BTreeSet<String>>>, ctx: &str) {
    let (rules, head) = global_rules(fleet, base).await;
    let m = model.lock().await;
    m.check(&rules, head, ctx);
    let events = events.lock().await;
    for (uploader, acked) in events.iter().enumerate() {
        let stored = stored_event_hashes(fleet, base, &format!("crash-uploader-{uploader}")).await;
        let lost: Vec<_> = acked.difference(&stored).take(5).collect();
        assert!(lost.is_empty(), "{ctx}: {} acknowledged events of uploader {uploader} lost, e.g. {lost:?}", {
            acked.difference(&stored).count()
        });
    }
    eprintln!(
        "{ctx}: {} acknowledged rule edits (head version {head}) and {} acknowledged events intact",
        m.acked.len(),
        events.iter().map(BTreeSet::len).sum::<usize>()
    );
}

async fn crash_and_restart(engine: &str) {
    let seed: u64 = std::env::var("DASHER_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{engine}: DASHER_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let store = match engine {
        "redb" => format!("redb:{}", data_dir.join("dasher.redb").display()),
        _ => format!("sled:{}", data_dir.join("sled").display()),
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = RunConfig {
        server: format!("{base}/santa/"),
        hosts: HOSTS,
        duration: Duration::ZERO, // set per life
        concurrency: 8,
        closed_loop: true,
        generations: Generation::ALL.iter().map(|g| (*g, 1)).collect(),
        backoff_scale: 0.01,
        seed,
        ..Default::default()
    };
    let fleet = Arc::new(runner::build_fleet(&cfg).unwrap());
    let model = Arc::new(Mutex::new(RuleModel::default()));
    let events = Arc::new(Mutex::new(vec![BTreeSet::new(); UPLOADERS]));
    let uploads = Arc::new(Mutex::new(vec![0usize; UPLOADERS]));

    let mut server = Server::start(&data_dir, &store, port);
    server.ready(&fleet, &data_dir, &store, port).await;
    for life in 1..=KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let kill_after = Duration::from_millis(rng.random_range(1_000..4_000));
        // The fleet's load phase ends just after the kill; syncs cut off by it fail at once.
        let cfg = RunConfig { duration: kill_after + Duration::from_millis(500), ..cfg.clone() };
        let tasks =
            one_life(fleet.clone(), cfg, base.clone(), stop.clone(), model.clone(), events.clone(), uploads.clone())
                .await;
        tokio::time::sleep(kill_after).await;
        server.kill_9();
        stop.store(true, Ordering::SeqCst);
        // Each host syncs one at a time (as Santa does): wait for every sync of this life to end.
        for t in tasks {
            t.await.expect("load task");
        }
        eprintln!("{engine}: life {life} killed after {kill_after:?}");

        server = Server::start(&data_dir, &store, port);
        server.ready(&fleet, &data_dir, &store, port).await;
        verify(&fleet, &base, &model, &events, &format!("{engine} after kill {life}")).await;
    }

    // One fault-free sync per host (what `runner::sync_all` does), keeping the failures.
    let mut failed = Vec::new();
    for client in &fleet.clients {
        if let (Err(e), _) = client.full_sync(&fleet.ctx).await {
            failed.push(format!("{}: {e:?}", client.host.machine_id));
        }
    }
    assert!(failed.is_empty(), "{engine}: final syncs failed: {failed:?}");
    let c = runner::check_convergence(&fleet, &base, TOKEN, 8).await;
    assert_eq!(c.converged, HOSTS, "{engine}: fleet did not converge after the crashes: {:?}", c.mismatches);
    let m = &fleet.ctx.transport.metrics;
    assert!(m.syncs_ok.load(Ordering::Relaxed) > HOSTS as u64, "{engine}: the fleet hardly synced");
    let edits = model.lock().await.acked.len();
    assert!(edits >= KILLS, "{engine}: only {edits} rule edits acknowledged in {KILLS} lives");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_server_survives_repeated_kill_9() {
    crash_and_restart("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_server_survives_repeated_kill_9() {
    crash_and_restart("sled").await;
}
