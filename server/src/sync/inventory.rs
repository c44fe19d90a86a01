//! Bounds on what a client says about itself (issue 11): every free-form string of a
//! preflight or postflight is at most `limits.max_inventory_string_bytes` (longer is refused,
//! naming the field), and `primary_user_groups` keeps its first `limits.max_user_groups`
//! entries: a real host with more keeps syncing, and its stored inventory says the list was
//! cut (`HostInventory::truncated`). The stage body limits (`limits.max_preflight_bytes`, …,
//! applied in `crate::http`) bound what is decoded before these checks run.
//!
//! Logs once per host and change, never per sync: a newly cut list, and a `santa_version`
//! that is not a version (such a client is treated as the oldest generation, see
//! [`ClientCaps`]).

use crate::config::Limits;
use dasher_sdk::version::ClientCaps;
use dasher_sdk::wire::{self, ClientMode};
use dasher_store::HostInventory;
use std::collections::BTreeMap;

/// A reported string longer than `limits.max_inventory_string_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} is {len} bytes long; at most {limit} are accepted (limits.max_inventory_string_bytes), so this report is refused"
)]
pub struct FieldTooLong {
    /// The field as named on the wire, e.g. `hostname` or `primary_user_groups[3]`.
    pub field: String,
    /// Its length in bytes.
    pub len: usize,
    /// The limit.
    pub limit: usize,
}

/// The wire name of the one list of a preflight that is cut rather than refused.
pub const USER_GROUPS: &str = "primary_user_groups";

fn check(field: &str, value: &str, limit: usize) -> Result<(), FieldTooLong> {
    if value.len() > limit {
        return Err(FieldTooLong { field: field.to_owned(), len: value.len(), limit });
    }
    Ok(())
}

/// Checks every string of a preflight, and the groups that will be kept.
pub fn check_preflight(req: &wire::PreflightRequest, limits: &Limits) -> Result<(), FieldTooLong> {
    let limit = limits.max_inventory_string_bytes;
    for (field, value) in [
        ("serial_num", &req.serial_num),
        ("hostname", &req.hostname),
        ("os_version", &req.os_version),
        ("os_build", &req.os_build),
        ("model_identifier", &req.model_identifier),
        ("santa_version", &req.santa_version),
        ("primary_user", &req.primary_user),
        ("push_notification_token", &req.push_notification_token),
        ("machine_id", &req.machine_id),
        ("rules_hash", &req.rules_hash),
    ] {
        check(field, value, limit)?;
    }
    // Groups past the kept ones are dropped unread, so they cannot refuse a host.
    for (i, group) in req.primary_user_groups.iter().take(limits.max_user_groups).enumerate() {
        check(&format!("{USER_GROUPS}[{i}]"), group, limit)?;
    }
    Ok(())
}

/// Checks every string of a postflight.
pub fn check_postflight(req: &wire::PostflightRequest, limits: &Limits) -> Result<(), FieldTooLong> {
    let limit = limits.max_inventory_string_bytes;
    check("machine_id", &req.machine_id, limit)?;
    check("rules_hash", &req.rules_hash, limit)
}

