//! Hot reload: atomic swaps under concurrent calls, bad files never replace good plugins,
//! rollback, removal grace window, the directory watcher.

use crate::support::*;
use dasher_policy::{Source, tools};
use dasher_sdk::wire::ClientMode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Two different plugins that both answer `configure` for a healthy host, with different
/// decisions, deployed under the same file name.
fn variants() -> [Vec<u8>; 2] {
    [component("staged-rollout"), component("fault-trap")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_repeatedly_under_load_fails_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = variants();
    tools::install_bytes(&a, dir.path(), "policy").unwrap();
    let mut cfg = config(dir.path(), &[]);
    // This test is about swaps, not deadlines (tested in faults): on 2 shared cores under a
    // parallel build a 10 ms deadline can expire and would count as a failed call here.
    cfg.limits.deadline_ms = 5_000;
    let (m, _) = start(cfg);
    let m = Arc::new(m);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = vec![];
    for i in 0..4 {
        let (m, stop, calls) = (m.clone(), stop.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = vec![];
            while !stop.load(Ordering::Relaxed) {
                let d = m.configure(&host(&format!("h{i}"))).await;
                calls.fetch_add(1, Ordering::Relaxed);
                if d.degraded || !d.faults.is_empty() || d.made_by.len() != 1 || d.value.client_mode.is_none() {
                    failures.push(format!("{d:?}"));
                }
            }
            failures
        }));
    }
    const N: usize = 6;
    let mut seen_modes = std::collections::HashSet::new();
    for i in 0..N {
        let next = if i % 2 == 0 { &b } else { &a };
        tools::install_bytes(next, dir.path(), "policy").unwrap();
        let report = m.reload().await;
        assert!(report.swapped && report.errors.is_empty(), "{report:?}");
        seen_modes.insert(m.configure(&host("probe")).await.value.client_mode);
        // A truncated file never replaces the good plugin.
        std::fs::write(dir.path().join("policy.wasm"), &next[..next.len() / 2]).unwrap();
        let report = m.reload().await;
        assert!(!report.swapped && report.errors.len() == 1, "{report:?}");
        assert_eq!(m.status().plugins.len(), 1);
        tools::install_bytes(next, dir.path(), "policy").unwrap();
        let report = m.reload().await;
        assert!(!report.swapped, "same content is deduplicated by hash: {report:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let failures = t.await.unwrap();
        assert!(failures.is_empty(), "failed calls during reload: {failures:?}");
    }
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(seen_modes.len(), 2, "both variants served: {seen_modes:?}");
    assert!(m.status().load_errors.is_empty(), "a later good file clears the error");
}

#[tokio::test]
async fn rollback_restores_the_previous_generation_and_pins_it() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = variants();
    tools::install_bytes(&a, dir.path(), "policy").unwrap();
    let (m, _) = start(config(dir.path(), &[]));
    let first = m.status().plugins[0].hash.clone();
    tools::install_bytes(&b, dir.path(), "policy").unwrap();
    m.reload_blocking();
    let second = m.status().plugins[0].hash.clone();
    assert_ne!(first, second);
    // Different names: rolling back is per plugin name, so use a new generation of the same plugin.
    let b2 = tools::with_metadata(&b, &{
        let mut meta = dasher_policy::read_metadata(&b).unwrap();
        meta.version = "0.1.1".into();
        meta
    });
    tools::install_bytes(&b2, dir.path(), "policy").unwrap();
    m.reload_blocking();
    let third = m.status().plugins[0].hash.clone();
    assert_eq!(m.status().plugins[0].generations, vec![third.clone(), second.clone()]);
    let (from, to) = m.rollback("fault-trap").unwrap();
    assert_eq!((from.as_str(), to.as_str()), (third.as_str(), second.as_str()));
    assert_eq!(m.status().plugins[0].hash, second);
    let report = m.reload_blocking();
    assert!(!report.swapped, "the rolled-back file stays ignored: {report:?}");
    assert!(m.rollback("fault-trap").is_err(), "no older generation of fault-trap");
    assert!(m.rollback("nope").is_err());
}

#[tokio::test]
async fn removed_file_unloads_after_the_grace_window_only() {
    let dir = plugin_dir(&["staged-rollout"]);
    let mut cfg = config(dir.path(), &[]);
    cfg.debounce_ms = 100;
    let (m, _) = start(cfg);
    let path = dir.path().join("staged-rollout.wasm");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let report = m.reload_blocking();
    assert!(report.unloaded.is_empty(), "brief removal keeps the plugin: {report:?}");
    assert_eq!(m.configure(&host("h")).await.made_by[0].source, Source::Live);
    std::fs::write(&path, &bytes).unwrap();
    assert!(!m.reload_blocking().swapped, "recreated with the same content: no change");
    std::fs::remove_file(&path).unwrap();
    m.reload_blocking();
    std::thread::sleep(Duration::from_millis(250));
    let report = m.reload_blocking();
    assert_eq!(report.unloaded, vec!["staged-rollout"]);
    assert!(m.configure(&host("h")).await.made_by.is_empty());
}

#[tokio::test]
async fn the_watcher_picks_up_installs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &[]);
    cfg.watch = true;
    cfg.debounce_ms = 50;
    let (m, _) = start(cfg);
    assert!(m.status().plugins.is_empty());
    let file = std::env::temp_dir().join(format!("dasher-watch-{}.wasm", std::process::id()));
    std::fs::write(&file, component("staged-rollout")).unwrap();
    let installed = tools::install(&file, dir.path()).unwrap();
    let started = Instant::now();
    while m.status().plugins.is_empty() {
        assert!(started.elapsed() < NO_HANG, "watcher did not load the plugin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.configure(&host("h")).await.value.client_mode, Some(ClientMode::Monitor));
    std::fs::remove_file(installed).unwrap();
    let started = Instant::now();
    while !m.status().plugins.is_empty() {
        assert!(started.elapsed() < NO_HANG, "watcher did not unload the removed plugin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn settings_changes_go_through_the_load_pipeline() {
    let dir = plugin_dir(&["staged-rollout"]);
    let (m, _) = start(config(dir.path(), &[]));
    let mut lab = host("x");
    lab.hostname = "lab-1".into();
    assert_eq!(m.configure(&lab).await.value.client_mode, Some(ClientMode::Monitor));
    let report = m
        .update_config(config(dir.path(), &[("staged-rollout", serde_json::json!({"lockdown_hostnames": ["lab-*"]}))]))
        .await;
    assert!(report.swapped, "{report:?}");
    assert_eq!(m.configure(&lab).await.value.client_mode, Some(ClientMode::Lockdown));
    // Settings the plugin rejects keep the running generation and its settings.
    let report = m
        .update_config(config(dir.path(), &[("staged-rollout", serde_json::json!({"lockdown_after_days": -1}))]))
        .await;
    assert!(!report.swapped && report.errors.len() == 1, "{report:?}");
    assert_eq!(m.configure(&lab).await.value.client_mode, Some(ClientMode::Lockdown));
    assert!(m.status().plugins[0].last_load_error.is_some());
}
