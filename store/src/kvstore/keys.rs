//! Key encoding for [`super::KvStore`]: one-byte-pair prefixes per record kind, escaped
//! strings whose byte order equals string order, fixed-width big-endian numbers. Owns every
//! byte layout decision; must never be bypassed by hand-built keys elsewhere.
//!
//! Strings inside a key that are followed by more fields are escaped (`0x00` → `0x00 0xFF`)
//! and terminated by `0x00 0x01`, so encodings are prefix-free and sort like the raw strings.

use crate::StoreError;
use dasher_sdk::domain::RuleKey;
use dasher_sdk::wire::{RuleType, WireEnum};

// Prefixes (two bytes each, all distinct).
pub const META_HEAD: &[u8] = b"m:head";
pub const META_EVENT_SEQ: &[u8] = b"m:eseq";
pub const META_EVENT_COUNT: &[u8] = b"m:ecnt";
pub const META_HOST_COUNT: &[u8] = b"m:hcnt";
pub const META_PROPOSAL_SEQ: &[u8] = b"m:pseq";
/// `m:edict` + dictionary id (u32) → event sequence at training + zstd dictionary.
pub const META_EVENT_DICT: &[u8] = b"m:edict";

pub const HOST_REGISTRY: &[u8] = b"hr";
pub const HOST_INVENTORY: &[u8] = b"hi";
pub const HOST_TAGS: &[u8] = b"ht";
pub const HOST_CLEAN: &[u8] = b"hc";
pub const HOST_SYNC: &[u8] = b"hs";

pub const RULE_HISTORY: &[u8] = b"rh";
pub const RULE_LOG: &[u8] = b"rl";
pub const RULE_SET_COUNT: &[u8] = b"rs";

pub const EVENT: &[u8] = b"ep";
pub const EVENT_DEDUPE: &[u8] = b"ed";
pub const EVENT_BY_MACHINE: &[u8] = b"em";
pub const EVENT_BY_SHA256: &[u8] = b"es";
pub const EVENT_BY_BUNDLE: &[u8] = b"eb";
pub const EVENT_BY_DECISION: &[u8] = b"ex";
pub const EVENT_BY_RECEIVED: &[u8] = b"er";
pub const EVENT_TRIAGE: &[u8] = b"et";
pub const EVENT_BY_LABEL: &[u8] = b"el";
/// `ey machine sha256 id` → empty: a machine's events of one file (the block page's lookup).
pub const EVENT_BY_MACHINE_SHA256: &[u8] = b"ey";
/// The first event id [`EVENT_BY_MACHINE_SHA256`] covers (set at the first open of a version
/// that has the index; older events are found through the machine index).
pub const META_EVENT_MACHINE_SHA256_FROM: &[u8] = b"m:eyfrom";
/// `eg block` → i64: the latest received time of the events in an id block (`kvstore/event_time.rs`).
pub const EVENT_TIME_BLOCK: &[u8] = b"eg";
/// Set once every stored event's block has its `eg` time.
pub const META_EVENT_TIMES_BUILT: &[u8] = b"m:egbuilt";

pub const PROPOSAL: &[u8] = b"pp";
pub const PROPOSAL_KEY: &[u8] = b"pk";
pub const PROPOSAL_BY_STATUS: &[u8] = b"pq";

pub const PROPOSAL_REQUEST: &[u8] = b"pr";

pub const PLUGIN_KV: &[u8] = b"kv";

/// `hq term machine` → empty: the host search index (terms of `derive::host_terms`).
pub const HOST_TERM: &[u8] = b"hq";
/// Set once the host search index covers every host (built at open for older stores).
pub const META_HOST_TERMS_BUILT: &[u8] = b"m:hqbuilt";
/// `ad day series` → u64: events received per UTC day and decision series.
pub const ACTIVITY_EVENTS: &[u8] = b"ad";
/// `ah hour` → u64: preflights per UTC hour.
pub const ACTIVITY_SYNCS: &[u8] = b"ah";
/// `au id` → audit entry JSON; ids from `m:aseq`.
pub const AUDIT: &[u8] = b"au";
/// `at target id` → empty: audit entries by target.
pub const AUDIT_BY_TARGET: &[u8] = b"at";
pub const META_AUDIT_SEQ: &[u8] = b"m:aseq";
/// `bs sha` → binary summary JSON.
pub const BINARY: &[u8] = b"bs";
/// `bh sha machine` → empty: the machine sent an event for the binary.
pub const BINARY_HOST: &[u8] = b"bh";
/// `bl last_seen sha` → empty: binaries by recency.
pub const BINARY_BY_LAST_SEEN: &[u8] = b"bl";
/// `bd sha day series` → u64: a binary's events per day and decision series.
pub const BINARY_DECISIONS: &[u8] = b"bd";

/// Appends `s` escaped and terminated.
pub fn push_str(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        buf.push(b);
        if b == 0 {
            buf.push(0xFF);
        }
    }
    buf.extend_from_slice(&[0x00, 0x01]);
}

