//! `[[export.sinks]]`: where stored events are streamed, and which of them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Most sinks configured at once.
pub const MAX_SINKS: usize = 32;
/// Largest `batch_size`.
pub const MAX_BATCH: usize = 10_000;

/// Shortest `lease_secs`.
pub const MIN_LEASE_SECS: u64 = 3;
/// Longest `lease_secs`.
pub const MAX_LEASE_SECS: u64 = 3600;

/// The `[export]` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Sinks, each exported by its own task with its own cursor.
    pub sinks: Vec<SinkConfig>,
    /// Seconds a replica's lease on a sink lasts without renewal (renewed every third of
    /// it): how long a dead replica's sinks wait before another replica takes them over.
    pub lease_secs: u64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings { sinks: vec![], lease_secs: 15 }
    }
}

/// Where a sink delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines in a file, rotated by size and age.
    File,
    /// Batched HTTP POST.
    Http,
}

/// The body format of an `http` sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// Newline-delimited JSON records.
    #[default]
    Ndjson,
    /// Splunk HTTP Event Collector (`{"event": …}` per line, `Authorization: Splunk <token>`).
    Splunk,
    /// Elasticsearch/OpenSearch `_bulk` (`create` actions into `index`).
    Elasticsearch,
}

/// One `[[export.sinks]]` entry. Keys that do not apply to the sink's kind are refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name (letters, digits, `-`, `_`; at most 64 bytes): the key of its cursor.
    pub name: String,
    /// `stdout`, `file` or `http`.
    pub kind: SinkKind,
    /// Only events with one of these decisions (e.g. `BLOCK_BINARY`); empty = all.
    pub decisions: Vec<String>,
    /// Only events triage labelled with one of these; empty = all.
    pub labels: Vec<String>,
    /// Also export events triage dropped as noise (default false).
    pub include_dropped: bool,
    /// Most records per delivery (1..=10000).
    pub batch_size: usize,
    /// How often a caught-up sink looks for new events, in milliseconds.
    pub flush_interval_ms: u64,
    /// Seconds an event is left to triage before it is exported (its verdict and labels
    /// travel with it when triage ran by then).
    pub settle_secs: u64,
    /// Longest back-off between retries of a failed delivery, in milliseconds.
    pub max_backoff_ms: u64,
    /// `file`: the file written (rotated files get a timestamp suffix).
    pub path: Option<PathBuf>,
    /// `file`: rotate when the file reaches this many bytes (0 = never by size).
    pub rotate_bytes: u64,
    /// `file`: rotate when the file is this many seconds old (0 = never by age).
    pub rotate_secs: u64,
    /// `file`: gzip rotated files.
    pub gzip: bool,
    /// `http`: the URL posted to (`http://` or `https://`).
    pub url: Option<String>,
    /// `http`: body format.
    pub format: HttpFormat,
    /// `http` (elasticsearch): the index, `{yyyy}`, `{mm}`, `{dd}` replaced by the event's
    /// received date (UTC).
    pub index: String,
    /// `http`: file holding the credential (Splunk token, Elasticsearch API key, or the
    /// password when `username` is set).
    pub credential_file: Option<PathBuf>,
    /// `http`: environment variable holding the credential (instead of `credential_file`).
    pub credential_env: Option<String>,
    /// `http` (elasticsearch): basic-auth user; the credential is its password.
    pub username: Option<String>,
    /// `http`: PEM file of CA certificates trusted for `https://`, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// `http`: trust the operating system's CA certificate store for `https://` (default
    /// true; with false, only `ca_file`).
    pub system_roots: bool,
    /// `http`: seconds one request may take.
    pub timeout_secs: u64,
    /// `http`: where records the sink rejected (4xx) are written with the reason
    /// (default `{data_dir}/export-{name}.deadletter.jsonl`).
    pub dead_letter_path: Option<PathBuf>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            name: String::new(),
            kind: SinkKind::Stdout,
            decisions: vec![],
            labels: vec![],
            include_dropped: false,
            batch_size: 500,
            flush_interval_ms: 1000,
            settle_secs: 2,
            max_backoff_ms: 60_000,
            path: None,
            rotate_bytes: 100 << 20,
            rotate_secs: 0,
            gzip: false,
            url: None,
            format: HttpFormat::Ndjson,
            index: "dasher-events-{yyyy}.{mm}.{dd}".into(),
            credential_file: None,
            credential_env: None,
            username: None,
            ca_file: None,
            system_roots: true,
            timeout_secs: 30,
            dead_letter_path: None,
        }
    }
}

