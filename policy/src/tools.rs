//! Plugin tooling as library functions; the `dasher plugin …` CLI is a thin wrapper.
//!
//! - [`build`]: `cargo rustc` for `wasm32-unknown-unknown` with a size profile, then
//!   wit-component (as a library) turns the core module into a component.
//! - [`inspect`]: metadata, hash and size of a component, without compiling it.
//! - [`install`]: validated, atomic deploy into a plugin directory (temp file + rename).
//! - [`test`]: runs JSON fixture cases through the same host code the server uses.

use crate::config::{Limits, Mode};
use crate::error::{LoadError, PolicyError};
use crate::kv::{KvBackend, MemoryKv};
use crate::meta::{check_compatible, read_metadata};
use crate::runtime::{LoadedPlugin, Runtime, content_hash};
use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::{Hook, METADATA_SECTION, PluginMetadata, SelectionDecision, Verdicts};
use serde::{Deserialize, Serialize};
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
/// panic = abort (~10× smaller than a default release build). Needs
/// `rustup target add wasm32-unknown-unknown`.
pub fn build(crate_dir: &Path, out: Option<&Path>, options: &BuildOptions) -> Result<BuildReport, PolicyError> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(tool_err(format!("{} has no Cargo.toml", crate_dir.display())));
    }
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
    let output = cmd.output().map_err(|e| tool_err(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(tool_err(format!("cargo build failed:\n{}", String::from_utf8_lossy(&output.stderr))));
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

/// One fixture case: `{"hook": "configure", "settings": {...}, "input": {...}, "expect": {...}, "kv": {...}}`.
/// `expect` is matched as a subset of the output (objects: listed keys only; arrays: same
/// length, element-wise). `expect_error: true` expects the call to fail. `kv` seeds the
/// plugin's namespace (values are JSON, stored as their text).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Case {
    /// Hook to call.
    pub hook: Option<Hook>,
    /// Settings for `init`.
    pub settings: serde_json::Value,
    /// Input document.
    pub input: serde_json::Value,
    /// Expected subset of the output.
    pub expect: Option<serde_json::Value>,
    /// Expect a fault.
    pub expect_error: bool,
    /// Initial kv.
    pub kv: serde_json::Map<String, serde_json::Value>,
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseReport {
    /// Fixture file.
    pub file: PathBuf,
    /// Passed.
    pub passed: bool,
    /// Output JSON, or the fault.
    pub output: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// Call time (µs), including instance creation and `init`.
    pub time_us: u64,
    /// Peak linear memory (bytes).
    pub peak_memory_bytes: usize,
    /// Output size.
    pub output_bytes: usize,
    /// Wasm instructions executed by the call (fuel; harness only).
    pub instructions: u64,
}

/// What [`test`] reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestReport {
    /// The plugin.
    pub metadata: PluginMetadata,
    /// Production limits the cases ran under.
    pub limits: Limits,
    /// One per fixture file, by file name.
    pub cases: Vec<CaseReport>,
}

impl TestReport {
    /// True if every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }
}

impl std::fmt::Display for TestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {} (limits: {} ms, triage {} ms, {} MiB, output {} bytes)",
            self.metadata.name,
            self.metadata.version,
            self.limits.deadline_ms,
            self.limits.triage_deadline_ms,
            self.limits.memory_bytes >> 20,
            self.limits.max_output_bytes
        )?;
        for c in &self.cases {
            let name = c.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            writeln!(
                f,
                "{} {name}: {} µs, {} instructions, {} KiB memory, {} bytes out",
                if c.passed { "ok  " } else { "FAIL" },
                c.time_us,
                c.instructions,
                c.peak_memory_bytes >> 10,
                c.output_bytes
            )?;
            if let Some(why) = &c.failure {
                writeln!(f, "     {why}")?;
                writeln!(f, "     output: {}", c.output)?;
            }
        }
        Ok(())
    }
}

