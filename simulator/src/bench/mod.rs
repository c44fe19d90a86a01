//! `dasher-sim bench …`: the macro scenarios `scripts/bench.sh` runs against a real server.
//!
//! Each scenario separates an untimed set-up (loading rules through the admin API, a warm-up
//! sync of every host) from the measured phase, and samples the server process
//! (`--server-pid`, from `/proc`) at both ends of the measured phase, so the report carries
//! server CPU seconds and memory for exactly what was measured. Reports are JSON (`--report`).
//!
//! - `steady`: warmed-up hosts sync NORMAL (with uploads), rule edits land every few seconds;
//!   pointed at `baseline-server` (no admin token) it measures the client and HTTP stack alone.
//! - `rule-push`: like `steady`, and a batch of new rules lands once; reports how long until
//!   every host holds it.
//! - `storm`: every (registered) host asks for a clean sync at once against a loaded rule set;
//!   with `--hosts 1` it is the single-host large clean sync.
//! - `event-flood`: event uploads only, in fixed-size batches, as fast as the server stores them.
//! - `memory`: a large inventory and rule set: every host registers (a full sync with no rules),
//!   the rules load in big admin batches, then one host clean-syncs all of them; reports the
//!   server's RSS after each phase and its peak.
//! - `baseline-server`: a trivial hyper endpoint with fixed minimal answers per stage (`baseline.rs`).
//!
//! With an admin token, `steady` also scrapes `/metrics` at both ends of the measured phase and
//! reports how many plugin-set swaps (hot reloads) happened in between. `report.rs` turns
//! reports into the terminal line and the tables of BENCHMARKS.md.

mod baseline;
mod report;
mod server;

pub use baseline::serve_baseline;
pub use report::{summarize, summary};
use server::{PLUGIN_RELOADS, sample_json, server_section};
pub use server::{ProcSample, load_rules, load_rules_batched, metric_value, sample, scrape};

use crate::client::Ctx;
use crate::encode::{self, Kind, WireOptions};
use crate::events::Catalog;
use crate::fixtures;
use crate::generation::Generation;
use crate::metrics::{Convergence, Metrics};
use crate::parse_duration;
use crate::runner::{self, Fleet, RunConfig, origin};
use crate::transport::{Caller, Faults, Transport};
use clap::{Args, Subcommand};
use dasher_sdk::wire::SyncType;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The bench sub-commands.
#[derive(Subcommand, Clone, Debug)]
pub enum BenchCmd {
    /// Steady state: warmed-up hosts sync NORMAL back to back while rules are edited.
    Steady(Scenario),
    /// Rule push: like `steady`, and `--push-rules` new rules land once during the run.
    RulePush(Scenario),
    /// Clean-sync storm: every host asks for a clean sync at once (`--hosts 1`: one large one).
    Storm(Scenario),
    /// Event flood: `--events` events in batches of `--batch`, no syncs.
    EventFlood(Scenario),
    /// Memory: `--hosts` register, `--rules` load, then one host clean-syncs them all.
    Memory(Scenario),
    /// Serve a trivial endpoint (fixed minimal answers per stage) on 127.0.0.1:PORT.
    BaselineServer {
        /// Port.
        #[arg(long)]
        port: u16,
    },
    /// Merge the reports in DIR (`RUN.json` + optional `RUN.meta.json`) into `results.json`
    /// and a markdown table `results.md`.
    Summarize {
        /// Directory of reports.
        dir: PathBuf,
    },
}

