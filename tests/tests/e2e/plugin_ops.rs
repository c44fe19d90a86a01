//! Issue 13, operations: a configured plugin that is not loaded at start fails closed under each
//! `on_unavailable` choice (no mode downgrade, no rule removed, `/readyz` 503 naming it); a
//! missing file is recovered from the generation kept in the store; a rollback names its
//! generation, is listed in the history and survives a restart.

use dasher_policy::{OnUnavailable, PluginsConfig};
use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::wire::ClientMode;
use dasher_tests::{ClientRules, TestServer, plugin_server};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const TEAM: &str = "EQHXZ8M8AV";

fn preflight(id: &str, hostname: &str) -> Value {
    json!({"hostname": hostname, "santa_version": "2026.7.1", "machine_id": id, "client_mode": "MONITOR",
           "os_version": "15.5", "model_identifier": "Mac15,7", "primary_user_groups": ["eng"]})
}

/// Working settings: kiosk hosts in LOCKDOWN, the `eng` group gets the `kiosk-tools` set.
fn configure_plugins(p: &mut PluginsConfig) {
    let rollout = p.plugin.entry("staged-rollout".into()).or_default();
    rollout.settings = json!({"lockdown_hostnames": ["kiosk-*"]});
    rollout.fallback_configure = Some(ConfigDecision { client_mode: Some(ClientMode::Lockdown), ..Default::default() });
    p.plugin.entry("ruleset-targeting".into()).or_default().settings =
        json!({"targets": [{"rule_set": "kiosk-tools", "groups": ["eng"]}]});
}

/// Both plugins' settings broken (a typo `init` refuses), so neither the files nor the
/// generations kept in the store load: both are unavailable.
fn break_plugins(c: &mut dasher_server::config::Config, choice: OnUnavailable) {
    let p = c.plugins.as_mut().unwrap();
    for (name, typo) in
        [("staged-rollout", json!({"lockdown_hostnamez": ["kiosk-*"]})), ("ruleset-targeting", json!({"targetz": []}))]
    {
        let plugin = p.plugin.get_mut(name).unwrap();
        plugin.settings = typo;
        plugin.on_unavailable = choice;
    }
}

fn has_team_rule(client: &ClientRules) -> bool {
    client.0.contains_key(&("TEAMID".to_owned(), TEAM.to_owned()))
}

