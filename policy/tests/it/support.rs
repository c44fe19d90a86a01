//! Test support: building plugin crates once per test process, plugin directories, hosts.

use dasher_policy::tools::{BuildOptions, build};
use dasher_policy::{MemoryKv, PluginManager, PluginsConfig};
use dasher_sdk::domain::HostFacts;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Builds `plugins/<name>` (once per process) and returns the component bytes. Uses its own
/// target directory: the one of `cargo test` is locked while tests run.
pub fn component(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = built.get(name) {
        return b.clone();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let out_dir = std::env::temp_dir().join(format!("dasher-plugin-components-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}.wasm"));
    let options = BuildOptions { target_dir: Some(target.join("wasm-plugins")), ..Default::default() };
    let report = build(&workspace().join("plugins").join(name), Some(&out), &options)
        .unwrap_or_else(|e| panic!("building plugin {name}: {e}"));
    assert_eq!(report.metadata.name, name);
    let bytes = std::fs::read(&report.component).unwrap();
    built.insert(name.to_owned(), bytes.clone());
    bytes
}

/// A plugin directory holding the given plugins.
pub fn plugin_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::write(dir.path().join(format!("{name}.wasm")), component(name)).unwrap();
    }
    dir
}

/// Config for `dir` with settings per plugin, not watching.
pub fn config(dir: &Path, settings: &[(&str, serde_json::Value)]) -> PluginsConfig {
    let mut config = PluginsConfig::for_dir(dir);
    config.watch = false;
    config.workers = 2;
    // Tests check behaviour, not speed: on 2 shared cores under a parallel build the
    // production 10 ms deadline can expire on a healthy call. The loop fixture still proves
    // that deadlines hold.
    config.limits.deadline_ms = 1_000;
    config.limits.triage_deadline_ms = 1_000;
    for (name, s) in settings {
        config.plugin.entry((*name).to_owned()).or_default().settings = s.clone();
    }
    config
}

/// Starts a manager with an in-memory kv.
pub fn start(config: PluginsConfig) -> (PluginManager, Arc<MemoryKv>) {
    let kv = Arc::new(MemoryKv::new());
    let m = PluginManager::start(config, kv.clone()).expect("manager starts");
    (m, kv)
}

/// A host.
pub fn host(machine_id: &str) -> HostFacts {
    HostFacts {
        machine_id: machine_id.into(),
        hostname: format!("{machine_id}.corp.example.com"),
        os_version: "14.6".into(),
        model_identifier: "MacBookPro18,3".into(),
        first_seen_unix: 1_700_000_000,
        now_unix: 1_700_000_000,
        ..HostFacts::default()
    }
}

/// A generous "did not hang" bound for anything involving a plugin deadline (2 shared cores).
pub const NO_HANG: std::time::Duration = std::time::Duration::from_secs(20);
