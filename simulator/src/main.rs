//! `dasher-sim` command line: parse arguments, build the config, call the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dasher_sim::{Generation, parse_duration};

/// jemalloc: many small short-lived allocations per request (JSON, rules); glibc malloc showed
/// up as ~17 % of server CPU in `perf` under simulator load. mimalloc saved a little more CPU
/// but tripled peak RSS with many threads (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use dasher_sim::encode::{self, Kind};
use dasher_sim::metrics::human_table;
use dasher_sim::profile::Profile;
use dasher_sim::runner::{self, RunConfig};
use dasher_sim::transport::Faults;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "dasher-sim", about = "Simulate a fleet of Macs running Santa against a sync server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive load for a duration, then check convergence and report.
    Run(RunArgs),
    /// One full sync per host, printing what each did.
    SyncOnce(RunArgs),
    /// Re-send recorded requests (JSON lines: {"stage","machine_id","generation","body"}).
    Replay {
        /// SyncBaseURL.
        #[arg(long)]
        server: String,
        /// JSON-lines file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Serve a fixed rule set as a minimal sync server (smoke tests, simulator overhead).
    StubServer {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// Rules in the set.
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// Rules per rule-download page.
        #[arg(long, default_value_t = 500)]
        page_size: usize,
    },
    /// Benchmark scenarios against a running server (see `scripts/bench.sh`).
    Bench {
        #[command(subcommand)]
        cmd: dasher_sim::bench::BenchCmd,
    },
    /// Capacity: full NORMAL syncs of enrolled hosts from prepared requests on keep-alive
    /// connections, as fast as the server answers (see README, "blast").
    Blast(dasher_sim::blast::BlastArgs),
    /// Serve the trivial target of `blast` (fixed minimal answers to every Santa stage).
    BlastTarget {
        /// Address to listen on (loopback).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Write each generated host's SystemVersion.plist and ioreg dump to DIR/<n>/.
    GenHosts {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of hosts.
        #[arg(long, default_value_t = 10)]
        hosts: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// SyncBaseURL, e.g. http://127.0.0.1:8080/santa/ (defaults to the profile's).
    #[arg(long, default_value = "")]
    server: String,
    /// Number of hosts.
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Load duration (`90s`, `5m`, or seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Max concurrent syncs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open-loop: fixed interval between a host's syncs. Without it each host waits the
    /// full_sync_interval the server sent it (600s before its first sync), times --time-scale.
    #[arg(long, value_parser = parse_duration)]
    sync_interval: Option<Duration>,
    /// Multiply synced intervals by this (0.01: the server's 600s become 6s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Start each host's next sync as soon as its last one ends.
    #[arg(long)]
    closed_loop: bool,
    /// Generation mix, e.g. `2026.7:70,2025.6:10,2024.7:5,2024.6:5,2024.5:5,2023.6:5` or `all`.
    #[arg(long, default_value = "2026.7")]
    generations: String,
    /// Fleet seed (same seed → same fleet).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Admin API token (enables the convergence check).
    #[arg(long, env = "DASHER_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Admin API base URL (default: the server's scheme://host:port).
    #[arg(long)]
    admin_url: Option<String>,
    /// Santa configuration profile (.mobileconfig or plist).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Load hosts from a directory of SystemVersion.plist / ioreg.plist files.
    #[arg(long)]
    hosts_dir: Option<PathBuf>,
    /// Scale the real retry back-off (4, 8, 16, 32 s); 0 = no sleep.
    #[arg(long, default_value_t = 0.01)]
    backoff_scale: f64,
    /// Simulated executions per host before each sync.
    #[arg(long, default_value_t = 1)]
    executions: u32,
    /// Probability of dropping a connection mid-request.
    #[arg(long, default_value_t = 0.0)]
    fault_drop: f64,
    /// Probability of corrupting a request body.
    #[arg(long, default_value_t = 0.0)]
    fault_corrupt: f64,
    /// Probability of killing a sync after its first rule-download page.
    #[arg(long, default_value_t = 0.0)]
    fault_kill_download: f64,
    /// Skip the final fault-free sync round before the convergence check.
    #[arg(long)]
    no_final_sync: bool,
    /// Shape the fleet by groups from a TOML file (simulator/scenarios/ has examples); the
    /// report then shows each group's client modes and rule sets.
    #[arg(long)]
    scenario: Option<PathBuf>,
}

fn config(a: &RunArgs, progress: bool) -> anyhow::Result<RunConfig> {
    Ok(RunConfig {
        server: a.server.clone(),
        admin_url: a.admin_url.clone(),
        admin_token: a.admin_token.clone(),
        hosts: a.hosts,
        duration: a.duration,
        concurrency: a.concurrency,
        sync_interval: a.sync_interval,
        time_scale: a.time_scale,
        closed_loop: a.closed_loop,
        generations: Generation::parse_mix(&a.generations).map_err(anyhow::Error::msg)?,
        seed: a.seed,
        backoff_scale: a.backoff_scale,
        faults: Faults {
            drop_connection: a.fault_drop,
            corrupt_body: a.fault_corrupt,
            kill_download: a.fault_kill_download,
        },
        executions_per_sync: a.executions,
        profile: a.profile.as_deref().map(Profile::load).transpose()?,
        hosts_dir: a.hosts_dir.clone(),
        final_sync: !a.no_final_sync,
        progress,
        scenario: a.scenario.as_deref().map(dasher_sim::scenario::Scenario::load).transpose()?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => {
            let cfg = config(&a, true)?;
            let report = runner::run(&cfg).await?;
            print!("{}", human_table(&report));
            print!("{}", dasher_sim::scenario_run::human_groups(&report["groups"]));
            if let Some(path) = &a.report {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| path.display().to_string())?;
            }
        }
        Cmd::SyncOnce(a) => {
            let cfg = config(&a, false)?;
            let fleet = runner::build_fleet(&cfg)?;
            let admin = a.admin_url.clone().unwrap_or_else(|| {
                runner::origin(&fleet.clients.first().map(|c| c.config.base_url.clone()).unwrap_or_default())
            });
            if let Some(scenario) = &cfg.scenario {
                dasher_sim::scenario_run::apply_tags(&fleet, scenario, &admin, cfg.admin_token.as_deref(), 16).await?;
            }
            let mut lines = Vec::with_capacity(fleet.clients.len());
            for c in &fleet.clients {
                let (r, _) = c.full_sync(&fleet.ctx).await;
                let st = c.state.lock().expect("client state lock");
                let line = match r {
                    Ok(rep) => serde_json::json!({
                        "machine_id": c.host.machine_id, "generation": c.host.generation.name(), "ok": true,
                        "sync_type": rep.sync_type.to_string(), "pages": rep.pages,
                        "rules_received": rep.rules_received, "rules_processed": rep.rules_processed,
                        "rules": st.db.synced_len(), "rules_hash": st.db.rules_hash(),
                    }),
                    Err(e) => serde_json::json!({
                        "machine_id": c.host.machine_id, "generation": c.host.generation.name(), "ok": false,
                        "error": e.to_string(),
                    }),
                };
                println!("{line}");
                lines.push(line);
            }
            if let Some(path) = &a.report {
                let mut report = serde_json::json!({ "hosts": lines });
                if let Some(scenario) = &cfg.scenario {
                    report["groups"] = dasher_sim::scenario_run::group_report(
                        &fleet,
                        scenario,
                        &admin,
                        cfg.admin_token.as_deref(),
                        16,
                    )
                    .await;
                    eprint!("{}", dasher_sim::scenario_run::human_groups(&report["groups"]));
                }
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| path.display().to_string())?;
            }
        }
        Cmd::Replay { server, file } => replay(&server, &file).await?,
        Cmd::StubServer { port, rules, page_size } => {
            let addr =
                dasher_sim::stub::serve(([127, 0, 0, 1], port).into(), dasher_sim::stub::rule_set(rules), page_size)
                    .await?;
            println!("stub sync server on http://{addr}/santa/ ({rules} rules, {page_size} per page)");
            tokio::signal::ctrl_c().await?;
        }
        Cmd::Bench { cmd } => dasher_sim::bench::run(cmd).await?,
        Cmd::Blast(a) => {
            let report = dasher_sim::blast::run(&a).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", dasher_sim::blast::human(&report));
            }
            if let Some(path) = &a.report {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| path.display().to_string())?;
            }
        }
        Cmd::BlastTarget { listen } => {
            anyhow::ensure!(listen.ip().is_loopback(), "--listen must be a loopback address");
            let addr = dasher_sim::blast::target::serve(listen).await?;
            println!("blast trivial target on http://{addr}/santa/");
            tokio::signal::ctrl_c().await?;
        }
        Cmd::GenHosts { out, hosts, seed } => {
            let mix: Vec<_> = Generation::ALL.iter().map(|g| (*g, 1)).collect();
            for i in 0..hosts {
                let spec = dasher_sim::fleet::generate_spec(seed, i as u64, &mix);
                let dir = out.join(format!("{i:05}"));
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("SystemVersion.plist"), dasher_sim::fleet::render_system_version(&spec))?;
                std::fs::write(dir.join("ioreg.plist"), dasher_sim::fleet::render_ioreg(&spec))?;
            }
            println!("wrote {hosts} hosts to {}", out.display());
        }
    }
    Ok(())
}

