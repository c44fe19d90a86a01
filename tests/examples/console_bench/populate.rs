//! Fills a redb store the way a real fleet would have, writing through the [`Store`] trait
//! directly (not over HTTP): hosts from the simulator's fleet generator (preflight →
//! the server's own inventory builder → `record_preflight`), tags, a global rule set,
//! events from the simulator's software catalog widened to thousands of binaries, proposals
//! with user requests, and audit entries. Deterministic for a seed; the event phase resumes
//! from the store's event count if it was interrupted.

use dasher_sdk::domain::RuleSpec;
use dasher_sdk::wire::{Decision, Policy, RuleType, SyncType};
use dasher_server::config::Limits;
use dasher_server::sync::inventory;
use dasher_sim::events::{Binary, Catalog, EngineSettings, event_for};
use dasher_sim::fixtures;
use dasher_sim::fleet::rng_for;
use dasher_store::{
    AuditVia, EventKind, HostSyncState, NewAuditEntry, NewEvent, NewProposal, ProposalScope, RuleAck, RuleChange,
    Store, SyncOutcome,
};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Fleet seed.
pub const SEED: u64 = 12;
/// Events per upload (what a client sends at once).
pub const PER_UPLOAD: usize = 50;
/// Every this many uploads comes from [`heavy_host`] (a host with many events).
const HEAVY_EVERY: u64 = 100;
/// Days the events are spread over, ending now.
pub const EVENT_DAYS: i64 = 30;

/// What the populated store holds (written next to it as `populated.json`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Populated {
    pub hosts: u64,
    pub events: u64,
    pub binaries: usize,
    pub rules: u64,
    pub proposals: u64,
    pub audit: u64,
    pub end_unix: i64,
    pub seconds: f64,
}

/// The host with many events (index 0).
pub fn heavy_host(hosts: &[HostFacts]) -> &HostFacts {
    &hosts[0]
}

/// What the bench needs of a generated host.
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub machine_id: String,
    pub hostname: String,
    pub serial: String,
    pub user: String,
}

/// Hosts of the fleet, deterministic for [`SEED`].
pub fn hosts(n: u64) -> Vec<HostFacts> {
    (0..n)
        .map(|i| {
            let h = fixtures::host(SEED, i);
            HostFacts { machine_id: h.machine_id, hostname: h.hostname, serial: h.device.serial, user: h.primary_user }
        })
        .collect()
}

/// `n` binaries: the simulator's catalog, then variants of its entries (new versions of the
/// same programs with their own hashes), so events name thousands of distinct SHA-256s.
pub fn binaries(n: usize) -> Vec<Binary> {
    let catalog = Catalog::new(SEED);
    (0..n)
        .map(|i| {
            let base = &catalog.binaries[i % catalog.binaries.len()];
            let mut b = base.clone();
            if i >= catalog.binaries.len() {
                b.sha256 = hex::encode(Sha256::digest(format!("{}:{i}", base.sha256)));
            }
            b
        })
        .collect()
}

