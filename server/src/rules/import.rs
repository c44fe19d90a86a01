//! Converting rules teams already have into rules files: Moroz's TOML configs and the JSON of
//! `santactl rule --export`. Converted rules pass [`super::validate_sets`] (the admin API's
//! checks) before anything is written; what cannot be converted is skipped with a warning.
//!
//! - Moroz: a directory (or one file) of TOML configs: `global.toml` → set `global`, a file
//!   with `machine_id` (or any other file, named by machine id) → `host:{machine_id}`. Rules
//!   carry `rule_type`, `policy` (`BLOCKLIST`, `ALLOWLIST`, `ALLOWLIST_COMPILER`, or the old
//!   `BLOCK`/`ALLOW`/`ALLOW_COMPILER`), `identifier` (or the old `sha256`), `custom_msg`,
//!   `custom_url`. The sync settings beside them (`client_mode`, `batch_size`…) belong in
//!   Dasher's config and are reported, not converted.
//! - santactl: `{"rules": [{"identifier", "policy", "rule_type", "custom_msg", "custom_url",
//!   "event_detail_button_text", "comment", "cel_expr"}]}` with `""` for unset; keys are
//!   case-insensitive and `sha256` stands for `identifier`, as santactl's own import reads it.
//!   Local-only policies (`ALLOWLIST_LOCAL_BINARY`…, transitive) have no sync equivalent and
//!   are skipped. santactl exports CDHASH rules with rule type `Unknown`: a 40-hex identifier
//!   with that type is read as `CDHASH`.

use super::{DesiredSet, RulesError, SetSource, validate_sets};
use serde_json::{Map, Value};
use std::path::Path;

/// What an import produced.
#[derive(Debug)]
pub struct Imported {
    /// The sets, validated.
    pub sets: Vec<DesiredSet>,
    /// What was skipped or needs a person's attention.
    pub warnings: Vec<String>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The input is not in the expected format.
    #[error("{0}")]
    Format(String),
    /// A converted rule fails validation (names the file, rule and field).
    #[error("{0}")]
    Invalid(#[from] RulesError),
}

fn text(v: Option<&Value>) -> Option<Value> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(Value::String(s.clone())),
        _ => None,
    }
}

const MOROZ_RULE_KEYS: &[&str] = &["rule_type", "policy", "identifier", "sha256", "custom_msg", "custom_url"];

fn moroz_policy(p: &str) -> String {
    match p {
        "BLOCK" => "BLOCKLIST".into(),
        "ALLOW" => "ALLOWLIST".into(),
        "ALLOW_COMPILER" => "ALLOWLIST_COMPILER".into(),
        other => other.into(),
    }
}

/// Converts a Moroz config directory or file.
pub fn from_moroz(path: &Path, max_rules: usize) -> Result<Imported, ImportError> {
    let files = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| ImportError::Io(path.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    let mut warnings = Vec::new();
    let mut sets = Vec::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let raw = std::fs::read_to_string(&file).map_err(|e| ImportError::Io(file.display().to_string(), e))?;
        let table: toml::Table = toml::from_str(&raw).map_err(|e| ImportError::Format(format!("{name}: {e}")))?;
        let stem = name.strip_suffix(".toml").unwrap_or(&name);
        let machine = table.get("machine_id").and_then(|v| v.as_str()).map(str::to_owned);
        let rule_set = match (&machine, stem) {
            (Some(id), _) => format!("host:{id}"),
            (None, "global") => "global".to_owned(),
            (None, stem) => format!("host:{stem}"),
        };
        let settings: Vec<&str> =
            table.keys().map(String::as_str).filter(|k| !matches!(*k, "rules" | "machine_id")).collect();
        if !settings.is_empty() {
            warnings.push(format!(
                "{name}: sync settings are not rules and were not converted ({}); set them in [defaults] or [tags.*] of Dasher's config",
                settings.join(", ")
            ));
        }
        let mut rules = Vec::new();
        let list = match table.get("rules") {
            None => &Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(_) => return Err(ImportError::Format(format!("{name}: rules must be an array of tables"))),
        };
        for (i, r) in list.iter().enumerate() {
            let Some(r) = r.as_table() else {
                return Err(ImportError::Format(format!("{name}: rules[{i}] is not a table")));
            };
            let mut out = Map::new();
            for k in r.keys() {
                if !MOROZ_RULE_KEYS.contains(&k.as_str()) {
                    warnings.push(format!("{name}: rules[{i}]: field {k} is not a Moroz rule field and was dropped"));
                }
            }
            let get = |k: &str| r.get(k).and_then(|v| v.as_str()).map(|s| Value::String(s.to_owned()));
            for k in ["rule_type", "custom_msg", "custom_url"] {
                if let Some(v) = text(get(k).as_ref()) {
                    out.insert(k.into(), v);
                }
            }
            if let Some(Value::String(p)) = get("policy") {
                out.insert("policy".into(), Value::String(moroz_policy(&p)));
            }
            if let Some(id) = text(get("identifier").as_ref()).or_else(|| text(get("sha256").as_ref())) {
                out.insert("identifier".into(), id);
            }
            rules.push(Value::Object(out));
        }
        sets.push(SetSource { rule_set, source: Some(name), rules });
    }
    Ok(Imported { sets: validate_sets(sets, max_rules)?, warnings })
}

