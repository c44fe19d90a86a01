//! CI-sized end-to-end run: a few hundred simulated hosts of every generation sync against the
//! real Dasher server while rules are edited through the admin API; afterwards every host's
//! rule DB equals its effective rules and no unexpected error happened.

use dasher_sim::Generation;
use dasher_sim::runner::{self, RunConfig};
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_converges_while_rules_change() {
    let dir = tempfile::tempdir().unwrap();
    let handle = dasher_server::start(dasher_server::config::Config::for_tests(dir.path())).await.unwrap();
    let admin = format!("http://{}", handle.addr());
    let cfg = RunConfig {
        server: handle.sync_base_url(),
        hosts: 300,
        duration: Duration::from_secs(6),
        concurrency: 32,
        closed_loop: true,
        generations: Generation::ALL.iter().map(|g| (*g, 1)).collect(),
        backoff_scale: 0.0,
        seed: 2026,
        ..Default::default()
    };
    let fleet = std::sync::Arc::new(runner::build_fleet(&cfg).unwrap());
    let post = |body: serde_json::Value| {
        let fleet = fleet.clone();
        let url = format!("{admin}/api/v1/rules");
        async move {
            let (status, b) = fleet.ctx.transport.send_json(http::Method::POST, &url, TOKEN, &body).await.unwrap();
            assert!((200..300).contains(&status), "HTTP {status}: {}", String::from_utf8_lossy(&b));
        }
    };
    post(json!({"rules": (0..200).map(|i| json!({"identifier": format!("{i:064x}"), "rule_type": "BINARY", "policy": "ALLOWLIST"})).collect::<Vec<_>>()})).await;
    let driver = {
        let (fleet, cfg) = (fleet.clone(), cfg.clone());
        tokio::spawn(async move { runner::drive(&fleet, &cfg).await })
    };
    // Edit rules while the fleet syncs: adds, a policy change, removals, a TEAMID and a SIGNINGID rule.
    for round in 0..5u32 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut rules: Vec<_> = (0..20)
            .map(|i| json!({"identifier": format!("{:064x}", 10_000 + round * 100 + i), "rule_type": "BINARY", "policy": "BLOCKLIST", "custom_msg": format!("round {round}")}))
            .collect();
        rules.push(json!({"identifier": format!("{:064x}", round), "rule_type": "BINARY", "policy": "REMOVE"}));
        rules
            .push(json!({"identifier": format!("{:064x}", 100 + round), "rule_type": "BINARY", "policy": "BLOCKLIST"}));
        rules.push(json!({"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": if round % 2 == 0 { "ALLOWLIST" } else { "BLOCKLIST" }}));
        rules.push(json!({"identifier": format!("platform:com.apple.tool{round}"), "rule_type": "SIGNINGID", "policy": "ALLOWLIST"}));
        post(json!({"rules": rules})).await;
    }
    driver.await.unwrap();
    runner::sync_all(&fleet, 32).await;
    let c = runner::check_convergence(&fleet, &admin, TOKEN, 32).await;
    let m = &fleet.ctx.transport.metrics;
    assert!(m.syncs_ok.load(std::sync::atomic::Ordering::Relaxed) > 300);
    assert_eq!(m.error_count(), 0, "{}", m.report(300, 1.0, &c));
    assert_eq!(c.converged, 300, "{:?}", c.mismatches);
}