/// The inventory to store for a preflight that passed [`check_preflight`]: lists cut to
/// their limits (and recorded as cut), `first_seen_unix` kept from `previous`.
pub fn build(
    machine_id: &str,
    req: &wire::PreflightRequest,
    previous: Option<&HostInventory>,
    now: i64,
    limits: &Limits,
) -> HostInventory {
    let mut truncated = BTreeMap::new();
    let groups = &req.primary_user_groups;
    if groups.len() > limits.max_user_groups {
        truncated.insert(USER_GROUPS.to_owned(), groups.len() as u64);
        if previous.is_none_or(|p| !p.truncated.contains_key(USER_GROUPS)) {
            tracing::warn!(
                machine_id,
                reported = groups.len(),
                kept = limits.max_user_groups,
                "the host reports more primary_user_groups than limits.max_user_groups; keeping the first ones \
                 (its inventory says so in `truncated`)"
            );
        }
    }
    if !ClientCaps::from_version_str(&req.santa_version).is_known()
        && previous.is_none_or(|p| p.santa_version != req.santa_version)
    {
        let shown: String = req.santa_version.chars().take(64).collect();
        tracing::warn!(
            machine_id,
            santa_version = ?shown,
            "santa_version is not a Santa version; the host is treated as the oldest client generation \
             (no STANDALONE, sync_type, removable media policy or newer rule types) until it reports one"
        );
    }
    HostInventory {
        machine_id: machine_id.to_owned(),
        serial_number: req.serial_num.clone(),
        hostname: req.hostname.clone(),
        os_version: req.os_version.clone(),
        os_build: req.os_build.clone(),
        model_identifier: req.model_identifier.clone(),
        santa_version: req.santa_version.clone(),
        primary_user: req.primary_user.clone(),
        primary_user_groups: groups.iter().take(limits.max_user_groups).cloned().collect(),
        client_mode: ClientMode::try_from(req.client_mode).ok().filter(|m| *m != ClientMode::Unknown),
        push_notification_token: req.push_notification_token.clone(),
        rule_counts: super::reported_counts(req),
        sip_status: (req.sip_status != 0).then_some(req.sip_status),
        rules_hash: (!req.rules_hash.is_empty()).then(|| req.rules_hash.clone()),
        request_clean_sync: req.request_clean_sync,
        first_seen_unix: previous.map_or(now, |p| p.first_seen_unix),
        last_seen_unix: now,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_inventory_string_bytes: 16, max_user_groups: 3, ..Limits::default() }
    }

    fn preflight() -> wire::PreflightRequest {
        wire::PreflightRequest {
            hostname: "mac.example".into(),
            santa_version: "2026.7.1".into(),
            primary_user_groups: vec!["staff".into(), "admin".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_long_string_is_refused_by_name() {
        let l = limits();
        assert_eq!(check_preflight(&preflight(), &l), Ok(()));
        let long = "x".repeat(17);
        type Set = fn(&mut wire::PreflightRequest, String);
        let cases: [(&str, Set); 5] = [
            ("hostname", |r, v| r.hostname = v),
            ("serial_num", |r, v| r.serial_num = v),
            ("santa_version", |r, v| r.santa_version = v),
            ("push_notification_token", |r, v| r.push_notification_token = v),
            ("primary_user_groups[1]", |r, v| r.primary_user_groups[1] = v),
        ];
        for (field, set) in cases {
            let mut req = preflight();
            set(&mut req, long.clone());
            let err = check_preflight(&req, &l).unwrap_err();
            assert_eq!((err.field.as_str(), err.len, err.limit), (field, 17, 16));
            assert!(err.to_string().starts_with(&format!("{field} is 17 bytes long")), "{err}");
        }
        let mut req = preflight();
        req.hostname = "x".repeat(16);
        assert_eq!(check_preflight(&req, &l), Ok(()), "the limit itself is accepted");
        let post = wire::PostflightRequest { rules_hash: long, ..Default::default() };
        assert_eq!(check_postflight(&post, &l).unwrap_err().field, "rules_hash");
    }

    #[test]
    fn a_long_group_list_is_cut_and_recorded() {
        let l = limits();
        let mut req = preflight();
        req.primary_user_groups = (0..10).map(|i| format!("g{i}")).collect();
        req.primary_user_groups[7] = "y".repeat(100);
        assert_eq!(check_preflight(&req, &l), Ok(()), "a dropped group is not checked");
        let inv = build("m1", &req, None, 7, &l);
        assert_eq!(inv.primary_user_groups, ["g0", "g1", "g2"]);
        assert_eq!(inv.truncated, BTreeMap::from([(USER_GROUPS.to_owned(), 10)]));
        assert_eq!((inv.first_seen_unix, inv.last_seen_unix), (7, 7));
        let again = build("m1", &preflight(), Some(&inv), 9, &l);
        assert!(again.truncated.is_empty(), "a report within the limit clears the mark");
        assert_eq!((again.first_seen_unix, again.last_seen_unix), (7, 9));
    }
}