/// A fleet of one kiosk host that synced with working plugins, then a restart with both
/// plugins broken under `choice`. Returns the server (readyz already checked) and the host's rules.
async fn broken_at_start(choice: OnUnavailable) -> (TestServer, tempfile::TempDir, ClientRules) {
    let (mut s, dir) = plugin_server(&["staged-rollout", "ruleset-targeting"], configure_plugins).await;
    s.put_rules(json!([{"identifier": TEAM, "rule_type": "TEAMID", "policy": "ALLOWLIST", "rule_set": "kiosk-tools"}]))
        .await;
    let mut client = ClientRules::default();
    client.sync(&s, "kiosk-1", preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert!(has_team_rule(&client), "the plugin-selected set reached the host: {client:?}");
    let pre = s.stage("preflight", "kiosk-1", &preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert_eq!(pre.json()["client_mode"], "LOCKDOWN");
    assert_eq!(s.send(Method::GET, "/readyz", &[], vec![]).await.status, StatusCode::OK);

    s.restart_with(|c| break_plugins(c, choice)).await;
    let ready = s.send(Method::GET, "/readyz", &[], vec![]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&ready.body));
    let why = ready.json()["plugins"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("staged-rollout") && why.contains("ruleset-targeting"), "names the plugins: {why}");
    assert!(why.contains("init failed"), "says why: {why}");
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    let unavailable: Vec<&str> =
        status["unavailable"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(unavailable, vec!["ruleset-targeting", "staged-rollout"], "{status}");
    (s, dir, client)
}

/// A clean sync (the client wipes its rules and takes the whole selection) keeps the set the
/// unavailable plugin selected.
async fn clean_sync_keeps_the_rule(s: &TestServer, client: &mut ClientRules) {
    let r = s.admin(Method::POST, "/api/v1/hosts/kiosk-1/clean-sync", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let (sync_type, _, _) = client.sync(s, "kiosk-1", preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert!(sync_type.starts_with("CLEAN"), "a clean sync ran: {sync_type}");
    assert!(has_team_rule(client), "no rule removed because a plugin is unavailable: {client:?}");
    client.assert_matches_server(s, "kiosk-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_last_good_keeps_modes_and_rules() {
    let (s, _dir, mut client) = broken_at_start(OnUnavailable::LastGood).await;
    let pre = s.stage("preflight", "kiosk-1", &preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert_eq!(pre.status, StatusCode::OK);
    assert_eq!(pre.json()["client_mode"], "LOCKDOWN", "the persisted last good decision: no downgrade");
    let new = s.stage("preflight", "kiosk-2", &preflight("kiosk-2", "kiosk-002.example.com")).await;
    assert_eq!(new.json()["client_mode"], "LOCKDOWN", "a host never seen gets the plugin's fallback");
    clean_sync_keeps_the_rule(&s, &mut client).await;
    let host = s.admin(Method::GET, "/api/v1/hosts/kiosk-1", None).await.json();
    assert_eq!(host["sync"]["decided"]["settings"]["client_mode"]["by"]["source"], "last_good", "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_reject_answers_503_and_changes_nothing() {
    let (s, _dir, client) = broken_at_start(OnUnavailable::Reject).await;
    let pre = s.stage("preflight", "kiosk-1", &preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert_eq!(pre.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&pre.body));
    assert!(String::from_utf8_lossy(&pre.body).contains("staged-rollout"), "names the plugin");
    assert!(has_team_rule(&client), "the client keeps its state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_config_uses_config_settings_but_removes_no_rule() {
    let (s, _dir, mut client) = broken_at_start(OnUnavailable::Config).await;
    let pre = s.stage("preflight", "kiosk-1", &preflight("kiosk-1", "kiosk-001.example.com")).await;
    assert_eq!(pre.status, StatusCode::OK);
    assert_eq!(pre.json()["client_mode"], "MONITOR", "settings from the config file, as chosen");
    clean_sync_keeps_the_rule(&s, &mut client).await;
}

/// A configured plugin whose file is missing at start is served from its last generation kept
/// in the store; one never loaded on this store is unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_restores_the_stored_generation() {
    let (mut s, dir) = plugin_server(&["staged-rollout"], configure_plugins).await;
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    let hash = status["plugins"][0]["hash"].as_str().unwrap().to_owned();
    assert_eq!(status["unavailable"].as_array().unwrap().len(), 1, "ruleset-targeting has no file: {status}");
    assert_eq!(s.send(Method::GET, "/readyz", &[], vec![]).await.status, StatusCode::SERVICE_UNAVAILABLE);
    std::fs::remove_file(dir.path().join("staged-rollout.wasm")).unwrap();
    s.restart_with(|c| {
        c.plugins.as_mut().unwrap().plugin.remove("ruleset-targeting");
    })
    .await;
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    assert_eq!(status["plugins"][0]["hash"], hash.as_str(), "restored from the store: {status}");
    assert!(status["unavailable"].as_array().unwrap().is_empty());
    let ready = s.send(Method::GET, "/readyz", &[], vec![]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ready.body));
    let pre = s.stage("preflight", "kiosk-9", &preflight("kiosk-9", "kiosk-009.example.com")).await.json();
    assert_eq!(pre["client_mode"], "LOCKDOWN", "the restored generation decides live");
    let history = s.admin(Method::GET, "/api/v1/plugins/staged-rollout/history", None).await.json();
    assert_eq!(history["generations"][0]["sha256"], hash.as_str(), "{history}");
}

/// The same component with one more custom section: a different generation, same behaviour.
fn variant(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let name = b"dasher-test";
    out.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.push(tag);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_names_a_generation_and_survives_a_restart() {
    let (mut s, dir) = plugin_server(&["staged-rollout"], |p| {
        p.plugin.entry("staged-rollout".into()).or_default().settings = json!({"lockdown_hostnames": ["kiosk-*"]});
    })
    .await;
    let file = dir.path().join("staged-rollout.wasm");
    let first = std::fs::read(&file).unwrap();
    let hash = |b: &[u8]| dasher_policy::content_hash(b);
    for tag in [1u8, 2] {
        dasher_policy::tools::install_bytes(&variant(&first, tag), dir.path(), "staged-rollout").unwrap();
        let r = s.admin(Method::POST, "/api/v1/plugins/reload", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["loaded"][0][1], hash(&variant(&first, tag)).as_str(), "{}", r.json());
    }
    let history = s.admin(Method::GET, "/api/v1/plugins/staged-rollout/history", None).await.json();
    let generations = history["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 3, "{history}");
    assert_eq!((generations[0]["number"].as_u64(), generations[0]["trigger"].as_str()), (Some(3), Some("reload_api")));
    assert_eq!(generations[0]["by"], "admin_token", "who: the calling token's name");
    assert_eq!((generations[2]["number"].as_u64(), generations[2]["trigger"].as_str()), (Some(1), Some("startup")));

    // Bad targets are refused, naming the field.
    for bad in [json!({"to": "zz"}), json!({"to": "99"}), json!({"to": true})] {
        let r = s.admin(Method::POST, "/api/v1/plugins/staged-rollout/rollback", Some(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["field"], "to", "{}", r.json());
    }
    let r = s.admin(Method::POST, "/api/v1/plugins/nope/rollback", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Back to generation 1 by number; the file on disk (generation 3) is ignored from now on.
    let r = s.admin(Method::POST, "/api/v1/plugins/staged-rollout/rollback", Some(json!({"to": "1"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["to"], hash(&first).as_str());
    let active = |v: Value| v["plugins"][0]["hash"].as_str().unwrap().to_owned();
    s.restart().await;
    assert_eq!(active(s.admin(Method::GET, "/api/v1/plugins", None).await.json()), hash(&first), "still rolled back");
    let r = s.admin(Method::POST, "/api/v1/plugins/reload", None).await.json();
    assert_eq!(r["swapped"], false, "the ignored file does not come back on a rescan: {r}");
    let history = s.admin(Method::GET, "/api/v1/plugins/staged-rollout/history", None).await.json();
    assert_eq!(history["active"], hash(&first).as_str());
    assert_eq!(
        (history["generations"][0]["trigger"].as_str(), history["generations"][0]["number"].as_u64()),
        (Some("rollback"), Some(1))
    );

    // By SHA prefix to generation 2, which is loaded from the store after the restart.
    let two = hash(&variant(&first, 1));
    let r = s.admin(Method::POST, "/api/v1/plugins/staged-rollout/rollback", Some(json!({"to": &two[..10]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(active(s.admin(Method::GET, "/api/v1/plugins", None).await.json()), two);

    // A new file ends the pin: it loads, and stays after a restart.
    let four = variant(&first, 4);
    dasher_policy::tools::install_bytes(&four, dir.path(), "staged-rollout").unwrap();
    s.admin(Method::POST, "/api/v1/plugins/reload", None).await;
    s.restart().await;
    assert_eq!(active(s.admin(Method::GET, "/api/v1/plugins", None).await.json()), hash(&four));
}

/// With every plugin worker busy (one worker, a queue of one, a plugin that runs to its
/// deadline), the extra preflights take the overloaded path: fail static from the hosts' last
/// good decisions in the store. That lookup blocks, so it must run off the tokio workers (it
/// panicked there and dropped the connection); every preflight is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_plugin_workers_fail_static_without_dropping_requests() {
    let (s, _dir) = plugin_server(&["fault-loop"], |p| {
        p.workers = 1;
        p.queue_capacity = 1;
        p.limits.deadline_ms = 1_500;
    })
    .await;
    let ids: Vec<String> = (0..6).map(|i| format!("busy-{i}")).collect();
    for id in &ids {
        let r = s.admin(Method::PUT, &format!("/api/v1/hosts/{id}/tags"), Some(json!({"tags": ["fault"]}))).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Concurrent preflights, each on its own connection.
    let addr = s.handle.as_ref().unwrap().addr();
    let mut set = tokio::task::JoinSet::new();
    for id in ids.clone() {
        set.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let body = preflight(&id, "desk.example.com").to_string();
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /santa/preflight/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(body.as_bytes()).await.unwrap();
            let mut answer = String::new();
            let read = conn.read_to_string(&mut answer).await;
            (id, read.map(|_| answer))
        });
    }
    while let Some(done) = set.join_next().await {
        let (id, answer) = done.unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("{id}: connection failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{id}: {}",
            answer.lines().next().unwrap_or("(closed without an answer)")
        );
    }
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await;
    assert!(
        String::from_utf8_lossy(&status.body).contains("overloaded"),
        "the overloaded path ran: {}",
        String::from_utf8_lossy(&status.body)
    );
}
