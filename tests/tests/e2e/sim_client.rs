//! The simulator's clients against the real Dasher server on 127.0.0.1: clean sync, multi-page
//! download, REMOVE, stage failures, and every client generation.

use dasher_sdk::wire::SyncType;
use dasher_sim::Generation;
use dasher_sim::client::SyncError;
use dasher_sim::runner::{self, Fleet, RunConfig};
use dasher_sim::transport::Faults;
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

struct TestServer {
    _handle: dasher_server::ServerHandle,
    _dir: tempfile::TempDir,
    base: String,
    admin: String,
}

async fn server() -> TestServer {
    server_with(|_| {}).await
}

async fn server_with(tweak: impl FnOnce(&mut dasher_server::config::Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dasher_server::config::Config::for_tests(dir.path());
    tweak(&mut config);
    let handle = dasher_server::start(config).await.unwrap();
    let base = handle.sync_base_url();
    let admin = format!("http://{}", handle.addr());
    TestServer { _handle: handle, _dir: dir, base, admin }
}

fn fleet(s: &TestServer, hosts: usize, generations: &[Generation], faults: Faults) -> Fleet {
    let cfg = RunConfig {
        server: s.base.clone(),
        hosts,
        generations: generations.iter().map(|g| (*g, 1)).collect(),
        backoff_scale: 0.0,
        faults,
        seed: 11,
        ..Default::default()
    };
    runner::build_fleet(&cfg).unwrap()
}

async fn admin(f: &Fleet, s: &TestServer, method: http::Method, path: &str, body: Value) -> Value {
    let url = format!("{}{path}", s.admin);
    let (status, bytes) = f.ctx.transport.send_json(method, &url, TOKEN, &body).await.unwrap();
    assert!((200..300).contains(&status), "{path}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn rule(id: &str, t: &str, p: &str) -> Value {
    json!({"identifier": id, "rule_type": t, "policy": p})
}

async fn converged(f: &Fleet, s: &TestServer) -> usize {
    let c = runner::check_convergence(f, &s.admin, TOKEN, 16).await;
    assert!(c.mismatches.is_empty(), "{:?}", c.mismatches);
    c.converged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_sync_then_remove_for_every_generation() {
    let s = server().await;
    let f = fleet(&s, 1, &[Generation::Nps2026_7], Faults::default());
    let rules = json!({"rules": [
        rule("EQHXZ8M8AV", "TEAMID", "ALLOWLIST"),
        rule("platform:com.apple.yes", "SIGNINGID", "BLOCKLIST"),
        rule(&"ab".repeat(32), "BINARY", "BLOCKLIST"),
    ]});
    admin(&f, &s, http::Method::POST, "/api/v1/rules", rules).await;
    for g in Generation::ALL {
        let f = fleet(&s, 1, &[g], Faults::default());
        let c = &f.clients[0];
        let (r, _) = c.full_sync(&f.ctx).await;
        let r = r.unwrap_or_else(|e| panic!("{g}: {e}"));
        assert_ne!(r.sync_type, SyncType::Normal, "{g}: a fresh install gets a clean sync");
        assert_eq!(c.state.lock().unwrap().db.synced_len(), 3, "{g}");
        assert_eq!(converged(&f, &s).await, 1, "{g}");
        // A second sync is NORMAL and changes nothing.
        let (r, _) = c.full_sync(&f.ctx).await;
        assert_eq!(r.unwrap_or_else(|e| panic!("{g}: {e}")).sync_type, SyncType::Normal, "{g}");
        assert_eq!(c.state.lock().unwrap().db.synced_len(), 3, "{g}");
    }
    // REMOVE reaches a synced client.
    let f = fleet(&s, 1, &[Generation::Nps2026_7], Faults::default());
    let c = &f.clients[0];
    assert!(c.full_sync(&f.ctx).await.0.is_ok());
    admin(&f, &s, http::Method::POST, "/api/v1/rules", json!({"rules": [rule("EQHXZ8M8AV", "TEAMID", "REMOVE")]}))
        .await;
    assert!(c.full_sync(&f.ctx).await.0.is_ok());
    assert_eq!(c.state.lock().unwrap().db.synced_len(), 2);
    assert_eq!(converged(&f, &s).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_page_download() {
    let s = server().await;
    let f = fleet(&s, 2, &[Generation::Nps2026_7, Generation::Gs2024_5], Faults::default());
    let rules: Vec<Value> = (0..6000).map(|i| rule(&format!("{i:064x}"), "BINARY", "ALLOWLIST")).collect();
    for chunk in rules.chunks(1000) {
        admin(&f, &s, http::Method::POST, "/api/v1/rules", json!({"rules": chunk})).await;
    }
    for c in &f.clients {
        let (r, _) = c.full_sync(&f.ctx).await;
        let r = r.unwrap();
        assert!(r.pages >= 2, "{}: 6000 rules in {} page(s)", c.host.generation, r.pages);
        assert_eq!(r.rules_processed, 6000);
        assert_eq!(c.state.lock().unwrap().db.synced_len(), 6000);
    }
    assert!(f.clients[0].state.lock().unwrap().db.shares_storage_with(&f.clients[1].state.lock().unwrap().db));
    assert_eq!(converged(&f, &s).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_failures_apply_nothing_and_the_next_sync_recovers() {
    let s = server().await;
    let f = fleet(&s, 1, &[Generation::Nps2026_7], Faults::default());
    admin(&f, &s, http::Method::POST, "/api/v1/rules", json!({"rules": [rule("EQHXZ8M8AV", "TEAMID", "ALLOWLIST")]}))
        .await;

    // A body the server cannot read fails preflight: nothing applied, clean request pending.
    let bad = fleet(&s, 1, &[Generation::Nps2026_7], Faults { corrupt_body: 1.0, ..Default::default() });
    let c = &bad.clients[0];
    let (r, faulted) = c.full_sync(&bad.ctx).await;
    assert!(faulted);
    assert!(matches!(r, Err(SyncError::Request { stage: "preflight", .. })), "{r:?}");
    assert_eq!(c.state.lock().unwrap().db.synced_len(), 0);
    assert_eq!(c.state.lock().unwrap().sync_type_required, SyncType::CleanAll);

    // Killed mid-download: no rule applied, no postflight; the next (fault-free) sync converges.
    let kill = fleet(&s, 1, &[Generation::Nps2026_7], Faults { kill_download: 1.0, ..Default::default() });
    let c = &kill.clients[0];
    assert_eq!(c.full_sync(&kill.ctx).await.0, Err(SyncError::Killed));
    assert_eq!(c.state.lock().unwrap().db.synced_len(), 0);
    runner::sync_all(&kill, 1).await;
    assert_eq!(c.state.lock().unwrap().db.synced_len(), 1);
    assert_eq!(converged(&kill, &s).await, 1);

    // Dropped connections are retried and the sync still completes.
    let drop = fleet(&s, 1, &[Generation::Gs2024_7], Faults { drop_connection: 0.3, ..Default::default() });
    for _ in 0..3 {
        let _ = drop.clients[0].full_sync(&drop.ctx).await;
    }
    runner::sync_all(&drop, 1).await;
    assert_eq!(converged(&drop, &s).await, 1);

    // A wrong sync prefix: preflight fails (404), nothing applied.
    let mut cfg = RunConfig { server: format!("{}nope/", s.base), hosts: 1, backoff_scale: 0.0, ..Default::default() };
    cfg.generations = vec![(Generation::Nps2026_7, 1)];
    let wrong = runner::build_fleet(&cfg).unwrap();
    let (r, _) = wrong.clients[0].full_sync(&wrong.ctx).await;
    assert!(matches!(r, Err(SyncError::Request { stage: "preflight", .. })), "{r:?}");
}

/// Open-loop scheduling follows the interval the server sends, as santasyncservice's timer
/// does, clamped to the client's 60 s minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_schedule_their_next_sync_by_the_synced_interval() {
    use std::time::Duration;
    for (sent, expected) in [(120, 120), (30, 60)] {
        let s = server_with(|c| c.defaults.full_sync_interval_seconds = Some(sent)).await;
        let f = fleet(&s, 2, &[Generation::Nps2026_7, Generation::Gs2023_6], Faults::default());
        for c in &f.clients {
            // Before its first sync a host uses the client default.
            assert_eq!(runner::next_interval(c, None, 0.5), Duration::from_secs(300));
            c.full_sync(&f.ctx).await.0.unwrap();
            let g = c.host.generation;
            assert_eq!(runner::next_interval(c, None, 0.5), Duration::from_secs(expected) / 2, "{g}");
            assert_eq!(runner::next_interval(c, Some(Duration::from_secs(7)), 0.5), Duration::from_secs(7));
        }
    }
}