/// Options shared by the scenarios (each uses the ones that apply).
#[derive(Args, Clone, Debug)]
pub struct Scenario {
    /// SyncBaseURL, e.g. http://127.0.0.1:8080/santa/.
    #[arg(long)]
    pub server: String,
    /// Admin API token (rule loading, edits and pushes need it).
    #[arg(long, env = "DASHER_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// PID of the server process, sampled from /proc at the ends of the measured phase.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Hosts.
    #[arg(long, default_value_t = 100)]
    pub hosts: usize,
    /// Global rules loaded through the admin API before the measured phase.
    #[arg(long, default_value_t = 0)]
    pub rules: u64,
    /// Measured duration of `steady` and `rule-push` (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Max concurrent syncs (or uploads).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Simulated executions per host before each sync (0–N events uploaded per sync).
    #[arg(long, default_value_t = 5)]
    pub executions: u32,
    /// `steady`: seconds between rule edits (0 = none).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub edit_every: Duration,
    /// `steady`: rules changed per edit.
    #[arg(long, default_value_t = 10)]
    pub edit_rules: u64,
    /// `rule-push`: new rules in the push.
    #[arg(long, default_value_t = 5000)]
    pub push_rules: u64,
    /// `event-flood`: total events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// `event-flood`: events per upload.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Rules per admin request when loading rules (the server accepts up to
    /// `limits.max_rules_per_request`, default 100,000, in a 64 MiB body).
    #[arg(long, default_value_t = 10_000)]
    pub rule_batch: u64,
    /// `steady`: during the measured phase, rewrite this plugin file (in the server's watched
    /// plugin directory) every `--rewrite-every`, alternating its original bytes and the same
    /// module with an extra custom section, each written to a hidden temp file and renamed
    /// over it, so every rewrite is a real hot reload.
    #[arg(long)]
    pub rewrite_plugin: Option<PathBuf>,
    /// `steady`: interval of `--rewrite-plugin`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub rewrite_every: Duration,
    /// Fleet seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs one bench sub-command; scenarios return their report (also written to `--report`).
pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let (name, s) = match cmd {
        BenchCmd::BaselineServer { port } => {
            let addr = serve_baseline(([127, 0, 0, 1], port).into()).await?;
            println!("baseline endpoint on http://{addr}/santa/");
            tokio::signal::ctrl_c().await?;
            return Ok(());
        }
        BenchCmd::Summarize { dir } => {
            let table = summarize(&dir)?;
            print!("{table}");
            return Ok(());
        }
        BenchCmd::Steady(s) => ("steady", s),
        BenchCmd::RulePush(s) => ("rule-push", s),
        BenchCmd::Storm(s) => ("storm", s),
        BenchCmd::EventFlood(s) => ("event-flood", s),
        BenchCmd::Memory(s) => ("memory", s),
    };
    let mut report = match name {
        "steady" => steady(&s, false).await?,
        "rule-push" => steady(&s, true).await?,
        "storm" => storm(&s).await?,
        "memory" => memory(&s).await?,
        _ => event_flood(&s).await?,
    };
    report["scenario"] = name.into();
    println!("{}", summary(&report));
    if let Some(path) = &s.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

fn run_config(s: &Scenario) -> RunConfig {
    RunConfig {
        server: s.server.clone(),
        admin_token: s.admin_token.clone(),
        hosts: s.hosts,
        duration: s.duration,
        concurrency: s.concurrency,
        closed_loop: true,
        seed: s.seed,
        backoff_scale: 0.01,
        executions_per_sync: s.executions,
        ..RunConfig::default()
    }
}

/// The same clients with fresh metrics (set-up traffic is not measured).
fn remeasured(fleet: &Fleet) -> Fleet {
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Ctx {
        transport: Transport::new(metrics, 0.01, Faults::default()),
        catalog: fleet.ctx.catalog.clone(),
    });
    Fleet { clients: fleet.clients.clone(), ctx }
}

fn admin_of(s: &Scenario) -> String {
    origin(&s.server)
}

// ---- scenarios ------------------------------------------------------------------------------

