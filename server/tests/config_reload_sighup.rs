//! Live configuration on the real `dasher` binary (issue 13): SIGHUP re-reads the config file and
//! switches a plugin from shadow to enforce while preflights keep running, with zero failed
//! requests; an invalid file changes nothing (SIGHUP and `POST /api/v1/config/reload` both say
//! why, naming the key); `POST /api/v1/plugins/reload` picks up a settings change; `dasher
//! plugin history` lists the generations.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "reload-test-token";
/// Generous: two shared cores, a debug build, a plugin compile per reload.
const DEADLINE: Duration = Duration::from_secs(120);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
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

fn write_config(path: &Path, port: u16, data: &Path, plugins: &Path, plugin_table: &str) {
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nadmin_token = \"{TOKEN}\"\n\n[plugins]\ndir = {plugins:?}\nwatch = false\norder = [\"staged-rollout\"]\n[plugins.limits]\ndeadline_ms = 5000\n\n[plugins.plugin.staged-rollout]\n{plugin_table}\n"
    );
    // Atomically, as an editor or config management would.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn request(client: &HttpClient, method: http::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({"error": e.to_string()})),
    }
}

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("lab-{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

async fn client_mode(client: &HttpClient, base: &str, id: &str) -> String {
    let (status, v) =
        request(client, http::Method::POST, &format!("{base}/santa/preflight/{id}"), Some(preflight(id))).await;
    assert_eq!(status, 200, "{v}");
    v["client_mode"].as_str().unwrap_or_default().to_owned()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "{what} within {} s", DEADLINE.as_secs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hangup(server: &Server) {
    let status = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_switches_shadow_to_enforce_under_load_and_invalid_files_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, plugins, config) = (tmp.path().join("data"), tmp.path().join("plugins"), tmp.path().join("dasher.toml"));
    std::fs::create_dir_all(&plugins).unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let options =
        dasher_policy::tools::BuildOptions { target_dir: Some(target.join("wasm-plugins")), ..Default::default() };
    let crate_dir = workspace.join("plugins").join("staged-rollout");
    dasher_policy::tools::build(&crate_dir, Some(&plugins.join("staged-rollout.wasm")), &options).unwrap();

    let port = free_port();
    let shadow = "mode = \"shadow\"\nsettings = { lockdown_hostnames = [\"lab-*\"] }";
    write_config(&config, port, &data, &plugins, shadow);
    let log = tmp.path().join("dasher.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dasher"))
        .args(["serve", "--log", "info"])
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        // The log goes to stdout.
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dasher starts");
    let server = Server { child, base: format!("http://127.0.0.1:{port}"), log };
    let base = server.base.clone();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    wait_for("dasher ready", async || {
        request(&client, http::Method::GET, &format!("{base}/readyz"), None).await.0 == 200
    })
    .await;
    assert_eq!(client_mode(&client, &base, "h0").await, "MONITOR", "a shadow plugin decides nothing");

    // Preflights from 4 hosts at once, all through the switch.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = vec![];
    for i in 0..4 {
        let (client, base, stop, ok, failed) = (client.clone(), base.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let id = format!("load-{i}");
            let mut failures = vec![];
            while !stop.load(Ordering::Relaxed) {
                let (status, v) =
                    request(&client, http::Method::POST, &format!("{base}/santa/preflight/{id}"), Some(preflight(&id)))
                        .await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("{status}: {v}"));
                }
            }
            failures
        }));
    }
    wait_for("load running", async || ok.load(Ordering::Relaxed) >= 8).await;
    let enforce = "mode = \"enforce\"\nsettings = { lockdown_hostnames = [\"lab-*\"] }";
    write_config(&config, port, &data, &plugins, enforce);
    hangup(&server);
    wait_for("LOCKDOWN after SIGHUP", async || client_mode(&client, &base, "h1").await == "LOCKDOWN").await;
    let after = ok.load(Ordering::Relaxed);
    wait_for("load after the switch", async || ok.load(Ordering::Relaxed) >= after + 8).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = vec![];
    for t in load {
        failures.extend(t.await.unwrap());
    }
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert_eq!(failed.load(Ordering::Relaxed), 0);

    // An invalid file (a typo'd key) changes nothing, by SIGHUP or by the API, and says why.
    write_config(&config, port, &data, &plugins, "mdoe = \"shadow\"\nsettings = { lockdown_hostnames = [\"lab-*\"] }");
    hangup(&server);
    let start = Instant::now();
    while !std::fs::read_to_string(&server.log).unwrap_or_default().contains("configuration reload refused") {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        assert!(start.elapsed() < DEADLINE, "the refusal logged; the log:\n{}", &log[log.len().saturating_sub(3000)..]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = std::fs::read_to_string(&server.log).unwrap();
    assert!(logged.contains("mdoe"), "the log names the key");
    let (status, v) = request(&client, http::Method::POST, &format!("{base}/api/v1/config/reload"), None).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("mdoe") && v["error"].as_str().unwrap().contains("nothing was changed"),
        "{v}"
    );
    // Settings `init` refuses are caught before anything changes too.
    write_config(&config, port, &data, &plugins, "settings = { lockdown_hostnamez = [] }");
    let (status, v) = request(&client, http::Method::POST, &format!("{base}/api/v1/config/reload"), None).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("plugins.plugin.staged-rollout.settings"), "{v}");
    assert_eq!(client_mode(&client, &base, "h2").await, "LOCKDOWN", "still enforcing the last valid file");

    // A settings change through the plugins reload route applies; a listen change is reported.
    let other_port = free_port();
    let text = std::fs::read_to_string(&config).unwrap();
    write_config(&config, port, &data, &plugins, "settings = { lockdown_hostnames = [\"kiosk-*\"] }");
    let text2 = std::fs::read_to_string(&config).unwrap().replace(&format!(":{port}\""), &format!(":{other_port}\""));
    assert_ne!(text, text2);
    std::fs::write(&config, text2).unwrap();
    let (status, v) = request(&client, http::Method::POST, &format!("{base}/api/v1/plugins/reload"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["config"]["needs_restart"], json!(["listen"]), "{v}");
    assert_eq!(v["config"]["applied"], json!(["plugins.plugin"]), "{v}");
    assert_eq!(client_mode(&client, &base, "h3").await, "MONITOR", "the new settings decide");

    // The CLI lists the generations from the running server.
    let out = Command::new(env!("CARGO_BIN_EXE_dasher"))
        .args(["plugin", "history", "staged-rollout", "--server", &base])
        .env("DASHER_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = dasher_policy::content_hash(&std::fs::read(plugins.join("staged-rollout.wasm")).unwrap());
    assert!(text.contains(&hash[..12]) && text.contains("startup"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_dasher"))
        .args(["plugin", "history", "staged-rollout", "--server", &base])
        .env("DASHER_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401"));
}