/// Converts the JSON of `santactl rule --export` into the set `rule_set`.
pub fn from_santactl(path: &Path, rule_set: &str, max_rules: usize) -> Result<Imported, ImportError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("santactl export").to_owned();
    let raw = std::fs::read(path).map_err(|e| ImportError::Io(path.display().to_string(), e))?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|e| ImportError::Format(format!("{name}: {e}")))?;
    let Some(list) = doc.get("rules").and_then(Value::as_array) else {
        return Err(ImportError::Format(format!(
            "{name}: expected {{\"rules\": [...]}} as `santactl rule --export` writes it"
        )));
    };
    let mut warnings = Vec::new();
    let mut rules = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let Some(r) = r.as_object() else {
            return Err(ImportError::Format(format!("{name}: rules[{i}] is not an object")));
        };
        // santactl lower-cases keys and upper-cases policy and rule type when it imports.
        let r: Map<String, Value> = r.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        let upper = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_ascii_uppercase).unwrap_or_default();
        let identifier = text(r.get("identifier")).or_else(|| text(r.get("sha256")));
        let id_str = identifier.as_ref().and_then(Value::as_str).unwrap_or_default().to_owned();
        let policy = upper("policy");
        if matches!(
            policy.as_str(),
            "ALLOWLIST_LOCAL_BINARY" | "ALLOWLIST_LOCAL_SIGNINGID" | "ALLOWTRANSITIVE" | "SEATBELT"
        ) {
            warnings.push(format!(
                "{name}: rules[{i}] ({id_str}): policy {policy} is local to one Mac and has no sync equivalent; skipped"
            ));
            continue;
        }
        let mut rule_type = upper("rule_type");
        if rule_type == "UNKNOWN" && id_str.len() == 40 && id_str.bytes().all(|b| b.is_ascii_hexdigit()) {
            warnings.push(format!("{name}: rules[{i}] ({id_str}): rule type Unknown read as CDHASH (40 hex digits)"));
            rule_type = "CDHASH".into();
        }
        let mut out = Map::new();
        out.insert("rule_type".into(), Value::String(rule_type));
        out.insert("policy".into(), Value::String(policy));
        if let Some(id) = identifier {
            out.insert("identifier".into(), id);
        }
        for (from, to) in [
            ("custom_msg", "custom_msg"),
            ("custom_url", "custom_url"),
            ("event_detail_button_text", "event_detail_button_label"),
            ("event_detail_button_label", "event_detail_button_label"),
            ("comment", "comment"),
            ("cel_expr", "cel_expr"),
            ("notification_app_name", "notification_app_name"),
        ] {
            if let Some(v) = text(r.get(from)) {
                out.insert(to.into(), v);
            }
        }
        rules.push(Value::Object(out));
    }
    let set = SetSource { rule_set: rule_set.to_owned(), source: Some(name), rules };
    Ok(Imported { sets: validate_sets(vec![set], max_rules)?, warnings })
}