async fn replay(server: &str, file: &std::path::Path) -> anyhow::Result<()> {
    use dasher_sdk::wire::{EventUploadRequest, PostflightRequest, PreflightRequest, RuleDownloadRequest};
    let base = if server.ends_with('/') { server.to_owned() } else { format!("{server}/") };
    dasher_sim::transport::check_base_url(&base).map_err(anyhow::Error::msg)?;
    let metrics = std::sync::Arc::new(dasher_sim::metrics::Metrics::default());
    let t = dasher_sim::transport::Transport::new(metrics, 0.0, Faults::default());
    let text = std::fs::read_to_string(file)?;
    let headers = std::collections::BTreeMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        let stage = v["stage"].as_str().unwrap_or("preflight");
        let g = Generation::from_name(v["generation"].as_str().unwrap_or("2026.7")).unwrap_or(Generation::Nps2026_7);
        let opts = Default::default();
        let body = v["body"].clone();
        let (stage, enc): (&'static str, _) = match stage {
            "preflight" => (
                "preflight",
                encode::encode(&serde_json::from_value::<PreflightRequest>(body)?, Kind::Preflight, g, opts),
            ),
            "eventupload" => (
                "eventupload",
                encode::encode(&serde_json::from_value::<EventUploadRequest>(body)?, Kind::EventUpload, g, opts),
            ),
            "ruledownload" => (
                "ruledownload",
                encode::encode(&serde_json::from_value::<RuleDownloadRequest>(body)?, Kind::RuleDownload, g, opts),
            ),
            _ => (
                "postflight",
                encode::encode(&serde_json::from_value::<PostflightRequest>(body)?, Kind::Postflight, g, opts),
            ),
        };
        let version = g.bundle_version(1);
        let machine_id = v["machine_id"].as_str().unwrap_or("replay").to_owned();
        let caller = dasher_sim::transport::Caller {
            santa_version: &version,
            generation: g,
            extra_headers: &headers,
            base_url: &base,
            machine_id: &machine_id,
        };
        let mut xsrf = Default::default();
        let mut rng = dasher_sim::fleet::rng_for(1, n as u64);
        let (r, _) = t.post_stage(stage, &enc, &caller, &mut xsrf, &mut rng).await;
        match r {
            Ok(b) => println!("{} {stage} 200 {}", n + 1, String::from_utf8_lossy(&b)),
            Err(e) => println!("{} {stage} error {e}", n + 1),
        }
    }
    Ok(())
}
