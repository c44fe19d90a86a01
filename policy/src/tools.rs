//! Plugin tooling as library functions; the `dasher plugin …` CLI is a thin wrapper.
//!
//! - [`build`]: `cargo rustc` for `wasm32-unknown-unknown` with a size profile, then
//!   wit-component (as a library) turns the core module into a component.
//! - [`inspect`]: metadata, hash and size of a component, without compiling it.
//! - [`install`]: validated, atomic deploy into a plugin directory (temp file + rename).
//! - [`test`]: runs JSON fixture cases through the same host code the server uses
//!   ([`fixtures`] has the format).

pub mod fixtures;

pub use fixtures::{Case, CaseReport, Step, TestReport, test};

use crate::config::{Limits, Mode};
use crate::error::{LoadError, PolicyError};
use crate::kv::{KvBackend, MemoryKv};
use crate::meta::{check_compatible, read_metadata};
use crate::runtime::{LoadedPlugin, Runtime, content_hash};
use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::{Hook, METADATA_SECTION, PluginMetadata, SelectionDecision};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn tool_err(msg: impl Into<String>) -> PolicyError {
    PolicyError::Tool(msg.into())
}

/// How [`build`] runs cargo.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Cargo target directory (default: cargo's own choice). Use a separate one when building
    /// from inside `cargo test`, whose target directory is locked.
    pub target_dir: Option<PathBuf>,
    /// Build with the `dev` profile (fast compile, large output) instead of the size profile.
    pub debug: bool,
    /// Show cargo's (and rustup's) progress on stderr, for a person at a terminal.
    pub progress: bool,
}

/// The target plugins are compiled for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the Rust toolchain can build for [`WASM_TARGET`]: if the sysroot of `rustc`
/// lacks it, runs `rustup target add` once per process (with its output on stderr when
/// `progress`). Without rustup, or if it fails, the error says what to run.
pub fn ensure_wasm_target(progress: bool) -> Result<(), PolicyError> {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *done || wasm_target_installed() {
        *done = true;
        return Ok(());
    }
    if progress {
        eprintln!("Installing the {WASM_TARGET} target with rustup (once per toolchain)…");
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", WASM_TARGET]);
    if !progress {
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    }
    let outcome = cmd.status();
    // Another process may have installed it meanwhile (rustup then fails on its lock).
    if wasm_target_installed() {
        *done = true;
        return Ok(());
    }
    let why = match outcome {
        Ok(status) => format!("`rustup target add {WASM_TARGET}` failed ({status})"),
        Err(e) => format!("rustup could not be run ({e})"),
    };
    Err(tool_err(format!(
        "the {WASM_TARGET} target is not installed and {why}; install it with `rustup target add {WASM_TARGET}` \
         (or your distribution's package of the Rust standard library for {WASM_TARGET})"
    )))
}

/// True if the sysroot of the `rustc` cargo would run has the standard library for [`WASM_TARGET`].
fn wasm_target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    out.status.success() && sysroot.join("lib").join("rustlib").join(WASM_TARGET).join("lib").is_dir()
}

/// What [`build`] produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BuildReport {
    /// The component file.
    pub component: PathBuf,
    /// Its metadata.
    pub metadata: PluginMetadata,
    /// Core module size.
    pub core_bytes: usize,
    /// Component size.
    pub component_bytes: usize,
    /// Content hash (the generation id once loaded).
    pub hash: String,
}

