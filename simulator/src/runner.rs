//! The load runner: builds a fleet, drives it open-loop (timer-like syncs with jitter) or
//! closed-loop (back-to-back syncs) under a concurrency limit, then checks convergence against
//! the server's admin API and builds the report.

use crate::client::{ClientConfig, Ctx, SimClient};
use crate::events::Catalog;
use crate::fleet::{self, Host};
use crate::generation::Generation;
use crate::metrics::{Convergence, Metrics};
use crate::profile::Profile;
use crate::transport::{Faults, Transport, check_base_url};
use dasher_sdk::domain::Rule;
use dasher_sdk::wire::{ClientMode, Policy, RuleType};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// SyncBaseURL (trailing `/` added if missing).
    pub server: String,
    /// Admin API base (`http://host:port`); derived from `server` when `None`.
    pub admin_url: Option<String>,
    /// Bearer token for the admin API; convergence is checked only with one.
    pub admin_token: Option<String>,
    /// Number of hosts.
    pub hosts: usize,
    /// How long to drive load.
    pub duration: Duration,
    /// Max concurrent syncs.
    pub concurrency: usize,
    /// Open-loop: a fixed interval between a host's syncs. `None` (the default) does what real
    /// clients do: wait the `full_sync_interval` the server last sent the host (600 s until the
    /// first sync; clamped as the host's Santa version clamps it), multiplied by `time_scale`.
    pub sync_interval: Option<Duration>,
    /// Factor applied to synced intervals (e.g. 0.01 turns 600 s into 6 s for load tests).
    pub time_scale: f64,
    /// Back-to-back syncs instead of timers.
    pub closed_loop: bool,
    /// Generation mix.
    pub generations: Vec<(Generation, u32)>,
    /// Fleet seed.
    pub seed: u64,
    /// Multiplier of the real retry back-off.
    pub backoff_scale: f64,
    /// Faults.
    pub faults: Faults,
    /// Simulated executions per host before each sync.
    pub executions_per_sync: u32,
    /// Profile configuring every client.
    pub profile: Option<Profile>,
    /// Load hosts from this directory instead of generating them.
    pub hosts_dir: Option<PathBuf>,
    /// One more fault-free sync per host after the load phase, before checking convergence.
    pub final_sync: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Shape the fleet by groups (`--scenario`); its `hosts` and `seed` win over the fields above.
    pub scenario: Option<crate::scenario::Scenario>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            server: String::new(),
            admin_url: None,
            admin_token: None,
            hosts: 10,
            duration: Duration::from_secs(10),
            concurrency: 64,
            sync_interval: None,
            time_scale: 1.0,
            closed_loop: false,
            generations: vec![(Generation::Nps2026_7, 1)],
            seed: 1,
            backoff_scale: 1.0,
            faults: Faults::default(),
            executions_per_sync: 1,
            profile: None,
            hosts_dir: None,
            final_sync: true,
            progress: false,
            scenario: None,
        }
    }
}

/// A built fleet ready to sync.
pub struct Fleet {
    /// The clients.
    pub clients: Vec<Arc<SimClient>>,
    /// Shared context.
    pub ctx: Arc<Ctx>,
}

fn base_url(s: &str) -> String {
    if s.ends_with('/') { s.to_owned() } else { format!("{s}/") }
}

/// `scheme://authority` of a URL.
pub fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
}