/// Runs every `*.json` case in `fixtures_dir` against `component` through the server's own
/// host code (same metadata checks, limits, output validation), each case on a fresh
/// instance initialised with the case's settings.
pub fn test(component: &Path, fixtures_dir: &Path) -> Result<TestReport, PolicyError> {
    let bytes = std::fs::read(component)
        .map_err(|e| PolicyError::Load(LoadError::Io(format!("{}: {e}", component.display()))))?;
    let limits = Limits::default();
    let runtime = Runtime::with_fuel(limits.memory_bytes, 16, true).map_err(PolicyError::Engine)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir)
        .map_err(|e| tool_err(format!("cannot read {}: {e}", fixtures_dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let metadata = read_metadata(&bytes)?;
    let mut cases = vec![];
    for file in files {
        cases.push(run_case(&runtime, &bytes, &limits, &file));
    }
    Ok(TestReport { metadata, limits, cases })
}

fn run_case(runtime: &Runtime, bytes: &[u8], limits: &Limits, file: &Path) -> CaseReport {
    let mut report = CaseReport {
        file: file.to_path_buf(),
        passed: false,
        output: String::new(),
        failure: None,
        time_us: 0,
        peak_memory_bytes: 0,
        output_bytes: 0,
        instructions: 0,
    };
    let case: Case = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            report.failure = Some(format!("bad fixture: {e}"));
            return report;
        }
    };
    let Some(hook) = case.hook else {
        report.failure = Some("fixture has no \"hook\"".into());
        return report;
    };
    let kv = Arc::new(MemoryKv::new());
    let compiled = match runtime.compile(bytes, limits) {
        Ok(c) => c,
        Err(e) => {
            report.failure = Some(e.to_string());
            return report;
        }
    };
    for (k, v) in &case.kv {
        let _ = kv.put(&format!("plugin:{}", compiled.meta.name), k, v.to_string().as_bytes());
    }
    let kv_dyn: Arc<dyn KvBackend> = kv;
    let settings = if case.settings.is_null() { "{}".to_owned() } else { case.settings.to_string() };
    let plugin = match LoadedPlugin::init(
        compiled,
        file.to_path_buf(),
        settings,
        Mode::Enforce,
        limits.clone(),
        Arc::clone(&kv_dyn),
    ) {
        Ok(p) => p,
        Err(e) => {
            report.output = e.to_string();
            report.passed = case.expect_error && hook == Hook::Init;
            if !report.passed {
                report.failure = Some(e.to_string());
            }
            return report;
        }
    };
    if hook == Hook::Init {
        report.passed = !case.expect_error;
        if case.expect_error {
            report.failure = Some("init succeeded but an error was expected".into());
        }
        return report;
    }
    if !plugin.meta.has(hook) {
        report.failure = Some(format!("the plugin does not declare hook {hook}"));
        return report;
    }
    let result = plugin.call(hook, &case.input.to_string(), &kv_dyn).and_then(|out| {
        let parsed = match hook {
            Hook::Configure => serde_json::from_str::<ConfigDecision>(&out.json).map(|_| ()),
            Hook::SelectRules => serde_json::from_str::<SelectionDecision>(&out.json).map(|_| ()),
            Hook::Triage => serde_json::from_str::<Verdicts>(&out.json).map(|_| ()),
            Hook::Review => serde_json::from_str::<dasher_sdk::plugin::ReviewDecision>(&out.json).map(|_| ()),
            Hook::Init => Ok(()),
        };
        parsed.map_err(|e| crate::error::Fault::InvalidOutput(e.to_string()))?;
        Ok(out)
    });
    match result {
        Ok(out) => {
            report.time_us = out.elapsed.as_micros() as u64;
            report.peak_memory_bytes = out.peak_memory_bytes;
            report.output_bytes = out.json.len();
            report.instructions = out.instructions.unwrap_or(0);
            report.output = out.json;
            if case.expect_error {
                report.failure = Some("call succeeded but an error was expected".into());
            } else if let Some(expect) = &case.expect {
                let actual: serde_json::Value = serde_json::from_str(&report.output).unwrap_or_default();
                match subset(expect, &actual, "$") {
                    Ok(()) => report.passed = true,
                    Err(e) => report.failure = Some(e),
                }
            } else {
                report.passed = true;
            }
        }
        Err(fault) => {
            report.output = fault.to_string();
            report.passed = case.expect_error;
            if !case.expect_error {
                report.failure = Some(fault.to_string());
            }
        }
    }
    report
}

fn subset(expect: &serde_json::Value, actual: &serde_json::Value, path: &str) -> Result<(), String> {
    use serde_json::Value;
    match (expect, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => subset(v, av, &p)?,
                    None if v.is_null() => {}
                    None => return Err(format!("{p}: missing, expected {v}")),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            e.iter().zip(a).enumerate().try_for_each(|(i, (e, a))| subset(e, a, &format!("{path}[{i}]")))
        }
        _ if expect == actual => Ok(()),
        _ => Err(format!("{path}: expected {expect}, got {actual}")),
    }
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
