//! Realistic, deterministic request and rule fixtures for benchmarks (criterion benches of the
//! other crates and `dasher-sim bench`): event batches from the simulator's software catalog,
//! preflights of generated hosts, and admin rule specs of a mature fleet's mix of rule types.

use crate::events::{self, Catalog, EngineSettings};
use crate::fleet::{self, Host};
use crate::generation::Generation;
use dasher_sdk::domain::RuleSpec;
use dasher_sdk::wire::{Decision, Event, EventUploadRequest, Policy, PreflightRequest, RuleType};
use rand::Rng;

/// `n` execution events as a host in MONITOR mode uploads them: mostly unknown allows, some
/// blocks, app events with bundle data. `batch` shifts execution times so batches never share
/// dedupe keys.
pub fn events(catalog: &Catalog, seed: u64, batch: u64, n: usize) -> Vec<Event> {
    let mut rng = fleet::rng_for(seed ^ 0xe7e7, batch);
    let settings = EngineSettings { lockdown: false, all_events: false, no_unknown_events: false, bundles: true };
    let base = 1_790_000_000.0 + batch as f64 * 3600.0;
    (0..n)
        .map(|i| {
            let b = &catalog.binaries[rng.random_range(0..catalog.binaries.len())];
            let d = match rng.random_range(0..10) {
                0..7 => Decision::AllowUnknown,
                7..9 => Decision::BlockUnknown,
                _ => Decision::BlockBinary,
            };
            events::event_for(b, d, "jdoe", base + i as f64 * 1.5, &mut rng, settings)
        })
        .collect()
}

/// One event-upload request of `n` events for `machine_id`.
pub fn event_upload(catalog: &Catalog, seed: u64, batch: u64, n: usize, machine_id: &str) -> EventUploadRequest {
    EventUploadRequest {
        events: events(catalog, seed, batch, n),
        machine_id: machine_id.to_owned(),
        file_access_events: Vec::new(),
    }
}

/// Host `index` of the fleet with `seed` (current client generation).
pub fn host(seed: u64, index: u64) -> Host {
    let spec = fleet::generate_spec(seed, index, &[(Generation::Nps2026_7, 1)]);
    Host::from_spec(&spec).expect("generated documents always parse")
}

/// The preflight a synced host with `rules` BINARY rules sends.
pub fn preflight(host: &Host, rules: u32) -> PreflightRequest {
    PreflightRequest {
        serial_num: host.device.serial.clone(),
        hostname: host.hostname.clone(),
        os_version: host.device.os_version.clone(),
        os_build: host.device.os_build.clone(),
        model_identifier: host.device.model.clone(),
        santa_version: host.santa_version.clone(),
        primary_user: host.primary_user.clone(),
        client_mode: 1,
        binary_rule_count: rules,
        machine_id: host.machine_id.clone(),
        primary_user_groups: host.groups.clone(),
        rules_hash: "4b3e1c0a5d7f9e8b".into(),
        ..Default::default()
    }
}

/// Rule `i` of a deterministic admin rule set (mixed types; every 7th a block with a message).
/// `salt` makes disjoint sets (e.g. a rule push on top of a loaded set).
pub fn rule_spec(i: u64, salt: u64) -> RuleSpec {
    let x = i ^ (salt << 32);
    let hash = |m: u128| format!("{:064x}", (x as u128 + 1).wrapping_mul(m));
    let (rule_type, identifier) = match i % 10 {
        0..5 => (RuleType::SigningId, format!("EQHXZ8M8AV:com.example.s{salt}.app{i}")),
        5..8 => (RuleType::Binary, hash(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
        8 => (RuleType::TeamId, format!("{:010X}", ((salt & 0xfff) << 28 | (i & 0xfff_ffff)))),
        _ => (RuleType::Certificate, hash(0xC2B2_AE3D_27D4_EB4F_1656_67B1_9E37_79F9)),
    };
    let block = i.is_multiple_of(7);
    RuleSpec {
        identifier,
        rule_type,
        policy: if block { Policy::Blocklist } else { Policy::Allowlist },
        custom_msg: block.then(|| "Blocked by IT: see go/santa".to_owned()),
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    }
}

/// `n` rule specs starting at index `from`.
pub fn rule_specs(from: u64, n: u64, salt: u64) -> Vec<RuleSpec> {
    (from..from + n).map(|i| rule_spec(i, salt)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rule_specs_validate_and_are_distinct() {
        let specs = rule_specs(0, 5000, 1);
        let keys: HashSet<_> = specs.iter().map(|s| s.validate().expect("valid spec").0).collect();
        assert_eq!(keys.len(), 5000);
        let other: HashSet<_> = rule_specs(0, 5000, 2).iter().map(|s| s.validate().unwrap().0).collect();
        assert!(keys.is_disjoint(&other), "different salts give disjoint sets");
    }

    #[test]
    fn event_batches_differ_and_look_like_uploads() {
        let catalog = Catalog::new(1);
        let a = event_upload(&catalog, 1, 0, 50, "m");
        let b = event_upload(&catalog, 1, 1, 50, "m");
        assert_eq!(a.events.len(), 50);
        assert_ne!(a.events[0].execution_time, b.events[0].execution_time);
        assert!(a.events.iter().all(|e| e.file_sha256.len() == 64));
    }
}
