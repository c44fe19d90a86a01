//! `dasher plugin test`: JSON fixture cases run through the server's own host code (same
//! metadata checks, limits and output validation), each case on a fresh instance.
//!
//! A case is one `*.json` file:
//!
//! ```json
//! {
//!   "settings": {"threshold": 3},
//!   "kv": {"hosts:abc": 2, "seen:abc:m0": "1"},
//!   "hook": "triage",
//!   "input": {"host": {"machine_id": "m1"}, "events": []},
//!   "expect": {"verdicts": []},
//!   "expect_kv": {"hosts:abc": 3, "seen:abc:m1": "1"}
//! }
//! ```
//!
//! - `settings`: the settings `init` gets (default `{}`).
//! - `kv`: seeds the plugin's key/value namespace before `init`. A JSON string is stored as its
//!   text (no quotes); any other value as its JSON text. An integer's JSON text is the stored
//!   form of a `kv-increment` counter (ASCII decimal), so `"hosts:abc": 2` seeds a counter.
//!   The atomic operations (`kv-increment`, `kv-compare-and-swap`) run against this store with
//!   the server's semantics.
//! - `hook` + `input`: the call (`configure`, `select-rules`, `triage`, `review`). `hook: "init"`
//!   checks `init` alone (with `expect_error`).
//! - `expect`: a **subset** of the output: an object lists only the keys it checks (a `null`
//!   value also accepts a missing key), an array must have the same length and match element
//!   by element, anything else must be equal. An empty object anywhere in `expect` is refused
//!   (it would match everything); use `expect_exact` for "exactly this output".
//! - `expect_exact`: the whole output, compared as JSON values.
//! - `expect_error`: `true` (the call must fail) or a string the failure message must contain.
//! - `expect_kv`: after the last call, keys that must hold these values (same encoding as
//!   `kv`; `null` = must be absent).
//! - `steps`: instead of `hook`/`input`/`expect*`, a list of calls run in order on the same
//!   instance and key/value store, each `{"hook", "input", "expect" | "expect_exact" |
//!   "expect_error"}` — e.g. three hosts reporting the same binary, then the proposal.
//!
//! Unknown fields are errors, so a typo never silently passes.

use crate::config::{Limits, Mode};
use crate::error::{Fault, LoadError, PolicyError};
use crate::kv::{KvBackend, MemoryKv};
use crate::meta::read_metadata;
use crate::runtime::{LoadedPlugin, Runtime};
use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::plugin::{Hook, PluginMetadata, SelectionDecision, Verdicts};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a step expects of a failure: any (`true`), none (`false`), or a message part.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ExpectError {
    /// `true`: must fail; `false`: must succeed.
    Any(bool),
    /// Must fail with a message containing this.
    Message(String),
}

impl Default for ExpectError {
    fn default() -> Self {
        ExpectError::Any(false)
    }
}

impl ExpectError {
    fn wanted(&self) -> bool {
        !matches!(self, ExpectError::Any(false))
    }

    /// `Ok` if a failure with `message` is what was expected.
    fn check_failure(&self, message: &str) -> Result<(), String> {
        match self {
            ExpectError::Any(true) => Ok(()),
            ExpectError::Any(false) => Err(message.to_owned()),
            ExpectError::Message(part) if message.contains(part.as_str()) => Ok(()),
            ExpectError::Message(part) => {
                Err(format!("failed with {message:?}, expected a message containing {part:?}"))
            }
        }
    }
}

/// One call of a case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Step {
    /// Hook to call.
    pub hook: Option<Hook>,
    /// Input document.
    pub input: Value,
    /// Expected subset of the output.
    pub expect: Option<Value>,
    /// Expected whole output.
    pub expect_exact: Option<Value>,
    /// Expected failure.
    pub expect_error: ExpectError,
}