mod hex {
    pub fn encode(bytes: impl AsRef<[u8]>) -> String {
        bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Index of the binary for a uniform `u` in `[0, 1)`: popular programs much more often
/// (a few hundred binaries make most executions; the tail is long).
fn pick_binary(u: f64, n: usize) -> usize {
    ((u * u * u) * n as f64) as usize % n
}

/// Writes the fleet's hosts (inventory + a completed sync), their tags, and the global rules.
pub async fn hosts_and_rules(store: &Arc<dyn Store>, fleet: &[HostFacts], end: i64, rules: u64) -> u64 {
    let started = Instant::now();
    let mut version = 0;
    // Global rules, 1,000 per commit.
    let mut i = 0;
    while i < rules {
        let n = 1000.min(rules - i);
        let changes: Vec<RuleChange> = fixtures::rule_specs(i, n, 0)
            .iter()
            .filter_map(|spec| spec.validate().ok())
            .filter_map(|(key, rule)| rule.map(|r| RuleChange { rule_set: "global".into(), key, rule: Some(r) }))
            .collect();
        version = store.commit_rules(&changes).await.expect("commit rules");
        i += n;
    }
    let limits = Limits::default();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32usize)
        .map(|t| {
            let store = store.clone();
            let done = done.clone();
            let limits = limits.clone();
            let n = fleet.len();
            tokio::spawn(async move {
                for idx in (t..n).step_by(32) {
                    let h = fixtures::host(SEED, idx as u64);
                    let mut req = fixtures::preflight(&h, rules as u32);
                    let mut rng = rng_for(SEED ^ 0x4057, idx as u64);
                    // Last syncs spread over 45 days: some hosts are stale.
                    let last = end - (rng.random::<f64>().powi(4) * 45.0 * 86_400.0) as i64;
                    req.client_mode = if rng.random_bool(0.3) { 2 } else { 1 };
                    let mut inv = inventory::build(&h.machine_id, &req, None, last, &limits);
                    inv.first_seen_unix = last - rng.random_range(0..200) * 86_400;
                    let state = HostSyncState {
                        acked: Some(RuleAck {
                            version,
                            rule_sets: vec![format!("host:{}", h.machine_id), "global".into()],
                            counts: Default::default(),
                            counts_for: None,
                            sync_type: Some(SyncType::Normal),
                        }),
                        last_sync_type: Some(SyncType::Normal),
                        last_sync_reason: "up to date".into(),
                        last_preflight_unix: last,
                        last_postflight_unix: last + 2,
                        last_outcome: SyncOutcome::Ok,
                        ..Default::default()
                    };
                    store.record_preflight(&inv, &state).await.expect("record preflight");
                    let dept = ["engineering", "sales", "finance", "design", "support"][idx % 5];
                    let mut tags = vec![format!("dept-{dept}")];
                    if idx.is_multiple_of(10) {
                        tags.push("canary".into());
                    }
                    store.set_host_tags(&h.machine_id, &tags).await.expect("set tags");
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(10_000) {
                        eprintln!("  {d} hosts");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("host task");
    }
    eprintln!("hosts and rules in {:.0} s", started.elapsed().as_secs_f64());
    version
}

/// The events of upload `u` of `uploads` (spread over [`EVENT_DAYS`] ending at `end`).
pub fn upload(u: u64, uploads: u64, fleet: &[HostFacts], bins: &[Binary], end: i64) -> (usize, Vec<NewEvent>) {
    let mut rng = rng_for(SEED ^ 0xe7e7, u);
    let host = if u.is_multiple_of(HEAVY_EVERY) { 0 } else { rng.random_range(1..fleet.len().max(2)) % fleet.len() };
    let span = EVENT_DAYS * 86_400;
    let received = end - span + (u as i128 * span as i128 / uploads.max(1) as i128) as i64;
    let settings = EngineSettings { lockdown: false, all_events: false, no_unknown_events: false, bundles: true };
    let user = &fleet[host].user;
    let events = (0..PER_UPLOAD)
        .map(|i| {
            let b = &bins[pick_binary(rng.random::<f64>(), bins.len())];
            let d = match rng.random_range(0..100) {
                0..70 => Decision::AllowUnknown,
                70..88 => Decision::BlockUnknown,
                88..96 => Decision::BlockBinary,
                96..98 => Decision::AllowBinary,
                _ => Decision::BlockCertificate,
            };
            let at = received as f64 - 60.0 + i as f64;
            let e = event_for(b, d, user, at, &mut rng, settings);
            NewEvent {
                kind: EventKind::Execution,
                dedupe_key: format!(
                    "{}|{}|{}|{}|{}",
                    e.file_sha256, e.execution_time, e.pid, e.decision, e.file_bundle_hash
                ),
                decision: e.decision_value().to_string(),
                file_sha256: e.file_sha256.clone(),
                file_bundle_hash: e.file_bundle_hash.clone(),
                occurred_at_unix: e.execution_time,
                received_at_unix: received,
                body: serde_json::to_value(&e).expect("event serializes"),
            }
        })
        .collect();
    (host, events)
}

/// Inserts uploads `from..uploads` with `concurrency` writers (the store groups their commits).
pub async fn events(
    store: &Arc<dyn Store>,
    fleet: Arc<Vec<HostFacts>>,
    bins: Arc<Vec<Binary>>,
    from: u64,
    uploads: u64,
    end: i64,
    concurrency: u64,
) {
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (store, fleet, bins, done) = (store.clone(), fleet.clone(), bins.clone(), done.clone());
            tokio::spawn(async move {
                let mut u = from + t;
                while u < uploads {
                    let (host, events) = upload(u, uploads, &fleet, &bins, end);
                    store.insert_events(&fleet[host].machine_id, &events).await.expect("insert events");
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(2000) {
                        let secs = started.elapsed().as_secs_f64();
                        let n = d * PER_UPLOAD as u64;
                        let left = (uploads - from).saturating_sub(d) * PER_UPLOAD as u64;
                        eprintln!(
                            "  {} events stored, {:.0} events/s, about {:.0} s left",
                            (from + d) * PER_UPLOAD as u64,
                            n as f64 / secs,
                            left as f64 / (n as f64 / secs)
                        );
                    }
                    u += concurrency;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("event task");
    }
}

/// Proposals (allow requests for blocked binaries, from triage and from users) and audit entries.
pub async fn review(store: &Arc<dyn Store>, fleet: &[HostFacts], bins: &[Binary], end: i64) -> (u64, u64) {
    let mut proposals = 0;
    for (i, b) in bins.iter().enumerate().take(2_000) {
        let h = &fleet[(i * 7919) % fleet.len()];
        let spec = RuleSpec::new(RuleType::Binary, b.sha256.clone(), Policy::Allowlist);
        let Ok((key, _)) = spec.validate() else { continue };
        let (scope, rule_set) = match i % 3 {
            0 => (ProposalScope::Host, format!("host:{}", h.machine_id)),
            1 => (ProposalScope::RuleSet, "dept-engineering".into()),
            _ => (ProposalScope::Global, "global".into()),
        };
        let p = NewProposal {
            scope,
            rule_set,
            key,
            rule: spec,
            reason: format!("{} blocked on {} hosts", b.name, 1 + i % 40),
            machine_id: h.machine_id.clone(),
            proposed_by: Vec::new(),
            at_unix: end - (2_000 - i as i64) * 600,
        };
        if i.is_multiple_of(4) {
            store.record_user_request(&p, Some(&h.user), "I need this for my work").await.expect("user request");
        } else {
            store.record_proposal(&p).await.expect("proposal");
        }
        proposals += 1;
    }
    let mut audit = 0;
    for i in 0..20_000u64 {
        let h = &fleet[(i as usize * 104_729) % fleet.len()];
        let entry = NewAuditEntry {
            at_unix: end - (20_000 - i as i64) * 60,
            actor: ["alice", "bob", "carol"][i as usize % 3].into(),
            role: "rules-editor".into(),
            action: "host.tags.set".into(),
            target: format!("host:{}", h.machine_id),
            detail: serde_json::json!({ "tags": ["dept-engineering"] }),
            via: if i.is_multiple_of(2) { AuditVia::Ui } else { AuditVia::Api },
        };
        store.record_audit(&entry).await.expect("audit");
        audit += 1;
    }
    (proposals, audit)
}
