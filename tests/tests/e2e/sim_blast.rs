//! `dasher-sim blast` against the real server: every client generation enrols, then runs full
//! NORMAL syncs from prepared requests with zero errors; hosts that never enrolled are reported
//! as errors (the server answers CLEAN), so the check is not vacuous. No timing assertions.

use dasher_sim::blast::{self, BlastArgs, BlastGeneration, Until};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token";

fn args(server: String, generation: Vec<BlastGeneration>) -> BlastArgs {
    BlastArgs {
        server: Some(server),
        trivial: false,
        compare_trivial: true,
        hosts: 12,
        connections: 3,
        duration: Duration::from_millis(1500),
        generation,
        events_per_sync: 2,
        event_batches: 2,
        enrol_concurrency: 4,
        server_pid: Some(std::process::id()),
        admin_token: Some(TOKEN.into()),
        load_rules: 40,
        timeout: Duration::from_secs(60),
        seed: 7,
        json: true,
        report: None,
    }
}

fn errors(phase: &Value) -> String {
    format!("{} errors: {}", phase["errors"], phase["first_errors"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generation_syncs_normal_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let handle = dasher_server::start(dasher_server::config::Config::for_tests(dir.path())).await.unwrap();
    let all = vec![BlastGeneration::LegacyJson, BlastGeneration::RulesHashJson, BlastGeneration::Protobuf];
    let report = blast::run(&args(handle.sync_base_url(), all)).await.unwrap();
    assert_eq!(report["rules_loaded"]["rules"], 40);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let g = &run["generation"];
        assert!(run["rules_per_host"].as_u64().unwrap() > 0, "{g}: enrolment downloaded no rules");
        assert_eq!(run["warmup"]["errors"], 0, "{g} warm-up: {}", run["warmup"]);
        assert_eq!(run["warmup"]["ok"], 12, "{g}: one warm-up sync per host");
        let server = &run["server"];
        assert_eq!(server["errors"], 0, "{g} server: {}", errors(server));
        assert!(server["syncs"].as_u64().unwrap() > 0, "{g}: no completed sync");
        // preflight, eventupload, ruledownload, postflight per sync at least.
        assert!(server["requests"].as_u64().unwrap() >= 4 * server["syncs"].as_u64().unwrap(), "{g}: {server}");
        assert_eq!(server["rules_received"], 0, "{g}: a NORMAL sync of an unchanged host receives nothing");
        for stage in blast::STAGES {
            assert!(server["stages"][stage]["count"].as_u64().unwrap() > 0, "{g}: {stage} not timed");
        }
        assert!(server["server_cpu_us_per_sync"].as_f64().is_some(), "{g}: CPU sampled");
        let trivial = &run["trivial"];
        assert_eq!(trivial["errors"], 0, "{g} trivial: {}", errors(trivial));
        assert!(trivial["syncs"].as_u64().unwrap() > 0);
        assert!(run["ratio_to_trivial"].as_f64().is_some());
    }
    let table = blast::human(&report);
    assert!(table.contains("legacy-json") && table.contains("protobuf") && table.contains("server / trivial"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_the_server_does_not_consider_in_sync_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let handle = dasher_server::start(dasher_server::config::Config::for_tests(dir.path())).await.unwrap();
    let base = blast::parse_base(&handle.sync_base_url()).await.unwrap();
    // Not enrolled: the server's first answer to each host is CLEAN, never NORMAL.
    let plan = blast::prepare(&base, BlastGeneration::RulesHashJson, 4, 9, 0, 1, None).await.unwrap();
    let r = blast::run_phase(base.addr, Arc::new(plan), 2, Until::OneRound, Duration::from_secs(60)).await;
    assert_eq!(r.ok, 0);
    assert_eq!(r.error_count(), 4);
    assert_eq!(r.errors.keys().collect::<Vec<_>>(), ["preflight: sync type CLEAN"], "{:?}", r.first_errors);
    assert!(r.first_errors[0].contains("expected NORMAL"), "{:?}", r.first_errors);
    // Bad input is refused with a sentence, not a panic.
    let mut a = args(handle.sync_base_url(), vec![BlastGeneration::Protobuf]);
    a.hosts = 2;
    let e = blast::run(&a).await.unwrap_err().to_string();
    assert!(e.contains("--hosts must be at least --connections"), "{e}");
}