/// One fixture file (see the module docs for the format).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Case {
    /// Hook to call (single-call case).
    pub hook: Option<Hook>,
    /// Settings for `init`.
    pub settings: Value,
    /// Input document (single-call case).
    pub input: Value,
    /// Expected subset of the output (single-call case).
    pub expect: Option<Value>,
    /// Expected whole output (single-call case).
    pub expect_exact: Option<Value>,
    /// Expected failure (single-call case, or of `init`).
    pub expect_error: ExpectError,
    /// Initial key/value contents.
    pub kv: serde_json::Map<String, Value>,
    /// Key/value contents expected after the calls.
    pub expect_kv: serde_json::Map<String, Value>,
    /// Calls sharing one instance and store (instead of the single-call fields).
    pub steps: Vec<Step>,
}

impl Case {
    /// The calls to make, or why the case is malformed.
    fn calls(&self) -> Result<Vec<Step>, String> {
        if !self.steps.is_empty() {
            if self.hook.is_some() || self.expect.is_some() || self.expect_exact.is_some() || !self.input.is_null() {
                return Err("a case with \"steps\" takes hook/input/expect inside each step only".into());
            }
            for (i, step) in self.steps.iter().enumerate() {
                match step.hook {
                    None => return Err(format!("steps[{i}] has no \"hook\"")),
                    Some(Hook::Init) => return Err(format!("steps[{i}]: init runs once, before the steps")),
                    Some(_) => {}
                }
                check_expectation(&step.expect, &step.expect_exact, &format!("steps[{i}]"))?;
            }
            return Ok(self.steps.clone());
        }
        check_expectation(&self.expect, &self.expect_exact, "case")?;
        match self.hook {
            None => Err("fixture has no \"hook\" (or \"steps\")".into()),
            Some(Hook::Init) => Ok(vec![]),
            Some(hook) => Ok(vec![Step {
                hook: Some(hook),
                input: self.input.clone(),
                expect: self.expect.clone(),
                expect_exact: self.expect_exact.clone(),
                expect_error: self.expect_error.clone(),
            }]),
        }
    }
}

fn check_expectation(expect: &Option<Value>, exact: &Option<Value>, at: &str) -> Result<(), String> {
    if expect.is_some() && exact.is_some() {
        return Err(format!("{at}: give \"expect\" or \"expect_exact\", not both"));
    }
    if let Some(e) = expect
        && let Some(path) = empty_object(e, "$")
    {
        return Err(format!(
            "{at}: \"expect\" has an empty object at {path}, which matches any output; list the keys to check or use \"expect_exact\""
        ));
    }
    Ok(())
}

