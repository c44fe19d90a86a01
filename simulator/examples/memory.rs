//! Measures the simulator's memory for N hosts holding R rules each (default 10,000 × 5,000):
//! every host validates its own copy of the downloaded rules, as after a clean sync, and the
//! rule DB interning makes them share storage. Prints RSS from /proc/self/status.
//!
//! `cargo run -p dasher-sim --example memory --release -- 10000 5000`

use dasher_sdk::wire::{self, ClientMode, Policy, RuleType};
use dasher_sim::Generation;
use dasher_sim::client::{ClientConfig, SimClient};
use dasher_sim::ruledb::{Cleanup, validate_wire_rule};
use std::time::Instant;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hosts = args.first().copied().unwrap_or(10_000);
    let rules = args.get(1).copied().unwrap_or(5_000);
    let started = Instant::now();
    let base = rss_mb();
    let mix: Vec<_> = Generation::ALL.iter().map(|g| (*g, 1)).collect();
    let fleet = dasher_sim::fleet::generate(1, hosts, &mix);
    let clients: Vec<SimClient> = fleet
        .into_iter()
        .enumerate()
        .map(|(i, h)| SimClient::new(h, ClientConfig::default(), ClientMode::Monitor, 1, i as u64))
        .collect();
    let after_fleet = rss_mb();
    // The server's rule set: mostly SIGNINGID/BINARY like a mature fleet (fleet-data §5.4).
    let wire_rules: Vec<wire::Rule> = (0..rules)
        .map(|i| {
            let (t, id) = match i % 10 {
                0..5 => (RuleType::SigningId, format!("EQHXZ8M8AV:com.example.app{i}")),
                5..8 => (RuleType::Binary, format!("{:064x}", i as u128 * 0x9E3779B97F4A7C15)),
                8 => (RuleType::TeamId, format!("{:010}", i).replace('0', "A")),
                _ => (RuleType::Certificate, format!("{:064x}", i as u128 * 0xC2B2AE3D27D4EB4F + 7)),
            };
            wire::Rule { identifier: id, rule_type: t as i32, policy: Policy::Allowlist as i32, ..Default::default() }
        })
        .collect();
    for (i, c) in clients.iter().enumerate() {
        // Each host parses its own copy of the pages (as it would from the wire).
        let mine = wire_rules.clone();
        let ops: Vec<_> = mine.iter().filter_map(validate_wire_rule).collect();
        let mut st = c.state.lock().expect("state");
        st.db.apply(&ops, Cleanup::CleanAll);
        // A few hosts also have a host-specific rule (a small delta set each).
        if i % 100 == 0 {
            let extra = wire::Rule {
                identifier: format!("{:064x}", i),
                rule_type: RuleType::Binary as i32,
                policy: Policy::Blocklist as i32,
                ..Default::default()
            };
            st.db.apply(&[validate_wire_rule(&extra).expect("valid")], Cleanup::Normal);
        }
    }
    let total_rules: usize = clients.iter().map(|c| c.state.lock().expect("state").db.synced_len()).sum();
    let end = rss_mb();
    println!(
        "hosts {hosts} rules/host {rules} total host-rules {total_rules}: RSS {end:.0} MB (start {base:.0}, after fleet {after_fleet:.0}); {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
