//! Two Dasher servers sharing one PostgreSQL database, as stateless replicas behind a load
//! balancer would: simulated hosts spread over both converge while rules are edited through
//! both admin APIs at once, and a rule download whose pages alternate between the replicas is
//! correct.
//!
//! Needs `DASHER_TEST_POSTGRES_URL` (`.ci/postgres.sh` starts a server); without it the tests
//! skip with a message, except under CI, where they fail.

use dasher_sim::Generation;
use dasher_sim::runner::{self, RunConfig};
use dasher_store::StoreSpec;
use dasher_store::postgres::testing::{TestDatabase, server_url};
use dasher_tests::{ClientRules, TOKEN, TestServer, fleet_across};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn sha(n: u32) -> String {
    format!("{n:064x}")
}

fn preflight(id: &str) -> Value {
    json!({"serial_num":"C02XXXXXXXXX","hostname":"mac1.example.com","os_version":"15.5","os_build":"24F74",
           "model_identifier":"Mac15,7","santa_version":"2026.7.123456789","primary_user":"alice",
           "client_mode":"MONITOR","machine_id":id,"sipStatus":111,"primary_user_groups":["eng"]})
}

/// Two servers on the database `db`, with `tweak` applied to both configs.
async fn replicas(db: &TestDatabase, tweak: impl Fn(&mut dasher_server::config::Config)) -> (TestServer, TestServer) {
    let spec: StoreSpec = db.url.as_str().parse().unwrap();
    let start = || {
        TestServer::start_with(|c| {
            c.store = Some(spec.clone());
            tweak(c);
        })
    };
    let a = start().await;
    let b = start().await;
    (a, b)
}