/// Builds the fleet for `cfg` (generated or loaded hosts, configured by the profile).
pub fn build_fleet(cfg: &RunConfig) -> anyhow::Result<Fleet> {
    let profile = cfg.profile.clone().unwrap_or_default();
    let server =
        if cfg.server.is_empty() { profile.sync_base_url.clone().unwrap_or_default() } else { base_url(&cfg.server) };
    check_base_url(&server).map_err(anyhow::Error::msg)?;
    let seed = cfg.scenario.as_ref().and_then(|s| s.seed).unwrap_or(cfg.seed);
    let catalog = Catalog::new(seed);
    // (group, index within the group) per host, when a scenario shapes the fleet.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut software = Vec::new();
    let hosts: Vec<Host> = match (&cfg.hosts_dir, &cfg.scenario) {
        (Some(_), Some(_)) => anyhow::bail!("--hosts-dir and --scenario cannot be combined"),
        (Some(dir), None) => {
            let g = cfg.generations.first().map_or(Generation::Nps2026_7, |x| x.0);
            fleet::load_dir(dir, g)?
        }
        (None, Some(scenario)) => {
            software = scenario.software(&catalog).map_err(anyhow::Error::msg)?;
            groups = scenario.assign(scenario.hosts.unwrap_or(cfg.hosts));
            groups
                .iter()
                .enumerate()
                .map(|(i, &(g, k))| Host::from_spec(&scenario.host_spec(seed, i, g, k)))
                .collect::<Result<_, _>>()?
        }
        (None, None) => fleet::generate(cfg.seed, cfg.hosts, &cfg.generations),
    };
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Ctx { transport: Transport::new(metrics, cfg.backoff_scale, cfg.faults), catalog });
    let config = ClientConfig {
        base_url: server,
        wire: profile.wire_options(),
        extra_headers: profile.extra_headers.clone(),
        clean_sync_event_upload: profile.clean_sync_event_upload,
    };
    let mode = match profile.client_mode {
        Some(2) => ClientMode::Lockdown,
        Some(3) => ClientMode::Standalone,
        _ => ClientMode::Monitor,
    };
    let single = hosts.len() == 1;
    let clients = hosts
        .into_iter()
        .enumerate()
        .map(|(i, mut h)| {
            if let Some(id) = profile.machine_id.as_ref().filter(|_| single) {
                h.machine_id = id.clone();
            }
            if let Some(owner) = &profile.machine_owner {
                h.primary_user = owner.clone();
            }
            if !profile.machine_owner_groups.is_empty() {
                h.groups = profile.machine_owner_groups.clone();
            }
            let mut client = SimClient::new(h, config.clone(), mode, seed, i as u64);
            if let Some(&(g, _)) = groups.get(i) {
                client.group = Some(g);
                client.software = software.get(g).cloned().flatten();
            }
            Arc::new(client)
        })
        .collect();
    Ok(Fleet { clients, ctx })
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// One host's turn: a few executions (immediate uploads race the sync), then a full sync.
async fn host_turn(client: &Arc<SimClient>, ctx: &Arc<Ctx>, executions: u32) {
    let mut racing = Vec::new();
    for _ in 0..executions {
        let (c, x) = (client.clone(), ctx.clone());
        racing.push(tokio::spawn(async move { c.execute(&x, now_unix()).await }));
    }
    let _ = client.full_sync(ctx).await;
    for r in racing {
        let _ = r.await;
    }
}

