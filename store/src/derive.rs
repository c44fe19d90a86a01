//! What every engine derives from the records it writes, computed once here so all engines
//! agree: a host's search terms and which index entry reports a host, and an event batch's
//! counter and binary-summary updates (grouped so a batch costs one update per bucket and
//! per binary, not one per event).
//!
//! Must never: touch storage (engines apply what this computes inside their own atomic write).

use crate::console::{
    BinaryName, BinarySigner, BinarySummary, DAY_SECS, HostMatch, HostSearchField, MAX_BINARY_NAMES,
    MAX_FILE_NAME_BYTES, MAX_FILE_PATH_BYTES, MAX_SIGNER_CHAIN, MAX_SIGNER_FIELD_BYTES, SignerCert, bucket_start,
    decision_series, search_term, truncate,
};
use crate::{EventKind, Host, HostInventory, NewEvent};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The searchable values of a host, in [`HostSearchField`] order (empty values left out).
pub(crate) fn host_values<'a>(machine_id: &'a str, inv: Option<&'a HostInventory>) -> Vec<(HostSearchField, &'a str)> {
    let mut out = vec![(HostSearchField::MachineId, machine_id)];
    if let Some(inv) = inv {
        out.push((HostSearchField::Hostname, inv.hostname.as_str()));
        out.push((HostSearchField::SerialNumber, inv.serial_number.as_str()));
        out.push((HostSearchField::PrimaryUser, inv.primary_user.as_str()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// The distinct index terms of a host.
pub(crate) fn host_terms(machine_id: &str, inv: Option<&HostInventory>) -> BTreeSet<String> {
    host_values(machine_id, inv).into_iter().map(|(_, v)| search_term(v)).collect()
}

/// The lower-cased search prefix (whole) and the index term prefix to scan (bounded).
pub(crate) fn search_prefix(prefix: &str) -> (String, String) {
    let lower = prefix.to_lowercase();
    let term = search_term(&lower);
    (lower, term)
}

/// Whether the index entry `(term, host)` reports `host` for a search of `prefix_lower`: the
/// host must match now (a stale entry of an old value does not) and `term` must be the
/// smallest of its matching terms (a host matching through several values is reported once,
/// at its first position in result order).
pub(crate) fn pick_match(host: Host, term: &str, prefix_lower: &str) -> Option<HostMatch> {
    let values = host_values(&host.machine_id, host.inventory.as_ref());
    let mut best: Option<(String, HostSearchField, String)> = None;
    for (field, value) in values {
        if !value.to_lowercase().starts_with(prefix_lower) {
            continue;
        }
        let t = search_term(value);
        if best.as_ref().is_none_or(|(bt, _, _)| t < *bt) {
            best = Some((t, field, value.to_owned()));
        }
    }
    let (best_term, field, value) = best?;
    (best_term == term).then_some(HostMatch { host, field, value })
}

/// What one stored event adds to the counters and its binary's summary.
#[derive(Clone, Debug)]
pub(crate) struct EventFacts {
    pub sha256: String,
    pub received_at_unix: i64,
    pub series: String,
    pub name: Option<BinaryName>,
    pub signer: Option<BinarySigner>,
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or("")
}

fn bounded(s: &str) -> String {
    truncate(s, MAX_SIGNER_FIELD_BYTES).to_owned()
}

/// Reads the facts of an event from its canonical JSON body (the SDK's wire form: an
/// execution event's own fields, a file-access event's first process).
pub(crate) fn event_facts(e: &NewEvent) -> EventFacts {
    let subject = match e.kind {
        EventKind::Execution => Some(&e.body),
        EventKind::FileAccess => e.body.get("process_chain").and_then(|c| c.get(0)),
    };
    let (mut name, mut signer) = (None, None);
    if let Some(s) = subject {
        let path = field(s, "file_path");
        let file_name = match e.kind {
            EventKind::Execution => field(s, "file_name"),
            EventKind::FileAccess => path.rsplit('/').next().unwrap_or(""),
        };
        if !path.is_empty() || !file_name.is_empty() {
            name = Some(BinaryName {
                file_name: truncate(file_name, MAX_FILE_NAME_BYTES).to_owned(),
                file_path: truncate(path, MAX_FILE_PATH_BYTES).to_owned(),
            });
        }
        let chain: Vec<SignerCert> = s
            .get("signing_chain")
            .and_then(Value::as_array)
            .map(|certs| {
                certs
                    .iter()
                    .take(MAX_SIGNER_CHAIN)
                    .map(|c| SignerCert {
                        sha256: bounded(field(c, "sha256")),
                        cn: bounded(field(c, "cn")),
                        org: bounded(field(c, "org")),
                        ou: bounded(field(c, "ou")),
                        valid_from: c.get("valid_from").and_then(Value::as_u64).unwrap_or(0) as u32,
                        valid_until: c.get("valid_until").and_then(Value::as_u64).unwrap_or(0) as u32,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let s = BinarySigner {
            team_id: bounded(field(s, "team_id")),
            signing_id: bounded(field(s, "signing_id")),
            cdhash: bounded(field(s, "cdhash")),
            chain,
        };
        if !s.is_empty() {
            signer = Some(s);
        }
    }
    EventFacts {
        sha256: e.file_sha256.clone(),
        received_at_unix: e.received_at_unix,
        series: decision_series(&e.decision).to_owned(),
        name,
        signer,
    }
}

/// One binary's part of a batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct BinaryDelta {
    pub first_seen_unix: i64,
    pub last_seen_unix: i64,
    pub events: u64,
    /// Distinct names in the order first seen (at most [`MAX_BINARY_NAMES`] + 1, enough to
    /// tell a full list from one that overflowed).
    pub names: Vec<BinaryName>,
    /// The signer of the latest event carrying one (ties: the later in the batch).
    pub signer: Option<(i64, BinarySigner)>,
    /// Events per (day start, decision series).
    pub decisions: BTreeMap<(i64, String), u64>,
}

/// A batch of newly stored events, grouped: counters per (day, series) and one delta per
/// binary (events without a SHA-256 count only in the counters).
#[derive(Clone, Debug, Default)]
pub(crate) struct EventBatch {
    pub per_day: BTreeMap<(i64, String), u64>,
    pub binaries: BTreeMap<String, BinaryDelta>,
}

impl EventBatch {
    pub fn add(&mut self, f: EventFacts) {
        let day = bucket_start(f.received_at_unix, DAY_SECS);
        *self.per_day.entry((day, f.series.clone())).or_default() += 1;
        if f.sha256.is_empty() {
            return;
        }
        let d = self.binaries.entry(f.sha256).or_insert_with(|| BinaryDelta {
            first_seen_unix: f.received_at_unix,
            last_seen_unix: f.received_at_unix,
            ..BinaryDelta::default()
        });
        d.first_seen_unix = d.first_seen_unix.min(f.received_at_unix);
        d.last_seen_unix = d.last_seen_unix.max(f.received_at_unix);
        d.events += 1;
        *d.decisions.entry((day, f.series)).or_default() += 1;
        if let Some(n) = f.name
            && d.names.len() <= MAX_BINARY_NAMES
            && !d.names.contains(&n)
        {
            d.names.push(n);
        }
        if let Some(s) = f.signer
            && d.signer.as_ref().is_none_or(|(at, _)| f.received_at_unix >= *at)
        {
            d.signer = Some((f.received_at_unix, s));
        }
    }
}

/// `old` (if any) with a batch's delta applied; `new_host` if the batch's machine had not
/// sent an event for this binary before.
pub(crate) fn merge_summary(
    sha256: &str,
    old: Option<BinarySummary>,
    d: &BinaryDelta,
    new_host: bool,
) -> BinarySummary {
    let mut s = old.unwrap_or_else(|| BinarySummary {
        sha256: sha256.to_owned(),
        first_seen_unix: d.first_seen_unix,
        last_seen_unix: d.last_seen_unix,
        ..BinarySummary::default()
    });
    s.first_seen_unix = s.first_seen_unix.min(d.first_seen_unix);
    s.last_seen_unix = s.last_seen_unix.max(d.last_seen_unix);
    s.events += d.events;
    if new_host {
        s.hosts += 1;
    }
    for n in &d.names {
        if s.names.contains(n) {
            continue;
        }
        if s.names.len() < MAX_BINARY_NAMES {
            s.names.push(n.clone());
        } else {
            s.names_truncated = true;
        }
    }
    if let Some((_, signer)) = &d.signer
        && d.last_seen_unix >= s.last_seen_unix
    {
        s.signer = Some(signer.clone());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, hostname: &str, user: &str) -> Host {
        Host {
            machine_id: id.into(),
            inventory: Some(HostInventory {
                machine_id: id.into(),
                hostname: hostname.into(),
                primary_user: user.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_host_is_reported_once_at_its_smallest_matching_term() {
        let h = host("M1", "alice-mbp", "alice");
        let (p, _) = search_prefix("ALI");
        assert!(pick_match(h.clone(), "alice-mbp", &p).is_none(), "a later term of the same host");
        let m = pick_match(h.clone(), "alice", &p).unwrap();
        assert_eq!((m.field, m.value.as_str()), (HostSearchField::PrimaryUser, "alice"));
        assert!(pick_match(h.clone(), "old-name", &p).is_none(), "a stale entry");
        let (p, _) = search_prefix("m1");
        assert_eq!(pick_match(h, "m1", &p).unwrap().field, HostSearchField::MachineId);
    }

    #[test]
    fn facts_come_from_the_wire_body() {
        let e = NewEvent {
            kind: EventKind::Execution,
            dedupe_key: "k".into(),
            decision: "BLOCK_BINARY".into(),
            file_sha256: "ab".into(),
            file_bundle_hash: String::new(),
            occurred_at_unix: 0.0,
            received_at_unix: 90_000,
            body: serde_json::json!({"file_name": "x", "file_path": "/usr/bin", "team_id": "T",
                "signing_chain": [{"sha256": "c1", "cn": "Dev", "valid_from": 5}]}),
        };
        let f = event_facts(&e);
        assert_eq!(f.name, Some(BinaryName { file_name: "x".into(), file_path: "/usr/bin".into() }));
        let s = f.signer.clone().unwrap();
        assert_eq!((s.team_id.as_str(), s.chain[0].cn.as_str(), s.chain[0].valid_from), ("T", "Dev", 5));
        let mut b = EventBatch::default();
        b.add(f.clone());
        b.add(f);
        assert_eq!(b.per_day.get(&(86_400, "BLOCK_BINARY".into())), Some(&2));
        let d = &b.binaries["ab"];
        assert_eq!((d.events, d.names.len()), (2, 1));
        let s = merge_summary("ab", None, d, true);
        assert_eq!((s.events, s.hosts, s.first_seen_unix), (2, 1, 90_000));
    }
}