/// Builds the plugin crate in `crate_dir` into a component at `out` (default
/// `<crate_dir>/<name>.wasm`). Size profile: opt-level "s", LTO, one codegen unit, stripped,
/// panic = abort (~10× smaller than a default release build). Installs the
/// `wasm32-unknown-unknown` target first if it is missing ([`ensure_wasm_target`]).
pub fn build(crate_dir: &Path, out: Option<&Path>, options: &BuildOptions) -> Result<BuildReport, PolicyError> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(tool_err(format!("{} has no Cargo.toml", crate_dir.display())));
    }
    ensure_wasm_target(options.progress)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("rustc").arg("--manifest-path").arg(&manifest).args([
        "--lib",
        "--crate-type",
        "cdylib",
        "--target",
        "wasm32-unknown-unknown",
        "--message-format",
        "json-render-diagnostics",
    ]);
    if options.debug {
        cmd.args(["--profile", "dev"]);
    } else {
        cmd.args([
            "--config",
            "profile.dasher-plugin.inherits=\"release\"",
            "--config",
            "profile.dasher-plugin.opt-level=\"s\"",
            "--config",
            "profile.dasher-plugin.lto=true",
            "--config",
            "profile.dasher-plugin.codegen-units=1",
            "--config",
            "profile.dasher-plugin.strip=true",
            "--config",
            "profile.dasher-plugin.panic=\"abort\"",
            "--config",
            "profile.dasher-plugin.debug=false",
            "--profile",
            "dasher-plugin",
        ]);
    }
    if let Some(dir) = &options.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    // The plugin is a guest: no host flags from the caller's environment.
    cmd.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
    if options.progress {
        cmd.stderr(std::process::Stdio::inherit());
    }
    let output = cmd.output().map_err(|e| tool_err(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(tool_err(if options.progress {
            "cargo could not build the plugin (its messages are above)".to_owned()
        } else {
            format!("cargo build failed:\n{}", String::from_utf8_lossy(&output.stderr))
        }));
    }
    let core_path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| tool_err("cargo produced no .wasm artifact (is it a library crate?)"))?;
    let core = std::fs::read(&core_path).map_err(|e| tool_err(format!("cannot read {}: {e}", core_path.display())))?;
    let component = componentize(&core)?;
    let metadata = read_metadata(&component)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| crate_dir.join(format!("{}.wasm", metadata.name)));
    std::fs::write(&out, &component).map_err(|e| tool_err(format!("cannot write {}: {e}", out.display())))?;
    Ok(BuildReport {
        component: out,
        core_bytes: core.len(),
        component_bytes: component.len(),
        hash: content_hash(&component),
        metadata,
    })
}

/// Wraps a core module built with `dasher_sdk::export_plugin!` into a component, and copies
/// its `dasher:plugin` section to the component's top level (so `inspect` finds it at once).
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, PolicyError> {
    let meta = read_metadata(core).map_err(|e| tool_err(format!("the core module: {e}")))?;
    let mut component = wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| tool_err(format!("cannot make a component: {e:#}")))?;
    let payload = serde_json::to_vec(&meta).map_err(|e| tool_err(e.to_string()))?;
    append_custom_section(&mut component, METADATA_SECTION, &payload);
    Ok(component)
}

/// A copy of `component` whose metadata is `meta` (appended as a top-level section, which
/// takes precedence). For tests and for re-labelling a build (e.g. raising `min_server_version`).
pub fn with_metadata(component: &[u8], meta: &PluginMetadata) -> Vec<u8> {
    let mut out = component.to_vec();
    let payload = serde_json::to_vec(meta).unwrap_or_default();
    append_custom_section(&mut out, METADATA_SECTION, &payload);
    out
}

/// A copy of `component` that declares `min_server_version = version`.
pub fn set_min_server_version(component: &[u8], version: &str) -> Result<Vec<u8>, PolicyError> {
    let mut meta = read_metadata(component)?;
    meta.min_server_version = version.to_owned();
    Ok(with_metadata(component, &meta))
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn append_custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    wasm.push(0);
    leb128(body.len(), wasm);
    wasm.extend_from_slice(&body);
}

/// What [`inspect`] reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The file.
    pub file: PathBuf,
    /// Size.
    pub size_bytes: usize,
    /// SHA-256 (the generation id once loaded).
    pub hash: String,
    /// The metadata section.
    pub metadata: PluginMetadata,
    /// `Ok` if this server can load it, else why not (names both versions).
    pub compatible: Result<(), String>,
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metadata;
        writeln!(f, "file:               {}", self.file.display())?;
        writeln!(f, "name:               {} {}", m.name, m.version)?;
        writeln!(f, "size:               {} bytes", self.size_bytes)?;
        writeln!(f, "sha256:             {}", self.hash)?;
        writeln!(f, "contract:           {}", m.contract)?;
        writeln!(f, "sdk:                {}", m.sdk_version)?;
        writeln!(f, "hooks:              {}", m.hooks.iter().map(|h| h.name()).collect::<Vec<_>>().join(", "))?;
        writeln!(f, "min server version: {}", m.min_server_version)?;
        if let Some(schema) = &m.settings_schema {
            writeln!(f, "settings schema:    {schema}")?;
        }
        match &self.compatible {
            Ok(()) => writeln!(f, "loadable here:      yes"),
            Err(e) => writeln!(f, "loadable here:      no: {e}"),
        }
    }
}

