//! Helpers for Dasher end-to-end tests: [`TestServer`] starts the real server on
//! 127.0.0.1 with a real database in a temp dir; requests go over real HTTP.

pub mod browser;
pub mod idp;

use bytes::Bytes;
use dasher_server::config::Config;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Admin token of test servers.
pub const TOKEN: &str = "test-token";

/// A running server plus an HTTP client.
pub struct TestServer {
    /// The running server (`None` after [`TestServer::stop`]).
    pub handle: Option<dasher_server::ServerHandle>,
    /// Data directory (kept across restarts).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    client: Client<HttpConnector, Full<Bytes>>,
    config: Config,
}

/// A response.
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestServer {
    /// Starts a server on a fresh temp dir with `Config::for_tests`, adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(tmp.path());
        tweak(&mut config);
        let mut s = TestServer::start_in(tmp.path(), config).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server with default test settings.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    async fn start_in(dir: &Path, config: Config) -> TestServer {
        let handle = dasher_server::start(config.clone()).await.unwrap();
        TestServer {
            handle: Some(handle),
            dir: dir.to_owned(),
            _tmp: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
            config,
        }
    }

    /// Stops and starts the server again on the same data (new port).
    pub async fn restart(&mut self) {
        self.handle.take().unwrap().shutdown().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        self.handle = Some(dasher_server::start(config).await.unwrap());
    }

    /// Stops and starts the server again on the same data (new port), with its configuration
    /// changed by `tweak` (kept for later restarts).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        tweak(&mut self.config);
        self.restart().await;
    }

    fn base(&self) -> String {
        format!("http://{}", self.handle.as_ref().unwrap().addr())
    }

    /// Sends a request with raw headers and body.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body }
    }

    /// POSTs a JSON sync body (uncompressed) to `/santa/{stage}/{id}`.
    pub async fn stage(&self, stage: &str, id: &str, body: &Value) -> Reply {
        let path = format!("/santa/{stage}/{id}");
        self.send(Method::POST, &path, &[("content-type", "application/json")], serde_json::to_vec(body).unwrap()).await
    }

    /// An admin request with the test token (any status is returned).
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {TOKEN}");
        let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
        self.send(method, path, &[("authorization", &auth), ("content-type", "application/json")], body).await
    }

    /// Upserts rules through the admin API; returns the new version.
    pub async fn put_rules(&self, rules: Value) -> u64 {
        let r = self.admin(Method::POST, "/api/v1/rules", Some(serde_json::json!({ "rules": rules }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        r.json()["version"].as_u64().unwrap()
    }
}

/// A client's rule DB, applying downloads as Santa does (§5.2, §5.3).
#[derive(Default, Debug, Clone, PartialEq)]
pub struct ClientRules(pub std::collections::BTreeMap<(String, String), Value>);

impl ClientRules {
    /// Runs preflight → ruledownload pages → postflight as a current client, applies the
    /// rules, and returns (sync_type, rules received, pages).
    pub async fn sync(&mut self, s: &TestServer, id: &str, preflight: Value) -> (String, usize, usize) {
        self.sync_across(&[s], id, preflight).await
    }

    /// Like [`ClientRules::sync`], but each request goes to the next of `servers` in turn
    /// (replicas sharing one database): the preflight to the first, the first page to the
    /// second, and so on, so every cursor is redeemed at a different replica than issued it.
    pub async fn sync_across(&mut self, servers: &[&TestServer], id: &str, preflight: Value) -> (String, usize, usize) {
        assert!(!servers.is_empty(), "sync_across needs a server");
        let mut turn = 0usize;
        let mut next = || {
            let s = servers[turn % servers.len()];
            turn += 1;
            s
        };
        let pre = next().stage("preflight", id, &preflight).await;
        assert_eq!(pre.status, StatusCode::OK, "{}", String::from_utf8_lossy(&pre.body));
        let sync_type = pre.json()["sync_type"].as_str().unwrap_or("NORMAL").to_owned();
        let mut received = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut body = serde_json::json!({ "machine_id": id });
            if let Some(c) = &cursor {
                body["cursor"] = c.clone().into();
            }
            let page = next().stage("ruledownload", id, &body).await;
            assert_eq!(page.status, StatusCode::OK, "{}", String::from_utf8_lossy(&page.body));
            let v = page.json();
            pages += 1;
            received.extend(v["rules"].as_array().expect("rules is an array").iter().cloned());
            match v.get("cursor") {
                None => break,
                Some(c) => cursor = Some(c.as_str().expect("cursor is a string").to_owned()),
            }
        }
        if sync_type != "NORMAL" && !received.is_empty() {
            self.0.clear();
        }
        for r in &received {
            let key = (r["rule_type"].as_str().unwrap().to_owned(), r["identifier"].as_str().unwrap().to_owned());
            if r["policy"] == "REMOVE" {
                self.0.remove(&key);
            } else {
                self.0.insert(key, r.clone());
            }
        }
        let n = received.len();
        let post = next()
            .stage(
                "postflight",
                id,
                &serde_json::json!({"rules_received": n, "rules_processed": n, "machine_id": id, "syncType": sync_type}),
            )
            .await;
        assert_eq!(post.status, StatusCode::OK);
        (sync_type, n, pages)
    }

    /// Compares with the server's effective rules for `id`.
    pub async fn assert_matches_server(&self, s: &TestServer, id: &str) {
        let eff = s.admin(Method::GET, &format!("/api/v1/hosts/{id}/effective-rules"), None).await.json();
        let mut expected = std::collections::BTreeMap::new();
        for r in eff["rules"].as_array().unwrap() {
            expected.insert(
                (r["rule_type"].as_str().unwrap().to_owned(), r["identifier"].as_str().unwrap().to_owned()),
                r["policy"].clone(),
            );
        }
        let mine: std::collections::BTreeMap<_, _> =
            self.0.iter().map(|(k, v)| (k.clone(), v["policy"].clone())).collect();
        assert_eq!(mine, expected, "client rules differ from the server's effective rules for {id}");
    }
}

/// A simulated fleet (dasher-sim) for `cfg`, its hosts spread over `servers` (sync base URLs of
/// replicas sharing one database): host `i` syncs with `servers[i % servers.len()]`. Hosts,
/// seeds and the shared context are those `runner::build_fleet(cfg)` would make.
pub fn fleet_across(cfg: &dasher_sim::runner::RunConfig, servers: &[String]) -> dasher_sim::runner::Fleet {
    use dasher_sim::runner::{Fleet, RunConfig, build_fleet};
    assert!(!servers.is_empty(), "fleet_across needs a server");
    let fleets: Vec<Fleet> = servers
        .iter()
        .map(|s| build_fleet(&RunConfig { server: s.clone(), ..cfg.clone() }).expect("fleet builds"))
        .collect();
    let clients = (0..fleets[0].clients.len()).map(|i| fleets[i % fleets.len()].clients[i].clone()).collect();
    Fleet { clients, ctx: fleets[0].ctx.clone() }
}

/// Compiles the example or fixture plugin `plugins/{name}` into `{dir}/{name}.wasm`, building in
/// a `wasm-plugins` directory beside the test build (reused across tests and runs).
pub fn component(name: &str, dir: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let options =
        dasher_policy::tools::BuildOptions { target_dir: Some(target.join("wasm-plugins")), ..Default::default() };
    let out = dir.join(format!("{name}.wasm"));
    dasher_policy::tools::build(&workspace.join("plugins").join(name), Some(&out), &options)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// A server with the named example or fixture plugins compiled into a fresh directory, in that
/// chain order, not watched, with a generous deadline (behaviour, not speed: a loaded 2-core
/// CI machine must not hit the default 10 ms); `tweak` adjusts the plugin config. Keep the
/// directory alive as long as the server.
pub async fn plugin_server(
    names: &[&str],
    tweak: impl FnOnce(&mut dasher_policy::PluginsConfig) + Send + 'static,
) -> (TestServer, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    for name in names {
        component(name, plugins.path());
    }
    let dir = plugins.path().to_owned();
    let order = names.iter().map(|n| n.to_string()).collect();
    let s = TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        p.limits.deadline_ms = 5_000;
        p.order = order;
        tweak(&mut p);
        c.plugins = Some(p);
    })
    .await;
    (s, plugins)
}