fn admin_base(s: &TestServer) -> String {
    format!("http://{}", s.handle.as_ref().unwrap().addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_two_replicas_converges_while_both_edit_rules() {
    const HOSTS: usize = 160;
    let Some(server) = server_url("fleet_on_two_replicas_converges_while_both_edit_rules") else { return };
    let db = TestDatabase::create(&server, "replicas_fleet").await;
    let (a, b) = replicas(&db, |_| {}).await;
    let cfg = RunConfig {
        hosts: HOSTS,
        duration: Duration::from_secs(6),
        concurrency: 32,
        closed_loop: true,
        generations: Generation::ALL.iter().map(|g| (*g, 1)).collect(),
        backoff_scale: 0.0,
        seed: 4242,
        ..Default::default()
    };
    let servers = [a.handle.as_ref().unwrap().sync_base_url(), b.handle.as_ref().unwrap().sync_base_url()];
    let fleet = Arc::new(fleet_across(&cfg, &servers));
    assert_ne!(fleet.clients[0].config.base_url, fleet.clients[1].config.base_url, "hosts are spread");

    let mut versions = vec![
        a.put_rules(Value::Array(
            (0..150).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "ALLOWLIST"})).collect(),
        ))
        .await,
    ];
    let driver = {
        let (fleet, cfg) = (fleet.clone(), cfg.clone());
        tokio::spawn(async move { runner::drive(&fleet, &cfg).await })
    };
    // Each round both replicas commit at the same time: their own additions and removals, and
    // the same TEAMID rule with different policies (one of them wins; hosts must agree).
    for round in 0..5u32 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let edits = |replica: u32| {
            let mut rules: Vec<Value> = (0..15)
                .map(|i| {
                    json!({"identifier": sha(10_000 + replica * 1000 + round * 100 + i), "rule_type": "BINARY",
                                "policy": "BLOCKLIST", "custom_msg": format!("replica {replica} round {round}")})
                })
                .collect();
            rules.push(json!({"identifier": sha(round * 2 + replica), "rule_type": "BINARY", "policy": "REMOVE"}));
            rules.push(json!({"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID",
                              "policy": if replica == 0 { "ALLOWLIST" } else { "BLOCKLIST" }}));
            rules.push(json!({"identifier": format!("platform:com.example.r{replica}.t{round}"),
                              "rule_type": "SIGNINGID", "policy": "ALLOWLIST"}));
            Value::Array(rules)
        };
        let (va, vb) = tokio::join!(a.put_rules(edits(0)), b.put_rules(edits(1)));
        versions.extend([va, vb]);
    }
    driver.await.unwrap();
    runner::sync_all(&fleet, 32).await;

    versions.sort_unstable();
    assert_eq!(versions, (1..=11).collect::<Vec<u64>>(), "concurrent commits through both replicas: gap-free versions");
    let m = &fleet.ctx.transport.metrics;
    for admin in [admin_base(&a), admin_base(&b)] {
        let c = runner::check_convergence(&fleet, &admin, TOKEN, 32).await;
        assert_eq!(m.error_count(), 0, "{}", m.report(HOSTS, 1.0, &c));
        assert_eq!(c.converged, HOSTS, "checked through {admin}: {:?}", c.mismatches);
    }
    assert!(m.syncs_ok.load(Ordering::Relaxed) > HOSTS as u64);
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_pages_from_alternating_replicas() {
    const ID: &str = "host-across-replicas";
    let Some(server) = server_url("download_pages_from_alternating_replicas") else { return };
    let db = TestDatabase::create(&server, "replicas_pages").await;
    let (a, b) = replicas(&db, |c| c.sync.page_size_rules = 7).await;
    a.put_rules(Value::Array(
        (0..40).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "BLOCKLIST"})).collect(),
    ))
    .await;
    let mut client = ClientRules::default();

    // Clean download: preflight on A, pages alternate B, A, B…, postflight wherever it falls.
    let (t, n, pages) = client.sync_across(&[&a, &b], ID, preflight(ID)).await;
    assert_eq!((t.as_str(), n, pages), ("CLEAN", 40, 6), "paged clean download across replicas");
    client.assert_matches_server(&a, ID).await;
    client.assert_matches_server(&b, ID).await;

    // The postflight landed on one replica; the other sees the acknowledgement.
    let (t, n, _) = client.sync_across(&[&b, &a], ID, preflight(ID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 0), "nothing changed, nothing sent, whichever replica asks");

    // Changes through B, delta download walked B → A → B.
    let mut edits: Vec<Value> =
        (0..10).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "REMOVE"})).collect();
    edits.extend((100..115).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "ALLOWLIST"})));
    b.put_rules(Value::Array(edits)).await;
    let (t, n, pages) = client.sync_across(&[&b, &a], ID, preflight(ID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 25), "only the changes are sent");
    assert!(pages >= 4, "the delta is paged ({pages} pages)");
    client.assert_matches_server(&a, ID).await;
    client.assert_matches_server(&b, ID).await;

    // A download that a commit on the other replica overtakes: pages keep the snapshot the
    // cursor names, and the next sync brings the newer rules.
    a.put_rules(Value::Array(
        (200..220).map(|i| json!({"identifier": sha(i), "rule_type": "BINARY", "policy": "ALLOWLIST"})).collect(),
    ))
    .await;
    let pre = a.stage("preflight", ID, &preflight(ID)).await;
    assert_eq!(pre.status, 200);
    let first = a.stage("ruledownload", ID, &json!({"machine_id": ID})).await.json();
    let cursor = first["cursor"].as_str().expect("more than one page").to_owned();
    b.put_rules(json!([{"identifier": sha(300), "rule_type": "BINARY", "policy": "BLOCKLIST"}])).await;
    let second = b.stage("ruledownload", ID, &json!({"machine_id": ID, "cursor": cursor})).await;
    assert_eq!(second.status, 200, "{}", String::from_utf8_lossy(&second.body));
    let mut got: Vec<Value> = first["rules"].as_array().unwrap().clone();
    let mut page = second.json();
    loop {
        got.extend(page["rules"].as_array().unwrap().iter().cloned());
        let Some(c) = page.get("cursor").and_then(Value::as_str).map(str::to_owned) else { break };
        page = a.stage("ruledownload", ID, &json!({"machine_id": ID, "cursor": c})).await.json();
    }
    assert_eq!(got.len(), 20, "the download holds exactly the snapshot's 20 new rules");
    assert!(got.iter().all(|r| r["identifier"] != sha(300)), "the later commit is not mixed in");
    let post = b
        .stage(
            "postflight",
            ID,
            &json!({"rules_received": 20, "rules_processed": 20, "machine_id": ID, "syncType": "NORMAL"}),
        )
        .await;
    assert_eq!(post.status, 200);
    for r in &got {
        client.0.insert((r["rule_type"].as_str().unwrap().into(), r["identifier"].as_str().unwrap().into()), r.clone());
    }
    let (t, n, _) = client.sync_across(&[&a, &b], ID, preflight(ID)).await;
    assert_eq!((t.as_str(), n), ("NORMAL", 1), "the overtaking commit comes next");
    client.assert_matches_server(&a, ID).await;
    client.assert_matches_server(&b, ID).await;
    drop((a, b));
    db.drop_database().await;
}
