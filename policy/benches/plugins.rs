//! Plugin hook calls through [`PluginManager`] (pool hop, JSON, guest call on a reused
//! instance) for each example plugin in `plugins/`, built here as real components.
//! `cargo bench -p dasher-policy` (needs the `wasm32-unknown-unknown` target).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dasher_policy::tools::{BuildOptions, build};
use dasher_policy::{MemoryKv, PluginManager, PluginsConfig};
use dasher_sdk::domain::HostFacts;
use dasher_sim::events::Catalog;
use dasher_sim::fixtures;
use dasher_store::{EventKind, EventRecord, NewEvent};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A manager with only `name` loaded, with `settings`.
fn manager(dir: &Path, name: &str, settings: serde_json::Value) -> PluginManager {
    // Cargo holds the bench's target directory; build the guest in its own one.
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let options = BuildOptions { target_dir: Some(target.join("wasm-plugins")), ..Default::default() };
    let plugin_dir = dir.join(name);
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    build(&workspace().join("plugins").join(name), Some(&plugin_dir.join(format!("{name}.wasm"))), &options)
        .unwrap_or_else(|e| panic!("building plugin {name}: {e}"));
    let mut config = PluginsConfig::for_dir(&plugin_dir);
    config.watch = false;
    // A benchmark must never measure the fail-static path: generous deadlines, checked below.
    config.limits.deadline_ms = 1_000;
    config.limits.triage_deadline_ms = 1_000;
    config.plugin.entry(name.to_owned()).or_default().settings = settings;
    PluginManager::start(config, Arc::new(MemoryKv::new())).expect("manager starts")
}

fn host() -> HostFacts {
    let h = fixtures::host(1, 0);
    HostFacts {
        machine_id: h.machine_id.clone(),
        serial_number: h.device.serial.clone(),
        hostname: h.hostname.clone(),
        os_version: h.device.os_version.clone(),
        os_build: h.device.os_build.clone(),
        model_identifier: h.device.model.clone(),
        santa_version: h.santa_version.clone(),
        primary_user: h.primary_user.clone(),
        primary_user_groups: h.groups.clone(),
        tags: vec!["kiosk".into()],
        first_seen_unix: 1_780_000_000,
        now_unix: 1_790_000_000,
        ..Default::default()
    }
}

fn records(machine_id: &str) -> Vec<EventRecord> {
    let catalog = Catalog::new(1);
    fixtures::events(&catalog, 1, 0, 50)
        .iter()
        .enumerate()
        .map(|(i, e)| EventRecord {
            id: i as u64 + 1,
            machine_id: machine_id.to_owned(),
            event: NewEvent {
                kind: EventKind::Execution,
                dedupe_key: format!("{}|{}|{}", e.file_sha256, e.execution_time, e.pid),
                decision: e.decision_value().to_string(),
                file_sha256: e.file_sha256.clone(),
                file_bundle_hash: e.file_bundle_hash.clone(),
                occurred_at_unix: e.execution_time,
                received_at_unix: 1_790_000_000,
                body: serde_json::to_value(e).expect("event serializes"),
            },
            triage: None,
        })
        .collect()
}

fn plugins(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let host = host();
    let mut g = c.benchmark_group("plugin");

    let m = manager(
        dir.path(),
        "staged-rollout",
        json!({"lockdown_after_days": 14, "lockdown_groups": ["it"], "exempt_hostnames": ["build-*"]}),
    );
    assert!(!rt.block_on(m.configure(&host)).degraded, "staged-rollout configure healthy");
    g.bench_function("staged-rollout/configure", |b| b.to_async(&rt).iter(|| m.configure(&host)));
    drop(m);

    let m = manager(
        dir.path(),
        "ruleset-targeting",
        json!({"always": ["global"], "targets": [
            {"rule_set": "developer-tools", "groups": ["engineering"]},
            {"rule_set": "kiosk", "tags": ["kiosk"], "model_families": ["Macmini", "iMac"]},
            {"rule_set": "sequoia-compat", "os_major": [15]},
        ]}),
    );
    assert!(!rt.block_on(m.select_rules(&host)).degraded, "ruleset-targeting select-rules healthy");
    g.bench_function("ruleset-targeting/select-rules", |b| b.to_async(&rt).iter(|| m.select_rules(&host)));
    drop(m);

    let m = manager(
        dir.path(),
        "event-triage",
        json!({"approved_team_ids": ["EQHXZ8M8AV", "UBF8T346G9"], "propose_after_hosts": 3}),
    );
    let batch = records(&host.machine_id);
    assert!(!rt.block_on(m.triage(&host, &batch)).degraded, "event-triage triage healthy");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("event-triage/triage_50_events", |b| b.to_async(&rt).iter(|| m.triage(&host, &batch)));
    drop(m);
    g.finish();
}

criterion_group!(benches, plugins);
criterion_main!(benches);