/// Reads a component's metadata, hash and size without compiling it.
pub fn inspect(file: &Path) -> Result<Inspection, PolicyError> {
    let bytes =
        std::fs::read(file).map_err(|e| PolicyError::Load(LoadError::Io(format!("{}: {e}", file.display()))))?;
    let metadata = read_metadata(&bytes)?;
    Ok(Inspection {
        file: file.to_path_buf(),
        size_bytes: bytes.len(),
        hash: content_hash(&bytes),
        compatible: check_compatible(&metadata).map_err(|e| e.to_string()),
        metadata,
    })
}

/// Deploys `file` into `dir` as `<name>.wasm` atomically: checks the metadata, writes
/// `.<name>.wasm.tmp` (ignored by the watcher), fsyncs, renames. Returns the final path.
pub fn install(file: &Path, dir: &Path) -> Result<PathBuf, PolicyError> {
    let bytes =
        std::fs::read(file).map_err(|e| PolicyError::Load(LoadError::Io(format!("{}: {e}", file.display()))))?;
    let meta = read_metadata(&bytes)?;
    install_bytes(&bytes, dir, &meta.name)
}

/// Like [`install`], from bytes, as `<dir>/<file_stem>.wasm`.
pub fn install_bytes(bytes: &[u8], dir: &Path, file_stem: &str) -> Result<PathBuf, PolicyError> {
    let meta = read_metadata(bytes)?;
    check_compatible(&meta)?;
    let target = dir.join(format!("{file_stem}.wasm"));
    let tmp = dir.join(format!(".{file_stem}.wasm.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        tool_err(format!("cannot install into {}: {e}", dir.display()))
    })?;
    Ok(target)
}

/// One host of a [`replay`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayHost {
    /// The host.
    pub machine_id: String,
    /// What the candidate decided (JSON), or its fault.
    pub candidate: Result<serde_json::Value, String>,
    /// True if the candidate has an opinion that the applied decision does not share.
    pub differs: bool,
}

/// Runs a candidate plugin's `configure` or `select-rules` over recorded hosts (e.g. every
/// host in the store) next to the decisions applied to them today, to see what a new policy
/// would change before deploying it (or before promoting it from shadow mode). Uses the
/// production limits and a scratch kv; `applied[i]` belongs to `hosts[i]`.
pub fn replay(
    component: &Path,
    settings_json: &str,
    hook: Hook,
    hosts: &[dasher_sdk::domain::HostFacts],
    applied: &[serde_json::Value],
) -> Result<Vec<ReplayHost>, PolicyError> {
    if !matches!(hook, Hook::Configure | Hook::SelectRules) {
        return Err(tool_err("replay supports configure and select-rules"));
    }
    let bytes = std::fs::read(component)
        .map_err(|e| PolicyError::Load(LoadError::Io(format!("{}: {e}", component.display()))))?;
    let limits = Limits::default();
    let runtime = Runtime::new(limits.memory_bytes, 16).map_err(PolicyError::Engine)?;
    let compiled = runtime.compile(&bytes, &limits)?;
    if !compiled.meta.has(hook) {
        return Err(tool_err(format!("{} does not declare {hook}", compiled.meta.name)));
    }
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let plugin = LoadedPlugin::init(
        compiled,
        component.to_path_buf(),
        settings_json.to_owned(),
        Mode::Shadow,
        limits,
        Arc::clone(&kv),
    )?;
    let mut out = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let input = serde_json::to_string(host).map_err(|e| tool_err(e.to_string()))?;
        let candidate = plugin.call(hook, &input, &kv).map_err(|f| f.to_string()).and_then(|o| {
            let strict = match hook {
                Hook::Configure => serde_json::from_str::<ConfigDecision>(&o.json).map(|_| ()),
                _ => serde_json::from_str::<SelectionDecision>(&o.json).map(|_| ()),
            };
            strict.map_err(|e| format!("invalid output: {e}"))?;
            serde_json::from_str::<serde_json::Value>(&o.json).map_err(|e| e.to_string())
        });
        let applied = applied.get(i).cloned().unwrap_or(serde_json::Value::Null);
        let differs = match (&candidate, &applied) {
            (Ok(serde_json::Value::Object(c)), serde_json::Value::Object(a)) => {
                c.iter().any(|(k, v)| a.get(k) != Some(v))
            }
            (Ok(c), a) => c.as_object().is_some_and(|o| !o.is_empty()) && c != a,
            (Err(_), _) => true,
        };
        out.push(ReplayHost { machine_id: host.machine_id.clone(), candidate, differs });
    }
    Ok(out)
}
