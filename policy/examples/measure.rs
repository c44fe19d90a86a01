//! Measures per-hook call overhead (reused instance), reload time and memory per loaded
//! plugin, with the example plugins built from `plugins/`.
//!
//! `cargo run -p dasher-policy --example measure` (dev profile: dependencies at opt-level 1;
//! guest code is always compiled by Cranelift with optimisations, so the guest part is
//! representative and the host part is pessimistic).

use dasher_policy::tools::{BuildOptions, build};
use dasher_policy::{MemoryKv, PluginManager, PluginsConfig};
use dasher_sdk::domain::HostFacts;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
    let dir = std::env::temp_dir().join(format!("dasher-measure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = BuildOptions { target_dir: Some(target.join("wasm-plugins")), ..Default::default() };
    for name in ["staged-rollout", "ruleset-targeting", "event-triage"] {
        let r = build(&root.join("plugins").join(name), Some(&dir.join(format!("{name}.wasm"))), &options).unwrap();
        println!("{name}: core {} bytes, component {} bytes", r.core_bytes, r.component_bytes);
    }
    let mut config = PluginsConfig::for_dir(&dir);
    config.watch = false;
    config.plugin.entry("staged-rollout".into()).or_default().settings = serde_json::json!({"lockdown_after_days": 14});
    let rss0 = rss_kib();
    let t = Instant::now();
    let m = PluginManager::start(config, Arc::new(MemoryKv::new())).unwrap();
    println!("start with 3 plugins (compile + init + smoke): {:?}", t.elapsed());
    println!("RSS: {} KiB before, {} KiB after loading 3 plugins", rss0, rss_kib());
    let host =
        HostFacts { machine_id: "m".into(), hostname: "h".into(), os_version: "15.1".into(), ..Default::default() };
    for _ in 0..200 {
        m.configure(&host).await;
    }
    const N: u32 = 5000;
    let t = Instant::now();
    for _ in 0..N {
        m.configure(&host).await;
    }
    let per = t.elapsed() / N;
    let st = m.status();
    let p = st.plugins.iter().find(|p| p.name == "staged-rollout").unwrap();
    println!(
        "configure via PluginManager (pool hop + JSON + guest): {per:?} per call; guest call p50 {} µs, p99 {} µs",
        p.p50_us, p.p99_us
    );
    let t = Instant::now();
    for _ in 0..N {
        m.select_rules(&host).await;
    }
    println!("select_rules via PluginManager: {:?} per call", t.elapsed() / N);
    let bytes = std::fs::read(dir.join("staged-rollout.wasm")).unwrap();
    let mut meta = dasher_policy::read_metadata(&bytes).unwrap();
    meta.version = "9.9.9".into();
    std::fs::write(dir.join("staged-rollout.wasm"), dasher_policy::tools::with_metadata(&bytes, &meta)).unwrap();
    let t = Instant::now();
    let report = m.reload().await;
    println!("reload of one changed plugin: {:?} (swapped: {})", t.elapsed(), report.swapped);
    std::fs::remove_dir_all(&dir).ok();
}
