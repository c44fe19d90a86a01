//! `dasher-sim`: a fleet of simulated Macs that behave like Santa's `santasyncservice`.
//!
//! Code map (start at [`runner`]):
//! - [`fleet`] — seeded hosts: writes SystemVersion.plist / ioreg dumps and parses them back.
//! - [`profile`] — reads Santa configuration profiles (.mobileconfig or plain plist).
//! - [`generation`] — the client generations and their behaviour switches.
//! - [`encode`] — request bodies per generation (legacy, 2024.6/2024.7 quirks, proto-JSON,
//!   binary protobuf) and compression. The one place request quirks live.
//! - [`strict`] — response parsing as strict as the real client. The one place response
//!   strictness lives.
//! - [`ruledb`] — a host's rule DB with fleet-wide interned storage, counts and rulesHash.
//! - [`events`] — software catalog and local decision engine producing events.
//! - [`transport`] — HTTP (hyper), retries/back-off, XSRF, timeouts, fault injection.
//! - [`client`] — the full-sync state machine and standalone uploads of one host.
//! - [`stub`] — a fixed-rule-set sync server for smoke tests and measuring the simulator.
//! - [`fixtures`] — realistic requests and rule specs for benchmarks; [`bench`] — the
//!   `dasher-sim bench` scenarios of `scripts/bench.sh`; [`blast`] — the light load generator
//!   for capacity figures (prepared requests on keep-alive connections, trivial target).
//! - [`runner`] — open/closed-loop load, convergence check; [`metrics`] — counters and report.
//! - [`scenario`] — `--scenario` fleets described by groups; [`scenario_run`] — their tags and
//!   per-group report.
//!
//! Invariant checked by the runner: after a completed, fault-free sync a host's rule DB equals
//! the server's effective rule set for it.

pub mod bench;
pub mod blast;
pub mod client;
pub mod encode;
pub mod events;
pub mod fixtures;
pub mod fleet;
pub mod generation;
pub mod metrics;
pub mod profile;
pub mod ruledb;
pub mod runner;
pub mod scenario;
pub mod scenario_run;
pub mod strict;
pub mod stub;
pub mod transport;

pub use generation::Generation;

/// Parses a duration flag: `500ms`, `30s`, `2m`, `1h`, or bare seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(std::time::Duration::from_secs_f64(v * mult))
}

#[cfg(test)]
mod tests_e2e;
