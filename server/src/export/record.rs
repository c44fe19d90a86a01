//! The exported record: one stored event with its host and triage, in ECS-style field names
//! (`event.*`, `host.*`, `user.*`, `file.*`, `process.*`, `code_signature.*`) plus Dasher's
//! own under `dasher.*`. The JSON schema generated from these types is checked in as
//! `docs/export-record.schema.json` (a test keeps the two equal); [`SCHEMA_VERSION`] is in
//! every record and changes when a field changes meaning or is removed.

use dasher_sdk::plugin::Action;
use dasher_store::{EventKind, EventRecord, Host};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// Version of the record layout (`dasher.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// One exported event.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(title = "Dasher export record", description = "One Santa event as Dasher exports it")]
pub struct ExportRecord {
    /// When it happened on the host (RFC 3339, UTC); the received time when the host did not say.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// What happened.
    pub event: EventFields,
    /// The host, as its inventory stood at export.
    pub host: HostFields,
    /// The user who ran the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserFields>,
    /// The executable.
    pub file: FileFields,
    /// The process and its parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessFields>,
    /// Code signing of the executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_signature: Option<CodeSignature>,
    /// Dasher's own fields.
    pub dasher: DasherFields,
}

/// `event.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EventFields {
    /// The stored event's id: stable, increasing; receivers de-duplicate on it.
    pub id: String,
    /// `execution` or `file_access`.
    pub action: String,
    /// `success` for allowed, `failure` for blocked, `unknown` otherwise.
    pub outcome: String,
    /// Always `process` for executions, `file` for file access.
    pub category: String,
    /// When the server received it (RFC 3339, UTC).
    pub ingested: String,
    /// Always `santa`.
    pub provider: String,
}

/// `host.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct HostFields {
    /// The Santa machine id.
    pub id: String,
    /// Host name (the reported hostname).
    pub name: String,
    /// Host name.
    pub hostname: String,
    /// Operating system.
    pub os: HostOs,
    /// Serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Model identifier (e.g. `Mac15,7`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `host.os.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct HostOs {
    /// Always `macos`.
    pub family: String,
    /// Version, e.g. `15.5`.
    pub version: String,
    /// Build, e.g. `24F74`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// `user.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct UserFields {
    /// The executing user.
    pub name: String,
}

/// `file.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct FileFields {
    /// Full path (directory and name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// File name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hashes.
    pub hash: FileHash,
}

/// `file.hash.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct FileHash {
    /// SHA-256 (lower-case hex), empty when the event carried none.
    pub sha256: String,
}

/// `process.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ProcessFields {
    /// Process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// The parent.
    pub parent: ParentProcess,
}

/// `process.parent.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ParentProcess {
    /// Parent process name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Parent process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
}

/// `code_signature.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct CodeSignature {
    /// Apple team id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Signing id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_id: Option<String>,
    /// Code directory hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdhash: Option<String>,
}

/// `dasher.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DasherFields {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The sink that delivered the record.
    pub sink: String,
    /// Santa's decision (e.g. `BLOCK_BINARY`).
    pub decision: String,
    /// When the server received the event (Unix seconds).
    pub received_at_unix: i64,
    /// The host's Santa version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub santa_version: Option<String>,
    /// The host's primary user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_user: Option<String>,
    /// The host's admin-assigned tags.
    pub tags: Vec<String>,
    /// Triage, when it ran before export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<TriageFields>,
    /// The event as the client sent it (the Santa wire form).
    pub santa: Value,
}

