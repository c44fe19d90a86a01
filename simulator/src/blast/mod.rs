//! `dasher-sim blast`: a load generator for capacity figures that is not itself the bottleneck.
//!
//! The realistic simulator (`run`, `bench`) keeps a rule database per host and parses every
//! response like Santa does, which costs more CPU per sync than the server. `blast` instead:
//! - enrols N hosts once with a real clean sync (the simulator's full client, so each host's
//!   rule counts and rulesHash are the real ones) — set-up, not measured;
//! - prepares every host's requests as finished HTTP/1.1 byte strings (zlib-compressed JSON,
//!   or binary protobuf) before the measured phase;
//! - runs C keep-alive connections ([`http1`]: one write per request, one reused read
//!   buffer) doing full NORMAL syncs back to back: preflight, optional event upload, rule
//!   download following cursors, postflight. Every status must be 200 and every preflight must
//!   answer NORMAL; anything else is counted as an error, the first few printed with the reason.
//!
//! [`target`] is the trivial endpoint (fixed minimal answers): `--compare-trivial` blasts it
//! with the same prepared requests in the same run, so Dasher's figures come with the
//! generator's own ceiling. `--server-pid` samples the server's CPU from `/proc` around the
//! measured phase and reports µs of server CPU per sync.
//!
//! Assumes the rules in the hosts' scope do not change during the run: a legacy client's
//! counts would no longer match and the server would (rightly) answer CLEAN, counted as errors.

mod drive;
pub mod http1;
mod prepare;
mod report;
pub mod target;

pub use drive::{PhaseResult, STAGES, Until, run as run_phase};
pub use prepare::{Base, BlastGeneration, HostPlan, Prepared, parse_base, prepare};
pub use report::{human, phase_json};

use crate::bench::{ProcSample, sample};
use crate::parse_duration;
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `dasher-sim blast` options.
#[derive(Args, Clone, Debug)]
pub struct BlastArgs {
    /// SyncBaseURL of the server, e.g. http://127.0.0.1:8080/santa/ (loopback only). Not
    /// needed with `--trivial`.
    #[arg(long)]
    pub server: Option<String>,
    /// Blast only an in-process trivial target (the generator's ceiling; no server).
    #[arg(long, conflicts_with = "server")]
    pub trivial: bool,
    /// Also blast an in-process trivial target with the same requests and report the ratio.
    #[arg(long)]
    pub compare_trivial: bool,
    /// Enrolled machine ids (hosts), at least `--connections`.
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    /// Keep-alive HTTP/1.1 connections; each owns every C-th host.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Measured duration per generation and target (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Client generations, comma-separated; each is run in turn with its own hosts.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rules-hash-json")]
    pub generation: Vec<BlastGeneration>,
    /// Events uploaded per sync (0: no event-upload stage).
    #[arg(long, default_value_t = 0)]
    pub events_per_sync: usize,
    /// Distinct event uploads prepared per host, sent in turn.
    #[arg(long, default_value_t = 4)]
    pub event_batches: usize,
    /// Concurrent clean syncs while enrolling.
    #[arg(long, default_value_t = 16)]
    pub enrol_concurrency: usize,
    /// Server PID: its utime+stime from /proc around each measured phase → µs CPU per sync.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Admin API token: with it, the report records the server's host count from `/metrics`
    /// (`dasher_hosts`) before the measured phase.
    #[arg(long, env = "DASHER_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Before enrolling, commit this many global rules (the simulator's fixture mix) through
    /// the admin API (`POST /api/v1/rules`, 50,000 per request); needs `--admin-token`.
    #[arg(long, default_value_t = 0)]
    pub load_rules: u64,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Fleet seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Bounds of the inputs (each flag has one).
const MAX_HOSTS: usize = 1_000_000;
const MAX_CONNECTIONS: usize = 4096;
const MAX_EVENTS_PER_SYNC: usize = 1000;
const MAX_EVENT_BATCHES: usize = 64;
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_LOAD_RULES: u64 = 10_000_000;

fn check(a: &BlastArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.trivial || a.server.is_some(), "give --server URL, or --trivial to measure the generator alone");
    anyhow::ensure!((1..=MAX_CONNECTIONS).contains(&a.connections), "--connections must be 1..={MAX_CONNECTIONS}");
    anyhow::ensure!(
        (a.connections..=MAX_HOSTS).contains(&a.hosts),
        "--hosts must be at least --connections ({}) and at most {MAX_HOSTS}: each connection owns its own hosts",
        a.connections
    );
    anyhow::ensure!(
        a.events_per_sync <= MAX_EVENTS_PER_SYNC,
        "--events-per-sync must be at most {MAX_EVENTS_PER_SYNC}"
    );
    anyhow::ensure!(
        (1..=MAX_EVENT_BATCHES).contains(&a.event_batches),
        "--event-batches must be 1..={MAX_EVENT_BATCHES}"
    );
    anyhow::ensure!(
        !a.duration.is_zero() && a.duration <= MAX_DURATION,
        "--duration must be more than 0 and at most 1h"
    );
    anyhow::ensure!(
        a.load_rules == 0 || (a.server.is_some() && a.admin_token.is_some()),
        "--load-rules needs --server and --admin-token"
    );
    anyhow::ensure!(a.load_rules <= MAX_LOAD_RULES, "--load-rules must be at most {MAX_LOAD_RULES}");
    anyhow::ensure!(
        !a.generation.is_empty(),
        "--generation needs at least one of legacy-json, rules-hash-json, protobuf"
    );
    Ok(())
}