/// Appends `s` escaped but not terminated: a byte prefix of the key of every string that
/// starts with `s` (for prefix scans).
pub fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        buf.push(b);
        if b == 0 {
            buf.push(0xFF);
        }
    }
}

/// Reads an escaped string from the start of `buf`; returns it and the rest.
pub fn take_str(buf: &[u8]) -> Option<(String, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let b = *buf.get(i)?;
        if b == 0 {
            match *buf.get(i + 1)? {
                0xFF => out.push(0),
                0x01 => return Some((String::from_utf8(out).ok()?, &buf[i + 2..])),
                _ => return None,
            }
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

/// `prefix ++ parts…` as an owned key.
pub fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// The smallest key greater than every key starting with `prefix` (`None` if there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub fn u64_value(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn read_u64(key: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| corrupt(key, "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

pub fn corrupt(key: &[u8], detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: detail.into() }
}

/// Signed numbers sort correctly after flipping the sign bit.
pub fn i64_sortable(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Rule type as 4 bytes whose order equals `RuleType`'s derived `Ord` (declaration order ==
/// proto number order, checked by a unit test).
pub fn rule_type_bytes(t: RuleType) -> [u8; 4] {
    ((t.number() as u32) ^ (1 << 31)).to_be_bytes()
}

fn rule_type_from(b: [u8; 4]) -> Option<RuleType> {
    RuleType::from_number((u32::from_be_bytes(b) ^ (1 << 31)) as i32)
}

/// `rh set type identifier`: the prefix of every history entry of one rule.
pub fn rule_prefix(rule_set: &str, k: &RuleKey) -> Vec<u8> {
    let mut buf = rule_set_prefix(rule_set);
    push_rule_key(&mut buf, k);
    buf
}

/// `rh set`: every history entry of one rule set.
pub fn rule_set_prefix(rule_set: &str) -> Vec<u8> {
    let mut buf = RULE_HISTORY.to_vec();
    push_str(&mut buf, rule_set);
    buf
}

pub fn push_rule_key(buf: &mut Vec<u8>, k: &RuleKey) {
    buf.extend_from_slice(&rule_type_bytes(k.rule_type));
    push_str(buf, &k.identifier);
}

/// Parses `type identifier` (after the set) into a key.
pub fn take_rule_key(buf: &[u8]) -> Option<(RuleKey, &[u8])> {
    let t: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let rule_type = rule_type_from(t)?;
    let (identifier, rest) = take_str(&buf[4..])?;
    Some((RuleKey { rule_type, identifier }, rest))
}

/// Version suffix: newest first.
pub fn version_suffix(version: u64) -> [u8; 8] {
    (u64::MAX - version).to_be_bytes()
}

pub fn version_from_suffix(b: &[u8]) -> Option<u64> {
    Some(u64::MAX - u64::from_be_bytes(b.try_into().ok()?))
}

/// `rl version seq`.
pub fn log_key(version: u64, seq: u32) -> Vec<u8> {
    let mut k = RULE_LOG.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `ep id`.
pub fn event_key(id: u64) -> Vec<u8> {
    key(EVENT, &id.to_be_bytes())
}

/// `et id`.
pub fn event_triage_key(id: u64) -> Vec<u8> {
    key(EVENT_TRIAGE, &id.to_be_bytes())
}

/// `pp id`.
pub fn proposal_key(id: u64) -> Vec<u8> {
    key(PROPOSAL, &id.to_be_bytes())
}

/// `prefix value id` for an event index on a string field.
pub fn event_index_prefix(prefix: &[u8], value: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    push_str(&mut k, value);
    k
}

/// Last 8 bytes of a key as an id.
pub fn trailing_u64(k: &[u8]) -> Option<u64> {
    let start = k.len().checked_sub(8)?;
    Some(u64::from_be_bytes(k[start..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_strings_sort_like_strings() {
        let mut words = vec!["", "a", "a\0", "a\0b", "a\x01", "ab", "b", "\0", "é"];
        let mut encoded: Vec<Vec<u8>> = words
            .iter()
            .map(|w| {
                let mut b = Vec::new();
                push_str(&mut b, w);
                b.extend_from_slice(&[0xFF; 8]); // a following field must not disturb the order
                b
            })
            .collect();
        words.sort();
        encoded.sort();
        let decoded: Vec<String> = encoded.iter().map(|e| take_str(e).unwrap().0).collect();
        assert_eq!(decoded, words);
    }

    #[test]
    fn rule_type_bytes_follow_rule_type_ord() {
        let mut types = vec![
            RuleType::CdHash,
            RuleType::Unknown,
            RuleType::SigningId,
            RuleType::Binary,
            RuleType::TeamId,
            RuleType::Certificate,
        ];
        let mut by_bytes = types.clone();
        types.sort();
        by_bytes.sort_by_key(|t| rule_type_bytes(*t));
        assert_eq!(types, by_bytes);
        for t in types {
            assert_eq!(rule_type_from(rule_type_bytes(t)), Some(t));
        }
    }

    #[test]
    fn prefix_end_skips_ff() {
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