/// `dasher.triage.*`
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TriageFields {
    /// `keep` or `drop`, when a plugin had an opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// `info` … `critical`, when a plugin had an opinion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// RFC 3339 UTC from Unix seconds (fraction kept to milliseconds).
pub fn rfc3339(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let millis = ((secs - whole as f64) * 1000.0).round().clamp(0.0, 999.0) as i64;
    let (days, rem) = (whole.div_euclid(86_400), whole.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The UTC calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn text(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn int(body: &Value, key: &str) -> Option<i64> {
    body.get(key).and_then(Value::as_i64).filter(|n| *n != 0)
}

fn lower<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned))
}

/// Builds the record of `e`, with `host` as known now.
pub fn build(sink: &str, e: &EventRecord, host: Option<&Host>) -> ExportRecord {
    let body = &e.event.body;
    let inv = host.and_then(|h| h.inventory.as_ref());
    let dir = text(body, "file_path");
    let name = text(body, "file_name");
    let path = match (&dir, &name) {
        (Some(d), Some(n)) => Some(format!("{}/{n}", d.trim_end_matches('/'))),
        (Some(d), None) => Some(d.clone()),
        (None, n) => n.clone(),
    };
    let decision = e.event.decision.as_str();
    let outcome = if decision.starts_with("ALLOW") {
        "success"
    } else if decision.starts_with("BLOCK") || decision == "DENY" {
        "failure"
    } else {
        "unknown"
    };
    let (action, category) = match e.event.kind {
        EventKind::Execution => ("execution", "process"),
        EventKind::FileAccess => ("file_access", "file"),
    };
    let received = e.event.received_at_unix as f64;
    let occurred = if e.event.occurred_at_unix > 0.0 { e.event.occurred_at_unix } else { received };
    let hostname = inv.map(|i| i.hostname.clone()).unwrap_or_default();
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let parent = text(body, "parent_name");
    let ppid = int(body, "ppid");
    let signing = (text(body, "team_id"), text(body, "signing_id"), text(body, "cdhash"));
    ExportRecord {
        timestamp: rfc3339(occurred),
        event: EventFields {
            id: e.id.to_string(),
            action: action.into(),
            outcome: outcome.into(),
            category: category.into(),
            ingested: rfc3339(received),
            provider: "santa".into(),
        },
        host: HostFields {
            id: e.machine_id.clone(),
            name: hostname.clone(),
            hostname,
            os: HostOs {
                family: "macos".into(),
                version: inv.map(|i| i.os_version.clone()).unwrap_or_default(),
                build: inv.and_then(|i| nonempty(&i.os_build)),
            },
            serial_number: inv.and_then(|i| nonempty(&i.serial_number)),
            model: inv.and_then(|i| nonempty(&i.model_identifier)),
        },
        user: text(body, "executing_user").map(|name| UserFields { name }),
        file: FileFields { path, directory: dir, name, hash: FileHash { sha256: e.event.file_sha256.clone() } },
        process: (parent.is_some() || ppid.is_some() || int(body, "pid").is_some())
            .then(|| ProcessFields { pid: int(body, "pid"), parent: ParentProcess { name: parent, pid: ppid } }),
        code_signature: (signing.0.is_some() || signing.1.is_some() || signing.2.is_some()).then_some(CodeSignature {
            team_id: signing.0,
            signing_id: signing.1,
            cdhash: signing.2,
        }),
        dasher: DasherFields {
            schema_version: SCHEMA_VERSION,
            sink: sink.to_owned(),
            decision: decision.to_owned(),
            received_at_unix: e.event.received_at_unix,
            santa_version: inv.and_then(|i| nonempty(&i.santa_version)),
            primary_user: inv.and_then(|i| nonempty(&i.primary_user)),
            tags: host.map(|h| h.tags.clone()).unwrap_or_default(),
            triage: e.triage.as_ref().map(|t| TriageFields {
                verdict: t.action.as_ref().and_then(lower),
                labels: t.labels.clone(),
                severity: t.severity.as_ref().and_then(lower),
            }),
            santa: body.clone(),
        },
    }
}

/// Whether `e` passes the sink's filters (decisions, labels, dropped).
pub fn wanted(e: &EventRecord, decisions: &[String], labels: &[String], include_dropped: bool) -> bool {
    let dropped = e.triage.as_ref().is_some_and(|t| t.action == Some(Action::Drop));
    if dropped && !include_dropped {
        return false;
    }
    if !decisions.is_empty() && !decisions.iter().any(|d| d == &e.event.decision) {
        return false;
    }
    if !labels.is_empty() {
        let has = e.triage.as_ref().is_some_and(|t| t.labels.iter().any(|l| labels.contains(l)));
        if !has {
            return false;
        }
    }
    true
}

/// The JSON schema of [`ExportRecord`], as checked in at `docs/export-record.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ExportRecord);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600.25), "2026-01-01T00:00:00.250Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    /// The checked-in schema is what the code produces; regenerate with
    /// `DASHER_WRITE_SCHEMA=1 cargo test -p dasher-server --lib export::record`.
    #[test]
    fn checked_in_schema_matches_the_record_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/export-record.schema.json");
        let generated = schema_json();
        if std::env::var_os("DASHER_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(committed, generated, "docs/export-record.schema.json is stale: regenerate it (see this test)");
    }
}