/// `steady` and `rule-push`.
async fn steady(s: &Scenario, push: bool) -> anyhow::Result<Value> {
    let cfg = run_config(s);
    let setup = runner::build_fleet(&cfg)?;
    let admin = admin_of(s);
    if let (Some(token), true) = (&s.admin_token, s.rules > 0) {
        load_rules(&setup.ctx.transport, &admin, token, 0, s.rules, 1).await?;
    }
    // Warm-up: every host's first (clean) sync, so the measured phase is NORMAL syncs.
    runner::sync_all(&setup, s.concurrency).await;
    let warm_failed = setup.ctx.transport.metrics.syncs_failed.load(Relaxed);
    let fleet = remeasured(&setup);
    let metrics = fleet.ctx.transport.metrics.clone();

    let scraper = Transport::new(Arc::new(Metrics::default()), 0.01, Faults::default());
    let reloads_before = match &s.admin_token {
        Some(token) => scrape(&scraper, &admin, token).await.and_then(|m| metric_value(&m, PLUGIN_RELOADS)),
        None => None,
    };
    let before = s.server_pid.and_then(sample);
    let started = Instant::now();
    let stop = Arc::new(tokio::sync::Notify::new());
    // Rule edits (steady) or one push (rule-push), through a transport of their own.
    let editor = s.admin_token.clone().map(|token| {
        let (admin, stop) = (admin.clone(), stop.clone());
        let (every, n, push_rules, duration) = (s.edit_every, s.edit_rules, s.push_rules, s.duration);
        let clients = fleet.clients.clone();
        tokio::spawn(async move {
            let t = Transport::new(Arc::new(Metrics::default()), 0.01, Faults::default());
            let mut out = json!({});
            if push {
                tokio::time::sleep(duration / 4).await;
                let last = fixtures::rule_spec(push_rules.saturating_sub(1), 2).validate().ok().map(|(k, _)| k);
                let t0 = Instant::now();
                let version = load_rules(&t, &admin, &token, 0, push_rules, 2).await;
                out["push_commit_s"] = t0.elapsed().as_secs_f64().into();
                out["push_version"] = version.as_ref().ok().copied().into();
                if let Err(e) = version {
                    out["push_error"] = e.to_string().into();
                    return out;
                }
                // Propagation: until every host holds the push's last rule (or the run ends).
                let Some(key) = last else { return out };
                loop {
                    let have = clients
                        .iter()
                        .filter(|c| c.state.lock().map(|st| st.db.get(&key).is_some()).unwrap_or(false))
                        .count();
                    out["hosts_with_push"] = have.into();
                    if have == clients.len() {
                        out["push_propagation_s"] = t0.elapsed().as_secs_f64().into();
                        return out;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.notified() => return out,
                    }
                }
            }
            let mut edits = 0u64;
            let mut failed = 0u64;
            if every.is_zero() {
                return out;
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.notified() => break,
                }
                // Each edit upserts `n` new rules of their own fixture set.
                match load_rules(&t, &admin, &token, edits * n, n, 3).await {
                    Ok(_) => edits += 1,
                    Err(_) => failed += 1,
                }
            }
            out["rule_edits"] = edits.into();
            out["rule_edits_failed"] = failed.into();
            out
        })
    });
    // Its own stop signal: `notify_one` keeps a permit if the rewriter is busy writing.
    let rewrite_stop = Arc::new(tokio::sync::Notify::new());
    let rewriter = s.rewrite_plugin.clone().map(|path| {
        let (stop, every) = (rewrite_stop.clone(), s.rewrite_every);
        tokio::spawn(async move { rewrite_plugin(&path, every, &stop).await })
    });
    runner::drive(&fleet, &cfg).await;
    let elapsed = started.elapsed().as_secs_f64();
    let server = server_section(s.server_pid, before, elapsed);
    rewrite_stop.notify_one();
    let rewrites = match rewriter {
        Some(h) => Some(h.await??),
        None => None,
    };
    // The last rewrite may still be in the watcher's debounce window: give the server up to
    // 5 s to catch up, so reloads and rewrites are counted over the same span.
    let mut after_metrics = None;
    if let Some(token) = &s.admin_token {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            after_metrics = scrape(&scraper, &admin, token).await;
            let seen = after_metrics.as_deref().and_then(|m| metric_value(m, PLUGIN_RELOADS));
            let caught_up = match (rewrites, reloads_before, seen) {
                (Some(n), Some(b), Some(a)) => a - b >= n as f64,
                _ => true,
            };
            if caught_up || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.notify_waiters();
    stop.notify_one();
    let extra = match editor {
        Some(h) => h.await.unwrap_or_default(),
        None => json!({}),
    };
    let mut report = metrics.report(fleet.clients.len(), elapsed, &Convergence::default());
    report["warmup_syncs_failed"] = warm_failed.into();
    report["rules"] = s.rules.into();
    if push {
        report["push_rules"] = s.push_rules.into();
    }
    report["server"] = server;
    if let Some(n) = rewrites {
        report["rewrites"] = n.into();
    }
    if let (Some(b), Some(m)) = (reloads_before, &after_metrics)
        && let Some(a) = metric_value(m, PLUGIN_RELOADS)
    {
        report["plugin_reloads"] = (a - b).into();
        report["plugin_load_errors"] = metric_value(m, "dasher_plugin_load_errors").into();
    }
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            report[k] = v.clone();
        }
    }
    Ok(report)
}

/// The module `wasm` with one more custom section (`dasher-bench`, payload `b"1"`): the same
/// plugin, different bytes and so a different content hash.
pub fn with_custom_section(wasm: &[u8]) -> Vec<u8> {
    let name = b"dasher-bench";
    let payload = b"1";
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8); // section size (one LEB128 byte, < 128)
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