fn empty_object(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => Some(path.to_owned()),
        Value::Object(m) => m.iter().find_map(|(k, v)| empty_object(v, &format!("{path}.{k}"))),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| empty_object(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// A `kv`/`expect_kv` value as stored bytes.
fn kv_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseReport {
    /// Fixture file.
    pub file: PathBuf,
    /// Passed.
    pub passed: bool,
    /// Output JSON of the last call, or the fault.
    pub output: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// Time of the calls (µs), including instance creation and `init`.
    pub time_us: u64,
    /// Peak linear memory (bytes).
    pub peak_memory_bytes: usize,
    /// Output size of the last call.
    pub output_bytes: usize,
    /// Wasm instructions executed by the calls (fuel; harness only).
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
        let failed = self.cases.iter().filter(|c| !c.passed).count();
        writeln!(f, "{} passed, {failed} failed", self.cases.len() - failed)
    }
}

/// Runs every `*.json` case in `fixtures_dir` against `component`, each on a fresh instance
/// initialised with the case's settings and key/value seed.
pub fn test(component: &Path, fixtures_dir: &Path) -> Result<TestReport, PolicyError> {
    let bytes = std::fs::read(component)
        .map_err(|e| PolicyError::Load(LoadError::Io(format!("{}: {e}", component.display()))))?;
    let limits = Limits::default();
    let runtime = Runtime::with_fuel(limits.memory_bytes, 16, true).map_err(PolicyError::Engine)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir)
        .map_err(|e| PolicyError::Tool(format!("cannot read {}: {e}", fixtures_dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let metadata = read_metadata(&bytes)?;
    let cases = files.into_iter().map(|file| run_case(&runtime, &bytes, &limits, file)).collect();
    Ok(TestReport { metadata, limits, cases })
}

fn run_case(runtime: &Runtime, bytes: &[u8], limits: &Limits, file: PathBuf) -> CaseReport {
    let mut report = CaseReport {
        file,
        passed: false,
        output: String::new(),
        failure: None,
        time_us: 0,
        peak_memory_bytes: 0,
        output_bytes: 0,
        instructions: 0,
    };
    if let Err(why) = run_steps(runtime, bytes, limits, &mut report) {
        report.failure = Some(why);
    } else {
        report.passed = true;
    }
    report
}

/// Runs one case into `report`; `Err` is why it failed.
fn run_steps(runtime: &Runtime, bytes: &[u8], limits: &Limits, report: &mut CaseReport) -> Result<(), String> {
    let case: Case = std::fs::read(&report.file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("bad fixture: {e}"))?;
    let calls = case.calls().map_err(|e| format!("bad fixture: {e}"))?;
    let compiled = runtime.compile(bytes, limits).map_err(|e| e.to_string())?;
    let namespace = format!("plugin:{}", compiled.meta.name);
    let kv = Arc::new(MemoryKv::new());
    for (k, v) in &case.kv {
        kv.put(&namespace, k, &kv_bytes(v)).map_err(|e| format!("seeding kv {k:?}: {e}"))?;
    }
    let kv_dyn: Arc<dyn KvBackend> = kv.clone();
    let settings = if case.settings.is_null() { "{}".to_owned() } else { case.settings.to_string() };
    let init =
        LoadedPlugin::init(compiled, report.file.clone(), settings, Mode::Enforce, limits.clone(), kv_dyn.clone());
    let plugin = match init {
        Err(e) => {
            report.output = e.to_string();
            return if calls.is_empty() && case.expect_error.wanted() {
                case.expect_error.check_failure(&report.output).map_err(|e| format!("init: {e}"))
            } else {
                Err(format!("init failed: {e}"))
            };
        }
        Ok(p) if calls.is_empty() => {
            drop(p);
            return if case.expect_error.wanted() {
                Err("init succeeded but an error was expected".into())
            } else {
                Ok(())
            };
        }
        Ok(p) => p,
    };
    for (i, step) in calls.iter().enumerate() {
        let at = if calls.len() > 1 { format!("steps[{i}]: ") } else { String::new() };
        let hook = step.hook.expect("checked by Case::calls");
        if !plugin.meta.has(hook) {
            return Err(format!("{at}the plugin does not declare hook {hook}"));
        }
        let result = plugin.call(hook, &step.input.to_string(), &kv_dyn).and_then(|out| {
            let parsed = match hook {
                Hook::Configure => serde_json::from_str::<ConfigDecision>(&out.json).map(|_| ()),
                Hook::SelectRules => serde_json::from_str::<SelectionDecision>(&out.json).map(|_| ()),
                Hook::Triage => serde_json::from_str::<Verdicts>(&out.json).map(|_| ()),
                Hook::Review => serde_json::from_str::<dasher_sdk::plugin::ReviewDecision>(&out.json).map(|_| ()),
                Hook::Init => Ok(()),
            };
            parsed.map_err(|e| Fault::InvalidOutput(e.to_string()))?;
            Ok(out)
        });
        match result {
            Ok(out) => {
                report.time_us += out.elapsed.as_micros() as u64;
                report.peak_memory_bytes = report.peak_memory_bytes.max(out.peak_memory_bytes);
                report.output_bytes = out.json.len();
                report.instructions += out.instructions.unwrap_or(0);
                report.output = out.json;
                if step.expect_error.wanted() {
                    return Err(format!("{at}call succeeded but an error was expected"));
                }
                let actual: Value = serde_json::from_str(&report.output).unwrap_or_default();
                if let Some(expect) = &step.expect {
                    subset(expect, &actual, "$").map_err(|e| format!("{at}{e}"))?;
                }
                if let Some(exact) = &step.expect_exact
                    && exact != &actual
                {
                    return Err(format!("{at}expected exactly {exact}, got {actual}"));
                }
            }
            Err(fault) => {
                report.output = fault.to_string();
                step.expect_error.check_failure(&report.output).map_err(|e| format!("{at}{e}"))?;
            }
        }
    }
    for (k, want) in &case.expect_kv {
        let got = kv.get(&namespace, k).map_err(|e| format!("reading kv {k:?}: {e}"))?;
        let matches = match (want, &got) {
            (Value::Null, None) => true,
            (Value::Null, Some(_)) | (_, None) => false,
            (want, Some(got)) => &kv_bytes(want) == got,
        };
        if !matches {
            let got = got.map_or("absent".to_owned(), |g| format!("{:?}", String::from_utf8_lossy(&g)));
            return Err(format!("kv {k:?}: expected {want}, got {got}"));
        }
    }
    Ok(())
}

/// `Ok` if `expect` is a subset of `actual` (see the module docs).
fn subset(expect: &Value, actual: &Value, path: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn case(json: &str) -> Case {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn empty_expect_objects_are_refused() {
        let e = case(r#"{"hook":"configure","expect":{}}"#).calls().unwrap_err();
        assert!(e.contains("matches any output"), "{e}");
        let e = case(r#"{"hook":"configure","expect":{"a":[{}]}}"#).calls().unwrap_err();
        assert!(e.contains("$.a[0]"), "{e}");
        assert!(case(r#"{"hook":"configure","expect_exact":{}}"#).calls().is_ok());
    }

    #[test]
    fn steps_exclude_single_call_fields() {
        let e = case(r#"{"hook":"triage","steps":[{"hook":"triage"}]}"#).calls().unwrap_err();
        assert!(e.contains("inside each step"), "{e}");
        let e = case(r#"{"steps":[{"hook":"init"}]}"#).calls().unwrap_err();
        assert!(e.contains("init runs once"), "{e}");
        assert_eq!(case(r#"{"steps":[{"hook":"triage"},{"hook":"triage"}]}"#).calls().unwrap().len(), 2);
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(serde_json::from_str::<Case>(r#"{"hook":"configure","expcet":{}}"#).is_err());
    }

    #[test]
    fn expect_error_matches_messages() {
        let e: ExpectError = serde_json::from_str(r#""too large""#).unwrap();
        assert!(e.check_failure("value too large").is_ok());
        assert!(e.check_failure("trap").unwrap_err().contains("too large"));
        assert!(ExpectError::Any(true).check_failure("x").is_ok());
        assert!(!ExpectError::default().wanted());
    }

    #[test]
    fn subset_names_the_path() {
        let exp = serde_json::json!({"a": {"b": [1, 2]}});
        assert!(subset(&exp, &serde_json::json!({"a": {"b": [1, 2], "c": 3}}), "$").is_ok());
        let e = subset(&exp, &serde_json::json!({"a": {"b": [1, 3]}}), "$").unwrap_err();
        assert!(e.starts_with("$.a.b[1]"), "{e}");
    }

    #[test]
    fn kv_strings_are_stored_without_quotes() {
        assert_eq!(kv_bytes(&serde_json::json!("abc")), b"abc");
        assert_eq!(kv_bytes(&serde_json::json!(3)), b"3");
        assert_eq!(kv_bytes(&serde_json::json!({"n": 1})), br#"{"n":1}"#);
    }
}