impl ExportSettings {
    /// Checks names, bounds and that every sink has what its kind needs; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.sinks.len() > MAX_SINKS {
            return Err(format!("export.sinks: at most {MAX_SINKS} sinks"));
        }
        if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&self.lease_secs) {
            return Err(format!(
                "export.lease_secs must be from {MIN_LEASE_SECS} to {MAX_LEASE_SECS} (seconds a replica's lease on a \
                 sink lasts; it is renewed every third of it), not {}",
                self.lease_secs
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.sinks {
            let n = &s.name;
            let at = format!("export.sinks[name = {n:?}]");
            if n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(format!(
                    "{at}.name must be 1 to 64 letters, digits, '-' or '_' (it names the sink's cursor)"
                ));
            }
            if !names.insert(n.clone()) {
                return Err(format!("{at}.name is used by two sinks; names must be unique"));
            }
            if !(1..=MAX_BATCH).contains(&s.batch_size) {
                return Err(format!("{at}.batch_size must be from 1 to {MAX_BATCH}"));
            }
            if s.flush_interval_ms == 0 || s.max_backoff_ms == 0 {
                return Err(format!("{at}.flush_interval_ms and max_backoff_ms must be at least 1"));
            }
            let file_keys = s.path.is_some();
            let http_keys = s.url.is_some()
                || s.credential_file.is_some()
                || s.credential_env.is_some()
                || s.username.is_some()
                || s.ca_file.is_some();
            match s.kind {
                SinkKind::Stdout if file_keys || http_keys => {
                    return Err(format!("{at}: a stdout sink takes no path, url or credentials"));
                }
                SinkKind::File if s.path.is_none() => return Err(format!("{at}.path is required for a file sink")),
                SinkKind::File if http_keys => return Err(format!("{at}: a file sink takes no url or credentials")),
                SinkKind::Http => {
                    let url = s.url.as_deref().ok_or_else(|| format!("{at}.url is required for an http sink"))?;
                    let uri: http::Uri = url.parse().map_err(|e| format!("{at}.url {url:?} is not a URL: {e}"))?;
                    match uri.scheme_str() {
                        Some("http") => {}
                        Some("https") if s.system_roots || s.ca_file.is_some() => {}
                        Some("https") => {
                            return Err(format!(
                                "{at}.ca_file is required for an https url when system_roots = false (PEM CA certificates)"
                            ));
                        }
                        _ => return Err(format!("{at}.url must start with http:// or https://")),
                    }
                    if uri.host().is_none() {
                        return Err(format!("{at}.url has no host"));
                    }
                    if s.credential_file.is_some() && s.credential_env.is_some() {
                        return Err(format!("{at}: set credential_file or credential_env, not both"));
                    }
                    let has_cred = s.credential_file.is_some() || s.credential_env.is_some();
                    if s.format == HttpFormat::Splunk && !has_cred {
                        return Err(format!(
                            "{at}: a splunk sink needs credential_file or credential_env (the HEC token)"
                        ));
                    }
                    if s.username.is_some() && !has_cred {
                        return Err(format!("{at}.username needs credential_file or credential_env (the password)"));
                    }
                    if s.timeout_secs == 0 {
                        return Err(format!("{at}.timeout_secs must be at least 1"));
                    }
                    if s.format == HttpFormat::Elasticsearch && s.index.is_empty() {
                        return Err(format!("{at}.index must not be empty"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn sinks_are_checked_and_errors_name_the_key() {
        let ok = "[[export.sinks]]\nname = \"a\"\nkind = \"file\"\npath = \"/tmp/x.jsonl\"\n\
                  [[export.sinks]]\nname = \"b\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/in\"\nformat = \"elasticsearch\"";
        let c = Config::from_toml(ok).unwrap();
        assert_eq!(c.export.sinks.len(), 2);
        assert!(!c.export.sinks[0].include_dropped, "dropped noise is excluded by default");
        assert!(err("[[export.sinks]]\nname = \"a b\"\nkind = \"stdout\"").contains("name"));
        assert!(err("[[export.sinks]]\nname = \"a\"\nkind = \"file\"").contains("path is required"));
        let twice =
            "[[export.sinks]]\nname = \"a\"\nkind = \"stdout\"\n[[export.sinks]]\nname = \"a\"\nkind = \"stdout\"";
        assert!(err(twice).contains("unique"));
        let https = "[[export.sinks]]\nname = \"a\"\nkind = \"http\"\nurl = \"https://siem.example/in\"";
        assert!(Config::from_toml(https).unwrap().export.sinks[0].system_roots, "https trusts the system store");
        assert!(err(&format!("{https}\nsystem_roots = false")).contains("ca_file is required"));
        let splunk = "[[export.sinks]]\nname = \"a\"\nkind = \"http\"\nformat = \"splunk\"\nurl = \"http://s:8088/\"";
        assert!(err(splunk).contains("HEC token"));
        assert!(err("[[export.sinks]]\nname = \"a\"\nkind = \"stdout\"\nbatch_size = 0").contains("batch_size"));
        assert!(err("[[export.sinks]]\nname = \"a\"\nkind = \"stdout\"\nurl = \"http://x/\"").contains("stdout"));
        assert!(err("[[export.sinks]]\nname = \"a\"\nkind = \"ftp\"").contains("kind"), "unknown kind refused");
        assert_eq!(c.export.lease_secs, 15, "default lease");
        assert!(err("[export]\nlease_secs = 1").contains("export.lease_secs must be from 3 to 3600"));
        assert_eq!(Config::from_toml("[export]\nlease_secs = 30").unwrap().export.lease_secs, 30);
    }
}