/// Runs `blast`; returns the report (`{"runs": [...]}`, one per generation).
pub async fn run(a: &BlastArgs) -> anyhow::Result<Value> {
    check(a)?;
    let trivial_addr =
        if a.trivial || a.compare_trivial { Some(target::serve(([127, 0, 0, 1], 0).into()).await?) } else { None };
    let base_url = match (&a.server, trivial_addr) {
        (Some(s), _) => s.clone(),
        (None, Some(t)) => format!("http://{t}/santa/"),
        (None, None) => unreachable!("checked"),
    };
    let base = prepare::parse_base(&base_url).await?;
    let mut loaded = Value::Null;
    if let (true, Some(token)) = (a.load_rules > 0, a.admin_token.as_deref()) {
        let t = crate::transport::Transport::new(Default::default(), 0.0, Default::default());
        let started = std::time::Instant::now();
        let admin = format!("http://{}", base.authority);
        let version = crate::bench::load_rules_batched(&t, &admin, token, 0, a.load_rules, a.seed, 50_000).await?;
        loaded = json!({"rules": a.load_rules, "version": version, "seconds": started.elapsed().as_secs_f64()});
        eprintln!("blast: loaded {} rules in {:.1} s", a.load_rules, started.elapsed().as_secs_f64());
    }
    let mut runs = Vec::new();
    for &g in &a.generation {
        let enrol = a.server.is_some().then_some(a.enrol_concurrency);
        eprintln!(
            "blast {}: preparing {} hosts{}",
            g.name(),
            a.hosts,
            if enrol.is_some() { " (enrolling)" } else { "" }
        );
        let setup = std::time::Instant::now();
        let plan =
            Arc::new(prepare::prepare(&base, g, a.hosts, a.seed, a.events_per_sync, a.event_batches, enrol).await?);
        let setup_s = setup.elapsed().as_secs_f64();
        let mut run = json!({
            "generation": g.name(),
            "santa_version": g.generation().name(),
            "hosts": a.hosts,
            "connections": a.connections,
            "duration_s": a.duration.as_secs_f64(),
            "events_per_sync": a.events_per_sync,
            "rules_per_host": plan.rules_per_host,
            "setup_s": setup_s,
        });
        if a.server.is_some() {
            // Unmeasured: one sync per host, so the first measured preflights find settled state.
            let warm = drive::run(base.addr, plan.clone(), a.connections, Until::OneRound, a.timeout).await;
            run["warmup"] = json!({"ok": warm.ok, "errors": warm.error_count(), "first_errors": warm.first_errors});
            if warm.error_count() > 0 {
                eprintln!(
                    "blast {}: warm-up had {} failed syncs, first: {:?}",
                    g.name(),
                    warm.error_count(),
                    warm.first_errors
                );
            }
            let metrics = scrape(&base, a.admin_token.as_deref()).await;
            let before = a.server_pid.and_then(sample);
            let own = sample(std::process::id());
            let r = drive::run(base.addr, plan.clone(), a.connections, Until::Duration(a.duration), a.timeout).await;
            let own = cpu(own, sample(std::process::id()));
            let after = a.server_pid.and_then(sample);
            run["server"] = phase_json(&r, cpu(before, after), own);
            if let Some(m) = metrics {
                run["server"]["metrics"] = m;
            }
        }
        if let Some(t) = trivial_addr {
            // The target runs in this process: its CPU is in the generator's figure here.
            let own = sample(std::process::id());
            let r = drive::run(t, plan.clone(), a.connections, Until::Duration(a.duration), a.timeout).await;
            run["trivial"] = phase_json(&r, None, cpu(own, sample(std::process::id())));
        }
        if let (Some(s), Some(t)) = (run["server"]["syncs_per_s"].as_f64(), run["trivial"]["syncs_per_s"].as_f64()) {
            run["ratio_to_trivial"] = json!(if t > 0.0 { s / t } else { 0.0 });
        }
        runs.push(run);
    }
    Ok(json!({"tool": "dasher-sim blast", "load": load_average(), "rules_loaded": loaded, "runs": runs}))
}