/// Drives load for `cfg.duration`.
pub async fn drive(fleet: &Fleet, cfg: &RunConfig) {
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let deadline = Instant::now() + cfg.duration;
    let mut tasks = Vec::with_capacity(fleet.clients.len());
    for (i, client) in fleet.clients.iter().enumerate() {
        let (client, ctx, sem) = (client.clone(), fleet.ctx.clone(), sem.clone());
        let (closed, fixed, scale, execs) =
            (cfg.closed_loop, cfg.sync_interval, cfg.time_scale, cfg.executions_per_sync);
        let mut rng = fleet::rng_for(cfg.seed ^ 0x71e, i as u64);
        tasks.push(tokio::spawn(async move {
            if !closed {
                // First sync somewhere in the first interval (hosts wake at different times).
                let first = next_interval(&client, fixed, scale).mul_f64(rng.random_range(0.0..1.0));
                tokio::time::sleep_until((Instant::now() + first).min(deadline).into()).await;
            }
            while Instant::now() < deadline {
                {
                    let Ok(_permit) = sem.acquire().await else { return };
                    if Instant::now() >= deadline {
                        return;
                    }
                    host_turn(&client, &ctx, execs).await;
                }
                if !closed {
                    // Re-armed from the end of the sync with the interval the server just sent,
                    // plus the dispatch timer's leeway.
                    let interval = next_interval(&client, fixed, scale);
                    let jitter = rng.random_range(0.0..0.02) * interval.as_secs_f64();
                    let next = Instant::now() + interval + Duration::from_secs_f64(jitter);
                    tokio::time::sleep_until(next.min(deadline).into()).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The wait before a host's next full sync: the fixed override, or the host's synced
/// `full_sync_interval` scaled by `scale`.
pub fn next_interval(client: &SimClient, fixed: Option<Duration>, scale: f64) -> Duration {
    fixed.unwrap_or_else(|| {
        let secs = client.state.lock().map_or(600, |s| s.settings.full_sync_interval);
        Duration::from_secs_f64(f64::from(secs) * scale.max(0.0))
    })
}

/// One fault-free full sync per host.
pub async fn sync_all(fleet: &Fleet, concurrency: usize) {
    fleet.ctx.transport.faults_enabled.store(false, Relaxed);
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for client in &fleet.clients {
        let (client, ctx, sem) = (client.clone(), fleet.ctx.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            client.full_sync(&ctx).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The comparable part of a rule: everything the client keeps except notification hints.
fn comparable(r: &Rule) -> (RuleType, String, Policy, Option<String>, Option<String>, Option<String>) {
    (r.rule_type, r.identifier.clone(), r.policy, r.custom_msg.clone(), r.custom_url.clone(), r.cel_expr.clone())
}

fn understood(g: Generation, r: &Rule) -> bool {
    let t = match r.rule_type {
        RuleType::SigningId => g.at_least(2023, 5),
        RuleType::CdHash => g.at_least(2024, 3),
        _ => true,
    };
    let p = match r.policy {
        Policy::Cel => g.at_least(2025, 6),
        Policy::SilentGuiBlocklist | Policy::SilentTtyBlocklist => g.at_least(2026, 6),
        _ => true,
    };
    t && p
}

/// Compares every host's rule DB with `GET {admin}/api/v1/hosts/{id}/effective-rules`.
pub async fn check_convergence(fleet: &Fleet, admin: &str, token: &str, concurrency: usize) -> Convergence {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for client in &fleet.clients {
        let (client, ctx, sem) = (client.clone(), fleet.ctx.clone(), sem.clone());
        let url = format!("{}/api/v1/hosts/{}/effective-rules", admin.trim_end_matches('/'), client.host.machine_id);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let server = match ctx.transport.get_json(&url, &token).await {
                Ok(v) => v,
                Err(e) => return Err(serde_json::json!({"machine_id": client.host.machine_id, "why": e.to_string()})),
            };
            let rules: Vec<Rule> = match serde_json::from_value(server["rules"].clone()) {
                Ok(r) => r,
                Err(e) => {
                    return Err(serde_json::json!({"machine_id": client.host.machine_id, "why": format!("bad effective-rules: {e}")}));
                }
            };
            let g = client.host.generation;
            let want: HashSet<_> = rules.iter().filter(|r| understood(g, r)).map(comparable).collect();
            let have: HashSet<_> = {
                let st = client.state.lock().expect("client state lock");
                st.db.synced_rules().map(|r| comparable(r)).collect()
            };
            if want == have {
                Ok(())
            } else {
                let missing = want.difference(&have).count();
                let extra = have.difference(&want).count();
                Err(serde_json::json!({
                    "machine_id": client.host.machine_id,
                    "generation": g.name(),
                    "local_rules": have.len(), "server_rules": want.len(),
                    "missing": missing, "extra": extra,
                    "why": "rule sets differ",
                }))
            }
        }));
    }
    let mut c = Convergence { checked: true, ..Default::default() };
    for t in tasks {
        match t.await {
            Ok(Ok(())) => c.converged += 1,
            Ok(Err(m)) if c.mismatches.len() < 10 => c.mismatches.push(m),
            _ => {}
        }
    }
    c
}

/// Runs a whole load test and returns the JSON report.
pub async fn run(cfg: &RunConfig) -> anyhow::Result<Value> {
    let fleet = build_fleet(cfg)?;
    let admin = || {
        cfg.admin_url
            .clone()
            .unwrap_or_else(|| origin(&fleet.clients.first().map(|c| c.config.base_url.clone()).unwrap_or_default()))
    };
    if let Some(scenario) = &cfg.scenario {
        crate::scenario_run::apply_tags(&fleet, scenario, &admin(), cfg.admin_token.as_deref(), cfg.concurrency)
            .await?;
    }
    let metrics = fleet.ctx.transport.metrics.clone();
    let bar = if cfg.progress { ProgressBar::new(cfg.duration.as_secs().max(1)) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let ticker = {
        let (bar, m) = (bar.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_position(started.elapsed().as_secs());
                bar.set_message(format!(
                    "syncs {} ({:.1}/s) req {} errors {}",
                    m.syncs_ok.load(Relaxed),
                    m.syncs_ok.load(Relaxed) as f64 / secs,
                    m.requests.load(Relaxed),
                    m.error_count()
                ));
            }
        })
    };
    drive(&fleet, cfg).await;
    let elapsed = started.elapsed().as_secs_f64();
    let load_syncs = metrics.syncs_ok.load(Relaxed);
    ticker.abort();
    bar.finish_and_clear();
    let convergence = match &cfg.admin_token {
        Some(token) => {
            if cfg.final_sync {
                sync_all(&fleet, cfg.concurrency).await;
            }
            check_convergence(&fleet, &admin(), token, cfg.concurrency).await
        }
        None => Convergence::default(),
    };
    let mut report = metrics.report(fleet.clients.len(), elapsed, &convergence);
    // Rates cover the load phase only, not the final convergence round.
    report["load_phase_syncs"] = load_syncs.into();
    report["syncs_per_sec"] = (load_syncs as f64 / elapsed.max(1e-9)).into();
    if let Some(scenario) = &cfg.scenario {
        report["groups"] =
            crate::scenario_run::group_report(&fleet, scenario, &admin(), cfg.admin_token.as_deref(), cfg.concurrency)
                .await;
    }
    Ok(report)
}
