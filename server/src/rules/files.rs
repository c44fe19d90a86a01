//! Rules files: a directory of TOML files, one rule set per file.
//!
//! ```toml
//! rule_set = "engineering"            # optional: defaults to the file's stem; "host:ID" allowed
//! [[rules]]
//! identifier = "EQHXZ8M8AV"
//! rule_type  = "TEAMID"
//! policy     = "ALLOWLIST"
//! custom_msg = "Google software"      # every optional field of the admin API
//! comment    = "why this rule exists"
//! ```
//!
//! Reading only turns files into [`SetSource`]s (TOML syntax is checked here, with the file
//! and line); the rules themselves are validated by [`super::validate_sets`], the admin API's
//! code. Files whose name starts with `.` and files not ending in `.toml` are ignored, so a
//! writer may rename a temporary file into place.

use super::SetSource;
use dasher_sdk::domain::Rule;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest rules file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most rules files in a directory.
pub const MAX_FILES: usize = 10_000;

/// A rules file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// I/O on the directory or a file.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a rules file (TOML syntax, unknown keys, bounds).
    #[error("{path}: {message}")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// What is wrong (with line and column for TOML errors).
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    rule_set: Option<String>,
    #[serde(default)]
    rules: Vec<toml::Table>,
}

/// A directory's sets, in file-name order, and a SHA-256 over the files read (names and
/// contents), which identifies what was applied.
#[derive(Clone, Debug)]
pub struct LoadedDir {
    /// One per file.
    pub sets: Vec<SetSource>,
    /// Hex SHA-256 of the files read.
    pub content_sha256: String,
}

/// The rules files of `dir` (not recursive), sorted by name.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let io = |source| FileError::Io { path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        files.push(path);
        if files.len() > MAX_FILES {
            return Err(FileError::Invalid {
                path: dir.to_owned(),
                message: format!("more than {MAX_FILES} rules files"),
            });
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one file's text; `name` is its file name (the set defaults to its stem).
pub fn parse_file(name: &str, text: &str) -> Result<SetSource, FileError> {
    let invalid = |message: String| FileError::Invalid { path: PathBuf::from(name), message };
    let parsed: FileToml = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
    let stem = name.strip_suffix(".toml").unwrap_or(name);
    let rules = parsed
        .rules
        .into_iter()
        .map(|t| serde_json::to_value(t).map_err(|e| invalid(format!("rules: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SetSource { rule_set: parsed.rule_set.unwrap_or_else(|| stem.to_owned()), source: Some(name.to_owned()), rules })
}

/// Reads every rules file of `dir` (see [`rule_files`]).
pub fn load_dir(dir: &Path) -> Result<LoadedDir, FileError> {
    let mut hash = Sha256::new();
    let mut sets = Vec::new();
    for path in rule_files(dir)? {
        let io = |source| FileError::Io { path: path.clone(), source };
        let len = std::fs::metadata(&path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(FileError::Invalid {
                path: path.clone(),
                message: format!("{len} bytes is larger than the {MAX_FILE_BYTES} a rules file may have"),
            });
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        let text = String::from_utf8(bytes)
            .map_err(|_| FileError::Invalid { path: path.clone(), message: "not UTF-8 text".into() })?;
        sets.push(parse_file(&name, &text)?);
    }
    let content_sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(LoadedDir { sets, content_sha256 })
}

#[derive(Serialize)]
struct FileOut<'a> {
    rule_set: &'a str,
    rules: &'a [Rule],
}

/// A set as a rules file (TOML), rules in the order given.
pub fn to_toml(rule_set: &str, rules: &[Rule]) -> String {
    let body = toml::to_string(&FileOut { rule_set, rules }).expect("rules serialize as TOML");
    format!("# Rule set {rule_set:?}: this file is its whole content (dasher rules apply).\n{body}")
}

/// A file name for a set: its name when that is a plain file name, otherwise the name with
/// every other character as `_` (the file's `rule_set` keeps the real name).
pub fn file_name_for(rule_set: &str) -> String {
    let safe: String = rule_set
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let safe = safe.trim_start_matches('.');
    format!("{}.toml", if safe.is_empty() { "set" } else { safe })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::domain::RuleSpec;
    use dasher_sdk::wire::RuleType;

    #[test]
    fn export_reads_back_as_the_same_rules() {
        let (_, rule) = RuleSpec::block(RuleType::TeamId, "EQHXZ8M8AV")
            .with_message("no \"quotes\" problem\nsecond line")
            .with_comment("why")
            .validate()
            .unwrap();
        let rule = rule.unwrap();
        let text = to_toml("host:Mac-1", std::slice::from_ref(&rule));
        let set = parse_file(&file_name_for("host:Mac-1"), &text).unwrap();
        assert_eq!(set.rule_set, "host:Mac-1");
        assert_eq!(set.source.as_deref(), Some("host_Mac-1.toml"));
        let back = super::super::validate_sets(vec![set], 10).unwrap();
        assert_eq!(back[0].rules.values().next(), Some(&rule));
    }

    #[test]
    fn stem_names_the_set_and_errors_name_the_file() {
        let set = parse_file("eng.toml", "[[rules]]\nidentifier = \"x\"\n").unwrap();
        assert_eq!(set.rule_set, "eng");
        let e = parse_file("eng.toml", "rule_set = \"a\"\n[[rules]\n").unwrap_err().to_string();
        assert!(e.starts_with("eng.toml: ") && e.contains("line 2"), "{e}");
        let e = parse_file("eng.toml", "rulez = 1\n").unwrap_err().to_string();
        assert!(e.contains("rulez"), "{e}");
    }
}