/// Rewrites `path` every `every` until `stop`, alternating the original bytes and
/// [`with_custom_section`] of them, atomically (hidden temp file in the same directory, which
/// the plugin host skips, then rename). Returns the number of rewrites.
async fn rewrite_plugin(path: &std::path::Path, every: Duration, stop: &tokio::sync::Notify) -> anyhow::Result<u64> {
    let original = tokio::fs::read(path).await.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let variants = [with_custom_section(&original), original];
    let file = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow::anyhow!("bad plugin path"))?;
    let tmp = path.with_file_name(format!(".{file}.bench-tmp"));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return Ok(n),
        }
        tokio::fs::write(&tmp, &variants[(n % 2) as usize]).await?;
        tokio::fs::rename(&tmp, path).await?;
        n += 1;
    }
}

/// `storm`: register every host (a sync with no rules loaded), load the rules, then every host
/// asks for a clean sync at the same moment.
async fn storm(s: &Scenario) -> anyhow::Result<Value> {
    let cfg = run_config(s);
    let setup = runner::build_fleet(&cfg)?;
    runner::sync_all(&setup, s.concurrency).await;
    let token = s.admin_token.as_deref().ok_or_else(|| anyhow::anyhow!("storm needs --admin-token"))?;
    let admin = admin_of(s);
    let t0 = Instant::now();
    load_rules(&setup.ctx.transport, &admin, token, 0, s.rules, 1).await?;
    let load_s = t0.elapsed().as_secs_f64();
    for c in &setup.clients {
        c.state.lock().expect("client state lock").sync_type_required = SyncType::Clean;
    }
    let fleet = remeasured(&setup);
    let metrics = fleet.ctx.transport.metrics.clone();
    let before = s.server_pid.and_then(sample);
    let started = Instant::now();
    runner::sync_all(&fleet, s.concurrency).await;
    let elapsed = started.elapsed().as_secs_f64();
    let server = server_section(s.server_pid, before, elapsed);
    // Checking means one effective-rules GET per host; above a few million host-rules that
    // costs more than the storm itself, so big runs skip it.
    let convergence = if s.hosts as u64 * s.rules.max(1) <= 2_000_000 {
        runner::check_convergence(&fleet, &admin, token, s.concurrency).await
    } else {
        Convergence::default()
    };
    let mut report = metrics.report(fleet.clients.len(), elapsed, &convergence);
    report["rules"] = s.rules.into();
    report["rule_load_s"] = load_s.into();
    report["server"] = server;
    Ok(report)
}

/// `memory`: every host registers with a real full sync while no rules exist (`--concurrency`
/// at once), `--rules` global rules load in `--rule-batch` admin requests, then the first host
/// clean-syncs all of them. The measured phase is that clean sync; the report also carries each
/// phase's wall time, the server's RSS after each phase, its peak (`VmHWM`) and the host count
/// the server reports (`dasher_hosts` on `/metrics`).
async fn memory(s: &Scenario) -> anyhow::Result<Value> {
    let token = s.admin_token.as_deref().ok_or_else(|| anyhow::anyhow!("memory needs --admin-token"))?;
    let admin = admin_of(s);
    let cfg = run_config(s);
    let setup = runner::build_fleet(&cfg)?;
    let first = setup.clients.first().cloned().ok_or_else(|| anyhow::anyhow!("memory needs --hosts ≥ 1"))?;
    let at_start = s.server_pid.and_then(sample);

    let t0 = Instant::now();
    runner::sync_all(&setup, s.concurrency).await;
    let register_s = t0.elapsed().as_secs_f64();
    let register = setup.ctx.transport.metrics.report(setup.clients.len(), register_s, &Convergence::default());
    let after_register = s.server_pid.and_then(sample);

    let t1 = Instant::now();
    let version = load_rules_batched(&setup.ctx.transport, &admin, token, 0, s.rules, 1, s.rule_batch).await?;
    let load_s = t1.elapsed().as_secs_f64();
    let after_load = s.server_pid.and_then(sample);

    first.state.lock().expect("client state lock").sync_type_required = SyncType::Clean;
    let one = remeasured(&Fleet { clients: vec![first.clone()], ctx: setup.ctx.clone() });
    let metrics = one.ctx.transport.metrics.clone();
    let before = s.server_pid.and_then(sample);
    let started = Instant::now();
    runner::sync_all(&one, 1).await;
    let elapsed = started.elapsed().as_secs_f64();
    let server = server_section(s.server_pid, before, elapsed);
    let at_end = s.server_pid.and_then(sample);
    let rules_on_host = first.state.lock().expect("client state lock").db.synced_len();
    let server_hosts = scrape(&one.ctx.transport, &admin, token).await.and_then(|m| metric_value(&m, "dasher_hosts"));

    let mut report = metrics.report(1, elapsed, &Convergence::default());
    report["hosts"] = s.hosts.into();
    report["rules"] = s.rules.into();
    report["rule_version"] = version.into();
    report["server_hosts"] = server_hosts.into();
    report["rules_on_host"] = rules_on_host.into();
    report["register_s"] = register_s.into();
    report["register_syncs_per_sec"] = register["syncs_per_sec"].clone();
    report["register_syncs_failed"] = register["syncs_failed"].clone();
    report["register_errors"] = register["errors"].clone();
    report["rule_load_s"] = load_s.into();
    report["rule_batch"] = s.rule_batch.into();
    report["clean_sync_s"] = elapsed.into();
    report["server"] = server;
    report["server_phases"] = json!({
        "start": sample_json(at_start),
        "after_register": sample_json(after_register),
        "after_rule_load": sample_json(after_load),
        "end": sample_json(at_end),
    });
    Ok(report)
}

