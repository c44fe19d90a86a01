//! Records the web console and approval flows read: host search matches, activity counters,
//! the audit log, per-binary summaries and the requests behind a proposal.
//!
//! Every list here is bounded (the constants below) and every read is an index lookup or a
//! keyset page, so none of them grows with the number of hosts or events. The derived
//! records (counters, binary summaries, search terms) are maintained by the engines in the
//! same atomic write as the data they derive from.

use serde::{Deserialize, Serialize};

// ---- host search ------------------------------------------------------------------------

/// Longest search term indexed per host field, in bytes (longer values are indexed by their
/// first bytes, cut at a character boundary, and still matched against the whole value).
pub const MAX_SEARCH_TERM_BYTES: usize = 256;

/// The inventory field a host search matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSearchField {
    /// The machine id.
    MachineId,
    /// The hostname.
    Hostname,
    /// The serial number.
    SerialNumber,
    /// The primary user.
    PrimaryUser,
}

/// One host found by [`crate::Store::search_hosts`], with what matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMatch {
    /// The host as [`crate::Store::get_host`] returns it.
    pub host: crate::Host,
    /// The field that matched (the first in result order if several did).
    pub field: HostSearchField,
    /// That field's value as stored (original case).
    pub value: String,
}

impl HostMatch {
    /// The cursor that continues a search after this match.
    pub fn cursor(&self) -> HostSearchCursor {
        HostSearchCursor { term: search_term(&self.value), machine_id: self.host.machine_id.clone() }
    }
}

/// Where a host search page ended: results continue strictly after `(term, machine_id)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostSearchCursor {
    /// The normalised term ([`search_term`]) of the last match.
    pub term: String,
    /// The machine id of the last match.
    pub machine_id: String,
}

impl HostSearchCursor {
    /// The cursor as one opaque string for a link (`LEN:TERMMACHINE`, URL-encode it).
    pub fn encode(&self) -> String {
        format!("{}:{}{}", self.term.len(), self.term, self.machine_id)
    }

    /// Reads what [`HostSearchCursor::encode`] wrote; `None` if it is not such a string.
    pub fn decode(s: &str) -> Option<HostSearchCursor> {
        let (len, rest) = s.split_once(':')?;
        let len: usize = len.parse().ok()?;
        if !rest.is_char_boundary(len) {
            return None;
        }
        let (term, machine_id) = rest.split_at(len);
        Some(HostSearchCursor { term: term.to_owned(), machine_id: machine_id.to_owned() })
    }
}

/// The normalised form hosts are indexed and searched by: lowercase (Unicode), cut to
/// [`MAX_SEARCH_TERM_BYTES`] at a character boundary.
pub fn search_term(value: &str) -> String {
    let lower = value.to_lowercase();
    truncate(&lower, MAX_SEARCH_TERM_BYTES).to_owned()
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---- activity counters ------------------------------------------------------------------

/// Seconds in a UTC day bucket.
pub const DAY_SECS: i64 = 86_400;
/// Seconds in a UTC hour bucket.
pub const HOUR_SECS: i64 = 3_600;
/// Most buckets one activity read returns (the oldest first; ask again from the last one).
pub const MAX_ACTIVITY_BUCKETS: usize = 10_000;
/// Series name used for an event decision that is not an upper-case identifier of at most
/// [`MAX_DECISION_BYTES`] bytes (keeps the number of series per day bounded whatever clients send).
pub const OTHER_DECISION: &str = "OTHER";
/// Longest decision name counted under its own name.
pub const MAX_DECISION_BYTES: usize = 48;

/// Which counter series to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivitySeries {
    /// Events received per UTC day, one series per decision (e.g. `BLOCK_BINARY`).
    EventsPerDay,
    /// Preflights (syncs started) per UTC hour; one series named `""`.
    SyncsPerHour,
}

/// One counter bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityBucket {
    /// Start of the bucket (Unix seconds, a multiple of [`DAY_SECS`] or [`HOUR_SECS`]).
    pub start_unix: i64,
    /// The decision for per-decision series, `""` otherwise.
    pub series: String,
    /// How many.
    pub count: u64,
}

/// The bucket start of `t` for buckets of `width` seconds (UTC; works for negative times).
pub fn bucket_start(t: i64, width: i64) -> i64 {
    t.div_euclid(width).saturating_mul(width)
}

/// The series name a decision is counted under (see [`OTHER_DECISION`]).
pub fn decision_series(decision: &str) -> &str {
    let ok = !decision.is_empty()
        && decision.len() <= MAX_DECISION_BYTES
        && decision.as_bytes()[0].is_ascii_uppercase()
        && decision.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok { decision } else { OTHER_DECISION }
}

// ---- audit log --------------------------------------------------------------------------