fn cpu(before: Option<ProcSample>, after: Option<ProcSample>) -> Option<f64> {
    Some(after?.cpu_s - before?.cpu_s)
}

/// The machine's load averages (`/proc/loadavg`), recorded with every report: this generator
/// shares the cores with the server and whatever else runs.
fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).filter_map(|x| x.parse::<f64>().ok()).collect::<Vec<_>>())
        .map_or(Value::Null, |v| json!(v))
}

/// `dasher_hosts` from the server's `/metrics`, when a token is given.
async fn scrape(base: &prepare::Base, token: Option<&str>) -> Option<Value> {
    let token = token?;
    let t = crate::transport::Transport::new(Default::default(), 0.0, Default::default());
    let text = crate::bench::scrape(&t, &format!("http://{}", base.authority), token).await?;
    let get = |n| crate::bench::metric_value(&text, n);
    Some(json!({"dasher_hosts": get("dasher_hosts")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trivial_args() -> BlastArgs {
        BlastArgs {
            server: None,
            trivial: true,
            compare_trivial: false,
            hosts: 8,
            connections: 2,
            duration: Duration::from_millis(300),
            generation: vec![BlastGeneration::LegacyJson, BlastGeneration::RulesHashJson, BlastGeneration::Protobuf],
            events_per_sync: 1,
            event_batches: 2,
            enrol_concurrency: 2,
            server_pid: None,
            admin_token: None,
            load_rules: 0,
            timeout: Duration::from_secs(30),
            seed: 3,
            json: true,
            report: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_trivial_target_answers_every_generation() {
        let report = run(&trivial_args()).await.unwrap();
        for r in report["runs"].as_array().unwrap() {
            let t = &r["trivial"];
            assert_eq!(t["errors"], 0, "{}: {}", r["generation"], t["first_errors"]);
            assert!(t["syncs"].as_u64().unwrap() > 0, "{r}");
            assert_eq!(t["stages"]["eventupload"]["count"], t["stages"]["postflight"]["count"]);
            assert!(r["server"].is_null(), "no server was blasted");
        }
    }

    #[tokio::test]
    async fn flags_are_bounded() {
        let mut a = trivial_args();
        a.trivial = false;
        assert!(run(&a).await.unwrap_err().to_string().contains("--server URL, or --trivial"));
        let mut a = trivial_args();
        a.connections = 0;
        assert!(run(&a).await.is_err());
        let mut a = trivial_args();
        a.load_rules = 10;
        assert!(run(&a).await.unwrap_err().to_string().contains("--load-rules needs"));
        let mut a = trivial_args();
        a.duration = Duration::ZERO;
        assert!(run(&a).await.is_err());
        let mut a = trivial_args();
        a.server = Some("http://example.com/santa/".into());
        a.trivial = false;
        assert!(run(&a).await.unwrap_err().to_string().contains("only allowed to localhost"));
    }
}