/// `event-flood`: uploads only, `--concurrency` in flight, hosts taking turns.
async fn event_flood(s: &Scenario) -> anyhow::Result<Value> {
    let base = if s.server.ends_with('/') { s.server.clone() } else { format!("{}/", s.server) };
    crate::transport::check_base_url(&base).map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let transport = Arc::new(Transport::new(metrics.clone(), 0.01, Faults::default()));
    let catalog = Catalog::new(s.seed);
    let hosts: Arc<Vec<_>> = Arc::new((0..s.hosts.max(1) as u64).map(|i| fixtures::host(s.seed, i)).collect());
    let batch = s.batch.max(1);
    let uploads = s.events.div_ceil(batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let before = s.server_pid.and_then(sample);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..s.concurrency.max(1) {
        let (transport, catalog, hosts, base) = (transport.clone(), catalog.clone(), hosts.clone(), base.clone());
        let (next, stored, failed, seed, total) = (next.clone(), stored.clone(), failed.clone(), s.seed, s.events);
        tasks.push(tokio::spawn(async move {
            let mut rng = crate::fleet::rng_for(seed ^ 0xf10d, w as u64);
            let headers = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= uploads {
                    return;
                }
                let n = (total - i * batch as u64).min(batch as u64) as usize;
                let host = &hosts[(i % hosts.len() as u64) as usize];
                let msg = fixtures::event_upload(&catalog, seed, i, n, &host.machine_id);
                let enc = encode::encode(&msg, Kind::EventUpload, Generation::Nps2026_7, WireOptions::default());
                let caller = Caller {
                    santa_version: &host.santa_version,
                    generation: Generation::Nps2026_7,
                    extra_headers: &headers,
                    base_url: &base,
                    machine_id: &host.machine_id,
                };
                let mut xsrf = Default::default();
                match transport.post_stage("eventupload", &enc, &caller, &mut xsrf, &mut rng).await {
                    (Ok(_), _) => {
                        Metrics::add(&stored, n as u64);
                        Metrics::add(&transport.metrics.events_uploaded, n as u64);
                    }
                    (Err(e), _) => {
                        transport.metrics.error("eventupload", &e.kind(), false);
                        Metrics::add(&failed, 1);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server = server_section(s.server_pid, before, elapsed);
    let mut report = metrics.report(hosts.len(), elapsed, &Convergence::default());
    report["events_sent"] = stored.load(Relaxed).into();
    report["events_per_sec"] = (stored.load(Relaxed) as f64 / elapsed.max(1e-9)).into();
    report["uploads"] = uploads.into();
    report["uploads_failed"] = failed.load(Relaxed).into();
    report["batch"] = batch.into();
    report["server"] = server;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        if let Some(p) = sample(std::process::id()) {
            assert!(p.rss_kib > 0 && p.hwm_kib >= p.rss_kib);
        }
    }

    #[test]
    fn reads_unlabelled_prometheus_samples() {
        let text = "# HELP dasher_hosts Hosts\n# TYPE dasher_hosts gauge\ndasher_hosts 100000\n\
                    dasher_plugin_reloads_total 7\ndasher_plugin_calls_total{plugin=\"a\"} 3\n# EOF\n";
        assert_eq!(metric_value(text, "dasher_hosts"), Some(100_000.0));
        assert_eq!(metric_value(text, "dasher_plugin_reloads_total"), Some(7.0));
        assert_eq!(metric_value(text, "dasher_plugin_calls_total"), None);
        assert_eq!(metric_value(text, "dasher_host"), None);
    }

    #[test]
    fn summarize_reports_plugin_share_reloads_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, v: Value| std::fs::write(dir.path().join(name), v.to_string()).unwrap();
        write("2-steady-redb.json", json!({"scenario": "steady", "syncs": 1000, "server": {"cpu_s": 2.2}}));
        write("2-steady-redb.meta.json", json!({"engine": "redb", "store_bytes": 1}));
        write("2-steady-redb-noplugins.json", json!({"scenario": "steady", "syncs": 1000, "server": {"cpu_s": 2.0}}));
        write("2-steady-redb-noplugins.meta.json", json!({"engine": "redb", "plugins": false}));
        write(
            "8-reload-redb.json",
            json!({"scenario": "steady", "syncs": 500, "errors": 0, "syncs_failed": 0, "elapsed_s": 3.0,
                   "plugin_reloads": 4.0, "plugin_load_errors": 0.0}),
        );
        write("8-reload-redb.meta.json", json!({"engine": "redb", "watch": true, "rewrites": 4}));
        write(
            "7-memory-redb.json",
            json!({"scenario": "memory", "hosts": 50, "server_hosts": 50.0, "rules": 2000, "rules_on_host": 2000,
                   "register_s": 1.0, "register_syncs_per_sec": 50.0, "register_syncs_failed": 0,
                   "rule_load_s": 0.5, "clean_sync_s": 0.1, "errors": 0,
                   "server_phases": {"end": {"rss_kib": 102400, "peak_rss_kib": 204800}}}),
        );
        let md = summarize(dir.path()).unwrap();
        assert!(md.contains("2.20 ms with the three example plugins, 2.00 ms without"), "{md}");
        assert!(md.contains("plugins add +10 %"), "{md}");
        assert!(
            md.contains("4 plugin reloads during the 3.0 s measured phase (the plugin file was rewritten 4"),
            "{md}"
        );
        assert!(md.contains("| 7-memory-redb | – | 50 (50) | 1.0 (50, 0) | 2000 | 0.5 (4000) | 0.10 (2000) |"), "{md}");
        assert!(md.contains("| 100 | 200 |"), "{md}");
        assert!(dir.path().join("results.json").exists());
    }

    #[tokio::test]
    async fn a_fleet_syncs_against_the_baseline_endpoint() {
        let addr = serve_baseline(([127, 0, 0, 1], 0).into()).await.unwrap();
        let s = Scenario {
            server: format!("http://{addr}/santa/"),
            admin_token: None,
            server_pid: None,
            report: None,
            hosts: 5,
            rules: 0,
            duration: Duration::from_millis(500),
            concurrency: 4,
            executions: 2,
            edit_every: Duration::ZERO,
            edit_rules: 0,
            push_rules: 0,
            events: 0,
            batch: 50,
            rule_batch: 10_000,
            rewrite_plugin: None,
            rewrite_every: Duration::from_secs(2),
            seed: 1,
        };
        let r = steady(&s, false).await.unwrap();
        assert!(r["syncs"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(r["warmup_syncs_failed"], 0, "{r}");
    }

    #[tokio::test]
    async fn event_flood_sends_every_event_in_batches() {
        let addr = serve_baseline(([127, 0, 0, 1], 0).into()).await.unwrap();
        let s = Scenario {
            server: format!("http://{addr}/santa/"),
            admin_token: None,
            server_pid: Some(std::process::id()),
            report: None,
            hosts: 3,
            rules: 0,
            duration: Duration::ZERO,
            concurrency: 4,
            executions: 0,
            edit_every: Duration::ZERO,
            edit_rules: 0,
            push_rules: 0,
            events: 1234,
            batch: 50,
            rule_batch: 10_000,
            rewrite_plugin: None,
            rewrite_every: Duration::from_secs(2),
            seed: 1,
        };
        let r = event_flood(&s).await.unwrap();
        assert_eq!(r["events_sent"], 1234, "{r}");
        assert_eq!(r["uploads"], 25);
        assert_eq!(r["stages"]["eventupload"]["count"], 25);
    }
}