/// Longest actor name, role, action (bytes); longer ones are cut at a character boundary.
pub const MAX_AUDIT_NAME_BYTES: usize = 256;
/// Longest audit target (bytes); longer ones are cut.
pub const MAX_AUDIT_TARGET_BYTES: usize = 1024;
/// Largest audit detail as serialised JSON (bytes); a larger one is stored as a JSON string
/// holding its first bytes and a note that it was cut.
pub const MAX_AUDIT_DETAIL_BYTES: usize = 8 * 1024;

/// Where an audited action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditVia {
    /// The web console.
    Ui,
    /// The admin API.
    Api,
}

/// An action to record in the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// When (Unix seconds).
    pub at_unix: i64,
    /// Who (the admin identity's name).
    pub actor: String,
    /// The role they acted with (e.g. `rules-editor`).
    pub role: String,
    /// What (e.g. `host.tags.set`, `proposal.approve`).
    pub action: String,
    /// On what (e.g. `host:MACHINE`, `proposal:12`); list filters match it exactly.
    pub target: String,
    /// Details: any JSON (a string is fine).
    pub detail: serde_json::Value,
    /// Console or API.
    pub via: AuditVia,
}

/// A recorded audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Store-assigned id, increasing with recording order.
    pub id: u64,
    /// When (Unix seconds).
    pub at_unix: i64,
    /// Who.
    pub actor: String,
    /// Role.
    pub role: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Details.
    pub detail: serde_json::Value,
    /// Console or API.
    pub via: AuditVia,
}

impl NewAuditEntry {
    /// The entry with every field within its bound (what the engines store).
    pub fn bounded(&self) -> NewAuditEntry {
        let detail = match serde_json::to_string(&self.detail) {
            Ok(s) if s.len() > MAX_AUDIT_DETAIL_BYTES => serde_json::Value::String(format!(
                "{}… (cut: {} bytes of JSON)",
                truncate(&s, MAX_AUDIT_DETAIL_BYTES - 64),
                s.len()
            )),
            _ => self.detail.clone(),
        };
        NewAuditEntry {
            at_unix: self.at_unix,
            actor: truncate(&self.actor, MAX_AUDIT_NAME_BYTES).to_owned(),
            role: truncate(&self.role, MAX_AUDIT_NAME_BYTES).to_owned(),
            action: truncate(&self.action, MAX_AUDIT_NAME_BYTES).to_owned(),
            target: truncate(&self.target, MAX_AUDIT_TARGET_BYTES).to_owned(),
            detail,
            via: self.via,
        }
    }

    /// The stored entry with `id`.
    pub fn with_id(self, id: u64) -> AuditEntry {
        AuditEntry {
            id,
            at_unix: self.at_unix,
            actor: self.actor,
            role: self.role,
            action: self.action,
            target: self.target,
            detail: self.detail,
            via: self.via,
        }
    }
}

// ---- binaries ---------------------------------------------------------------------------

/// Distinct `(file name, path)` pairs remembered per binary (the first seen).
pub const MAX_BINARY_NAMES: usize = 16;
/// Longest file name kept (bytes).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest path kept (bytes).
pub const MAX_FILE_PATH_BYTES: usize = 1024;
/// Longest signer string kept (team id, signing id, cdhash, certificate fields; bytes).
pub const MAX_SIGNER_FIELD_BYTES: usize = 256;
/// Certificates of a signing chain kept (leaf first).
pub const MAX_SIGNER_CHAIN: usize = 8;

/// A name and path a binary was seen under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BinaryName {
    /// File name.
    pub file_name: String,
    /// Full path.
    pub file_path: String,
}

/// One certificate of a signing chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignerCert {
    /// SHA-256 of the certificate.
    pub sha256: String,
    /// Common name.
    pub cn: String,
    /// Organisation.
    pub org: String,
    /// Organisational unit.
    pub ou: String,
    /// Valid from (Unix seconds, 0 if unknown).
    pub valid_from: u32,
    /// Valid until (Unix seconds, 0 if unknown).
    pub valid_until: u32,
}

/// Who signed a binary, as the latest event that carried signing data said.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BinarySigner {
    /// Team ID.
    pub team_id: String,
    /// Signing ID.
    pub signing_id: String,
    /// Code-directory hash.
    pub cdhash: String,
    /// Signing chain, leaf first (at most [`MAX_SIGNER_CHAIN`]).
    pub chain: Vec<SignerCert>,
}

impl BinarySigner {
    /// True if it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.team_id.is_empty() && self.signing_id.is_empty() && self.cdhash.is_empty() && self.chain.is_empty()
    }
}

/// What the fleet has seen of one SHA-256, maintained as events are stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BinarySummary {
    /// The SHA-256 (as events carry it).
    pub sha256: String,
    /// First event received (Unix seconds, server time).
    pub first_seen_unix: i64,
    /// Latest event received (Unix seconds, server time).
    pub last_seen_unix: i64,
    /// Events stored for it (ever; pruning events does not lower it).
    pub events: u64,
    /// Distinct hosts that sent an event for it (ever).
    pub hosts: u64,
    /// Distinct names and paths, the first [`MAX_BINARY_NAMES`] seen.
    pub names: Vec<BinaryName>,
    /// Further distinct names and paths seen once `names` was full are not kept; true if any.
    pub names_truncated: bool,
    /// Latest signing data; `None` until an event carried some.
    pub signer: Option<BinarySigner>,
}

/// Where a page of [`crate::Store::list_binaries`] ended: results continue with binaries
/// seen before `(last_seen_unix, sha256)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinaryCursor {
    /// `last_seen_unix` of the last binary of the page.
    pub last_seen_unix: i64,
    /// Its SHA-256.
    pub sha256: String,
}

impl BinarySummary {
    /// The cursor continuing a listing after this binary.
    pub fn cursor(&self) -> BinaryCursor {
        BinaryCursor { last_seen_unix: self.last_seen_unix, sha256: self.sha256.clone() }
    }
}

// ---- proposal requests ------------------------------------------------------------------

/// Requests kept per proposal (the first); later ones are only counted in
/// [`crate::Proposal::requests`].
pub const MAX_PROPOSAL_REQUESTS: usize = 200;
/// Longest justification kept (bytes; longer ones are cut at a character boundary).
pub const MAX_JUSTIFICATION_BYTES: usize = 2048;
/// Longest requesting user name kept (bytes).
pub const MAX_REQUEST_USER_BYTES: usize = 256;

/// Who raised a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestSource {
    /// A triage plugin ([`crate::Store::record_proposal`]).
    Triage,
    /// An end user on the block page ([`crate::Store::record_user_request`]).
    User,
}

/// One request that raised a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRequest {
    /// Triage or user.
    pub source: RequestSource,
    /// The requesting machine.
    pub machine_id: String,
    /// The requesting user, if known.
    #[serde(default)]
    pub user: Option<String>,
    /// Why (a user's justification; triage's reason).
    pub justification: String,
    /// When (Unix seconds).
    pub at_unix: i64,
}

impl ProposalRequest {
    /// A request with its strings within their bounds.
    pub fn new(
        source: RequestSource,
        machine_id: &str,
        user: Option<&str>,
        justification: &str,
        at_unix: i64,
    ) -> ProposalRequest {
        ProposalRequest {
            source,
            machine_id: machine_id.to_owned(),
            user: user.map(|u| truncate(u, MAX_REQUEST_USER_BYTES).to_owned()),
            justification: truncate(justification, MAX_JUSTIFICATION_BYTES).to_owned(),
            at_unix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for (term, id) in [("", ""), ("alice", "M-1"), ("a:b", "ç:1"), ("日本", "x")] {
            let c = HostSearchCursor { term: term.into(), machine_id: id.into() };
            assert_eq!(HostSearchCursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(HostSearchCursor::decode("x"), None);
        assert_eq!(HostSearchCursor::decode("9:ab"), None);
    }

    #[test]
    fn terms_are_lowercase_and_bounded() {
        assert_eq!(search_term("MacBook-Pro"), "macbook-pro");
        let long = "É".repeat(300);
        let t = search_term(&long);
        assert!(t.len() <= MAX_SEARCH_TERM_BYTES && t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn buckets_and_series() {
        assert_eq!(bucket_start(86_399, DAY_SECS), 0);
        assert_eq!(bucket_start(86_400, DAY_SECS), 86_400);
        assert_eq!(bucket_start(-1, HOUR_SECS), -3_600);
        assert_eq!(decision_series("BLOCK_BINARY"), "BLOCK_BINARY");
        assert_eq!(decision_series("123"), OTHER_DECISION);
        assert_eq!(decision_series("block"), OTHER_DECISION);
        assert_eq!(decision_series(&"A".repeat(49)), OTHER_DECISION);
    }

    #[test]
    fn audit_entries_are_bounded() {
        let e = NewAuditEntry {
            at_unix: 1,
            actor: "a".repeat(1000),
            role: "admin".into(),
            action: "x".into(),
            target: "t".repeat(5000),
            detail: serde_json::json!({ "big": "y".repeat(20_000) }),
            via: AuditVia::Ui,
        }
        .bounded();
        assert_eq!(e.actor.len(), MAX_AUDIT_NAME_BYTES);
        assert_eq!(e.target.len(), MAX_AUDIT_TARGET_BYTES);
        let detail = serde_json::to_string(&e.detail).unwrap();
        assert!(detail.len() <= MAX_AUDIT_DETAIL_BYTES + 64, "{}", detail.len());
        assert!(detail.contains("cut"));
    }
}
